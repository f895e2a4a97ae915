package emit_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

type labNet struct {
	network string
	a, b    netip.Addr
}

var labNets = []labNet{
	{"ip4", netip.MustParseAddr(netlab.PairA4), netip.MustParseAddr(netlab.PairB4)},
	{"ip6", netip.MustParseAddr(netlab.PairA6), netip.MustParseAddr(netlab.PairB6)},
}

func openEmitter(t testing.TB, ns *netlab.NS, cfg *emit.RawIPConfig) *emit.RawIP {
	t.Helper()
	return netlab.Open(t, ns, func() (*emit.RawIP, error) { return emit.NewRawIP(cfg) })
}

func openCapture(t *testing.T, ns *netlab.NS, network string) *capture.RawIP {
	t.Helper()
	return netlab.Open(t, ns, func() (*capture.RawIP, error) { return capture.NewRawIP(&capture.RawIPConfig{Network: network}) })
}

// segment builds the i-th test datagram from A to B with plen payload bytes.
func segment(t testing.TB, n labNet, i, plen int, dport uint16) []byte {
	t.Helper()
	payload := make([]byte, plen)
	for k := range payload {
		payload[k] = byte(3*i + k)
	}
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src:     netip.AddrPortFrom(n.a, 30000+uint16(i)),
		Dst:     netip.AddrPortFrom(n.b, dport),
		Seq:     capture.Seq(0xfffff000).Add(uint32(977 * i)), // wraps
		Ack:     1,
		Flags:   capture.FlagACK | capture.FlagPSH,
		Window:  1024,
		Options: capture.AppendTimestamps(nil, uint32(i), 1),
		Payload: payload,
		ID:      uint16(i + 1),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameSegment(t *testing.T, i int, got *capture.Packet, want []byte) {
	t.Helper()
	var w capture.Packet
	if err := w.Decode(want); err != nil {
		t.Fatal(err)
	}
	if got.Src() != w.Src() || got.Dst() != w.Dst() ||
		!bytes.Equal(got.Data[got.IPHeaderLen():], w.Data[w.IPHeaderLen():]) {
		t.Fatalf("packet %d:\n got %x\nwant %x", i, got.Data, want)
	}
}

// TestRawIPEndToEnd emits segments from namespace A and captures them in B:
// every one arrives, in order, with the same addresses, TCP header and
// payload (in fact the same bytes: veth does not route, so not even the
// TTL changes).
func TestRawIPEndToEnd(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			e := openEmitter(t, lab.A, &emit.RawIPConfig{Batch: 16})
			want, got := emitAll(t, e, openCapture(t, lab.B, n.network), n)
			for i, p := range got {
				sameSegment(t, i, &p, want[i])
				if !bytes.Equal(p.Data, want[i]) {
					t.Errorf("packet %d differs outside TCP:\n got %x\nwant %x", i, p.Data, want[i])
				}
			}
		})
	}
}

// emitAll sends 200 test segments of n through e in batches of 24, which
// straddle an emitter batch of 16, checks e's counters and returns the
// segments and what c captured.
func emitAll(t *testing.T, e interface {
	emit.Emitter
	Stats() emit.Stats
}, c capture.Capturer, n labNet) (want [][]byte, got []capture.Packet) {
	t.Helper()
	const count, per = 200, 24
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
	got = netlab.Collect(t, c, count, nil)
	if s := e.Stats(); s.Sent != count || s.Bytes != wantBytes || s.Dropped() != 0 {
		t.Fatalf("stats %+v, want %d sent, %d bytes, no drops", s, count, wantBytes)
	}
	return want, got
}

