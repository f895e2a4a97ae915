package replay

import (
	"io"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

func TestSampleBounded(t *testing.T) {
	s := newSample()
	const n = 200000
	for i := range n {
		s.add(time.Duration(i)) // 0 .. n-1 ns, in order
	}
	if len(s.vals) != sampleSize || s.seen != n || s.max != n-1 {
		t.Fatalf("sample of %d values, seen %d, max %v", len(s.vals), s.seen, s.max)
	}
	sorted := slices.Clone(s.vals)
	slices.Sort(sorted)
	// A uniform sample of 0..n-1: its quantiles are near q*n (the
	// standard error of a median of 8192 draws is about 0.6% of n).
	for _, q := range []float64{0.5, 0.99} {
		got := float64(quantile(sorted, q))
		if math.Abs(got-q*n) > 0.03*n {
			t.Errorf("quantile %v of the sample = %v, want about %v", q, got, q*n)
		}
	}
}

func TestQuantileNearestRank(t *testing.T) {
	v := []time.Duration{1, 2, 3, 4}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.25, 1}, {0.26, 2}, {0.5, 2}, {0.51, 3}, {0.99, 4}, {1, 4}} {
		if got := quantile(v, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing")
	}
}

// loop is a source that serves the same packets forever, without
// allocating.
type loop struct {
	data []byte
	t    time.Time
}

func (l *loop) ReadPackets(pkts []capture.Packet) (int, error) {
	for i := range pkts {
		l.t = l.t.Add(time.Microsecond)
		pkts[i].Time = l.t
		if err := pkts[i].Decode(l.data); err != nil {
			return 0, err
		}
	}
	return len(pkts), nil
}

func (l *loop) Close() error { return nil }

func loopPacket(t testing.TB) []byte {
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.18.0.1:1"), Dst: netip.MustParseAddrPort("198.18.0.2:80"),
		Flags: capture.FlagACK, Payload: []byte("x"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The per-packet path does not allocate, paced or fast.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("skipping: the race detector allocates")
	}
	for _, fast := range []bool{false, true} {
		src := &loop{data: loopPacket(t), t: time.Unix(1e9, 0)}
		clock := NewFakeClock(time.Unix(2e9, 0))
		p, err := New(&Config{Open: func() (capture.Capturer, error) { return src, nil }, Fast: fast, Clock: clock, Batch: 16})
		if err != nil {
			t.Fatal(err)
		}
		pkts := make([]capture.Packet, 4)
		if got := testing.AllocsPerRun(1000, func() {
			if _, err := p.ReadPackets(pkts); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}); got != 0 {
			t.Errorf("fast=%v: %v allocations per ReadPackets", fast, got)
		}
	}
}

// RealClock.Wait does not allocate either.
func TestRealClockWaitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("skipping: the race detector allocates")
	}
	c := RealClock{}
	cancel := make(chan struct{})
	if got := testing.AllocsPerRun(20, func() { c.Wait(time.Now().Add(50*time.Microsecond), cancel) }); got != 0 {
		t.Errorf("%v allocations per Wait", got)
	}
}
