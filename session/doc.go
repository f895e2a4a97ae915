// Package session implements the session table: one emulated TCP client per
// copied connection, speaking to the target with the client's captured
// bytes and using the target's responses (reported by intercept) to set
// ACKs, pace requests and close in order.
//
// What a session does (DESIGN.md section 4): the client's SYN is copied
// with its ISN and options; the target's SYN-ACK teaches the target's ISN,
// window scale and timestamp use, and the table answers it with its own
// ACK. Client data goes out in sequence order with the ACK field set to the
// next byte expected from the target and TSecr to the target's latest TSval.
// A data packet whose captured ACK moved (the client had seen more of the
// online server's answer) starts a new request: it is held until the target
// has acknowledged the previous request and has sent at least as many bytes
// as the online server had, or went quiet for about one client RTT, or the
// hold timed out; or, once the request is Config.MaxLag old (the copy's
// round trip through target and intercept is slower than the client), it
// goes at once, pipelined within the target's window. A request the target
// acknowledged and then closed on without answering goes again on a new
// connection when the online server did answer it. The table ACKs the target's data itself and absorbs the
// client's pure ACKs, which speak of the online server's bytes. Unacked data
// is retransmitted on timeout and on three duplicate ACKs; the target's
// window is honoured; FIN and RST are forwarded in order, and a new SYN on a
// port retires the old session.
package session
