//go:build !linux

package emit

import "fmt"

// AFPacket is an Emitter over an AF_PACKET socket; it is implemented on
// Linux only. Elsewhere NewAFPacket reports ErrNotSupported.
type AFPacket struct {
	Counters
}

var _ Emitter = (*AFPacket)(nil)

// NewAFPacket reports ErrNotSupported on this platform.
func NewAFPacket(cfg *AFPacketConfig) (*AFPacket, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("emit: AF_PACKET emitter: %w", ErrNotSupported)
}

// Emit implements Emitter; it always reports ErrClosed.
func (a *AFPacket) Emit(pkts [][]byte) error { return ErrClosed }

// Close does nothing.
func (a *AFPacket) Close() error { return nil }
