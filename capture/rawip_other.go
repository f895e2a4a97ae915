//go:build !linux

package capture

import "fmt"

// RawIP is a Capturer over a raw IP socket; it is implemented on Linux
// only. Elsewhere NewRawIP reports ErrNotSupported.
type RawIP struct {
	Counters
}

var _ Capturer = (*RawIP)(nil)

// NewRawIP reports ErrNotSupported on this platform.
func NewRawIP(cfg *RawIPConfig) (*RawIP, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("capture: raw IP capture: %w", ErrNotSupported)
}

// ReadPackets implements Capturer; it always reports ErrClosed.
func (r *RawIP) ReadPackets(pkts []Packet) (int, error) { return 0, ErrClosed }

// Close implements Capturer.
func (r *RawIP) Close() error { return nil }
