package session

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

func TestMidStreamForgedHandshake(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(3000, 8000, psh, "GET /x") // the copier started mid-connection
	out := h.out.take()
	if len(out) != 1 || out[0].Flags() != syn || out[0].Seq() != 2999 {
		t.Fatalf("want one forged SYN at 2999, got %v", out)
	}
	if m, ok := out[0].MSS(); !ok || m != 1460 {
		t.Errorf("forged SYN MSS %d %v", m, ok)
	}
	h.target(5000, 3000, synack, "")
	out = h.out.take()
	if len(out) != 1 {
		t.Fatalf("want the data (carrying the ACK), got %d packets", len(out))
	}
	if out[0].Seq() != 3000 || out[0].Ack() != 5001 || string(out[0].Payload()) != "GET /x" || out[0].Window() != 65535 {
		t.Errorf("data seq %d ack %d win %d %q", out[0].Seq(), out[0].Ack(), out[0].Window(), out[0].Payload())
	}
	if st := h.tab.Stats(); st.Forged != 1 || st.Started != 1 {
		t.Errorf("stats %+v", st)
	}
	// The next request waits for the answer as usual.
	h.client(3006, 8100, psh, "GET /y")
	h.expect()
	h.target(5001, 3006, psh, strings.Repeat("a", 100))
	h.expect(capture.Segment{Seq: 3006, Ack: 5101, Flags: psh, Payload: []byte("GET /y")})
}

