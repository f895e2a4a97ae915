package session

import "sync/atomic"

// Stats counts what a Table did. Every client packet handed to the table
// is either sent (possibly later) or counted under a drop reason.
type Stats struct {
	Started  uint64 // sessions opened (SYN copied)
	Active   uint64 // sessions open now
	Finished uint64 // sessions closed in order (FIN or RST exchanged)

	ClientPackets uint64 // client packets handed in
	Sent          uint64 // packets emitted (data, SYN, FIN, RST, made ACKs)
	Retransmitted uint64 // of those, retransmissions
	Responses     uint64 // target responses handed in
	Held          uint64 // requests held until the previous response ended

	// Drop reasons.
	NoSession         uint64 // non-SYN client packet for no known session
	Duplicates        uint64 // client retransmissions of bytes already buffered
	AbsorbedACKs      uint64 // captured pure ACKs (the table makes its own)
	BufferFull        uint64 // client packets over MaxBuffered
	HandshakeTimeouts uint64 // sessions the target never answered
	TargetResets      uint64 // sessions the target reset
	IdleTimeouts      uint64 // sessions freed for idleness
	UnknownResponses  uint64 // responses for no known session
	Retired           uint64 // sessions replaced by a new SYN on the same port
	EmitErrors        uint64 // batches the Emitter refused
}

type counters struct {
	started, active, finished                           atomic.Uint64
	clientPackets, sent, retransmitted, responses, held atomic.Uint64
	noSession, duplicates, absorbedACKs, bufferFull     atomic.Uint64
	handshakeTimeouts, targetResets, idleTimeouts       atomic.Uint64
	unknownResponses, retired, emitErrors               atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Started: c.started.Load(), Active: c.active.Load(), Finished: c.finished.Load(),
		ClientPackets: c.clientPackets.Load(), Sent: c.sent.Load(),
		Retransmitted: c.retransmitted.Load(), Responses: c.responses.Load(), Held: c.held.Load(),
		NoSession: c.noSession.Load(), Duplicates: c.duplicates.Load(),
		AbsorbedACKs: c.absorbedACKs.Load(), BufferFull: c.bufferFull.Load(),
		HandshakeTimeouts: c.handshakeTimeouts.Load(), TargetResets: c.targetResets.Load(),
		IdleTimeouts: c.idleTimeouts.Load(), UnknownResponses: c.unknownResponses.Load(),
		Retired: c.retired.Load(), EmitErrors: c.emitErrors.Load(),
	}
}
