package emit_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

func openAFEmitter(t testing.TB, ns *netlab.NS, cfg *emit.AFPacketConfig) *emit.AFPacket {
	t.Helper()
	var e *emit.AFPacket
	if err := ns.Do(func() (err error) {
		e, err = emit.NewAFPacket(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func openAFCapture(t testing.TB, ns *netlab.NS, cfg *capture.AFPacketConfig) *capture.AFPacket {
	t.Helper()
	var c *capture.AFPacket
	if err := ns.Do(func() (err error) {
		c, err = capture.NewAFPacket(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// watch reads c on a goroutine until a packet matches, then closes found
// (with a copy of the packet); the reader ends when c is closed.
type watcher struct {
	found chan struct{}
	once  sync.Once
	pkt   capture.Packet
}

func watch(c capture.Capturer, match func(*capture.Packet) bool) *watcher {
	w := &watcher{found: make(chan struct{})}
	go func() {
		pkts := make([]capture.Packet, 16)
		for {
			n, err := c.ReadPackets(pkts)
			if err != nil {
				return
			}
			for i := range pkts[:n] {
				if match(&pkts[i]) {
					w.once.Do(func() {
						w.pkt.Decode(bytes.Clone(pkts[i].Data))
						close(w.found)
					})
				}
			}
		}
	}()
	return w
}

// emitUntil emits pkts every 20 ms until w finds its packet, for up to
// 10 s.
func emitUntil(t *testing.T, e emit.Emitter, pkts [][]byte, w *watcher) *capture.Packet {
	t.Helper()
	for range 500 {
		if err := e.Emit(pkts); err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.found:
			return &w.pkt
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("the awaited packet never came")
	return nil
}

// forged client networks, routed by B to A (the assistant's role: A sees
// the answers and its stack drops them).
var forged = map[string]netip.AddrPort{
	"ip4": netip.MustParseAddrPort("198.18.5.77:41000"),
	"ip6": netip.MustParseAddrPort("[fd00:198:18:5::77]:41000"),
}

// TestForgedSYN sends a SYN from a lab address that is not A's own with
// each emitter: it reaches a listener in B, whose SYN-ACK (routed back to
// A) is seen by an AF_PACKET capturer in A. The AF_PACKET emitter starts
// with an empty neighbour table and resolves B itself.
func TestForgedSYN(t *testing.T) {
	for _, kind := range []string{"rawip", "afpacket"} {
		for _, n := range labNets {
			t.Run(kind+"/"+n.network, func(t *testing.T) {
				l := netlab.NewPair(t)
				l.B.IP("route", "add", "198.18.5.0/24", "via", netlab.PairA4)
				l.B.IP("-6", "route", "add", "fd00:198:18:5::/64", "via", netlab.PairA6)
				srv := netip.AddrPortFrom(n.b, 8080)
				l.B.Listen("tcp", srv.String())
				var e emit.Emitter
				switch kind {
				case "rawip":
					e = openEmitter(t, l.A, nil)
				case "afpacket":
					l.A.IP("neigh", "flush", "dev", l.AIf)
					e = openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf})
				}
				cli := forged[n.network]
				syn, err := capture.AppendSegment(nil, &capture.Segment{Src: cli, Dst: srv, Seq: 0x12345678,
					Flags: capture.FlagSYN, Window: 64240, Options: capture.AppendMSS(nil, 1460)})
				if err != nil {
					t.Fatal(err)
				}
				c := openAFCapture(t, l.A, &capture.AFPacketConfig{Interfaces: []string{l.AIf}, Direction: capture.DirIn,
					Filter: &capture.Filter{SrcPorts: []uint16{8080}}})
				w := watch(c, func(p *capture.Packet) bool { return p.HasFlags(capture.FlagSYN | capture.FlagACK) })
				sa := emitUntil(t, e, [][]byte{syn}, w)
				if sa.Src() != srv.Addr() || sa.SrcPort() != srv.Port() || sa.DstEndpoint() != capture.EndpointFrom(cli) || sa.Ack() != 0x12345679 {
					t.Fatalf("SYN-ACK %v ack %v, want %v -> %v ack 0x12345679", sa.Flow(), sa.Ack(), srv, cli)
				}
				switch e := e.(type) {
				case *emit.RawIP:
					if s := e.Stats(); s.Sent == 0 || s.Dropped() != 0 {
						t.Fatalf("stats %+v", s)
					}
				case *emit.AFPacket:
					s := e.Stats()
					if s.Sent == 0 || s.Dropped() != s.NoNeighbour {
						t.Fatalf("stats %+v", s)
					}
					t.Logf("stats %+v", s)
				}
			})
		}
	}
}

// TestAFPacketEmitEndToEnd emits segments from A and captures them in B's
// stack (a raw IP socket sees only frames sent to B's own MAC).
func TestAFPacketEmitEndToEnd(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			l := netlab.NewPair(t)
			e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, Batch: 16})
			c := openCapture(t, l.B, n.network)
			const count, per = 200, 24
			var want [][]byte
			var wantBytes uint64
			for i := range count {
				b := segment(t, n, i, (i*211)%1400, 9000)
				want = append(want, b)
				wantBytes += uint64(len(b))
			}
			for i := 0; i < count; i += per {
				if err := e.Emit(want[i:min(i+per, count)]); err != nil {
					t.Fatal(err)
				}
			}
			for i, p := range netlab.Collect(t, c, count, nil) {
				if !bytes.Equal(p.Data, want[i]) {
					t.Fatalf("packet %d:\n got %x\nwant %x", i, p.Data, want[i])
				}
			}
			if s := e.Stats(); s.Sent != count || s.Bytes != wantBytes || s.Dropped() != 0 {
				t.Fatalf("stats %+v, want %d sent, %d bytes, no drops", s, count, wantBytes)
			}
		})
	}
}

// TestAFPacketGateway: for a destination behind a gateway the frame goes
// to the gateway's MAC, resolved from the route.
func TestAFPacketGateway(t *testing.T) {
	l := netlab.NewPair(t)
	l.A.IP("route", "add", "198.18.9.0/24", "via", netlab.PairB4)
	l.A.IP("-6", "route", "add", "fd00:198:18:9::/64", "via", netlab.PairB6)
	l.A.IP("neigh", "flush", "dev", l.AIf)
	e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, NeighbourTTL: 200 * time.Millisecond})
	for _, dst := range []string{"198.18.9.9:80", "[fd00:198:18:9::9]:80"} {
		d := netip.MustParseAddrPort(dst)
		src := netip.AddrPortFrom(labNets[0].a, 1234)
		if d.Addr().Is6() {
			src = netip.AddrPortFrom(labNets[1].a, 1234)
		}
		b, err := capture.AppendSegment(nil, &capture.Segment{Src: src, Dst: d, Flags: capture.FlagACK, Seq: 1})
		if err != nil {
			t.Fatal(err)
		}
		c := openAFCapture(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn,
			Filter: &capture.Filter{DstNets: []netip.Prefix{netip.PrefixFrom(d.Addr(), d.Addr().BitLen())}}})
		w := watch(c, func(p *capture.Packet) bool { return bytes.Equal(p.Data, b) })
		emitUntil(t, e, [][]byte{b}, w)
	}
	// B is now in A's neighbour table: new destinations on the link go
	// out at once.
	before := e.Stats()
	if err := e.Emit([][]byte{segment(t, labNets[0], 1, 10, 9000), segment(t, labNets[1], 2, 10, 9000)}); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Sent-before.Sent != 2 || s.NoNeighbour != before.NoNeighbour {
		t.Fatalf("stats %+v after %+v, want 2 more sent", s, before)
	}
}