func TestGapTimeoutSkipsHole(t *testing.T) {
	h := newHarness(t, Config{NoWait: true, GapTimeout: time.Second})
	h.handshake()
	h.client(1010, 7001, psh, "late") // 1001..1010 never captured
	h.expect()
	h.wait(500 * time.Millisecond)
	h.expect()
	h.wait(600 * time.Millisecond)
	// The hole is given up: the target's connection is reset and what
	// came after it goes on a new one.
	out := h.out.take()
	if len(out) != 2 || out[0].Flags() != rst || out[1].Flags() != syn {
		t.Fatalf("want an RST and a new SYN, got %v", out)
	}
	isn := out[1].Seq()
	h.target(9000, uint32(isn)+1, synack, "")
	h.expect(capture.Segment{Seq: isn.Add(1), Ack: 9001, Flags: psh, Payload: []byte("late")})
	if st := h.tab.Stats(); st.GapTimeouts != 1 || st.Resumed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// With a protocol module a session cannot lose bytes: a gap that never
// fills ends it.
func TestGapTimeoutDropsProtocolSession(t *testing.T) {
	h := newHarness(t, Config{NoWait: true, GapTimeout: time.Second, Protocol: &greeter{}})
	h.handshake()
	h.target(5001, 1001, psh, "HELLO")
	h.out.take()
	h.client(1010, 7006, psh, "late") // 1001..1010 never captured
	h.wait(1100 * time.Millisecond)
	out := h.out.take()
	if len(out) != 1 || out[0].Flags()&capture.FlagRST == 0 {
		t.Fatalf("want an RST, got %v", out)
	}
	if st := h.tab.Stats(); st.GapTimeouts != 1 || st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPartialOverlapTrimmed(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.client(1001, 7001, psh, "abc")
	h.out.take()
	h.client(1001, 7001, psh, "abcdef") // retransmitted and extended
	h.expect(capture.Segment{Seq: 1004, Ack: 5001, Flags: psh, Payload: []byte("def")})
}

func TestLargeSegmentSplitToMSS(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	big := strings.Repeat("0123456789", 350) // 3500 bytes: a GRO super-frame
	h.client(1001, 7001, psh, big)
	out := h.out.take()
	if len(out) != 3 {
		t.Fatalf("split into %d segments, want 3", len(out))
	}
	var got []byte
	seq := capture.Seq(1001)
	for i, p := range out {
		if p.Seq() != seq || !p.ChecksumsValid() || p.PayloadLen() > 1460 {
			t.Errorf("segment %d: seq %d len %d", i, p.Seq(), p.PayloadLen())
		}
		if psh := p.Flags()&capture.FlagPSH != 0; psh != (i == 2) {
			t.Errorf("segment %d: PSH %v", i, psh)
		}
		seq = seq.Add(uint32(p.PayloadLen()))
		got = append(got, p.Payload()...)
	}
	if string(got) != big {
		t.Error("payload changed by splitting")
	}
}

func TestTargetResetResumesWithData(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "req1")
	h.out.take()
	h.target(5001, 1005, psh, "resp")
	h.out.take()
	h.target(5005, 1005, rst, "") // the target resets; nothing pending
	if st := h.tab.Stats(); st.TargetResets != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The client asks again on the same connection: a new connection.
	h.client(1005, 7005, psh, "req2")
	out := h.out.take()
	if len(out) != 1 || out[0].Flags() != syn {
		t.Fatalf("want a new SYN, got %v", out)
	}
	isn := out[0].Seq()
	if !capture.Seq(1005).LessThan(isn) {
		t.Errorf("resumed ISN %d not beyond the old connection", isn)
	}
	h.target(9000, uint32(isn)+1, synack, "")
	h.expect(capture.Segment{Seq: isn.Add(1), Ack: 9001, Flags: psh, Payload: []byte("req2")})
	// Later client bytes keep the shift.
	h.target(9001, uint32(isn)+5, psh, "resp")
	h.out.take()
	h.client(1009, 7005, fin, "")
	h.expect(capture.Segment{Seq: isn.Add(5), Ack: 9005, Flags: fin})
	if st := h.tab.Stats(); st.Resumed != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTargetFINWithDataPendingResumes(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "req1")
	h.out.take()
	h.target(5001, 1005, psh|capture.FlagFIN, "bye") // answer and close
	h.expect(capture.Segment{Seq: 1005, Ack: 5005, Flags: ack})
	h.wait(10 * time.Millisecond)
	h.client(1005, 7004, psh, "req2") // the online server kept it open
	out := h.out.take()
	if len(out) != 2 || out[0].Flags() != rst || out[1].Flags() != syn {
		t.Fatalf("want RST then SYN, got %v", out)
	}
}

// greeter is a toy protocol module: the target speaks first ("HELLO"),
// client "pw=" lines are rewritten with a longer secret, a target "AUTH?"
// is answered by the module itself, and resumed sessions inject "LOGIN\n".
type greeter struct{ opened []bool }

type greeterConn struct {
	greeted bool
	skip    bool
}

func (g *greeter) Open(_, _ capture.Endpoint, resumed bool) Conn {
	g.opened = append(g.opened, resumed)
	return &greeterConn{}
}

func (c *greeterConn) Inject(dst []byte) []byte { return append(dst, "LOGIN\n"...) }
func (c *greeterConn) Ready() bool              { return c.greeted }
func (c *greeterConn) Skip() bool               { return c.skip }

func (c *greeterConn) Client(dst, payload []byte) []byte {
	if bytes.HasPrefix(payload, []byte("pw=")) {
		return append(dst, "pw=longer-secret\n"...)
	}
	if bytes.HasPrefix(payload, []byte("TLS")) {
		c.skip = true
	}
	return append(dst, payload...)
}

func (c *greeterConn) Response(dst, payload []byte, full int) []byte {
	if bytes.HasPrefix(payload, []byte("HELLO")) {
		c.greeted = true
	}
	if bytes.HasPrefix(payload, []byte("AUTH?")) {
		return append(dst, "ok\n"...)
	}
	return dst
}

func TestProtocolModuleShiftsSequence(t *testing.T) {
	mod := &greeter{}
	h := newHarness(t, Config{NoWait: true, Protocol: mod})
	h.handshake()
	h.client(1001, 7001, psh, "pw=x\n") // 5 bytes become 17
	h.expect()                          // held until the greeting
	h.target(5001, 1001, psh, "HELLO")
	h.expect(capture.Segment{Seq: 1001, Ack: 5006, Flags: psh, Payload: []byte("pw=longer-secret\n")})
	h.target(5006, 1018, psh, "AUTH?") // the module answers by itself: 3 more
	h.expect(capture.Segment{Seq: 1018, Ack: 5011, Flags: psh, Payload: []byte("ok\n")},
		capture.Segment{Seq: 1021, Ack: 5011, Flags: ack})
	h.client(1006, 7001, psh, "Q1") // client byte 1006 is target byte 1006+12+3
	h.expect(capture.Segment{Seq: 1021, Ack: 5011, Flags: psh, Payload: []byte("Q1")})
	h.client(1008, 7001, psh, "TLS")
	h.out.take()
	// The session stays as a tombstone: the client's next packets are
	// absorbed, not copied as a new mid-stream session, until it closes.
	h.client(1011, 7001, psh, "more")
	h.expect()
	if st := h.tab.Stats(); st.SkippedByProtocol != 1 || st.SkippedPackets != 1 || st.Active != 1 || st.Forged != 0 {
		t.Errorf("stats %+v", st)
	}
	h.client(1015, 7001, fin, "")
	if st := h.tab.Stats(); st.Active != 0 {
		t.Errorf("tombstone kept after the client's FIN: %+v", st)
	}
	if len(mod.opened) != 1 || mod.opened[0] {
		t.Errorf("opened %v", mod.opened)
	}
}

func TestProtocolModuleInjectsOnMidStream(t *testing.T) {
	mod := &greeter{}
	h := newHarness(t, Config{NoWait: true, Protocol: mod})
	h.client(3000, 8000, psh, "Q1")
	out := h.out.take()
	// The SYN is lowered by the 6 injected bytes.
	if len(out) != 1 || out[0].Seq() != 2999-6 {
		t.Fatalf("forged SYN %v", out)
	}
	h.target(5000, 2994, synack, "")
	h.expect(capture.Segment{Seq: 2994, Ack: 5001, Flags: psh, Payload: []byte("LOGIN\n")})
	h.target(5001, 3000, psh, "HELLO")
	h.expect(capture.Segment{Seq: 3000, Ack: 5006, Flags: psh, Payload: []byte("Q1")})
	if len(mod.opened) != 1 || !mod.opened[0] {
		t.Errorf("opened %v", mod.opened)
	}
}

func TestMemoryCapShedsNewSessions(t *testing.T) {
	h := newHarness(t, Config{NoWait: true, MaxMemory: 3 * smallBufSize})
	h.client(1000, 0, syn, "")
	h.client(1001, 7001, psh, "a") // before the SYN-ACK: all buffered
	h.client(1002, 7001, psh, "b")
	h.client(1003, 7001, psh, "c")
	h.out.take()
	other := netip.MustParseAddrPort("198.18.0.1:40001")
	var p capture.Packet
	_ = p.Decode(seg(t, other, targetAP, 1, 0, syn, "", nil))
	h.tab.HandleClient(&p)
	if st := h.tab.Stats(); st.Shed != 1 || st.Started != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestKeepaliveOnlySessionsExpire(t *testing.T) {
	h := newHarness(t, Config{KeepaliveTimeout: 10 * time.Second, IdleTimeout: time.Hour})
	h.handshake()
	for range 12 {
		h.wait(time.Second)
		h.client(1000, 7001, ack, "") // a keepalive probe (seq one below)
	}
	if st := h.tab.Stats(); st.IdleTimeouts != 1 || st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSequenceWrapAround(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	const isn = 0xfffffffa
	h.client(isn, 0, syn, "")
	h.target(0xfffffff0, isn+1, synack, "")
	h.out.take()
	h.client(isn+1, 7001, psh, "0123456789") // crosses 2^32
	h.client(uint32(capture.Seq(isn).Add(11)), 7001, psh, "abc")
	out := h.out.take()
	if len(out) != 2 || out[1].Seq() != capture.Seq(isn).Add(11) || out[0].Ack() != 0xfffffff1 {
		t.Fatalf("got %v", out)
	}
	h.target(0xfffffff1, uint32(capture.Seq(isn).Add(14)), psh, "0123456789abcdef") // target wraps too
	h.expect(capture.Segment{Seq: capture.Seq(isn).Add(14), Ack: 1, Flags: ack})
}

func TestIPv6Session(t *testing.T) {
	c := netip.MustParseAddrPort("[fd00:198:18::1]:40000")
	tg := netip.MustParseAddrPort("[fd00:198:18:1::2]:80")
	out := &sink{}
	tab := New(&Config{Emitter: out, NoWait: true})
	send := func(handle func(*capture.Packet), src, dst netip.AddrPort, seq, a uint32, f uint8, pl string) {
		var p capture.Packet
		if err := p.Decode(seg(t, src, dst, seq, a, f, pl, nil)); err != nil {
			t.Fatal(err)
		}
		p.Time = t0
		handle(&p)
		tab.Tick(t0)
	}
	send(tab.HandleClient, c, tg, 1, 0, syn, "")
	send(tab.HandleResponse, tg, c, 100, 2, synack, "")
	send(tab.HandleClient, c, tg, 2, 55, psh, "hi")
	got := out.take()
	if len(got) != 3 || !got[2].IsIPv6() || got[2].Ack() != 101 || !got[2].ChecksumsValid() || string(got[2].Payload()) != "hi" {
		t.Fatalf("got %v", got)
	}
}

// TestSteadyStateAllocs holds the per-packet path to zero allocations:
// a request, the target's answer and our ACK, on an open session.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation budgets are checked without -race (make test runs them in the plain pass)")
	}
	var sent int
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.tab.cfg.Emitter = countEmitter{&sent}
	req := seg(t, clientAP, targetAP, 0, 7001, psh, strings.Repeat("r", 200), nil)
	resp := seg(t, targetAP, clientAP, 0, 0, psh, strings.Repeat("a", 1000), nil)
	cseq, tseq := capture.Seq(1001), capture.Seq(5001)
	var p capture.Packet
	round := func() {
		_ = p.Decode(req)
		p.SetSeq(cseq)
		h.tab.HandleClient(&p)
		cseq = cseq.Add(200)
		_ = p.Decode(resp)
		p.SetSeq(tseq)
		p.SetAck(cseq)
		h.tab.HandleResponse(&p)
		tseq = tseq.Add(1000)
		h.tab.Tick(h.now)
	}
	for range 10 {
		round()
	}
	if n := testing.AllocsPerRun(200, round); n != 0 {
		t.Errorf("%v allocations per request and response", n)
	}
	if sent < 400 {
		t.Errorf("only %d packets sent", sent)
	}
}

type countEmitter struct{ n *int }

func (c countEmitter) Emit(b [][]byte) error { *c.n += len(b); return nil }

// A target under SYN pressure answers with cookies and retransmits its
// SYN-ACK when our ACK seems lost: each is re-ACKed, and data it already
// acknowledged is never sent again.
func TestRetransmittedSynAckReAcked(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.target(5000, 1001, synack, "") // the SYN-ACK again
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: ack})
	h.client(1001, 7001, psh, "abc")
	h.out.take()
	h.target(5001, 1004, ack, "")
	h.target(5000, 1001, synack, "") // a late duplicate after data was acked
	h.expect(capture.Segment{Seq: 1004, Ack: 5001, Flags: ack})
	h.wait(5 * time.Second) // no retransmission of acknowledged data
	for _, p := range h.out.take() {
		if p.PayloadLen() > 0 {
			t.Errorf("resent acknowledged data: seq %d", p.Seq())
		}
	}
	if st := h.tab.Stats(); st.Retransmitted != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPerSessionBufferCap(t *testing.T) {
	h := newHarness(t, Config{NoWait: true, MaxBuffered: 2})
	h.client(1000, 0, syn, "") // no SYN-ACK yet: everything waits
	h.client(1001, 7001, psh, "a")
	h.client(1002, 7001, psh, "b")
	h.client(1003, 7001, psh, "c")
	if st := h.tab.Stats(); st.BufferFull != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A request that meets a connection the target is closing is reset
// unacknowledged: it goes again on a new connection, not lost.
func TestUnackedRequestResentAfterReset(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "req1")
	h.out.take()
	h.target(5001, 1005, psh, "resp")
	h.out.take()
	h.client(1005, 7005, psh, "req2") // released: the answer was complete
	h.expect(capture.Segment{Seq: 1005, Ack: 5005, Flags: psh, Payload: []byte("req2")})
	h.target(5005, 1005, rst, "") // the target had closed: req2 unacknowledged
	out := h.out.take()
	if len(out) != 1 || out[0].Flags() != syn {
		t.Fatalf("want a new SYN, got %v", out)
	}
	isn := out[0].Seq()
	h.target(9000, uint32(isn)+1, synack, "")
	h.expect(capture.Segment{Seq: isn.Add(1), Ack: 9001, Flags: psh, Payload: []byte("req2")})
	if st := h.tab.Stats(); st.Resumed != 1 || st.LostOnReset != 0 || st.TargetResets != 0 {
		t.Errorf("stats %+v", st)
	}
}

