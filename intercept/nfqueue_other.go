//go:build !linux

package intercept

import (
	"context"
	"fmt"

	"github.com/shadowcopy/tcpcopy/capture"
)

// NFQueue is an Interceptor that reads the target's responses from an
// NFQUEUE queue. NFQUEUE exists on Linux only: on this platform every
// method reports an error wrapping ErrNotSupported.
type NFQueue struct {
	cfg NFQueueConfig
}

var _ Interceptor = (*NFQueue)(nil)

var errNFQueueNotSupported = fmt.Errorf("intercept: NFQUEUE: %w", ErrNotSupported)

// NewNFQueue reports an error wrapping ErrNotSupported.
func NewNFQueue(cfg *NFQueueConfig) (*NFQueue, error) {
	return nil, errNFQueueNotSupported
}

// Stats returns zero counters.
func (q *NFQueue) Stats() NFQueueStats { return NFQueueStats{} }

// Open reports an error wrapping ErrNotSupported.
func (q *NFQueue) Open() error { return errNFQueueNotSupported }

// Close does nothing.
func (q *NFQueue) Close() error { return nil }

// Run reports an error wrapping ErrNotSupported.
func (q *NFQueue) Run(ctx context.Context, report func(pkts []capture.Packet)) error {
	return errNFQueueNotSupported
}
