package capture

import (
	"errors"
	"sync/atomic"
)

// Stats counts what a Capturer saw. Every packet read is either returned
// (Packets) or counted under one drop reason.
type Stats struct {
	Packets     uint64 // decoded TCP packets returned
	Bytes       uint64 // IP bytes of those packets
	Truncated   uint64 // shorter than their headers say, or snapped
	Malformed   uint64 // bad IHL, data offset, options, version
	NotTCP      uint64 // other protocols (and unwalkable IPv6 chains)
	Fragments   uint64 // IP fragments, passed over (not reassembled)
	KernelDrops uint64 // dropped by the kernel before we read them
}

// Add returns the field-wise sum of s and o (several capturers, or rounds
// of a file).
func (s Stats) Add(o Stats) Stats {
	s.Packets += o.Packets
	s.Bytes += o.Bytes
	s.Truncated += o.Truncated
	s.Malformed += o.Malformed
	s.NotTCP += o.NotTCP
	s.Fragments += o.Fragments
	s.KernelDrops += o.KernelDrops
	return s
}

// Counters is the concurrency-safe accumulator behind a Capturer's Stats.
// Capturers embed it; its zero value is ready.
type Counters struct {
	packets, bytes, truncated, malformed, notTCP, fragments, kernelDrops atomic.Uint64
}

// Accept counts a packet returned to the caller.
func (c *Counters) Accept(p *Packet) {
	c.packets.Add(1)
	c.bytes.Add(uint64(len(p.Data)))
}

// Reject counts a packet that failed to decode, by the reason in err.
func (c *Counters) Reject(err error) {
	switch {
	case errors.Is(err, ErrFragment):
		c.fragments.Add(1)
	case errors.Is(err, ErrNotTCP):
		c.notTCP.Add(1)
	case errors.Is(err, ErrTruncated):
		c.truncated.Add(1)
	default:
		c.malformed.Add(1)
	}
}

// AddKernelDrops adds drops the kernel reported.
func (c *Counters) AddKernelDrops(n uint64) { c.kernelDrops.Add(n) }

// Stats returns a snapshot.
func (c *Counters) Stats() Stats {
	return Stats{
		Packets:     c.packets.Load(),
		Bytes:       c.bytes.Load(),
		Truncated:   c.truncated.Load(),
		Malformed:   c.malformed.Load(),
		NotTCP:      c.notTCP.Load(),
		Fragments:   c.fragments.Load(),
		KernelDrops: c.kernelDrops.Load(),
	}
}
