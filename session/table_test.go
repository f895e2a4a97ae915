package session

import (
	"net/netip"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

var (
	clientAP = netip.MustParseAddrPort("198.18.0.1:40000")
	targetAP = netip.MustParseAddrPort("198.18.1.2:80")
	t0       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// sink is an Emitter that keeps decoded copies of what it is given.
type sink struct{ pkts []capture.Packet }

func (s *sink) Emit(b [][]byte) error {
	for _, d := range b {
		var p capture.Packet
		if err := p.Decode(append([]byte(nil), d...)); err != nil {
			panic(err)
		}
		s.pkts = append(s.pkts, p)
	}
	return nil
}

func (s *sink) take() []capture.Packet { p := s.pkts; s.pkts = nil; return p }

// harness drives a Table with packets from a scripted client and target.
type harness struct {
	t      *testing.T
	tab    *Table
	out    *sink
	now    time.Time
	opened int
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, out: &sink{}, now: t0}
	cfg.Emitter = h.out
	cfg.OnOpen = func(c, tg capture.Endpoint) {
		if c.AddrPort() != clientAP || tg.AddrPort() != targetAP {
			t.Errorf("OnOpen(%v, %v)", c, tg)
		}
		if len(h.out.pkts) != 0 {
			t.Error("OnOpen called after packets were sent")
		}
		h.opened++
	}
	h.tab = New(&cfg)
	return h
}

func seg(t *testing.T, src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload string, opts []byte) []byte {
	t.Helper()
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: src, Dst: dst, Seq: capture.Seq(seq), Ack: capture.Seq(ack),
		Flags: flags, Window: 512, Payload: []byte(payload), Options: opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *harness) client(seq, ack uint32, flags uint8, payload string) {
	h.t.Helper()
	var p capture.Packet
	if err := p.Decode(seg(h.t, clientAP, targetAP, seq, ack, flags, payload, nil)); err != nil {
		h.t.Fatal(err)
	}
	p.Time = h.now
	h.tab.HandleClient(&p)
	h.tab.Tick(h.now)
}

func (h *harness) target(seq, ack uint32, flags uint8, payload string) {
	h.t.Helper()
	var p capture.Packet
	if err := p.Decode(seg(h.t, targetAP, clientAP, seq, ack, flags, payload, nil)); err != nil {
		h.t.Fatal(err)
	}
	p.Time = h.now
	h.tab.HandleResponse(&p)
	h.tab.Tick(h.now)
}

func (h *harness) wait(d time.Duration) {
	h.now = h.now.Add(d)
	h.tab.Tick(h.now)
}

// newSYN checks that the packets emitted since the last look end with a
// SYN, a new connection (what goes before it toward the old one is not
// checked), and returns its sequence number.
func (h *harness) newSYN() capture.Seq {
	h.t.Helper()
	out := h.out.take()
	if len(out) == 0 || out[len(out)-1].Flags() != syn {
		h.t.Fatalf("want a new SYN last, got %v", out)
	}
	return out[len(out)-1].Seq()
}

// expect checks the next emitted packets: flags, seq, ack and payload.
func (h *harness) expect(want ...capture.Segment) {
	h.t.Helper()
	got := h.out.take()
	if len(got) != len(want) {
		h.t.Fatalf("emitted %d packets, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := &got[i]
		if g.Flags() != w.Flags || g.Seq() != w.Seq || g.Ack() != w.Ack || string(g.Payload()) != string(w.Payload) {
			h.t.Errorf("packet %d: flags %#x seq %d ack %d payload %q; want flags %#x seq %d ack %d payload %q",
				i, g.Flags(), g.Seq(), g.Ack(), g.Payload(), w.Flags, w.Seq, w.Ack, w.Payload)
		}
		if !g.ChecksumsValid() {
			h.t.Errorf("packet %d: bad checksums", i)
		}
		if g.Src() != clientAP.Addr() || g.DstPort() != targetAP.Port() {
			h.t.Errorf("packet %d: %v -> %v", i, g.SrcEndpoint(), g.DstEndpoint())
		}
	}
}

const (
	syn    = capture.FlagSYN
	ack    = capture.FlagACK
	psh    = capture.FlagPSH | capture.FlagACK
	fin    = capture.FlagFIN | capture.FlagACK
	rst    = capture.FlagRST | capture.FlagACK
	synack = capture.FlagSYN | capture.FlagACK
)

// handshake: client ISN 1000, online ISN 7000, target ISN 5000.
func (h *harness) handshake() {
	h.t.Helper()
	h.client(1000, 0, syn, "")
	h.expect(capture.Segment{Seq: 1000, Flags: syn})
	h.wait(time.Millisecond)
	h.client(1001, 7001, ack, "") // the captured third ACK is absorbed
	h.expect()
	h.target(5000, 1001, synack, "")
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: ack})
}

