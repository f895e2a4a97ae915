// Package tcpcopy copies live TCP traffic from a production ("online")
// server to a test ("target") server, re-creating the classic TCPCopy pair
// as an embeddable library.
//
// The data path has five stages, each an interface with implementations in
// its own package:
//
//	capture.Capturer -> rewrite.Rewriter -> SessionTable -> emit.Emitter
//	intercept responses --------------> SessionTable.HandleResponse
//
// capture reads client packets (raw IP socket, AF_PACKET, pcap file,
// memory); rewrite points them at the target; the session table (package
// session) keeps a valid TCP conversation with the target using the
// responses that an intercept.Interceptor captures on the target side and an
// intercept.Server reports back; emit sends the result. Copier wires the
// stages and shards the sessions across goroutines; Online builds the whole
// copier host from a Config that mirrors TCPCopy's options (the tcpcopy
// program is flags -> OnlineConfig -> Run), as intercept.Service does for
// the target side.
package tcpcopy
