// Package intercept is the target side of the copier: Interceptors that
// capture the target's responses and keep them from the real clients, the
// wire protocol that reports those responses, a Server that routes them to
// the copiers that own the clients, and the Client that copiers dial it
// with.
//
// Interceptors, one per deployment of DESIGN.md section 2:
//
//   - NFQueue (classic deployment, intercept on the target): an iptables
//     rule queues the target's responses; NFQueue reports them and gives
//     them the verdict DROP, in batches, or ACCEPT for destinations on its
//     pass list. NFQueueRules installs and removes that rule.
//   - AFPacket (assistant and two-box deployments): captures the responses
//     at the link layer with a kernel filter on the target service's source
//     ports; the deployment drops them (an assistant host with IP
//     forwarding off, or an iptables INPUT rule).
//   - Memory: in-memory, for tests and harnesses.
//
// Server runs an Interceptor and serves many copiers at once: it learns from
// their ClientAdd messages which copier owns which client, holds responses
// that arrive just before their ClientAdd, expires stale routes, and
// bounds what unauthenticated peers can cost (a handshake timeout, a cap on
// connections in their handshake). Client is the copier's end: it keeps
// connections to every server (several each), announces clients
// (Announce, Remove), re-announces the active ones whenever a connection
// comes back, and hands the responses routed to it to a Handler.
//
// Two framings share the server's port. The native one (wire.go, version
// 2) carries IPv4 and IPv6, variable payload and batches, and authenticates
// both ends with a challenge and response over a shared secret (HMAC-SHA256,
// the secret never on the wire), optionally inside TLS. The classic one
// (classic.go) is byte-compatible with TCPCopy 1.x, so either half pairs
// with the C original; it is IPv4 only and cannot authenticate, so a Server
// accepts it only when told to (ServerConfig.AcceptClassic).
package intercept