func TestHandshakeAndRequests(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: 10 * time.Millisecond})
	h.handshake()
	if h.opened != 1 {
		t.Fatalf("OnOpen called %d times", h.opened)
	}
	// The first request goes at once, ACK rewritten to the target's space.
	h.client(1001, 7001, psh, "GET /a")
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("GET /a")})
	// The client saw 10 bytes of the online answer before asking again:
	// the second request waits for the target's answer.
	h.client(1007, 7011, psh, "GET /b")
	h.expect()
	h.target(5001, 1007, psh, "12345") // half the answer
	h.expect(capture.Segment{Seq: 1007, Ack: 5006, Flags: ack})
	h.target(5006, 1007, psh, "67890") // complete: release
	h.expect(
		capture.Segment{Seq: 1007, Ack: 5011, Flags: psh, Payload: []byte("GET /b")},
	)
	// A shorter answer releases the next request after a quiet spell.
	h.client(1013, 7030, psh, "GET /c")
	h.target(5011, 1013, psh, "abc")
	h.expect(capture.Segment{Seq: 1013, Ack: 5014, Flags: ack})
	h.wait(5 * time.Millisecond)
	h.expect()
	h.wait(10 * time.Millisecond)
	h.expect(capture.Segment{Seq: 1013, Ack: 5014, Flags: psh, Payload: []byte("GET /c")})
	h.target(5014, 1019, ack, "")
	// Close: client FIN, target FIN.
	h.client(1019, 7030, fin, "")
	h.expect(capture.Segment{Seq: 1019, Ack: 5014, Flags: fin})
	h.target(5014, 1020, fin, "")
	h.expect(capture.Segment{Seq: 1020, Ack: 5015, Flags: ack})
	st := h.tab.Stats()
	if st.Started != 1 || st.Finished != 1 || st.Held != 2 || st.AbsorbedACKs != 1 {
		t.Errorf("stats %+v", st)
	}
	h.wait(3 * time.Second) // linger
	if h.tab.Len() != 0 || h.tab.Stats().Active != 0 {
		t.Errorf("session not freed: len %d", h.tab.Len())
	}
}

func TestNoWaitSendsAtOnce(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.client(1001, 7001, psh, "a")
	h.client(1002, 7100, psh, "b")
	h.expect(
		capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("a")},
		capture.Segment{Seq: 1002, Ack: 5001, Flags: psh, Payload: []byte("b")},
	)
}

func TestDataBeforeSynAckWaits(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(1000, 0, syn, "")
	h.client(1001, 7001, psh, "hello")
	h.expect(capture.Segment{Seq: 1000, Flags: syn})
	h.target(5000, 1001, synack, "")
	h.expect(
		capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("hello")},
	)
}

func TestOutOfOrderAndDuplicates(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.client(1004, 7001, psh, "def")
	h.expect() // a gap: 1001..1004 missing
	h.client(1001, 7001, psh, "abc")
	h.expect(
		capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("abc")},
		capture.Segment{Seq: 1004, Ack: 5001, Flags: psh, Payload: []byte("def")},
	)
	h.target(5001, 1007, ack, "")
	h.client(1001, 7001, psh, "abc") // a client retransmission, already acked
	h.expect()
	if d := h.tab.Stats().Duplicates; d != 1 {
		t.Errorf("duplicates %d, want 1", d)
	}
}

