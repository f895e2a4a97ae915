package session

import (
	"encoding/binary"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Table is the session table: one emulated TCP client per copied
// connection, keyed by the client endpoint as the target sees it. It is not
// safe for concurrent use (the copier drives each Table from one
// goroutine), except Stats, which any goroutine may call.
//
// Packets the calls produce are queued and sent by the next Tick, so that
// one Emit carries a whole batch.
type Table struct {
	cfg        Config
	sessions   map[capture.Endpoint]*sess
	all        []*sess // every session, for the sweep; sess.idx is its place
	cursor     int     // the sweep's next place in all
	hot        []*sess // sessions with a punctual timer armed
	toPump     []*sess // sessions to pump at the next Tick
	hotSpare   []*sess
	now        time.Time
	lastScan   time.Time
	c          counters
	memory     int64    // bytes of buffers holding client packets
	spare      [][]byte // recycled buffers of bufSize
	spareSmall [][]byte // recycled buffers of smallBufSize

	arena    []byte   // copies of datagrams queued for the next Emit
	outs     []outRef // the next Emit batch, in order
	released [][]byte // buffers freed since the last flush
	batch    [][]byte
	opts     []byte // scratch for options of made packets
	scratch  []byte // scratch for protocol module output
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

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats { return t.c.snapshot() }

// Len is the number of sessions in the table, lingering ones included.
func (t *Table) Len() int { return len(t.sessions) }

// Open is the number of sessions not yet closed: what a drain waits for.
func (t *Table) Open() int {
	n := 0
	for _, s := range t.all {
		if s.st != stateClosed {
			n++
		}
	}
	return n
}

func (t *Table) advance(ts time.Time) {
	if ts.After(t.now) {
		t.now = ts
	}
}

func (t *Table) shedding() bool {
	return t.cfg.MaxMemory > 0 && t.memory >= t.cfg.MaxMemory
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
			if s.clientISN == p.Seq() && s.st != stateClosed || s.waitingWithISN(p.Seq()) {
				t.c.duplicates.Add(1) // the client retransmitted its SYN
				return
			}
			// The port came back (DESIGN 4, port reuse). A copy lags
			// behind its original, so under load a port can come back
			// several times while its first session still has bytes on
			// their way to the target: the new connections wait their
			// turn. Otherwise the old session is over.
			if s.busy() || len(s.waiting) > 0 {
				if len(s.waiting) < maxWaiting {
					t.c.portWaits.Add(1)
					n := &successor{isn: p.Seq(), since: t.now}
					n.add(t, p)
					s.waiting = append(s.waiting, n)
					t.markHot(s)
					return
				}
				t.retire(s) // the line is full: the oldest gives way
				t.HandleClient(p)
				return
			}
			t.retire(s)
		}
		if t.shedding() {
			t.c.shed.Add(1)
			return
		}
		t.open(p)
		return
	}
	if s != nil && len(s.waiting) > 0 {
		if n := s.waitingFor(p.Seq()); n != nil {
			n.add(t, p) // a packet of a waiting connection
			return
		}
	}
	if s == nil {
		if t.cfg.OnlyFull || p.PayloadLen() == 0 || flags&capture.FlagRST != 0 {
			t.c.noSession.Add(1)
			return
		}
		if t.shedding() {
			t.c.shedPackets.Add(1) // per packet: a mid-stream connection has no SYN to count once
			return
		}
		s = t.forge(p)
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
		s.lastReqAck, s.cliAck = s.onlineBase, s.onlineBase
		s.hsRTT = t.now.Sub(s.created)
	}
	if flags&capture.FlagACK != 0 && s.cliAck.LessThan(p.Ack()) {
		s.cliAck = p.Ack()
		t.redoUnanswered(s)
	}
	if p.PayloadLen() == 0 && flags&(capture.FlagFIN|capture.FlagRST) == 0 {
		// The table ACKs the target's data itself; the client's ACKs are
		// about the online server's bytes.
		t.c.absorbedACKs.Add(1)
		return
	}
	if s.st == stateClosed && s.skipped {
		t.c.skippedPackets.Add(1)
		if flags&(capture.FlagFIN|capture.FlagRST) != 0 {
			t.free(s)
		}
		return
	}
	if s.st == stateClosed {
		if !s.closedByTarget || p.PayloadLen() == 0 || p.EndSeq().LessThanEq(s.cliNxt) {
			t.c.duplicates.Add(1)
			return
		}
		t.resume(s, p.Ack())
	}
	s.lastData = t.now
	if !s.insert(p) {
		return
	}
	t.pump(s)
	t.markHot(s)
}

