//go:build !linux

package emit

import "fmt"

// RawIP is an Emitter over raw IP sockets; it is implemented on Linux
// only. Elsewhere NewRawIP reports ErrNotSupported.
type RawIP struct {
	Counters
}

var _ Emitter = (*RawIP)(nil)

// NewRawIP reports ErrNotSupported on this platform.
func NewRawIP(cfg *RawIPConfig) (*RawIP, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("emit: raw IP emitter: %w", ErrNotSupported)
}

// Emit implements Emitter; it always reports ErrClosed.
func (r *RawIP) Emit(pkts [][]byte) error { return ErrClosed }

// Close does nothing.
func (r *RawIP) Close() error { return nil }
