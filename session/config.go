package session

import (
	"log/slog"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
)

// Config configures a Table. The zero value of every field is documented;
// Emitter is required.
type Config struct {
	// Emitter sends the packets the table makes toward the target.
	Emitter emit.Emitter

	// OnOpen, if set, is called before a session's first SYN is sent, with
	// the client (as the target will see it) and the target; the copier
	// announces the client to intercept here.
	OnOpen func(client, target capture.Endpoint)
	// OnClose, if set, is called when a session is freed.
	OnClose func(client, target capture.Endpoint)

	// Protocol, if set, is consulted for every session (see Protocol).
	Protocol Protocol

	// OnlyFull copies only connections whose SYN was captured. By default
	// a connection first seen mid-stream gets a forged handshake.
	OnlyFull bool
	// MSS is the MSS option of forged SYNs. Zero means 1460 for IPv4 and
	// 1440 for IPv6.
	MSS uint16

	// HandshakeTimeout is how long a SYN may wait for the target's SYN-ACK
	// before the session is reset and dropped. Zero means 3 s.
	HandshakeTimeout time.Duration
	// RTO is the initial retransmission timeout. Zero means 1 s.
	RTO time.Duration
	// ResponseQuiet is how long the target's response must be quiet before
	// the next request is released, when the response is shorter than the
	// online one. Zero means the client's handshake RTT, at least 2 ms and
	// at most 200 ms.
	ResponseQuiet time.Duration
	// HoldTimeout bounds how long a request waits for the previous response.
	// Zero means 3 s.
	HoldTimeout time.Duration
	// NoWait sends requests as they come, without waiting for responses.
	NoWait bool
	// MaxLag bounds how far a session's copy may fall behind the online
	// conversation. A request that reached the table this long ago goes
	// without waiting for the previous response (pipelined, within the
	// target's window), so a copy whose round trip through the target
	// and intercept is longer than the client's think time keeps pace
	// instead of losing the backlog. Sessions with a protocol module
	// always wait. Zero means 100 ms; negative means wait always (up to
	// HoldTimeout), as TCPCopy does.
	MaxLag time.Duration
	// GapTimeout is how long a session waits for a missing captured packet
	// before it gives the missing bytes up: it resets the target's
	// connection and sends what came after the hole on a new one (with a
	// protocol module, it is dropped instead). Reordering fills a gap within microseconds
	// and a client's retransmission (the packet was lost before the
	// online host) after its RTO, at least 200 ms; a packet the capture
	// dropped never comes, and the session's later requests wait behind
	// it. Zero means 1 s.
	GapTimeout time.Duration
	// IdleTimeout frees sessions with no packet either way for this long.
	// Zero means 600 s.
	IdleTimeout time.Duration
	// KeepaliveTimeout frees sessions that carried no data either way for
	// this long, though keepalive probes still flow. Zero means 1800 s.
	KeepaliveTimeout time.Duration
	// Linger is how long a closed session is kept to absorb late packets.
	// Zero means 2 s.
	Linger time.Duration
	// MaxBuffered caps the client packets buffered per session; more are
	// dropped and counted. Zero means 4096.
	MaxBuffered int
	// MaxMemory caps the bytes of client packets the table buffers; while
	// it is exceeded, new sessions are shed (and counted) rather than the
	// process growing. Zero means no cap.
	MaxMemory int64

	// Logger receives session-level events (not per packet). Nil discards.
	Logger *slog.Logger
}

func (c *Config) withDefaults() Config {
	d := *c
	def := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&d.HandshakeTimeout, 3*time.Second)
	def(&d.RTO, time.Second)
	def(&d.HoldTimeout, 3*time.Second)
	if d.MaxLag == 0 {
		d.MaxLag = 100 * time.Millisecond
	}
	def(&d.GapTimeout, time.Second)
	def(&d.IdleTimeout, 600*time.Second)
	def(&d.KeepaliveTimeout, 1800*time.Second)
	def(&d.Linger, 2*time.Second)
	if d.MaxBuffered <= 0 {
		d.MaxBuffered = 4096
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return d
}