// TestRawIPMixedFamilies sends IPv4 and IPv6 interleaved in one Emit.
func TestRawIPMixedFamilies(t *testing.T) {
	lab := netlab.NewPair(t)
	e := openEmitter(t, lab.A, nil)
	c4 := openCapture(t, lab.B, "ip4")
	c6 := openCapture(t, lab.B, "ip6")
	var batch, want4, want6 [][]byte
	for i := range 20 {
		n := labNets[(i/3)%2] // runs of three
		b := segment(t, n, i, i, 9000)
		batch = append(batch, b)
		if n.network == "ip4" {
			want4 = append(want4, b)
		} else {
			want6 = append(want6, b)
		}
	}
	if err := e.Emit(batch); err != nil {
		t.Fatal(err)
	}
	for i, p := range netlab.Collect(t, c4, len(want4), nil) {
		sameSegment(t, i, &p, want4[i])
	}
	for i, p := range netlab.Collect(t, c6, len(want6), nil) {
		sameSegment(t, i, &p, want6[i])
	}
	if s := e.Stats(); s.Sent != 20 || s.Dropped() != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRawIPMsgSize: a datagram over the MTU (1500 on veth) is counted as
// MsgSize, and the datagrams after it in the batch still go out.
func TestRawIPMsgSize(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			e := openEmitter(t, lab.A, nil)
			c := openCapture(t, lab.B, n.network)
			small1, big, small2 := segment(t, n, 1, 10, 9000), segment(t, n, 2, 2000, 9000), segment(t, n, 3, 10, 9000)
			if n.network == "ip4" && big[6]&0x40 == 0 {
				t.Fatal("test segment lacks DF")
			}
			if err := e.Emit([][]byte{small1, big, small2}); err != nil {
				t.Fatalf("Emit = %v; per-packet errors must not be returned", err)
			}
			got := netlab.Collect(t, c, 2, nil)
			sameSegment(t, 0, &got[0], small1)
			sameSegment(t, 1, &got[1], small2)
			if s := e.Stats(); s.MsgSize != 1 || s.Sent != 2 || s.Dropped() != 1 {
				t.Fatalf("stats %+v, want 1 MsgSize and 2 sent", s)
			}
		})
	}
}

// TestRawIPPerm: a datagram an OUTPUT rule drops is counted as Perm.
func TestRawIPPerm(t *testing.T) {
	lab := netlab.NewPair(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: nft (nftables) is not installed")
	}
	rules := "table inet tcnraw {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 7777 drop\n }\n}\n"
	cmd := lab.A.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("skipping: nft cannot load a rule here: %v: %s", err, out)
	}
	e := openEmitter(t, lab.A, nil)
	var batch [][]byte
	for _, n := range labNets {
		batch = append(batch, segment(t, n, 1, 10, 7777), segment(t, n, 2, 10, 9000))
	}
	if err := e.Emit(batch); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Perm != 2 || s.Sent != 2 {
		t.Fatalf("stats %+v, want 2 Perm and 2 sent", s)
	}
}

// TestRawIPInvalid counts datagrams that are not IPv4 or IPv6.
func TestRawIPInvalid(t *testing.T) {
	lab := netlab.NewPair(t)
	e := openEmitter(t, lab.A, nil)
	bad := [][]byte{nil, {0x45, 0}, {0x4f, 0, 0, 0}, {0x60, 0, 0}, {0x70, 1, 2, 3}}
	if err := e.Emit(bad); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Invalid != uint64(len(bad)) || s.Sent != 0 {
		t.Fatalf("stats %+v, want %d invalid", s, len(bad))
	}
}

func TestRawIPClose(t *testing.T) {
	lab := netlab.NewPair(t)
	e := openEmitter(t, lab.A, nil)
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

// TestRawIPAllocs holds Emit to zero allocations.
func TestRawIPAllocs(t *testing.T) {
	lab := netlab.NewPair(t)
	checkEmitAllocs(t, openEmitter(t, lab.A, nil))
}

// statsEmitter is an Emitter that counts what it sent.
type statsEmitter interface {
	emit.Emitter
	Stats() emit.Stats
}

// checkEmitAllocs sends a batch of 16 segments once (which may resolve
// neighbours), then holds Emit to zero allocations and checks every
// datagram was sent.
func checkEmitAllocs(t *testing.T, e statsEmitter) {
	t.Helper()
	var batch [][]byte
	for i := range 16 {
		batch = append(batch, segment(t, labNets[i%2], i, 100, 9000))
	}
	if err := e.Emit(batch); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := e.Emit(batch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Emit allocates %.1f times per call", allocs)
	}
	if s := e.Stats(); s.Sent != 102*16 {
		t.Fatalf("stats %+v, want %d sent", s, 102*16)
	}
}

// BenchmarkRawIPEmit sends batches of 64 small segments from A to B (whose
// stack answers each with a RST).
func BenchmarkRawIPEmit(b *testing.B) {
	lab := netlab.NewPair(b)
	e := openEmitter(b, lab.A, nil)
	var batch [][]byte
	for i := range 64 {
		batch = append(batch, segment(b, labNets[0], i, 100, 9000))
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
