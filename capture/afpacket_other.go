//go:build !linux

package capture

import "fmt"

// AFPacket is a Capturer over an AF_PACKET socket; it is implemented on
// Linux only. Elsewhere NewAFPacket reports ErrNotSupported.
type AFPacket struct {
	Counters
}

var _ Capturer = (*AFPacket)(nil)

// NewAFPacket reports ErrNotSupported on this platform.
func NewAFPacket(cfg *AFPacketConfig) (*AFPacket, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("capture: AF_PACKET capture: %w", ErrNotSupported)
}

// ReadPackets implements Capturer; it always reports ErrClosed.
func (r *AFPacket) ReadPackets(pkts []Packet) (int, error) { return 0, ErrClosed }

// Close implements Capturer.
func (r *AFPacket) Close() error { return nil }