// An RST that belongs to a session's previous connection on the same ports
// must not end the new one.
func TestLateResetOfOldConnectionIgnored(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "req1")
	h.target(5001, 1005, psh|capture.FlagFIN, "bye")
	h.wait(10 * time.Millisecond)
	h.client(1005, 7005, psh, "req2") // the target had closed: a new connection
	isn := h.newSYN()
	h.target(5005, 1005, rst, "") // late, from the old connection
	h.target(9000, uint32(isn)+1, synack, "")
	got := h.out.take()
	if len(got) != 1 || string(got[0].Payload()) != "req2" {
		t.Fatalf("the new connection did not carry req2: %v", got)
	}
	if st := h.tab.Stats(); st.TargetResets != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A request the target acknowledged and then closed on unread (a server
// closing after its last answer, our next request already in its buffer)
// goes again on a new connection once the client shows the online server
// answered it; the RST and the FIN ways of closing both count.
func TestAckedUnansweredRequestResent(t *testing.T) {
	for _, closing := range []uint8{rst, fin} {
		h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
		h.handshake()
		h.client(1001, 7001, psh, "req1")
		h.target(5001, 1005, psh, "resp")
		h.client(1005, 7005, psh, "req2") // the answer was complete
		h.out.take()
		h.target(5005, 1009, ack, "") // req2 is in the target's buffer
		h.target(5005, 1009, closing, "")
		if out := h.out.take(); len(out) > 1 || len(out) == 1 && out[0].Flags() == syn {
			t.Fatalf("closing %#x: resumed before the client showed an answer: %v", closing, out)
		}
		h.client(1009, 7010, ack, "") // online answered req2 with 5 bytes
		isn := h.newSYN()
		h.target(9000, uint32(isn)+1, synack, "")
		h.expect(capture.Segment{Seq: isn.Add(1), Ack: 9001, Flags: psh, Payload: []byte("req2")})
		if st := h.tab.Stats(); st.Resumed != 1 || st.Unanswered != 1 {
			t.Errorf("closing %#x: stats %+v", closing, st)
		}
		// Sent again and unanswered again, it is not repeated a third time.
		h.target(9001, uint32(isn)+5, ack, "")
		h.target(9001, uint32(isn)+5, rst, "")
		h.client(1009, 7020, ack, "")
		if out := h.out.take(); len(out) != 0 {
			t.Errorf("closing %#x: sent a third time: %v", closing, out)
		}
	}
}

// When the online server did not answer either (the client closes without
// having seen more), the request is not sent again.
func TestUnansweredOnlineTooNotResent(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "QUIT")
	h.out.take()
	h.target(5001, 1005, ack, "")
	h.target(5001, 1005, rst, "")
	h.client(1005, 7001, fin, "")
	h.wait(10 * time.Millisecond)
	if out := h.out.take(); len(out) != 0 {
		t.Fatalf("sent after the target's reset: %v", out)
	}
	if st := h.tab.Stats(); st.Resumed != 0 || st.Unanswered != 0 || st.TargetResets != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A copy that falls MaxLag behind the online conversation sends requests
// without waiting for answers, within the target's window; a FIN still
// waits for them.
func TestMaxLagPipelines(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Second, MaxLag: 50 * time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "a")
	h.expect(capture.Segment{Seq: 1001, Ack: 5001, Flags: psh, Payload: []byte("a")})
	h.client(1002, 7101, psh, "b") // the online answer to a was 100 bytes
	h.client(1003, 7201, psh, "c")
	h.client(1004, 7301, fin, "")
	h.wait(40 * time.Millisecond)
	h.expect() // not yet lagging
	h.wait(10 * time.Millisecond)
	h.expect(
		capture.Segment{Seq: 1002, Ack: 5001, Flags: psh, Payload: []byte("b")},
		capture.Segment{Seq: 1003, Ack: 5001, Flags: psh, Payload: []byte("c")},
	)
	if st := h.tab.Stats(); st.Pipelined != 2 || st.Requests != 3 {
		t.Errorf("stats %+v", st)
	}
	// The answers come in; the FIN goes once they are complete.
	h.target(5001, 1004, psh, strings.Repeat("x", 300))
	h.expect(
		capture.Segment{Seq: 1004, Ack: 5301, Flags: fin},
	)
}

