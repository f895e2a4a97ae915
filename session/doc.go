// Package session implements the session table: one emulated TCP client per
// copied connection, speaking to the target with the client's captured
// bytes, using the target's responses (reported by intercept) to set ACKs,
// pace requests and close in order.
package session
