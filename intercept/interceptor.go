package intercept

import (
	"context"
	"errors"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Interceptor captures the target's responses on the target side and keeps
// them from reaching the real clients (NFQUEUE DROP, or a black-holing
// assistant host). It is consumed by Server.
type Interceptor interface {
	// Run captures until ctx is done or a fatal error occurs, calling report
	// with each batch of responses from the reporting goroutine. The packets
	// and their Data are valid only during the call; report must not block
	// for long. Run returns nil when ctx ends.
	Run(ctx context.Context, report func(pkts []capture.Packet)) error
}

// Sentinel errors.
var (
	ErrClosed       = errors.New("intercept: closed")
	ErrNotSupported = errors.New("intercept: not supported on this platform")
)