func (t *Table) newSession(client, target capture.Endpoint) *sess {
	s := &sess{
		t: t, client: client, target: target,
		created: t.now, lastActive: t.now, lastData: t.now,
		rto: t.cfg.RTO, mss: int(t.cfg.MSS),
	}
	if s.mss == 0 {
		s.mss = 1460
		if !client.Addr().Is4() {
			s.mss = 1440
		}
	}
	t.sessions[client] = s
	s.idx = len(t.all)
	t.all = append(t.all, s)
	t.c.started.Add(1)
	t.c.active.Add(1)
	if t.cfg.OnOpen != nil {
		t.cfg.OnOpen(client, target)
	}
	return s
}

// open starts a session from a captured SYN, which is copied as it is.
func (t *Table) open(p *capture.Packet) {
	s := t.newSession(p.SrcEndpoint(), p.DstEndpoint())
	s.clientISN = p.Seq()
	s.clientWin = p.Window()
	_, s.clientWS = p.WindowScale()
	s.clientTSval, _, s.clientTS = p.Timestamps()
	if m, ok := p.MSS(); ok && int(m) < s.mss {
		s.mss = int(m)
	}
	s.cliNxt = s.clientISN.Add(1)
	if t.cfg.Protocol != nil {
		s.conn = t.cfg.Protocol.Open(s.client, s.target, false)
	}
	s.syn = append(s.syn[:0], p.Data...)
	var syn capture.Packet
	if syn.Decode(s.syn) == nil {
		syn.ComputeChecksums() // see transmit
	}
	t.sendSYN(s)
}

// forge starts a session captured mid-stream (DESIGN 4): a SYN of our own
// one below the first byte seen (lowered further by what a protocol module
// injects), then the captured bytes.
func (t *Table) forge(p *capture.Packet) *sess {
	s := t.newSession(p.SrcEndpoint(), p.DstEndpoint())
	t.c.forged.Add(1)
	s.forged = true
	s.clientTSval, _, s.clientTS = p.Timestamps()
	s.cliNxt = p.Seq()
	s.onlineBase, s.onlineBaseOK = p.Ack(), true
	s.lastReqAck, s.cliAck = s.onlineBase, s.onlineBase
	s.clientISN = p.Seq().Add(^uint32(0)) // no captured SYN; one below the data
	t.reopen(s, s.clientISN, true)
	return s
}

// resume re-opens a session the target closed while the client still had
// data to send: a new connection on the same ports whose ISN lies beyond
// everything sent on the old one (a target in TIME-WAIT accepts such a SYN,
// RFC 9293 section 3.6.1), then the data.
//
// base is the captured ACK of the first client data to go on it: the
// response stream starts afresh there.
func (t *Table) resume(s *sess, base capture.Seq) {
	t.c.resumed.Add(1)
	if s.conn == nil {
		if t.requeueInflight(s) {
			// The requeued requests go first, as the last request sent;
			// later ones wait for their answers again (a server closing
			// after each answer would drop a second request sent along).
			base = s.lastReqAck
		}
	} else {
		t.dropInflight(s) // the module rebuilds the conversation itself
	}
	s.forged = true
	s.onlineBase, s.lastReqAck = base, base
	s.cliAck = s.cliAck.Max(base)
	t.reopen(s, s.sndNxt.Add(1<<16), false)
}

// reopen sends a SYN of our own with sequence number isn, after asking a
// protocol module for bytes to inject before the client's. lower moves the
// SYN down by the injected length, so client bytes keep their sequence
// numbers (mid-stream); otherwise they shift up.
func (t *Table) reopen(s *sess, isn capture.Seq, lower bool) {
	if t.cfg.Protocol != nil {
		s.conn = t.cfg.Protocol.Open(s.client, s.target, true)
		s.inject = s.conn.Inject(s.inject[:0])
	}
	if lower {
		isn = isn.Add(-uint32(len(s.inject)))
	}
	// Target seq of client byte cliNxt = isn + 1 + len(inject).
	s.delta = isn.Add(1+uint32(len(s.inject))) - s.cliNxt
	t.opts = capture.AppendMSS(t.opts[:0], uint16(s.mss))
	if s.clientTS {
		t.opts = capture.AppendTimestamps(t.opts, s.tsval(s.clientTSval), 0)
	}
	var err error
	s.syn, err = capture.AppendSegment(s.syn[:0], &capture.Segment{
		Src: s.client.AddrPort(), Dst: s.target.AddrPort(),
		Seq: isn, Flags: capture.FlagSYN, Window: 65535, Options: t.opts,
	})
	if err != nil {
		panic("session: forging a SYN between endpoints of one family failed: " + err.Error())
	}
	s.closedByTarget = false
	t.sendSYN(s)
}

func (t *Table) sendSYN(s *sess) {
	s.st = stateSynSent
	s.synSentAt, s.lastSend = t.now, t.now
	s.rto = t.cfg.RTO
	t.queue(s.syn)
	t.markHot(s)
}

