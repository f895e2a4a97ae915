package session

import "github.com/shadowcopy/tcpcopy/capture"

// Protocol is a protocol module (such as MySQL's) that the table consults
// for every session: it can hold client data until the target has spoken,
// see the target's responses, rewrite client payload, and add bytes of its
// own. The table shifts the sequence numbers of later client bytes by
// whatever the module added or removed, so the target sees one consistent
// stream. A nil Config.Protocol copies bytes as captured.
type Protocol interface {
	// Open starts the module's state for one session. resumed is true for
	// a session captured mid-stream or re-opened after the target closed
	// it with client data left to send: the module may then rebuild the
	// conversation (a stored login) through Conn.Inject.
	Open(client, target capture.Endpoint, resumed bool) Conn
}

// Conn is a protocol module's state for one session. The table calls it
// from its own goroutine only; byte slices passed in are valid only during
// the call, and what a method appends to dst is copied by the table.
type Conn interface {
	// Inject appends bytes to send to the target before the first
	// captured client byte of a resumed session. It is called once, before
	// the SYN is sent, so the table can lower the SYN's sequence number by
	// the injected length.
	Inject(dst []byte) []byte
	// Ready reports whether client data may be sent now; false holds it
	// (for a greeting, or an authentication round trip).
	Ready() bool
	// Client appends to dst what to send in place of the payload of the
	// next captured client segment, in sequence order: the same bytes,
	// other bytes, more, or none.
	Client(dst, payload []byte) []byte
	// Response sees each target response in sequence order: payload holds
	// the bytes intercept reported, full is the segment's real payload
	// length. It appends to dst bytes to send to the target at once (an
	// authentication reply the capture does not hold), or nothing.
	Response(dst, payload []byte, full int) []byte
	// Skip reports whether the session cannot be copied (say, it asked for
	// TLS); the table then resets it toward the target and counts it.
	Skip() bool
}