// A negative MaxLag keeps strict pacing: only HoldTimeout releases.
func TestMaxLagNegativeWaits(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Second, MaxLag: -1, HoldTimeout: time.Second})
	h.handshake()
	h.client(1001, 7001, psh, "a")
	h.target(5001, 1002, ack, "")
	h.out.take()
	h.client(1002, 7101, psh, "b")
	h.wait(500 * time.Millisecond)
	h.expect()
	h.wait(600 * time.Millisecond)
	h.expect(capture.Segment{Seq: 1002, Ack: 5001, Flags: psh, Payload: []byte("b")})
}

// The target's segments of one intercept batch are acknowledged once, at
// the end of the batch, by the next request when one goes, else by one
// pure ACK.
func TestOneACKPerBatch(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Second})
	h.handshake()
	h.client(1001, 7001, psh, "GET /a")
	h.client(1007, 7031, psh, "GET /b") // held: the online answer was 30 bytes
	h.out.take()
	type answer struct {
		seq  uint32
		data string
	}
	batch := func(as ...answer) {
		for _, a := range as {
			var p capture.Packet
			if err := p.Decode(seg(t, targetAP, clientAP, a.seq, 1007, psh, a.data, nil)); err != nil {
				t.Fatal(err)
			}
			p.Time = h.now
			h.tab.HandleResponse(&p)
		}
		h.tab.Tick(h.now)
	}
	batch(answer{5001, "0123456789"}, answer{5011, "0123456789"})
	h.expect(capture.Segment{Seq: 1007, Ack: 5021, Flags: ack})
	batch(answer{5021, "01234"}, answer{5026, "56789"})
	h.expect(capture.Segment{Seq: 1007, Ack: 5031, Flags: psh, Payload: []byte("GET /b")})
}