func TestRetransmitOnTimeoutAndDupAcks(t *testing.T) {
	h := newHarness(t, Config{NoWait: true, RTO: 100 * time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "abc")
	h.client(1004, 7001, psh, "def")
	h.out.take()
	h.wait(150 * time.Millisecond)
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("abc")})
	h.target(5001, 1004, ack, "") // first acked; second lost
	for i := 0; i < 3; i++ {
		h.target(5001, 1004, ack, "")
	}
	h.expect(capture.Segment{Seq: 1004, Ack: 5001, Flags: psh, Payload: []byte("def")})
	if r := h.tab.Stats().Retransmitted; r != 2 {
		t.Errorf("retransmitted %d, want 2", r)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(1000, 0, syn, "")
	h.out.take()
	h.wait(1100 * time.Millisecond)
	h.expect(capture.Segment{Seq: 1000, Flags: syn}) // SYN retransmitted
	h.wait(2 * time.Second)
	h.expect(capture.Segment{Seq: 1001, Flags: capture.FlagRST})
	st := h.tab.Stats()
	if st.HandshakeTimeouts != 1 || st.Active != 0 || h.tab.Len() != 0 {
		t.Errorf("stats %+v len %d", st, h.tab.Len())
	}
}

func TestPortReuseAfterClose(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(1001, 7001, rst, "")
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: rst})
	// The same port comes back within the linger time.
	h.client(9000, 0, syn, "")
	h.expect(capture.Segment{Seq: 9000, Flags: syn})
	st := h.tab.Stats()
	if st.Retired != 0 || st.Started != 2 || st.Active != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestPortReuseWaitsForBusySession(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Second})
	h.handshake()
	h.client(1001, 7001, psh, "GET /a")
	h.client(1007, 7011, psh, "GET /b") // held for the answer to /a
	h.client(1013, 7020, fin, "")
	h.out.take()
	// The client is done online and reuses the port at once.
	h.client(9000, 0, syn, "")
	h.client(9001, 100, psh, "GET /c")
	h.expect()
	if st := h.tab.Stats(); st.PortWaits != 1 || st.Started != 1 {
		t.Fatalf("stats %+v", st)
	}
	h.target(5001, 1007, psh, "0123456789")
	h.expect(capture.Segment{Seq: 1007, Ack: 5011, Flags: psh, Payload: []byte("GET /b")})
	h.target(5011, 1013, psh, "012345678")
	h.expect(capture.Segment{Seq: 1013, Ack: 5020, Flags: fin})
	h.target(5020, 1014, fin, "")
	// The old session is done: the waiting connection starts.
	h.expect(capture.Segment{Seq: 1014, Ack: 5021, Flags: ack},
		capture.Segment{Seq: 9000, Flags: syn})
	h.target(7000, 9001, synack, "")
	h.expect(capture.Segment{Seq: 9001, Ack: 7001, Flags: psh, Payload: []byte("GET /c")})
	if st := h.tab.Stats(); st.Retired != 0 || st.Started != 2 || st.Finished != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestPortReuseRetiresStuckSession(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(1001, 7001, psh, "GET /a") // the target never answers
	h.out.take()
	h.client(9000, 0, syn, "")
	h.expect()
	h.wait(3100 * time.Millisecond)
	out := h.out.take()
	var rstSeen, synSeen bool
	for _, p := range out {
		rstSeen = rstSeen || p.Flags()&capture.FlagRST != 0 && p.Seq() == 1007
		synSeen = synSeen || p.Flags() == syn && p.Seq() == 9000
	}
	if !rstSeen || !synSeen {
		t.Errorf("want the old session reset and the new SYN sent: %v", out)
	}
	if st := h.tab.Stats(); st.Retired != 1 || st.Started != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestTargetWindowHonoured(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.client(1000, 0, syn, "")
	h.out.take()
	var p capture.Packet
	b, _ := capture.AppendSegment(nil, &capture.Segment{Src: targetAP, Dst: clientAP,
		Seq: 5000, Ack: 1001, Flags: synack, Window: 4})
	_ = p.Decode(b)
	h.tab.HandleResponse(&p)
	h.tab.Tick(h.now)
	h.out.take()
	h.client(1001, 7001, psh, "abc")
	h.client(1004, 7001, psh, "def") // would exceed the 4-byte window
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("abc")})
	h.target(5001, 1004, ack, "")
	h.expect(capture.Segment{Seq: 1004, Ack: 5001, Flags: psh, Payload: []byte("def")})
}

