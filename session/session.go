package session

import (
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

type state uint8

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

// segment is a buffered client packet, owned by its session.
type segment struct {
	data   []byte
	seq    capture.Seq
	end    capture.Seq // seq + payload (+1 for FIN)
	ack    capture.Seq // the captured ACK: online server bytes the client had seen
	flags  uint8
	sentAt time.Time // zero until sent
}

func (g *segment) isData() bool { return g.end != g.seq }

// sess is one emulated client connection toward the target.
type sess struct {
	t              *Table
	client, target capture.Endpoint
	st             state
	created        time.Time
	lastActive     time.Time
	lastSend       time.Time
	rto            time.Duration

	// Client side, in the client's sequence space (copied unchanged).
	isn                capture.Seq
	syn                []byte // the copied SYN, for retransmission
	synSentAt          time.Time
	clientWS, clientTS bool // options the client's SYN offered
	clientWin          uint16
	clientTSval        uint32
	segs               []segment // ordered by seq; acknowledged ones removed
	sndUna, sndNxt     capture.Seq
	finSent            bool

	// The online server's sequence space as the client's ACKs show it.
	onlineBase   capture.Seq // online ISN+1
	onlineBaseOK bool
	lastReqAck   capture.Seq // captured ACK of the last request sent
	hsRTT        time.Duration

	// Request pacing.
	holdSince time.Time
	respAtReq uint32 // target bytes received when the last request was sent

	// Target side.
	targetISN capture.Seq
	rcvNxt    capture.Seq
	sndWnd    uint32
	wscale    uint8
	tsOK      bool
	tsRecent  uint32
	tsSent    uint32 // highest TSval sent to the target
	lastResp  time.Time
	dupAcks   int
	finRcvd   bool
	closedAt  time.Time
}

// established learns the target's side of the handshake from its SYN-ACK.
func (s *sess) established(p *capture.Packet) {
	s.st = stateEstablished
	s.targetISN = p.Seq()
	s.rcvNxt = s.targetISN.Add(1)
	s.sndUna = s.isn.Add(1)
	s.sndNxt = s.sndUna
	s.sndWnd = uint32(p.Window()) // never scaled in a SYN (RFC 7323 2.2)
	if ws, ok := p.WindowScale(); ok && s.clientWS {
		s.wscale = min(ws, 14)
	}
	if val, _, ok := p.Timestamps(); ok && s.clientTS {
		s.tsOK, s.tsRecent = true, val
	}
	s.rto = s.t.cfg.RTO
	s.lastResp = s.t.now
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

// respBytes is how many bytes the target has sent on this connection.
func (s *sess) respBytes() uint32 { return uint32(s.rcvNxt - s.targetISN.Add(1)) }

// onAck takes the target's acknowledgment and window.
func (s *sess) onAck(p *capture.Packet) {
	a := p.Ack()
	switch {
	case s.sndUna.LessThan(a) && a.LessThanEq(s.sndNxt):
		s.sndUna = a
		s.dupAcks = 0
		s.rto = s.t.cfg.RTO
		i := 0
		for i < len(s.segs) && s.segs[i].end.LessThanEq(a) && !s.segs[i].sentAt.IsZero() {
			i++
		}
		s.segs = s.segs[i:]
	case a == s.sndUna && s.sndUna != s.sndNxt && p.SeqLen() == 0 &&
		uint32(p.Window())<<s.wscale == s.sndWnd:
		// A duplicate ACK (RFC 5681 section 2); three mean a lost segment.
		s.dupAcks++
		if s.dupAcks == 3 {
			if seg := s.firstUnacked(); seg != nil {
				s.t.retransmitSeg(s, seg)
			}
		}
	}
	s.sndWnd = uint32(p.Window()) << s.wscale
}

func (s *sess) firstUnacked() *segment {
	for i := range s.segs {
		g := &s.segs[i]
		if !g.sentAt.IsZero() && s.sndUna.LessThan(g.end) {
			return g
		}
	}
	return nil
}

// insert buffers a client packet in sequence order. It reports false for
// duplicates and overflow, which it counts.
func (s *sess) insert(p *capture.Packet) bool {
	g := segment{seq: p.Seq(), end: p.EndSeq(), ack: p.Ack(), flags: p.Flags()}
	if g.flags&capture.FlagRST != 0 {
		g.end = g.seq // an RST occupies no sequence space
	}
	if g.end.LessThanEq(s.sndUna) && g.isData() {
		s.t.c.duplicates.Add(1)
		return false
	}
	i := len(s.segs)
	for i > 0 && g.seq.LessThan(s.segs[i-1].seq) {
		i--
	}
	if i > 0 && s.segs[i-1].seq == g.seq && s.segs[i-1].end == g.end && s.segs[i-1].flags == g.flags {
		s.t.c.duplicates.Add(1)
		return false
	}
	if len(s.segs) >= s.t.cfg.MaxBuffered {
		s.t.c.bufferFull.Add(1)
		return false
	}
	g.data = append([]byte(nil), p.Data...)
	s.segs = append(s.segs, segment{})
	copy(s.segs[i+1:], s.segs[i:])
	s.segs[i] = g
	return true
}

// releasable reports whether a segment that starts a new request may go:
// the target has ACKed what we sent and its response is complete, judged by
// how much the online server had sent when the client asked again, or by a
// quiet spell, or by the hold timeout.
func (s *sess) releasable(g *segment) bool {
	cfg := &s.t.cfg
	if cfg.NoWait || !s.lastReqAck.LessThan(g.ack) {
		return true // not a new request: the client saw nothing new
	}
	now := s.t.now
	if !s.holdSince.IsZero() && now.Sub(s.holdSince) >= cfg.HoldTimeout {
		return true
	}
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
	return got > s.respAtReq && now.Sub(s.lastResp) >= quiet
}

// pump sends buffered segments in order as far as pacing and the target's
// window allow.
func (t *Table) pump(s *sess) {
	if s.st != stateEstablished {
		return
	}
	for i := range s.segs {
		g := &s.segs[i]
		if !g.sentAt.IsZero() {
			continue
		}
		if s.sndNxt.LessThan(g.seq) {
			return // a gap: wait for the missing packet
		}
		if g.isData() && !s.releasable(g) {
			if s.holdSince.IsZero() {
				s.holdSince = t.now
				t.c.held.Add(1)
			}
			return
		}
		if g.isData() && uint32(g.end-s.sndUna) > s.sndWnd && s.sndUna != s.sndNxt {
			return // beyond the target's window; an ACK will reopen it
		}
		t.sendSeg(s, g)
		if g.isData() {
			s.holdSince = time.Time{}
			if s.lastReqAck.LessThan(g.ack) {
				s.lastReqAck = g.ack
				s.respAtReq = s.respBytes()
			}
		}
		s.sndNxt = s.sndNxt.Max(g.end)
		if g.flags&capture.FlagFIN != 0 {
			s.finSent = true
		}
		if g.flags&capture.FlagRST != 0 {
			t.c.finished.Add(1)
			t.close(s)
			return
		}
	}
}