// A long request (an upload) is not kept for a resend: the session holds
// at most maxUnanswered acknowledged segments.
func TestLongUnansweredRequestNotKept(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	seq := uint32(1001)
	for range 2 * maxUnanswered {
		h.client(seq, 7001, psh, "0123456789")
		seq += 10
		h.target(5001, seq, ack, "")
	}
	s := h.tab.sessions[h.tab.all[0].client]
	if len(s.unanswered) != 0 || !s.tooLong {
		t.Fatalf("kept %d segments of a long request (tooLong %v)", len(s.unanswered), s.tooLong)
	}
	h.target(5001, seq, psh, "ok") // the answer: the next request is kept again
	h.client(seq, 7003, psh, "GET /next")
	h.target(5003, seq+9, ack, "")
	if len(s.unanswered) != 1 || s.tooLong {
		t.Fatalf("kept %d segments after an answer (tooLong %v)", len(s.unanswered), s.tooLong)
	}
}

// Under pipelining a target that closes after some answers (a keep-alive
// request limit) leaves the requests it has not begun to answer: those go
// again on a new connection, the answered ones do not.
func TestPipelinedRequestsAfterTargetCloseResent(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.client(1001, 7001, psh, "a")
	h.client(1002, 7011, psh, "b") // each online answer is 10 bytes
	h.client(1003, 7021, psh, "c")
	h.out.take()
	h.target(5001, 1004, ack, "")                           // all three read
	h.target(5001, 1004, psh|capture.FlagFIN, "0123456789") // a answered, then closed
	h.client(1004, 7031, ack, "")                           // the client saw all three answers online
	isn := h.newSYN()
	h.target(9000, uint32(isn)+1, synack, "")
	h.expect(
		capture.Segment{Seq: isn.Add(1), Ack: 9001, Flags: psh, Payload: []byte("b")},
		capture.Segment{Seq: isn.Add(2), Ack: 9001, Flags: psh, Payload: []byte("c")},
	)
	if st := h.tab.Stats(); st.Unanswered != 2 || st.Resumed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// On a resumed connection a requeued request goes first and alone: the
// next one waits for its answer, as a server closing after each answer
// would drop a second request sent along.
func TestResumedRequeuedRequestGoesAlone(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Second})
	h.handshake()
	h.client(1001, 7001, psh, "a")
	h.target(5001, 1002, psh, "0123")
	h.client(1002, 7005, psh, "b") // the answer was complete: b goes
	h.target(5005, 1002, fin, "")  // the target closes; b is unacknowledged
	h.client(1003, 7009, psh, "c") // c finds the target closed
	isn := h.newSYN()
	h.target(9000, uint32(isn)+1, synack, "")
	h.expect(capture.Segment{Seq: isn.Add(1), Ack: 9001, Flags: psh, Payload: []byte("b")})
	h.target(9001, uint32(isn)+2, psh, "4567")
	h.expect(capture.Segment{Seq: isn.Add(2), Ack: 9005, Flags: psh, Payload: []byte("c")})
}

