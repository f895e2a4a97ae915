// Package intercept is the target side of the copier: Interceptors that
// capture the target's responses and keep them from the real clients, the
// wire protocol that reports those responses, a Server that routes them to
// the copiers that own the clients, and the Client that copiers dial it
// with.
//
// NFQueue is the Interceptor of the classic deployment (an iptables rule
// queues the target's responses; NFQueue DROPs and reports them); Memory is
// an in-memory Interceptor for tests and harnesses. Server runs an
// Interceptor and serves copiers; Client is the copier's end, which
// announces clients (ClientAdd) and hands the responses routed to it to a
// Handler. The native wire protocol they speak is described in wire.go and
// encoded by AppendHello, AppendClientAdd, AppendClientRemove and
// ResponsesEncoder, decoded by FrameReader, ParseClient and DecodeResponses.
package intercept
