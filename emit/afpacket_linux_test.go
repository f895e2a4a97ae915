package emit_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"golang.org/x/sys/unix"
)

// afModes are the two ways AFPacket sends: sendmmsg, and a TX ring (the
// default).
var afModes = []struct {
	name string
	ring int // AFPacketConfig.TXRing
}{{"sendmmsg", -1}, {"txring", 0}}

func openAFEmitter(t testing.TB, ns *netlab.NS, cfg *emit.AFPacketConfig) *emit.AFPacket {
	t.Helper()
	return netlab.Open(t, ns, func() (*emit.AFPacket, error) { return emit.NewAFPacket(cfg) })
}

func openAFCapture(t testing.TB, ns *netlab.NS, cfg *capture.AFPacketConfig) *capture.AFPacket {
	t.Helper()
	return netlab.Open(t, ns, func() (*capture.AFPacket, error) { return capture.NewAFPacket(cfg) })
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
	for _, kind := range []string{"rawip", "afpacket", "afpacket-txring"} {
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
				case "afpacket", "afpacket-txring":
					l.A.IP("neigh", "flush", "dev", l.AIf)
					cfg := &emit.AFPacketConfig{Interface: l.AIf}
					if kind == "afpacket" {
						cfg.TXRing = -1
					}
					e = openAFEmitter(t, l.A, cfg)
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
// stack (a raw IP socket sees only frames sent to B's own MAC), in both
// modes.
func TestAFPacketEmitEndToEnd(t *testing.T) {
	for _, m := range afModes {
		for _, n := range labNets {
			t.Run(m.name+"/"+n.network, func(t *testing.T) {
				l := netlab.NewPair(t)
				e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, Batch: 16, TXRing: m.ring})
				want, got := emitAll(t, e, openCapture(t, l.B, n.network), n)
				for i, p := range got {
					if !bytes.Equal(p.Data, want[i]) {
						t.Fatalf("packet %d:\n got %x\nwant %x", i, p.Data, want[i])
					}
				}
			})
		}
	}
}

// TestAFPacketGateway: for a destination behind a gateway the frame goes
// to the gateway's MAC, resolved from the route.
func TestAFPacketGateway(t *testing.T) {
	for _, m := range afModes {
		t.Run(m.name, func(t *testing.T) {
			l := netlab.NewPair(t)
			l.A.IP("route", "add", "198.18.9.0/24", "via", netlab.PairB4)
			l.A.IP("-6", "route", "add", "fd00:198:18:9::/64", "via", netlab.PairB6)
			l.A.IP("neigh", "flush", "dev", l.AIf)
			e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, NeighbourTTL: 200 * time.Millisecond, TXRing: m.ring})
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
		})
	}
}

// TestAFPacketBypassesNetfilter: an OUTPUT rule that drops a port stops
// the raw IP emitter (Perm) but not the link-layer one.
func TestAFPacketBypassesNetfilter(t *testing.T) {
	for _, m := range afModes {
		t.Run(m.name, func(t *testing.T) {
			l := netlab.NewPair(t)
			l.Lab.Require("nft")
			rules := "table inet tcnaf {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 7777 drop\n }\n}\n"
			cmd := l.A.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Skipf("skipping: nft cannot load a rule here: %v: %s", err, out)
			}
			raw := openEmitter(t, l.A, nil)
			af := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, TXRing: m.ring})
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
		})
	}
}

// TestAFPacketEmitDrops: oversize and invalid datagrams are counted and
// the rest of the batch goes out.
func TestAFPacketEmitDrops(t *testing.T) {
	for _, m := range afModes {
		t.Run(m.name, func(t *testing.T) {
			l := netlab.NewPair(t)
			e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC, TXRing: m.ring})
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
		})
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
		{Interface: l.AIf, TXRing: 1 << 17},
		{Interface: l.AIf, TXRing: 16, TXFrameSize: 64},
		{Interface: l.AIf, TXRing: 16, TXFrameSize: 1000},
		{Interface: l.AIf, TXRing: 16, TXFrameSize: 2 << 20},
		{Interface: "lo"},             // not Ethernet
		{Interface: "lo", TXRing: 16}, // not Ethernet
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
	for _, m := range afModes {
		e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, QdiscBypass: true, TXRing: m.ring})
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Emit([][]byte{segment(t, labNets[0], 1, 1, 9000)}); !errors.Is(err, emit.ErrClosed) {
			t.Fatalf("%s: Emit after Close = %v", m.name, err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("%s: second Close = %v", m.name, err)
		}
	}
}

// TestAFPacketEmitAllocs holds Emit to zero allocations in both modes,
// neighbours resolved from the cache.
func TestAFPacketEmitAllocs(t *testing.T) {
	for _, m := range afModes {
		t.Run(m.name, func(t *testing.T) {
			l := netlab.NewPair(t)
			checkEmitAllocs(t, openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, TXRing: m.ring}))
		})
	}
}