func TestUnknownAndStrayPackets(t *testing.T) {
	h := newHarness(t, Config{OnlyFull: true})
	h.client(1001, 7001, psh, "x") // no session, and mid-stream copying is off
	h.client(1001, 7001, ack, "")  // a pure ACK never starts a session
	h.target(5000, 1, ack, "y")    // no session
	st := h.tab.Stats()
	if st.NoSession != 2 || st.UnknownResponses != 1 || st.Started != 0 {
		t.Errorf("stats %+v", st)
	}
	h.expect()
}

func TestTimestampsEchoedAndMonotonic(t *testing.T) {
	h := newHarness(t, Config{})
	send := func(handle func(*capture.Packet), src, dst netip.AddrPort, seq, ackN uint32, flags uint8, payload string, val, ecr uint32) {
		t.Helper()
		var p capture.Packet
		if err := p.Decode(seg(t, src, dst, seq, ackN, flags, payload, capture.AppendTimestamps(nil, val, ecr))); err != nil {
			t.Fatal(err)
		}
		p.Time = h.now
		handle(&p)
		h.tab.Tick(h.now)
	}
	client := func(seq, ackN uint32, flags uint8, payload string, val uint32) {
		t.Helper()
		send(h.tab.HandleClient, clientAP, targetAP, seq, ackN, flags, payload, val, 4444) // 4444: the online server's clock
	}
	target := func(seq, ackN uint32, flags uint8, payload string, val uint32) {
		t.Helper()
		send(h.tab.HandleResponse, targetAP, clientAP, seq, ackN, flags, payload, val, 0)
	}
	ts := func(p capture.Packet) [2]uint32 {
		val, ecr, ok := p.Timestamps()
		if !ok {
			t.Fatalf("packet without timestamps: %v", p.Flow())
		}
		return [2]uint32{val, ecr}
	}
	client(1000, 0, syn, "", 100)
	target(5000, 1001, synack, "", 900)
	if got := ts(h.out.take()[1]); got != [2]uint32{100, 900} {
		t.Errorf("made ACK timestamps %v, want [100 900]", got)
	}
	client(1001, 7001, psh, "GET /a", 110)
	client(1007, 7011, psh, "GET /b", 120) // held: the client saw 10 bytes
	client(1013, 7011, ack, "", 130)       // a pure ACK, absorbed, with a later TSval
	target(5001, 1007, psh, "01234", 950)  // half the answer: ACKed alone
	target(5006, 1007, psh, "56789", 960)  // the rest: request b carries the ACK
	out := h.out.take()
	if len(out) != 3 {
		t.Fatalf("emitted %d packets, want request a, the ACK and request b", len(out))
	}
	if got := ts(out[0]); got != [2]uint32{110, 900} {
		t.Errorf("request a timestamps %v, want [110 900]", got)
	}
	if got := ts(out[1]); got != [2]uint32{130, 950} {
		t.Errorf("made ACK timestamps %v, want [130 950]", got)
	}
	// Request b was captured with TSval 120 but goes out after an ACK with
	// 130: sending 120 would fail the target's PAWS check.
	if got := ts(out[2]); got != [2]uint32{130, 960} {
		t.Errorf("held request timestamps %v, want [130 960]", got)
	}
	for i, p := range out {
		if !p.ChecksumsValid() {
			t.Errorf("packet %d: bad checksums", i)
		}
	}
}
