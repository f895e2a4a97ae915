package session

import (
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Table is the session table: one emulated TCP client per copied
// connection, keyed by the client endpoint as the target sees it. It is not
// safe for concurrent use; the copier drives each Table from one goroutine.
//
// Packets the calls produce are queued and sent by the next Tick, so that
// one Emit carries a whole batch.
type Table struct {
	cfg      Config
	sessions map[capture.Endpoint]*sess
	now      time.Time
	lastScan time.Time
	c        counters

	arena []byte // datagrams queued for the next Emit, back to back
	ends  []int  // end offset of each queued datagram in arena
	batch [][]byte
	opts  []byte // scratch for options of made packets
}

// scanEvery is how often Tick walks all sessions for timers.
const scanEvery = 5 * time.Millisecond

// New returns a Table. It starts no goroutines.
func New(cfg *Config) *Table {
	if cfg == nil {
		cfg = &Config{}
	}
	return &Table{
		cfg:      cfg.withDefaults(),
		sessions: make(map[capture.Endpoint]*sess),
		opts:     make([]byte, 0, 40),
	}
}

// Stats returns a snapshot of the counters; it is safe to call from any
// goroutine.
func (t *Table) Stats() Stats { return t.c.snapshot() }

// Len is the number of sessions in the table, lingering ones included.
func (t *Table) Len() int { return len(t.sessions) }

func (t *Table) advance(ts time.Time) {
	if ts.After(t.now) {
		t.now = ts
	}
}

// HandleClient takes a captured client packet whose destination is already
// the target. The table copies what it keeps.
func (t *Table) HandleClient(p *capture.Packet) {
	t.advance(p.Time)
	t.c.clientPackets.Add(1)
	key := p.SrcEndpoint()
	s := t.sessions[key]
	flags := p.Flags()
	if flags&capture.FlagSYN != 0 {
		if flags&capture.FlagACK != 0 {
			// A SYN-ACK from the client side means we captured the wrong
			// direction: nothing to copy.
			t.c.noSession.Add(1)
			return
		}
		if s != nil {
			if s.isn == p.Seq() && s.st != stateClosed {
				t.c.duplicates.Add(1) // the client retransmitted its SYN
				return
			}
			// The port came back: the old session is over (DESIGN 4,
			// port reuse), whatever state it was in.
			t.c.retired.Add(1)
			if s.st != stateClosed {
				t.sendRST(s)
			}
			t.free(s)
		}
		t.open(p)
		return
	}
	if s == nil {
		t.c.noSession.Add(1)
		return
	}
	s.lastActive = t.now
	s.clientWin = p.Window()
	if val, _, ok := p.Timestamps(); ok {
		s.clientTSval = val
	}
	if !s.onlineBaseOK && flags&capture.FlagACK != 0 {
		// The first ACK after the SYN acknowledges the online server's
		// ISN+1: the origin of the client's view of the response stream.
		s.onlineBase, s.onlineBaseOK = p.Ack(), true
		s.lastReqAck = s.onlineBase
		s.hsRTT = t.now.Sub(s.created)
	}
	if s.st == stateClosed {
		t.c.duplicates.Add(1)
		return
	}
	if p.PayloadLen() == 0 && flags&(capture.FlagFIN|capture.FlagRST) == 0 {
		// The table ACKs the target's data itself; the client's ACKs are
		// about the online server's bytes.
		t.c.absorbedACKs.Add(1)
		return
	}
	if !s.insert(p) {
		return
	}
	t.pump(s)
}

func (t *Table) open(p *capture.Packet) {
	s := &sess{
		t:          t,
		client:     p.SrcEndpoint(),
		target:     p.DstEndpoint(),
		isn:        p.Seq(),
		created:    t.now,
		lastActive: t.now,
		rto:        t.cfg.RTO,
		syn:        append([]byte(nil), p.Data...),
		clientWin:  p.Window(),
	}
	_, s.clientWS = p.WindowScale()
	s.clientTSval, _, s.clientTS = p.Timestamps()
	s.sndUna, s.sndNxt = s.isn, s.isn.Add(1)
	var syn capture.Packet
	if syn.Decode(s.syn) == nil {
		syn.ComputeChecksums() // see sendSeg
	}
	t.sessions[s.client] = s
	t.c.started.Add(1)
	t.c.active.Add(1)
	if t.cfg.OnOpen != nil {
		t.cfg.OnOpen(s.client, s.target)
	}
	s.st = stateSynSent
	s.synSentAt, s.lastSend = t.now, t.now
	t.queue(s.syn)
}

// HandleResponse takes a target response reported by intercept.
func (t *Table) HandleResponse(p *capture.Packet) {
	t.advance(p.Time)
	s := t.sessions[p.DstEndpoint()]
	if s == nil || s.target != p.SrcEndpoint() {
		t.c.unknownResponses.Add(1)
		return
	}
	t.c.responses.Add(1)
	s.lastActive = t.now
	flags := p.Flags()
	if flags&capture.FlagRST != 0 {
		if s.st != stateClosed {
			t.c.targetResets.Add(1)
			t.close(s)
		}
		return
	}
	if flags&capture.FlagSYN != 0 {
		if s.st == stateSynSent && flags&capture.FlagACK != 0 && p.Ack() == s.isn.Add(1) {
			s.established(p)
			t.makeACK(s)
			t.pump(s)
		} else if s.st == stateEstablished {
			t.makeACK(s) // a retransmitted SYN-ACK: our ACK was lost
		}
		return
	}
	if s.st != stateEstablished {
		return
	}
	if val, _, ok := p.Timestamps(); ok && s.tsOK {
		s.tsRecent = val
	}
	if flags&capture.FlagACK != 0 {
		s.onAck(p)
	}
	if p.SeqLen() > 0 {
		if end := p.EndSeq(); s.rcvNxt.LessThan(end) {
			// Jumping over a hole is fine: the copier never needs the
			// target's bytes, only where they end.
			s.rcvNxt = end
			s.lastResp = t.now
		}
		if flags&capture.FlagFIN != 0 {
			s.finRcvd = true
		}
		t.makeACK(s)
	}
	if s.finSent && s.sndUna == s.sndNxt && s.finRcvd {
		t.c.finished.Add(1)
		t.close(s)
		return
	}
	t.pump(s)
}

// Tick runs the timers as of now and sends what the calls since the last
// Tick produced.
func (t *Table) Tick(now time.Time) {
	t.advance(now)
	if t.now.Sub(t.lastScan) >= scanEvery {
		t.lastScan = t.now
		for _, s := range t.sessions {
			t.timers(s)
		}
	}
	t.flush()
}

func (t *Table) timers(s *sess) {
	now := t.now
	switch s.st {
	case stateSynSent:
		switch {
		case now.Sub(s.synSentAt) >= t.cfg.HandshakeTimeout:
			t.c.handshakeTimeouts.Add(1)
			t.sendRST(s)
			t.free(s)
		case now.Sub(s.lastSend) >= s.rto:
			t.retransmit(s, s.syn)
			s.rto *= 2
		}
	case stateEstablished:
		if now.Sub(s.lastActive) >= t.cfg.IdleTimeout {
			t.c.idleTimeouts.Add(1)
			t.sendRST(s)
			t.free(s)
			return
		}
		if s.sndUna != s.sndNxt && now.Sub(s.lastSend) >= s.rto {
			if seg := s.firstUnacked(); seg != nil {
				t.retransmitSeg(s, seg)
				s.rto = min(2*s.rto, 8*time.Second)
			}
		}
		if !s.holdSince.IsZero() {
			t.pump(s)
		}
	case stateClosed:
		if now.Sub(s.closedAt) >= t.cfg.Linger {
			t.free(s)
		}
	}
}

func (t *Table) close(s *sess) {
	s.st = stateClosed
	s.closedAt = t.now
	s.segs = nil
}

func (t *Table) free(s *sess) {
	if t.sessions[s.client] == s {
		delete(t.sessions, s.client)
		t.c.active.Add(^uint64(0))
		if t.cfg.OnClose != nil {
			t.cfg.OnClose(s.client, s.target)
		}
	}
}

// queue appends a datagram to the next Emit batch.
func (t *Table) queue(b []byte) []byte {
	start := len(t.arena)
	t.arena = append(t.arena, b...)
	t.ends = append(t.ends, len(t.arena))
	t.c.sent.Add(1)
	return t.arena[start:]
}

func (t *Table) flush() {
	if len(t.ends) == 0 {
		return
	}
	t.batch = t.batch[:0]
	start := 0
	for _, end := range t.ends {
		t.batch = append(t.batch, t.arena[start:end])
		start = end
	}
	if err := t.cfg.Emitter.Emit(t.batch); err != nil {
		t.c.emitErrors.Add(1)
	}
	t.arena, t.ends = t.arena[:0], t.ends[:0]
}

func (t *Table) retransmit(s *sess, b []byte) {
	t.c.retransmitted.Add(1)
	s.lastSend = t.now
	t.queue(b)
}

func (t *Table) retransmitSeg(s *sess, seg *segment) {
	t.c.retransmitted.Add(1)
	t.sendSeg(s, seg)
}

// makeACK queues a pure ACK of everything the target sent so far.
func (t *Table) makeACK(s *sess) {
	t.makeSegment(s, capture.FlagACK)
}

func (t *Table) sendRST(s *sess) {
	t.makeSegment(s, capture.FlagRST|capture.FlagACK)
}

func (t *Table) makeSegment(s *sess, flags uint8) {
	t.opts = t.opts[:0]
	if s.tsOK && flags&capture.FlagRST == 0 {
		t.opts = capture.AppendTimestamps(t.opts, s.tsval(s.clientTSval), s.tsRecent)
	}
	seg := capture.Segment{
		Src: s.client.AddrPort(), Dst: s.target.AddrPort(),
		Seq: s.sndNxt, Ack: s.rcvNxt, Flags: flags,
		Window: s.clientWin, Options: t.opts,
	}
	if s.st == stateSynSent {
		seg.Seq, seg.Ack, seg.Flags = s.isn.Add(1), 0, capture.FlagRST
	}
	n := len(t.arena)
	var err error
	if t.arena, err = capture.AppendSegment(t.arena, &seg); err != nil {
		t.arena = t.arena[:n] // cannot happen for endpoints of one family
		return
	}
	t.ends = append(t.ends, len(t.arena))
	t.c.sent.Add(1)
}

// sendSeg queues a buffered client segment with its ACK (and timestamp
// echo) rewritten for the target's sequence space.
func (t *Table) sendSeg(s *sess, seg *segment) {
	b := t.queue(seg.data)
	var p capture.Packet
	if p.Decode(b) != nil {
		return // it decoded when captured; it cannot fail now
	}
	if p.Flags()&capture.FlagACK != 0 {
		p.SetAck(s.rcvNxt)
	}
	if s.tsOK {
		if val, _, ok := p.Timestamps(); ok {
			p.SetTimestamps(s.tsval(val), s.tsRecent)
		}
	}
	// A captured checksum cannot be trusted: packets from a local sender
	// over veth or lo carry a partial checksum (CHECKSUM_PARTIAL), and GRO
	// super-frames the first segment's. One full sum per sent packet is
	// cheap next to the send itself.
	p.ComputeChecksums()
	seg.sentAt = t.now
	s.lastSend = t.now
}
