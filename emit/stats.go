package emit

import (
	"strconv"
	"sync/atomic"
)

// Reason is why an Emitter dropped a datagram. The zero value is invalid.
type Reason uint8

// Drop reasons.
const (
	_ Reason = iota
	// MsgSize: larger than the route's MTU (EMSGSIZE). Raw sockets that
	// include the header never fragment; segment to the MTU first.
	MsgSize
	// Perm: refused by the local stack (EPERM), mostly a netfilter rule
	// or a full conntrack table.
	Perm
	// NoBuffers: the socket's send buffer or the device queue was full
	// (ENOBUFS, EAGAIN). The Emitter does not wait for room.
	NoBuffers
	// Invalid: not an IPv4 or IPv6 datagram, or too short for its header.
	Invalid
	// Other: any other send error, or no socket for the datagram's family.
	Other
	// NoNeighbour: the link-layer address of the next hop is not known
	// (AFPacket): the kernel has been asked to resolve it, and later
	// datagrams to that destination go out once it has.
	NoNeighbour
)

var reasonNames = [...]string{"invalid-reason", "msgsize", "perm", "nobuffers", "invalid", "other", "noneighbour"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Stats counts what an Emitter did. Every datagram given to Emit is either
// Sent or counted under one drop reason.
type Stats struct {
	Sent      uint64 // datagrams handed to the kernel
	Bytes     uint64 // IP bytes of those datagrams
	MsgSize   uint64 // dropped: EMSGSIZE
	Perm      uint64 // dropped: EPERM
	NoBuffers uint64 // dropped: ENOBUFS or EAGAIN
	Invalid   uint64 // dropped: not a datagram the Emitter can send
	Other     uint64 // dropped: any other error

	NoNeighbour uint64 // dropped: next hop's link-layer address unknown
}

// Add returns the field-wise sum of s and o (several emitters).
func (s Stats) Add(o Stats) Stats {
	s.Sent += o.Sent
	s.Bytes += o.Bytes
	s.MsgSize += o.MsgSize
	s.Perm += o.Perm
	s.NoBuffers += o.NoBuffers
	s.Invalid += o.Invalid
	s.Other += o.Other
	s.NoNeighbour += o.NoNeighbour
	return s
}

// Dropped is the sum of the drop counters.
func (s Stats) Dropped() uint64 {
	return s.MsgSize + s.Perm + s.NoBuffers + s.Invalid + s.Other + s.NoNeighbour
}

// Counters is the concurrency-safe accumulator behind an Emitter's Stats.
// Emitters embed it; its zero value is ready.
type Counters struct {
	sent, bytes atomic.Uint64
	drops       [NoNeighbour + 1]atomic.Uint64
}

// AddSent counts one datagram of n bytes handed to the kernel.
func (c *Counters) AddSent(n int) {
	c.sent.Add(1)
	c.bytes.Add(uint64(n))
}

// AddDrop counts one datagram dropped for r; an invalid r counts as Other.
func (c *Counters) AddDrop(r Reason) {
	if r == 0 || r > NoNeighbour {
		r = Other
	}
	c.drops[r].Add(1)
}

// Stats returns a snapshot.
func (c *Counters) Stats() Stats {
	return Stats{
		Sent:      c.sent.Load(),
		Bytes:     c.bytes.Load(),
		MsgSize:   c.drops[MsgSize].Load(),
		Perm:      c.drops[Perm].Load(),
		NoBuffers: c.drops[NoBuffers].Load(),
		Invalid:   c.drops[Invalid].Load(),
		Other:     c.drops[Other].Load(),

		NoNeighbour: c.drops[NoNeighbour].Load(),
	}
}