// TestAFPacketBypassesNetfilter: an OUTPUT rule that drops a port stops
// the raw IP emitter (Perm) but not the link-layer one.
func TestAFPacketBypassesNetfilter(t *testing.T) {
	l := netlab.NewPair(t)
	l.Lab.Require("nft")
	rules := "table inet tcnaf {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 7777 drop\n }\n}\n"
	cmd := l.A.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("skipping: nft cannot load a rule here: %v: %s", err, out)
	}
	raw := openEmitter(t, l.A, nil)
	af := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf})
	c := openCapture(t, l.B, "ip4")
	b := segment(t, labNets[0], 1, 10, 7777)
	if err := raw.Emit([][]byte{b}); err != nil {
		t.Fatal(err)
	}
	if err := af.Emit([][]byte{b}); err != nil {
		t.Fatal(err)
	}
	got := netlab.Collect(t, c, 1, nil)
	if !bytes.Equal(got[0].Data, b) {
		t.Fatalf("B received %x", got[0].Data)
	}
	if s := raw.Stats(); s.Perm != 1 {
		t.Fatalf("raw IP stats %+v, want 1 Perm", s)
	}
	if s := af.Stats(); s.Sent != 1 {
		t.Fatalf("AF_PACKET stats %+v, want 1 sent", s)
	}
}

