package session

import (
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

type state uint8

// maxUnanswered is how many acknowledged request segments a session keeps
// while it waits for their answers (see sess.unanswered).
const maxUnanswered = 32

const (
	stateInvalid state = iota
	stateSynSent
	stateEstablished
	stateClosed // FIN or RST exchanged; lingering to absorb late packets
)

func (s state) String() string {
	switch s {
	case stateSynSent:
		return "syn-sent"
	case stateEstablished:
		return "established"
	case stateClosed:
		return "closed"
	}
	return "invalid"
}

// pendingSeg is a captured client packet not sent yet, in the client's
// sequence space.
type pendingSeg struct {
	data    []byte
	arrived time.Time // when the table took it
	seq     capture.Seq
	end     capture.Seq // seq + payload (+1 for FIN)
	ack     capture.Seq // the captured ACK: online server bytes the client had seen
	flags   uint8
	again   bool // requeued once after the target closed without answering it
	late    bool // sent ahead of the previous answer (MaxLag)
	n       int  // payload length
}

func (g *pendingSeg) isData() bool { return g.n > 0 }

// sentSeg is a segment sent and not yet acknowledged, in the target's
// sequence space. Its ACK, timestamps and checksums are redone at each
// transmission.
type sentSeg struct {
	data     []byte
	seq, end capture.Seq
	sentAt   time.Time
	fin      bool
	again    bool   // see pendingSeg.again
	before   uint32 // online answer bytes the client had seen when it sent these
	until    uint32 // target answer bytes up to which these count as unanswered
}

// isData reports whether g carries client bytes.
func (g *sentSeg) isData() bool { return g.end-g.seq > 1 || g.end-g.seq == 1 && !g.fin }

// sess is one emulated client connection toward the target.
//
// Two sequence spaces meet here. The client's (captured packets) and the
// target's (what the target acknowledges) differ by delta: bytes a protocol
// module added or removed, and the ISN chosen for a resumed connection.
// Invariant once established: sndNxt == cliNxt + delta.
type sess struct {
	t              *Table
	client, target capture.Endpoint
	st             state
	conn           Conn // protocol module state, or nil
	forged         bool // our own SYN (mid-stream or resumed): window not scaled
	created        time.Time
	lastActive     time.Time // any packet either way
	lastData       time.Time // payload either way
	lastSend       time.Time
	rto            time.Duration

	// Handshake.
	clientISN          capture.Seq // the captured SYN's sequence number
	syn                []byte      // the SYN sent (copied or forged), for retransmission
	synSentAt          time.Time
	inject             []byte // bytes a resumed session sends first
	clientWS, clientTS bool   // options the captured SYN offered
	clientWin          uint16
	clientTSval        uint32
	mss                int

	// Client side.
	pending  []pendingSeg // sorted by seq
	cliNxt   capture.Seq  // next client byte to send (client space)
	delta    capture.Seq  // target space minus client space
	inflight []sentSeg    // sent, not acknowledged (target space)
	// Request segments the target acknowledged but has not begun to
	// answer (it has sent nothing since they went or, for ones pipelined
	// ahead of earlier answers, no more than the online server had when
	// the client sent them): kept to go again on a new connection if the
	// target closes instead (it ACKed or read them, then closed: after
	// its last answer, or its keep-alive request limit under pipelining).
	// At most maxUnanswered are kept; past that, tooLong stops keeping
	// until they are answered.
	unanswered []sentSeg
	tooLong    bool
	sndUna     capture.Seq
	sndNxt     capture.Seq
	finSent    bool
	sentData   bool // a first request went out
	gapSince   time.Time

	// The online server's sequence space as the client's ACKs show it.
	onlineBase   capture.Seq // online ISN+1 (or the first ACK seen)
	onlineBaseOK bool
	lastReqAck   capture.Seq // captured ACK of the last request sent
	cliAck       capture.Seq // highest ACK the client sent: online bytes it saw
	hsRTT        time.Duration

	// Request pacing.
	holdSince time.Time
	respAtReq uint32 // target bytes received when the last request was sent

	// Target side.
	targetISN      capture.Seq
	rcvNxt         capture.Seq
	sndWnd         uint32
	wscale         uint8
	tsOK           bool
	tsRecent       uint32
	tsSent         uint32 // highest TSval sent to the target
	lastResp       time.Time
	dupAcks        int
	finRcvd        bool
	ackDue         bool // target data came that no segment sent has acknowledged
	closedAt       time.Time
	closedByTarget bool // the target reset it; later client data resumes it
	skipped        bool // the protocol module gave up on it: a tombstone

	waiting []*successor // new connections on the same port, oldest first

	idx        int  // place in Table.all
	pumpQueued bool // on Table.toPump
	hot        bool // on Table.hot
	freed      bool // removed from the table
}

// established learns the target's side of the handshake from its SYN-ACK.
func (s *sess) established(p *capture.Packet, synSeq capture.Seq) {
	s.st = stateEstablished
	s.targetISN = p.Seq()
	s.rcvNxt = s.targetISN.Add(1)
	s.sndUna = synSeq.Add(1)
	s.sndNxt = s.sndUna
	s.sndWnd = uint32(p.Window()) // never scaled in a SYN (RFC 7323 2.2)
	s.wscale = 0
	if ws, ok := p.WindowScale(); ok && s.clientWS && !s.forged {
		s.wscale = min(ws, 14)
	}
	s.tsOK = false
	if val, _, ok := p.Timestamps(); ok && s.clientTS {
		s.tsOK, s.tsRecent = true, val
	}
	if m, ok := p.MSS(); ok && int(m) < s.mss {
		s.mss = int(m)
	}
	s.rto = s.t.cfg.RTO
	s.lastResp = s.t.now
	s.respAtReq = 0
	s.dupAcks = 0
	s.finSent, s.finRcvd, s.ackDue, s.tooLong = false, false, false, false
}

// respBytes is how many bytes the target has sent on this connection (its
// FIN not counted).
func (s *sess) respBytes() uint32 {
	n := uint32(s.rcvNxt - s.targetISN.Add(1))
	if s.finRcvd && n > 0 {
		n--
	}
	return n
}

// tsval returns the TSval to send for a packet captured with val: never
// below one already sent, since a held request goes out after ACKs made
// with later captured TSvals, and the target's PAWS check (RFC 7323
// section 5) drops segments whose TSval went back.
func (s *sess) tsval(val uint32) uint32 {
	if int32(val-s.tsSent) > 0 || s.tsSent == 0 {
		s.tsSent = val
	}
	return s.tsSent
}

// onAck takes the target's acknowledgment and window.
func (s *sess) onAck(p *capture.Packet) {
	a := p.Ack()
	switch {
	case s.sndUna.LessThan(a) && a.LessThanEq(s.sndNxt):
		s.sndUna = a
		s.dupAcks = 0
		s.rto = s.t.cfg.RTO
		resp := s.respBytes() + uint32(p.PayloadLen()) // with what this packet brings
		i := 0
		for i < len(s.inflight) && s.inflight[i].end.LessThanEq(a) {
			if g := &s.inflight[i]; resp <= g.until && s.conn == nil && !g.again && g.isData() && !s.tooLong {
				s.unanswered = append(s.unanswered, *g)
				if len(s.unanswered) > maxUnanswered {
					s.t.releaseUnanswered(s) // an upload, say: not worth keeping
					s.tooLong = true
				}
			} else {
				s.t.release(g.data)
			}
			i++
		}
		s.inflight = s.inflight[:copy(s.inflight, s.inflight[i:])]
	case a == s.sndUna && s.sndUna != s.sndNxt && p.SeqLen() == 0 &&
		uint32(p.Window())<<s.wscale == s.sndWnd:
		// A duplicate ACK (RFC 5681 section 2); three mean a lost segment.
		s.dupAcks++
		if s.dupAcks == 3 && len(s.inflight) > 0 {
			s.t.retransmit(s, &s.inflight[0])
		}
	}
	s.sndWnd = uint32(p.Window()) << s.wscale
}

// insert buffers a client packet in sequence order. It reports false for
// duplicates and overflow, which it counts.
func (s *sess) insert(p *capture.Packet) bool {
	g := pendingSeg{arrived: s.t.now, seq: p.Seq(), end: p.EndSeq(), ack: p.Ack(), flags: p.Flags(), n: p.PayloadLen()}
	if g.flags&capture.FlagRST != 0 {
		g.end = g.seq // an RST occupies no sequence space
	} else if g.end.LessThanEq(s.cliNxt) {
		s.t.c.duplicates.Add(1) // everything in it was sent already
		return false
	}
	i := len(s.pending)
	for i > 0 && g.seq.LessThan(s.pending[i-1].seq) {
		i--
	}
	if i > 0 {
		if prev := &s.pending[i-1]; prev.seq == g.seq && !prev.end.LessThan(g.end) && prev.flags&capture.FlagRST == g.flags&capture.FlagRST {
			s.t.c.duplicates.Add(1)
			return false
		}
	}
	if len(s.pending) >= s.t.cfg.MaxBuffered {
		s.t.c.bufferFull.Add(1)
		return false
	}
	g.data = s.t.keep(p.Data)
	s.pending = append(s.pending, pendingSeg{})
	copy(s.pending[i+1:], s.pending[i:])
	s.pending[i] = g
	return true
}

// releasable reports whether a segment that starts a new request may go:
// the target has ACKed what we sent and its response is complete, judged by
// how much the online server had sent when the client asked again, or by a
// quiet spell, or by the hold timeout. With NoWait, and for a data segment
// older than MaxLag, it goes anyway, late: ahead of the previous answer.
func (s *sess) releasable(g *pendingSeg) (ok, late bool) {
	cfg := &s.t.cfg
	now := s.t.now
	timedOut := !s.holdSince.IsZero() && now.Sub(s.holdSince) >= cfg.HoldTimeout
	if !g.isData() && !timedOut && (s.inflightData() || s.onlineAnswered()) {
		// A FIN or an RST waits until the target has acknowledged every
		// request sent and begun to answer the ones the online server
		// answered (an RST's ACK covers an answer the client left
		// unread, and the RST would destroy the target's copy of it).
		return false, false
	}
	if !s.lastReqAck.LessThan(g.ack) {
		return true, false // not a new request: the client saw nothing new
	}
	if s.answerIn(g) {
		return true, false
	}
	if cfg.NoWait {
		return true, g.isData()
	}
	if timedOut {
		return true, false
	}
	// Only data is sent ahead of an answer: a FIN or an RST would cut
	// the pipelined requests off.
	late = cfg.MaxLag > 0 && s.conn == nil && g.isData() && now.Sub(g.arrived) >= cfg.MaxLag
	return late, late
}

// answerIn reports whether the target has answered what was sent before g.
func (s *sess) answerIn(g *pendingSeg) bool {
	cfg := &s.t.cfg
	if s.sndUna != s.sndNxt {
		return false
	}
	got := s.respBytes()
	if got >= uint32(g.ack-s.onlineBase) {
		return true
	}
	quiet := cfg.ResponseQuiet
	if quiet <= 0 {
		quiet = min(max(s.hsRTT, 2*time.Millisecond), 200*time.Millisecond)
	}
	return got > s.respAtReq && s.t.now.Sub(s.lastResp) >= quiet
}

func (s *sess) inflightBytes() uint32 { return uint32(s.sndNxt - s.sndUna) }
