package tcpcopy

import (
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// SessionTable keeps one emulated TCP client per copied connection. It is
// consumed by Copier and implemented by session.Table. Implementations need
// not be safe for concurrent use: the Copier calls one table from one
// goroutine (one per shard).
type SessionTable interface {
	// HandleClient takes a captured, rewritten client packet. The table
	// copies what it keeps; p and p.Data stay the caller's.
	HandleClient(p *capture.Packet)
	// HandleResponse takes a response of the target reported by intercept
	// (headers, and payload if reported). p and p.Data stay the caller's.
	HandleResponse(p *capture.Packet)
	// Tick runs timers (retransmission, pacing, expiry) as of now.
	Tick(now time.Time)
}