// TestAFPacketTXRingReuse sends many times around a small ring: each frame
// is filled again only once the kernel has given it back, so every packet
// arrives as it was given. 16 frames of 2 KiB fill eight 4 KiB blocks, so
// the ring has exactly 16 frames (txGeometry; 32 with 64 KiB pages);
// batches of 12, collected one by one, make the emitter wrap in the middle
// of a batch.
func TestAFPacketTXRingReuse(t *testing.T) {
	for _, qb := range []bool{false, true} {
		t.Run(fmt.Sprintf("qdiscbypass=%v", qb), func(t *testing.T) {
			l := netlab.NewPair(t)
			e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC, TXRing: 16, TXFrameSize: 2048, QdiscBypass: qb})
			c := openCapture(t, l.B, "ip4")
			const count, per = 200, 12
			for i := 0; i < count; i += per {
				var want [][]byte
				for j := i; j < min(i+per, count); j++ {
					want = append(want, segment(t, labNets[0], j, (j*97)%1400, 9000))
				}
				if err := e.Emit(want); err != nil {
					t.Fatal(err)
				}
				for j, p := range netlab.Collect(t, c, len(want), nil) {
					if !bytes.Equal(p.Data, want[j]) {
						t.Fatalf("packet %d:\n got %x\nwant %x", i+j, p.Data, want[j])
					}
				}
			}
			if s := e.Stats(); s.Sent != count || s.Dropped() != 0 {
				t.Fatalf("stats %+v, want %d sent", s, count)
			}
		})
	}
}

// TestAFPacketTXRingFallback: datagrams too large for a ring frame go with
// sendmmsg, in order with those around them; one over the MTU is still
// MsgSize.
func TestAFPacketTXRingFallback(t *testing.T) {
	l := netlab.NewPair(t)
	// 256-byte frames carry datagrams of up to 200 bytes.
	e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC, TXRing: 32, TXFrameSize: 256, Batch: 4})
	c := openCapture(t, l.B, "ip4")
	var batch, want [][]byte
	for i := range 40 {
		plen := 10 // 62-byte datagrams: the ring
		switch i % 5 {
		case 1:
			plen = 900 // sendmmsg
		case 2:
			plen = 201 - 52 // 201 bytes: sendmmsg
		case 4:
			plen = 200 - 52 // 200 bytes: just fits
		}
		b := segment(t, labNets[0], i, plen, 9000)
		batch, want = append(batch, b), append(want, b)
		if i == 17 {
			batch = append(batch, segment(t, labNets[0], 99, 2000, 9000)) // over the MTU
		}
	}
	if len(want[4]) != 200 {
		t.Fatalf("test datagram of %d bytes, want 200", len(want[4]))
	}
	if err := e.Emit(batch); err != nil {
		t.Fatal(err)
	}
	for i, p := range netlab.Collect(t, c, len(want), nil) {
		if !bytes.Equal(p.Data, want[i]) {
			t.Fatalf("packet %d:\n got %x\nwant %x", i, p.Data, want[i])
		}
	}
	if s := e.Stats(); s.Sent != uint64(len(want)) || s.MsgSize != 1 || s.Dropped() != 1 {
		t.Fatalf("stats %+v, want %d sent and 1 MsgSize", s, len(want))
	}
}

// TestAFPacketTXRingFull: while a slow qdisc holds the frames the kernel
// took, the ring has no free frame and datagrams are dropped as NoBuffers;
// every datagram is counted once, and those counted as sent arrive. Once
// the qdisc lets go, the ring is usable again.
func TestAFPacketTXRingFull(t *testing.T) {
	l := netlab.NewPair(t)
	l.Lab.Require("tc")
	// About one 100-byte packet every 8 ms after a burst of two.
	if out, err := l.A.RunErr("tc", "qdisc", "add", "dev", l.AIf, "root", "tbf", "rate", "100kbit", "burst", "300", "limit", "100000"); err != nil {
		t.Skipf("skipping: no tbf qdisc: %v: %s", err, out)
	}
	e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC, TXRing: 16, TXFrameSize: 2048})
	c := openCapture(t, l.B, "ip4")
	var batch [][]byte
	for i := range 40 {
		batch = append(batch, segment(t, labNets[0], i, 10, 9000))
	}
	if err := e.Emit(batch); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	t.Logf("stats %+v", s)
	if s.Sent+s.Dropped() != 40 || s.Sent < 16 || s.NoBuffers == 0 || s.NoBuffers != s.Dropped() {
		t.Fatalf("stats %+v, want 40 counted, at least 16 sent, the rest NoBuffers", s)
	}
	// What arrives is what was sent, in order, with gaps where datagrams
	// were dropped; the first 16 filled the ring.
	j := 0
	for k, p := range netlab.Collect(t, c, int(s.Sent), nil) {
		for j < len(batch) && !bytes.Equal(p.Data, batch[j]) {
			if j < 16 {
				t.Fatalf("packet %d is not the ring's %d", k, j)
			}
			j++
		}
		if j == len(batch) {
			t.Fatalf("packet %d was not given or out of order: %x", k, p.Data)
		}
		j++
	}
	// The qdisc has let go of everything: the ring is free again.
	l.A.Run("tc", "qdisc", "del", "dev", l.AIf, "root")
	before := e.Stats()
	if err := e.Emit(batch[:8]); err != nil {
		t.Fatal(err)
	}
	netlab.Collect(t, c, 8, nil)
	if s := e.Stats(); s.Sent-before.Sent != 8 || s.Dropped() != before.Dropped() {
		t.Fatalf("stats %+v after %+v, want 8 more sent", s, before)
	}
}

