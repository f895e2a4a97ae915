package session

import "sync/atomic"

// Stats counts what a Table did. Every client packet handed to the table
// is either sent (possibly later, possibly merged) or counted under a drop
// reason.
type Stats struct {
	Started  uint64 // sessions opened (SYN copied or forged)
	Forged   uint64 // of those, captured mid-stream with a forged handshake
	Resumed  uint64 // reconnections after the target closed with data left
	Active   uint64 // sessions in the table now, lingering ones included
	Finished uint64 // sessions closed in order (FIN or RST exchanged)

	ClientPackets uint64 // client packets handed in
	Sent          uint64 // packets emitted (data, SYN, FIN, RST, made ACKs)
	Retransmitted uint64 // of those, retransmissions
	Responses     uint64 // target responses handed in
	Held          uint64 // requests held until the previous response ended
	Requests      uint64 // requests sent: a session's first data, and data after the client saw more of the answer
	Pipelined     uint64 // of those, sent before the previous answer was in (NoWait, or the copy lagged MaxLag behind)
	Unanswered    uint64 // requests the target acknowledged, then closed without answering: sent again on a new connection

	// Drop reasons.
	NoSession         uint64 // client packet for no session, not copyable mid-stream
	Duplicates        uint64 // client retransmissions of bytes already sent or buffered
	AbsorbedACKs      uint64 // captured pure ACKs (the table makes its own)
	BufferFull        uint64 // client packets over MaxBuffered
	Shed              uint64 // new connections (SYNs) refused over MaxMemory
	ShedPackets       uint64 // packets of connections first seen mid-stream, refused over MaxMemory
	HandshakeTimeouts uint64 // sessions the target never answered
	GapTimeouts       uint64 // captured packets that never came (GapTimeout): the session went on past the hole on a new connection, or with a protocol module was reset and dropped
	TargetResets      uint64 // sessions the target reset with nothing left to send
	LostOnReset       uint64 // sent bytes the target never acknowledged before resetting
	IdleTimeouts      uint64 // sessions freed for idleness (or keepalive-only)
	UnknownResponses  uint64 // responses for no known session
	Retired           uint64 // open sessions cut off by a new connection on their port
	PortWaits         uint64 // new connections that waited for the previous one on their port
	SkippedByProtocol uint64 // sessions the protocol module could not copy
	SkippedPackets    uint64 // client packets of those sessions, absorbed
	EmitErrors        uint64 // batches the Emitter refused
}

type counters struct {
	started, forged, resumed, active, finished                    atomic.Uint64
	clientPackets, sent, retransmitted, responses, held, requests atomic.Uint64
	noSession, duplicates, absorbedACKs, bufferFull, shed         atomic.Uint64
	handshakeTimeouts, gapTimeouts, targetResets, lostOnReset     atomic.Uint64
	idleTimeouts, unknownResponses, retired, skipped, emitErrors  atomic.Uint64
	portWaits, shedPackets, skippedPackets, pipelined, unanswered atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Started: c.started.Load(), Forged: c.forged.Load(), Resumed: c.resumed.Load(),
		Active: c.active.Load(), Finished: c.finished.Load(),
		ClientPackets: c.clientPackets.Load(), Sent: c.sent.Load(),
		Retransmitted: c.retransmitted.Load(), Responses: c.responses.Load(), Held: c.held.Load(),
		Requests: c.requests.Load(), Pipelined: c.pipelined.Load(), Unanswered: c.unanswered.Load(),
		NoSession: c.noSession.Load(), Duplicates: c.duplicates.Load(),
		AbsorbedACKs: c.absorbedACKs.Load(), BufferFull: c.bufferFull.Load(), Shed: c.shed.Load(),
		ShedPackets: c.shedPackets.Load(), SkippedPackets: c.skippedPackets.Load(),
		HandshakeTimeouts: c.handshakeTimeouts.Load(), GapTimeouts: c.gapTimeouts.Load(),
		TargetResets: c.targetResets.Load(), LostOnReset: c.lostOnReset.Load(),
		IdleTimeouts: c.idleTimeouts.Load(), UnknownResponses: c.unknownResponses.Load(),
		Retired: c.retired.Load(), PortWaits: c.portWaits.Load(), SkippedByProtocol: c.skipped.Load(), EmitErrors: c.emitErrors.Load(),
	}
}

// Add returns the field-wise sum of s and o (for totals over shards).
func (s Stats) Add(o Stats) Stats {
	s.Started += o.Started
	s.Forged += o.Forged
	s.Resumed += o.Resumed
	s.Active += o.Active
	s.Finished += o.Finished
	s.ClientPackets += o.ClientPackets
	s.Sent += o.Sent
	s.Retransmitted += o.Retransmitted
	s.Responses += o.Responses
	s.Held += o.Held
	s.Requests += o.Requests
	s.Pipelined += o.Pipelined
	s.Unanswered += o.Unanswered
	s.NoSession += o.NoSession
	s.Duplicates += o.Duplicates
	s.AbsorbedACKs += o.AbsorbedACKs
	s.BufferFull += o.BufferFull
	s.Shed += o.Shed
	s.ShedPackets += o.ShedPackets
	s.HandshakeTimeouts += o.HandshakeTimeouts
	s.GapTimeouts += o.GapTimeouts
	s.TargetResets += o.TargetResets
	s.LostOnReset += o.LostOnReset
	s.IdleTimeouts += o.IdleTimeouts
	s.UnknownResponses += o.UnknownResponses
	s.Retired += o.Retired
	s.PortWaits += o.PortWaits
	s.SkippedByProtocol += o.SkippedByProtocol
	s.SkippedPackets += o.SkippedPackets
	s.EmitErrors += o.EmitErrors
	return s
}