// TestAFPacketEmitDrops: oversize and invalid datagrams are counted and
// the rest of the batch goes out.
func TestAFPacketEmitDrops(t *testing.T) {
	l := netlab.NewPair(t)
	e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC})
	c := openCapture(t, l.B, "ip4")
	small1, big, small2 := segment(t, labNets[0], 1, 10, 9000), segment(t, labNets[0], 2, 2000, 9000), segment(t, labNets[0], 3, 10, 9000)
	if err := e.Emit([][]byte{small1, big, {0x45}, nil, small2}); err != nil {
		t.Fatal(err)
	}
	got := netlab.Collect(t, c, 2, nil)
	if !bytes.Equal(got[0].Data, small1) || !bytes.Equal(got[1].Data, small2) {
		t.Fatal("the small datagrams did not arrive")
	}
	if s := e.Stats(); s.Sent != 2 || s.MsgSize != 1 || s.Invalid != 2 {
		t.Fatalf("stats %+v, want 2 sent, 1 MsgSize, 2 Invalid", s)
	}
}

func TestAFPacketEmitConfig(t *testing.T) {
	l := netlab.NewPair(t)
	for _, cfg := range []*emit.AFPacketConfig{
		nil,
		{},
		{Interface: "nosuchif0"},
		{Interface: l.AIf, Batch: -1},
		{Interface: l.AIf, Batch: 5000},
		{Interface: l.AIf, SendBuffer: -1},
		{Interface: l.AIf, NeighbourTTL: -1},
		{Interface: l.AIf, DstMAC: []byte{1, 2, 3}},
		{Interface: "lo"}, // not Ethernet
	} {
		err := l.A.Do(func() error {
			e, err := emit.NewAFPacket(cfg)
			if err == nil {
				e.Close()
				return fmt.Errorf("NewAFPacket(%+v) succeeded", cfg)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, QdiscBypass: true})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Emit([][]byte{segment(t, labNets[0], 1, 1, 9000)}); !errors.Is(err, emit.ErrClosed) {
		t.Fatalf("Emit after Close = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestAFPacketEmitAllocs holds Emit to zero allocations, neighbours
// resolved from the cache.
func TestAFPacketEmitAllocs(t *testing.T) {
	l := netlab.NewPair(t)
	checkEmitAllocs(t, openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf}))
}

// BenchmarkAFPacketEmit sends batches of 64 small segments from A to B.
func BenchmarkAFPacketEmit(b *testing.B) {
	l := netlab.NewPair(b)
	e := openAFEmitter(b, l.A, &emit.AFPacketConfig{Interface: l.AIf})
	var batch [][]byte
	for i := range 64 {
		batch = append(batch, segment(b, labNets[0], i, 100, 9000))
	}
	if err := e.Emit(batch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(64 * len(batch[0])))
	for b.Loop() {
		if err := e.Emit(batch); err != nil {
			b.Fatal(err)
		}
	}
	s := e.Stats()
	b.ReportMetric(float64(s.Sent)/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(s.Dropped()), "drops")
}