// synSeq is the sequence number of the SYN sent.
func (s *sess) synSeq() capture.Seq {
	var p capture.Packet
	if p.Decode(s.syn) != nil {
		return 0
	}
	return p.Seq()
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
	defer t.markHot(s)
	s.lastActive = t.now
	flags := p.Flags()
	if flags&capture.FlagRST != 0 {
		t.onReset(s, p)
		return
	}
	if flags&capture.FlagSYN != 0 {
		synSeq := s.synSeq()
		switch {
		case s.st == stateSynSent && flags&capture.FlagACK != 0 && p.Ack() == synSeq.Add(1):
			s.established(p, synSeq)
			s.ackDue = true // the first data segment, if one goes now, carries it
			if len(s.inject) > 0 {
				t.sendGenerated(s, s.inject, false)
				s.inject = s.inject[:0]
			}
			t.pump(s)
			t.sendDueACK(s)
		case s.st == stateEstablished:
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
		if flags&capture.FlagFIN != 0 {
			s.finRcvd = true // before respBytes is used: it does not count the FIN
		}
		if end := p.EndSeq(); s.rcvNxt.LessThan(end) {
			// Jumping over a hole is fine: the copier never needs the
			// target's bytes, only where they end.
			inOrder := p.Seq() == s.rcvNxt
			s.rcvNxt = end
			s.lastResp, s.lastData = t.now, t.now
			if p.PayloadLen() > 0 {
				t.answered(s)
			}
			if s.conn != nil && p.PayloadLen() > 0 && inOrder {
				t.scratch = s.conn.Response(t.scratch[:0], p.Payload(), p.PayloadLen())
				if len(t.scratch) > 0 {
					t.sendGenerated(s, t.scratch, true)
				}
			}
		}
		// Acknowledged at the end of the batch, once for all the
		// answer's segments in it, or by the next request.
		s.ackDue = true
		if t.redoUnanswered(s) {
			return
		}
	}
	if s.finSent && s.sndUna == s.sndNxt && s.finRcvd {
		t.sendDueACK(s)
		t.c.finished.Add(1)
		t.close(s)
		return
	}
	// Sent at the end of the batch: a FIN or RST right behind the
	// answer (a server closing after it) is then known before the next
	// request would go into a closing connection.
	t.schedulePump(s)
}

// schedulePump has the next Tick pump s.
func (t *Table) schedulePump(s *sess) {
	if !s.pumpQueued {
		s.pumpQueued = true
		t.toPump = append(t.toPump, s)
	}
}

// onReset handles the target's RST: resume at once if client data waits,
// else close and resume if the client sends more.
func (t *Table) onReset(s *sess, p *capture.Packet) {
	switch s.st {
	case stateClosed:
		return
	case stateSynSent:
		// Only an RST that answers our SYN counts (RFC 9293 section
		// 3.10.7.3): a late one from a connection this session had before
		// on the same ports must not kill the new one.
		if p.Flags()&capture.FlagACK == 0 || p.Ack() != s.synSeq().Add(1) {
			return
		}
	case stateEstablished:
		// Likewise only an RST in the current window (RFC 5961 section 3).
		if !p.Seq().InWindow(s.rcvNxt.Add(^uint32(0)), 1<<20) {
			return
		}
	}
	if s.st == stateSynSent {
		// The target refused the connection: nothing listens.
		t.c.targetResets.Add(1)
		t.close(s)
		return
	}
	// Client data sent but not acknowledged (a request that met a
	// connection the target was closing) goes again on a new connection,
	// as does data still waiting.
	if s.conn == nil && (s.inflightData() || s.onlineAnswered()) {
		t.resume(s, s.lastReqAck)
		return
	}
	for i := range s.pending {
		if s.pending[i].isData() {
			t.resume(s, s.pending[i].ack)
			return
		}
	}
	t.c.targetResets.Add(1)
	t.dropInflight(s)
	s.closedByTarget = true // keeps what waits, for a resume
	t.close(s)
}

// inflightData reports whether client bytes are sent and unacknowledged.
func (s *sess) inflightData() bool {
	for i := range s.inflight {
		if s.inflight[i].isData() {
			return true
		}
	}
	return false
}

// onlineAnswered reports whether the client has seen online bytes sent
// after the first request the target acknowledged without answering: the
// online server answered it.
func (s *sess) onlineAnswered() bool {
	return len(s.unanswered) > 0 && s.unanswered[0].before < uint32(s.cliAck-s.onlineBase)
}

// redoUnanswered resumes a session whose target closed (FIN or RST) on
// requests it acknowledged but never answered, once the client shows the
// online server did answer them: the requests go again on a new
// connection. (Servers close with unread data after their last answer.)
func (t *Table) redoUnanswered(s *sess) bool {
	if !s.onlineAnswered() {
		return false
	}
	switch {
	case s.st == stateEstablished && s.finRcvd:
		t.makeRST(s)
	case s.st == stateClosed && s.closedByTarget:
	default:
		return false
	}
	t.resume(s, s.lastReqAck)
	return true
}

// releaseUnanswered forgets the acknowledged requests kept in case the
// target closed without answering them: an answer came.
func (t *Table) releaseUnanswered(s *sess) {
	for i := range s.unanswered {
		t.release(s.unanswered[i].data)
	}
	s.unanswered = s.unanswered[:0]
}

// answered forgets what was kept for the requests the target has begun to
// answer.
func (t *Table) answered(s *sess) {
	got, i := s.respBytes(), 0
	for i < len(s.unanswered) && s.unanswered[i].until < got {
		t.release(s.unanswered[i].data)
		i++
	}
	s.unanswered = s.unanswered[:copy(s.unanswered, s.unanswered[i:])]
	if len(s.unanswered) == 0 {
		s.tooLong = false
	}
}

// requeueInflight puts the client segments the target never acknowledged
// back at the head of the pending buffer, in the client's sequence space,
// to go again on a new connection. Without a protocol module, target and
// client spaces differ by delta alone. Their captured ACKs are taken as the
// last request's, so they go at once. It reports whether it requeued any.
func (t *Table) requeueInflight(s *sess) bool {
	var back []pendingSeg
	add := func(g *sentSeg, again bool) {
		var p capture.Packet
		if p.Decode(g.data) != nil || g.end == g.seq {
			t.release(g.data)
			return
		}
		back = append(back, pendingSeg{
			data: g.data, arrived: t.now, seq: g.seq - s.delta, end: g.end - s.delta,
			ack: s.lastReqAck, flags: p.Flags(), again: again, n: p.PayloadLen(),
		})
	}
	if s.onlineAnswered() {
		for i := range s.unanswered {
			t.c.unanswered.Add(1)
			add(&s.unanswered[i], true)
		}
		s.unanswered = s.unanswered[:0]
	} else {
		t.releaseUnanswered(s) // the online server did not answer them either
	}
	for i := range s.inflight {
		if g := &s.inflight[i]; g.end.LessThanEq(s.sndUna) {
			t.release(g.data)
		} else {
			add(g, g.again)
		}
	}
	s.inflight = s.inflight[:0]
	if len(back) == 0 {
		return false
	}
	s.cliNxt = back[0].seq
	s.pending = append(back, s.pending...)
	return true
}

// dropInflight forgets segments the target will never acknowledge.
func (t *Table) dropInflight(s *sess) {
	if s.st == stateEstablished {
		t.c.lostOnReset.Add(uint64(s.inflightBytes()))
	}
	for i := range s.inflight {
		t.release(s.inflight[i].data)
	}
	s.inflight = s.inflight[:0]
}

// Tick runs the timers as of now and sends what the calls since the last
// Tick produced.
//
// Timers that must be punctual (handshake, retransmission, request release,
// a waiting port, a gap) are run every few milliseconds, but only for the
// sessions that have one armed; the slow ones (idle, keepalive, linger) by
// a sweep through all sessions that takes a second. So a Tick costs what the
// busy sessions cost, not what the table holds.
func (t *Table) Tick(now time.Time) {
	t.advance(now)
	for i, s := range t.toPump {
		s.pumpQueued = false
		if !s.freed {
			t.pump(s)
			t.sendDueACK(s)
			t.markHot(s)
		}
		t.toPump[i] = nil
	}
	t.toPump = t.toPump[:0]
	if t.now.Sub(t.lastScan) >= scanEvery {
		t.lastScan = t.now
		cur := t.hot
		t.hot = t.hotSpare[:0]
		for _, s := range cur {
			s.hot = false
			if s.freed {
				continue
			}
			t.timers(s)
			t.markHot(s)
		}
		clear(cur)
		t.hotSpare = cur[:0]
		t.sweep()
	}
	t.flush()
}

// sweepPeriod is how long the sweep takes to visit every session.
const sweepPeriod = time.Second

// sweep runs the timers of the next slice of all sessions.
func (t *Table) sweep() {
	n := max(len(t.all)*int(scanEvery)/int(sweepPeriod), 64)
	for ; n > 0 && len(t.all) > 0; n-- {
		if t.cursor >= len(t.all) {
			t.cursor = 0
		}
		s := t.all[t.cursor]
		t.cursor++
		t.timers(s) // may free s, moving another session into its slot
	}
}

// needsTimer reports whether the session has a punctual timer armed.
func (s *sess) needsTimer() bool {
	switch s.st {
	case stateSynSent:
		return true
	case stateEstablished:
		return len(s.inflight) > 0 || !s.holdSince.IsZero() || len(s.waiting) > 0 || !s.gapSince.IsZero()
	}
	return false
}

// markHot puts a session on the punctual timer list if it needs it.
func (t *Table) markHot(s *sess) {
	if !s.hot && !s.freed && s.needsTimer() {
		s.hot = true
		t.hot = append(t.hot, s)
	}
}

func (t *Table) timers(s *sess) {
	now := t.now
	switch s.st {
	case stateSynSent:
		switch {
		case now.Sub(s.synSentAt) >= t.cfg.HandshakeTimeout:
			t.c.handshakeTimeouts.Add(1)
			t.makeRST(s)
			t.free(s)
		case now.Sub(s.lastSend) >= s.rto:
			t.c.retransmitted.Add(1)
			s.lastSend = now
			s.rto *= 2
			t.queue(s.syn)
		}
	case stateEstablished:
		if len(s.waiting) > 0 && now.Sub(s.waiting[0].since) >= t.cfg.HoldTimeout {
			t.retire(s) // the waiting connection cannot wait longer
			return
		}
		switch {
		case now.Sub(s.lastActive) >= t.cfg.IdleTimeout,
			now.Sub(s.lastData) >= t.cfg.KeepaliveTimeout:
			t.c.idleTimeouts.Add(1)
			t.makeRST(s)
			t.free(s)
			return
		case !s.gapSince.IsZero() && now.Sub(s.gapSince) >= t.cfg.GapTimeout:
			t.c.gapTimeouts.Add(1)
			t.makeRST(s)
			if s.conn != nil || len(s.pending) == 0 {
				t.free(s) // a protocol module cannot lose bytes
				return
			}
			// Skip the hole: what came after it goes on a new
			// connection, rather than everything waiting behind a
			// packet the capture dropped being lost with the session.
			t.dropInflight(s)
			t.releaseUnanswered(s)
			s.gapSince = time.Time{}
			s.cliNxt = s.pending[0].seq
			t.resume(s, s.pending[0].ack)
			return
		}
		if len(s.inflight) > 0 && now.Sub(s.lastSend) >= s.rto {
			t.retransmit(s, &s.inflight[0])
			s.rto = min(2*s.rto, 8*time.Second)
		}
		if !s.holdSince.IsZero() {
			t.pump(s)
		}
	case stateClosed:
		since := s.closedAt
		if s.skipped {
			since = s.lastActive // a tombstone lasts while the client talks
		}
		if now.Sub(since) >= t.cfg.Linger {
			t.free(s)
		}
	}
}

func (t *Table) close(s *sess) {
	if len(s.waiting) > 0 {
		t.free(s) // the port is wanted: no lingering
		return
	}
	s.st = stateClosed
	s.closedAt = t.now
	for i := range s.inflight {
		t.release(s.inflight[i].data)
	}
	s.inflight = s.inflight[:0]
	if !s.closedByTarget {
		t.releaseUnanswered(s)
		for i := range s.pending {
			t.release(s.pending[i].data)
		}
		s.pending = s.pending[:0]
	}
}

// free removes a session from the table; a connection waiting for its port
// starts then.
func (t *Table) free(s *sess) {
	if t.sessions[s.client] != s {
		return
	}
	s.closedByTarget = false
	waiting := s.waiting
	s.waiting = nil
	t.close(s)
	delete(t.sessions, s.client)
	last := t.all[len(t.all)-1]
	t.all[s.idx], last.idx = last, s.idx
	t.all[len(t.all)-1] = nil
	t.all = t.all[:len(t.all)-1]
	s.freed = true
	t.c.active.Add(^uint64(0))
	if t.cfg.OnClose != nil {
		t.cfg.OnClose(s.client, s.target)
	}
	if len(waiting) > 0 {
		t.promote(waiting[0])
		rest := waiting[1:]
		if len(rest) == 0 {
			return
		}
		if next := t.sessions[s.client]; next != nil {
			rest[0].since = t.now // its wait for the new session starts now
			next.waiting = rest
			return
		}
		for _, n := range rest { // the promoted one did not start
			t.promote(n)
		}
	}
}

// retire ends a session whose port a new connection took: reset toward the
// target if it was still open (and counted, since its rest is lost).
func (t *Table) retire(s *sess) {
	if s.st != stateClosed {
		t.c.retired.Add(1)
		t.cfg.Logger.Debug("session: retired for a new connection on its port",
			"client", s.client, "state", s.st, "pending", len(s.pending), "inflight", len(s.inflight),
			"unacked", s.inflightBytes(), "window", s.sndWnd, "fin_sent", s.finSent, "fin_rcvd", s.finRcvd,
			"response_bytes", s.respBytes(), "held_for", t.now.Sub(s.holdSince))
		t.makeRST(s)
	}
	t.free(s)
}

// busy reports whether the session still has bytes on their way to the
// target.
func (s *sess) busy() bool {
	return s.st == stateSynSent || len(s.pending) > 0 || len(s.inflight) > 0
}

// maxWaiting bounds the connections waiting for one port.
const maxWaiting = 64

// waitingFor returns the waiting connection a client packet with sequence
// number seq belongs to, or nil for the session itself. Connections on one
// port take ever higher ISNs (the clock part of RFC 6528), so the packet
// goes with the newest connection whose ISN it does not precede.
func (s *sess) waitingFor(seq capture.Seq) *successor {
	for i := len(s.waiting) - 1; i >= 0; i-- {
		if n := s.waiting[i]; seq.InWindow(n.isn, 1<<30) {
			return n
		}
	}
	return nil
}

func (s *sess) waitingWithISN(isn capture.Seq) bool {
	for _, n := range s.waiting {
		if n.isn == isn {
			return true
		}
	}
	return false
}

// successor is a connection waiting for its port: the packets captured so
// far, replayed when the previous session on the port ends.
type successor struct {
	isn   capture.Seq
	since time.Time
	data  [][]byte
	times []time.Time
}

func (n *successor) add(t *Table, p *capture.Packet) {
	if len(n.data) >= t.cfg.MaxBuffered {
		t.c.bufferFull.Add(1)
		return
	}
	n.data = append(n.data, t.keep(p.Data))
	n.times = append(n.times, p.Time)
}

func (t *Table) promote(n *successor) {
	var p capture.Packet
	for i, b := range n.data {
		p.Time = n.times[i]
		if p.Decode(b) == nil {
			t.HandleClient(&p)
		}
		t.release(b)
	}
}

// pump sends pending client segments in order as far as the protocol
// module, request pacing and the target's window allow.
func (t *Table) pump(s *sess) {
	if s.st != stateEstablished {
		return
	}
	for len(s.pending) > 0 {
		if s.conn != nil {
			if s.conn.Skip() {
				t.skip(s)
				return
			}
			if !s.conn.Ready() {
				return // asked again before every segment
			}
		}
		g := &s.pending[0]
		if g.flags&capture.FlagRST == 0 && g.end.LessThanEq(s.cliNxt) {
			t.c.duplicates.Add(1) // covered by what was sent before
			t.popPending(s)
			continue
		}
		if s.cliNxt.LessThan(g.seq) {
			if s.gapSince.IsZero() {
				s.gapSince = t.now // a captured packet is missing
			}
			return
		}
		s.gapSince = time.Time{}
		if g.isData() && s.finRcvd {
			// The target closed its side; data would draw an RST.
			t.makeRST(s)
			t.resume(s, g.ack)
			return
		}
		// A FIN or an RST is paced like a request: sent before the answer
		// is in, a FIN looks like an aborted request to many servers, and
		// an RST destroys the request the server has not read yet.
		late := false
		if g.isData() || g.flags&(capture.FlagFIN|capture.FlagRST) != 0 && g.flags&capture.FlagACK != 0 {
			var ok bool
			if ok, late = s.releasable(g); !ok {
				if s.holdSince.IsZero() {
					s.holdSince = t.now
					t.c.held.Add(1)
				}
				return
			}
		}
		if g.isData() && len(s.inflight) > 0 && s.inflightBytes()+uint32(g.n) > s.sndWnd {
			return // beyond the target's window; an ACK will reopen it
		}
		rst := g.flags&capture.FlagRST != 0
		g.late = late
		if !t.sendPending(s, g) {
			t.skip(s)
			return
		}
		if late {
			t.c.pipelined.Add(1)
		}
		t.popPending(s)
		if rst {
			t.c.finished.Add(1)
			t.close(s)
			return
		}
	}
}

// skip ends a session the protocol module cannot copy: the target
// connection is reset, and the session stays as a tombstone that absorbs the
// client's further packets (else each would start a mid-stream session)
// until the client closes or falls silent for Linger.
func (t *Table) skip(s *sess) {
	t.c.skipped.Add(1)
	t.makeRST(s)
	t.close(s)
	s.skipped = true
}

func (t *Table) popPending(s *sess) {
	t.release(s.pending[0].data)
	s.pending = s.pending[:copy(s.pending, s.pending[1:])]
}

// sendPending sends the captured segment g (trimmed of bytes sent before,
// rewritten by the protocol module, split to the MSS) in the target's
// sequence space. It reports false when the protocol module found, on
// seeing the payload, that the session cannot be copied.
func (t *Table) sendPending(s *sess, g *pendingSeg) bool {
	var p capture.Packet
	if p.Decode(g.data) != nil {
		return true // it decoded when captured
	}
	payload := p.Payload()
	trimmed := g.seq.LessThan(s.cliNxt)
	if trimmed {
		payload = payload[min(int(s.cliNxt-g.seq), len(payload)):]
	}
	out := payload
	if s.conn != nil && len(payload) > 0 {
		t.scratch = s.conn.Client(t.scratch[:0], payload)
		out = t.scratch
		if s.conn.Skip() {
			return false
		}
	}
	tseq := s.cliNxt.Add(uint32(s.delta))
	if g.flags&capture.FlagRST != 0 {
		tseq = g.seq.Add(uint32(s.delta))
	}
	s.delta = s.delta.Add(uint32(len(out) - len(payload)))
	s.cliNxt = s.cliNxt.Max(g.end)
	fin := g.flags & capture.FlagFIN
	if len(out) == 0 && fin == 0 && g.flags&capture.FlagRST == 0 {
		return true // the module kept these bytes
	}
	// The MSS counts payload after a bare 20-byte TCP header; options
	// (timestamps, usually) come out of it (RFC 9293 section 3.7.1).
	room := s.mss - (p.DataOffset() - 20)
	if s.conn == nil && !trimmed && len(out) <= room {
		// The common case: the captured datagram goes as it is, but for
		// its sequence number; its buffer moves to the inflight list.
		binary.BigEndian.PutUint32(g.data[p.IPHeaderLen()+4:], uint32(tseq))
		b := g.data
		g.data = nil
		t.sendNew(s, b, tseq, tseq.Add(uint32(len(out))+uint32(fin)), g, &p)
	}
	for off := 0; g.data != nil; off += room {
		piece := out[min(off, len(out)):min(off+room, len(out))]
		last := off+room >= len(out)
		flags := g.flags
		if !last {
			flags &^= capture.FlagFIN | capture.FlagPSH
		}
		seq := tseq.Add(uint32(off))
		end := seq.Add(uint32(len(piece)))
		if flags&capture.FlagFIN != 0 {
			end = end.Add(1)
		}
		b := reframe(t.buf(p.IPHeaderLen()+p.DataOffset()+len(piece)), &p, piece, seq, flags)
		t.sendNew(s, b, seq, end, g, nil)
		if last {
			break
		}
	}
	if g.isData() && (!s.sentData || s.lastReqAck.LessThan(g.ack)) {
		t.c.requests.Add(1)
		s.sentData = true
	}
	if g.isData() || fin != 0 {
		s.holdSince = time.Time{}
		if s.lastReqAck.LessThan(g.ack) {
			s.lastReqAck = g.ack
			s.respAtReq = s.respBytes()
		}
	}
	if fin != 0 {
		s.finSent = true
	}
	return true
}

// sendGenerated sends bytes of the protocol module's own (or a resumed
// session's injection) at sndNxt. shift says they are extra bytes, so later
// client bytes move up by their length; injected bytes were accounted for
// in the ISN instead.
func (t *Table) sendGenerated(s *sess, data []byte, shift bool) {
	room := s.mss
	if s.tsOK {
		room -= 12 // the timestamps option, padded
	}
	for off := 0; off < len(data); off += room {
		piece := data[off:min(off+room, len(data))]
		seq := s.sndNxt
		b, err := capture.AppendSegment(t.buf(120+len(piece)), &capture.Segment{
			Src: s.client.AddrPort(), Dst: s.target.AddrPort(),
			Seq: seq, Ack: s.rcvNxt, Flags: capture.FlagACK | capture.FlagPSH,
			Window: s.window(), Options: t.tsOption(s), Payload: piece,
		})
		if err != nil {
			return
		}
		t.memory += int64(cap(b))
		t.sendNew(s, b, seq, seq.Add(uint32(len(piece))), nil, nil)
	}
	if shift {
		s.delta = s.delta.Add(uint32(len(data)))
	}
}

// sendNew sends a new segment: of the captured g, or generated (g nil).
// p, if not nil, is b decoded.
func (t *Table) sendNew(s *sess, b []byte, seq, end capture.Seq, g *pendingSeg, p *capture.Packet) {
	sg := sentSeg{data: b, seq: seq, end: end, until: s.respBytes()}
	if g != nil {
		sg.again = g.again
		if s.onlineBase.LessThan(g.ack) {
			sg.before = uint32(g.ack - s.onlineBase)
		}
		if g.late {
			// Answers to earlier requests are still coming: this one's
			// starts, by the online conversation, after before bytes.
			sg.until = max(sg.until, sg.before)
		}
	}
	s.inflight = append(s.inflight, sg)
	s.sndNxt = s.sndNxt.Max(end)
	t.transmit(s, &s.inflight[len(s.inflight)-1], p)
}

func (t *Table) retransmit(s *sess, g *sentSeg) {
	t.c.retransmitted.Add(1)
	t.transmit(s, g, nil)
}

// transmit queues a sent segment with its ACK, timestamps and window made
// for the target now. p, if not nil, is g.data decoded.
func (t *Table) transmit(s *sess, g *sentSeg, p *capture.Packet) {
	b := g.data // changed in place and sent by reference: see release
	t.outs = append(t.outs, outRef{b: b})
	t.c.sent.Add(1)
	if p == nil {
		p = new(capture.Packet)
		if p.Decode(b) != nil {
			return // it decoded when captured or made
		}
	}
	g.fin = p.Flags()&capture.FlagFIN != 0
	if p.Flags()&capture.FlagACK != 0 {
		p.SetAck(s.rcvNxt)
		s.ackDue = false
	}
	if s.forged {
		p.SetWindow(65535) // the client's scale was never negotiated
	}
	if val, _, ok := p.Timestamps(); ok && s.tsOK {
		p.SetTimestamps(s.tsval(val), s.tsRecent)
	}
	// A captured checksum cannot be trusted: packets from a local sender
	// over veth or lo carry a partial checksum (CHECKSUM_PARTIAL), and GRO
	// super-frames the first segment's. One full sum per sent packet is
	// cheap next to the send itself.
	p.ComputeChecksums()
	g.sentAt = t.now
	s.lastSend = t.now
}

// outRef is a datagram of the next Emit batch: a buffer sent by reference,
// or (b nil) a copy in the arena.
type outRef struct {
	b          []byte
	start, end int
}

// queue appends a copy of a datagram to the next Emit batch.
func (t *Table) queue(b []byte) {
	start := len(t.arena)
	t.arena = append(t.arena, b...)
	t.outs = append(t.outs, outRef{start: start, end: len(t.arena)})
	t.c.sent.Add(1)
}

func (t *Table) flush() {
	if len(t.outs) > 0 {
		t.batch = t.batch[:0]
		for _, o := range t.outs {
			if o.b == nil {
				o.b = t.arena[o.start:o.end]
			}
			t.batch = append(t.batch, o.b)
		}
		if err := t.cfg.Emitter.Emit(t.batch); err != nil {
			t.c.emitErrors.Add(1)
		}
		clear(t.batch)
		clear(t.outs)
		t.arena, t.outs = t.arena[:0], t.outs[:0]
	}
	// Buffers released since the last flush may be in the batch just
	// sent; only now can they be used again.
	for _, b := range t.released {
		spare := &t.spare
		if cap(b) == smallBufSize {
			spare = &t.spareSmall
		}
		if len(*spare) < maxFree {
			*spare = append(*spare, b)
		}
	}
	clear(t.released)
	t.released = t.released[:0]
}

func (s *sess) window() uint16 {
	if s.forged {
		return 65535
	}
	return s.clientWin
}

func (t *Table) tsOption(s *sess) []byte {
	t.opts = t.opts[:0]
	if s.tsOK {
		t.opts = capture.AppendTimestamps(t.opts, s.tsval(s.clientTSval), s.tsRecent)
	}
	return t.opts
}

// makeACK queues a pure ACK of everything the target sent so far.
func (t *Table) makeACK(s *sess) { t.makeSegment(s, capture.FlagACK) }

// sendDueACK sends a pure ACK for target data no segment has acknowledged
// since it came.
func (t *Table) sendDueACK(s *sess) {
	if s.ackDue && s.st == stateEstablished {
		t.makeACK(s)
	}
}

// makeRST queues a reset of the connection toward the target.
func (t *Table) makeRST(s *sess) { t.makeSegment(s, capture.FlagRST|capture.FlagACK) }

func (t *Table) makeSegment(s *sess, flags uint8) {
	seg := capture.Segment{
		Src: s.client.AddrPort(), Dst: s.target.AddrPort(),
		Seq: s.sndNxt, Ack: s.rcvNxt, Flags: flags, Window: s.window(),
	}
	if flags&capture.FlagRST == 0 {
		seg.Options = t.tsOption(s)
	}
	if s.st == stateSynSent {
		seg.Seq, seg.Ack, seg.Flags = s.synSeq().Add(1), 0, capture.FlagRST
	}
	s.ackDue = false
	n := len(t.arena)
	var err error
	if t.arena, err = capture.AppendSegment(t.arena, &seg); err != nil {
		t.arena = t.arena[:n] // cannot happen for endpoints of one family
		return
	}
	t.outs = append(t.outs, outRef{start: n, end: len(t.arena)})
	t.c.sent.Add(1)
}