// A client that resets with the online answer unread (its RST's ACK covers
// the answer) does not destroy the target's copy of the request: the RST
// waits until the target has begun to answer.
func TestResetWaitsForAnswer(t *testing.T) {
	h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
	h.handshake()
	h.client(1001, 7001, psh, "a")
	h.target(5001, 1002, ack, "") // read, not answered yet
	h.out.take()
	h.client(1002, 7011, rst, "") // the client saw 10 answer bytes online
	h.wait(10 * time.Millisecond)
	h.expect()
	h.target(5001, 1002, psh, "0123456789")
	h.expect(capture.Segment{Seq: 1002, Ack: 5011, Flags: rst})
}

// A session first seen mid-stream knows what the client had seen of the
// online answers from its first packet, so it can tell later whether the
// online server answered a request the target closed on.
func TestMidStreamUnansweredRequest(t *testing.T) {
	const a0 = 0x90000000 // the client's ACK: far from zero in sequence space
	for _, answered := range []bool{true, false} {
		h := newHarness(t, Config{ResponseQuiet: time.Millisecond})
		h.client(3000, a0, psh, "req1") // the copier started mid-connection
		out := h.out.take()
		if len(out) != 1 || out[0].Flags() != syn {
			t.Fatalf("want a forged SYN, got %v", out)
		}
		h.target(5000, 3000, synack, "")
		h.target(5001, 3004, psh, "resp")
		h.client(3004, a0+4, psh, "req2")
		h.out.take()
		h.target(5005, 3008, ack, "") // req2 read, then the target closes
		h.target(5005, 3008, fin, "")
		if answered {
			h.client(3008, a0+8, ack, "") // online answered req2
		} else {
			h.client(3008, a0+4, fin, "") // the client closes, no answer seen
		}
		out = h.out.take()
		resent := len(out) > 0 && out[len(out)-1].Flags() == syn
		if resent != answered {
			t.Errorf("online answered %v: resent %v (%v)", answered, resent, out)
		}
	}
}