// TestAFPacketTXRingDown: on an interface that is down the kernel takes no
// frame; they wait in the ring, and either go with an Emit once the link is
// up again or are counted by Close.
func TestAFPacketTXRingDown(t *testing.T) {
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprintf("up=%v", up), func(t *testing.T) {
			l := netlab.NewPair(t)
			e := openAFEmitter(t, l.A, &emit.AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC, TXRing: 16, TXFrameSize: 2048})
			c := openCapture(t, l.B, "ip4")
			var batch [][]byte
			for i := range 20 {
				batch = append(batch, segment(t, labNets[0], i, 10, 9000))
			}
			l.A.IP("link", "set", "dev", l.AIf, "down")
			if err := e.Emit(batch); err != nil {
				t.Fatal(err)
			}
			if s := e.Stats(); s.Sent != 0 || s.NoBuffers != 4 || s.Dropped() != 4 {
				t.Fatalf("stats %+v, want 4 NoBuffers and 16 waiting", s)
			}
			if !up {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				if s := e.Stats(); s.Sent != 0 || s.Other != 16 || s.Dropped() != 20 {
					t.Fatalf("stats %+v after Close, want 16 more dropped (Other: ENETDOWN)", s)
				}
				return
			}
			l.A.IP("link", "set", "dev", l.AIf, "up")
			waitOperUp(t, l.A, l.AIf)
			if err := e.Emit(nil); err != nil {
				t.Fatal(err)
			}
			for i, p := range netlab.Collect(t, c, 16, nil) {
				if !bytes.Equal(p.Data, batch[i]) {
					t.Fatalf("packet %d:\n got %x\nwant %x", i, p.Data, batch[i])
				}
			}
			if s := e.Stats(); s.Sent != 16 || s.Dropped() != 4 {
				t.Fatalf("stats %+v, want 16 sent", s)
			}
		})
	}
}

// waitOperUp waits up to 10 s until the kernel reports ifname in ns as up
// (the link watch has run: before that a veth drops what it is given).
func waitOperUp(t *testing.T, ns *netlab.NS, ifname string) {
	t.Helper()
	for range 200 {
		if strings.Contains(ns.IP("-o", "link", "show", "dev", ifname), "state UP") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", ifname)
}

// BenchmarkAFPacketEmit sends batches of 64 small segments from A, in both
// modes: to B, whose stack answers each with a RST ("stack"), or to a MAC
// address nobody has, so that B drops each frame as soon as its IP layer
// sees it ("sink"), also without the qdisc. Besides packets per second it
// reports the process's CPU time per packet (getrusage). On a veth the
// receiver's work runs in the sender's system call, so "sink" is closer to
// the cost of sending alone.
func BenchmarkAFPacketEmit(b *testing.B) {
	sink := net.HardwareAddr{0x02, 0, 0x5e, 0x10, 0, 1} // locally administered
	for _, m := range afModes {
		for _, d := range []struct {
			name   string
			sink   bool
			bypass bool
		}{{"stack", false, false}, {"sink", true, false}, {"sink-qdiscbypass", true, true}} {
			b.Run(m.name+"/"+d.name, func(b *testing.B) {
				l := netlab.NewPair(b)
				cfg := &emit.AFPacketConfig{Interface: l.AIf, TXRing: m.ring, QdiscBypass: d.bypass}
				if d.sink {
					cfg.DstMAC = sink
				}
				e := openAFEmitter(b, l.A, cfg)
				var batch [][]byte
				for i := range 64 {
					batch = append(batch, segment(b, labNets[0], i, 100, 9000))
				}
				if err := e.Emit(batch); err != nil {
					b.Fatal(err)
				}
				var ru0, ru1 unix.Rusage
				if err := unix.Getrusage(unix.RUSAGE_SELF, &ru0); err != nil {
					b.Fatal(err)
				}
				before := e.Stats()
				b.ReportAllocs()
				b.SetBytes(int64(64 * len(batch[0])))
				for b.Loop() {
					if err := e.Emit(batch); err != nil {
						b.Fatal(err)
					}
				}
				if err := unix.Getrusage(unix.RUSAGE_SELF, &ru1); err != nil {
					b.Fatal(err)
				}
				s := e.Stats()
				sent := s.Sent - before.Sent
				cpu := ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano()
				b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "pkts/s")
				b.ReportMetric(float64(cpu)/float64(max(sent, 1)), "cpu-ns/pkt")
				b.ReportMetric(float64(s.Dropped()), "drops")
			})
		}
	}
}
