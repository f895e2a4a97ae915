package rewrite

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

func newSampler(tb testing.TB, cfg SamplerConfig) *Sampler {
	tb.Helper()
	s, err := NewSampler(&cfg)
	if err != nil {
		tb.Fatalf("NewSampler(%+v): %v", cfg, err)
	}
	return s
}

// conns are n synthetic client endpoints from 198.18.0.0/15 with
// ephemeral ports, from a fixed seed.
func conns(n int, seed uint64) []capture.Endpoint {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]capture.Endpoint, n)
	for i := range out {
		a := addr4(rng.IntN(131070))
		if i%4 == 3 {
			a = addr6(rng.IntN(1 << 20))
		}
		out[i] = capture.EndpointFrom(netip.AddrPortFrom(a, uint16(32768+rng.IntN(28232))))
	}
	return out
}

func keptShare(s *Sampler, cs []capture.Endpoint) float64 {
	k := 0
	for _, e := range cs {
		if s.Keeps(e) {
			k++
		}
	}
	return 100 * float64(k) / float64(len(cs))
}

func TestNewSamplerErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg SamplerConfig
		err string
	}{
		{SamplerConfig{Percent: -1}, "sampling percentage -1"},
		{SamplerConfig{Percent: 100.5}, "sampling percentage 100.5"},
		{SamplerConfig{Percent: math.NaN()}, "sampling percentage NaN"},
		{SamplerConfig{Ramp: -time.Second}, "negative sampling ramp"},
		{SamplerConfig{Percent: 30, Ramp: time.Minute, RampFrom: 40}, "ramp from 40%"},
		{SamplerConfig{Ramp: time.Minute, RampFrom: -2}, "ramp from -2%"},
	} {
		_, err := NewSampler(&tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("NewSampler(%+v) error %v, want %q", tc.cfg, err, tc.err)
		}
	}
	s, err := NewSampler(nil)
	if err != nil || s.Percent() != 100 {
		t.Fatalf("NewSampler(nil) = %v, %v", s, err)
	}
}

// Over 10,000 connections the kept share is within a point or two of the
// percentage (the binomial standard deviation is at most half a point).
func TestSamplerShare(t *testing.T) {
	cs := conns(10000, 1)
	for _, pct := range []float64{0.5, 1, 10, 30, 50, 75, 99.5, 100} {
		for _, seed := range []uint64{0, 1, 42} {
			s := newSampler(t, SamplerConfig{Percent: pct, Seed: seed})
			got := keptShare(s, cs)
			if math.Abs(got-pct) > 2 {
				t.Errorf("Percent %v seed %d: kept %.2f%%", pct, seed, got)
			}
			if s.Percent() != pct {
				t.Errorf("Percent() = %v, want %v", s.Percent(), pct)
			}
		}
	}
}

// The decision is per connection: every packet of it gets the same, and
// the packets are not changed.
func TestSamplerPerConnection(t *testing.T) {
	s := newSampler(t, SamplerConfig{Percent: 50})
	var kept, out int
	for _, e := range conns(500, 2) {
		dst := tgt4
		if !e.Addr().Is4() {
			dst = tgt6
		}
		want := s.Keeps(e)
		for _, f := range []uint8{capture.FlagSYN, capture.FlagACK, capture.FlagACK | capture.FlagPSH, capture.FlagFIN | capture.FlagACK, capture.FlagRST} {
			p := packet(t, e.AddrPort(), dst, f, "data")
			before := string(p.Data)
			if got := s.Rewrite(p); got != want {
				t.Fatalf("%s flags %#x: Rewrite = %v, Keeps = %v", e, f, got, want)
			}
			if string(p.Data) != before {
				t.Fatal("Sampler changed the packet")
			}
			if want {
				kept++
			} else {
				out++
			}
		}
	}
	if st := s.Stats(); st.Kept != uint64(kept) || st.SampledOut != uint64(out) || kept == 0 || out == 0 {
		t.Errorf("stats %+v, counted %d kept, %d out", st, kept, out)
	}
}

func TestSamplerPerClient(t *testing.T) {
	s := newSampler(t, SamplerConfig{Percent: 30, PerClient: true})
	clients, kept := 0, 0
	for c := range 3000 {
		a := addr4(c * 13)
		first := s.Keeps(capture.EndpointFrom(netip.AddrPortFrom(a, 1)))
		for port := uint16(2); port < 60000; port += 7919 {
			if s.Keeps(capture.EndpointFrom(netip.AddrPortFrom(a, port))) != first {
				t.Fatalf("client %s: ports decided differently", a)
			}
		}
		clients++
		if first {
			kept++
		}
	}
	if share := 100 * float64(kept) / float64(clients); math.Abs(share-30) > 3 {
		t.Errorf("kept %.1f%% of clients, want about 30", share)
	}
}

func TestSamplerSeed(t *testing.T) {
	cs := conns(2000, 3)
	a := newSampler(t, SamplerConfig{Percent: 50, Seed: 1})
	b := newSampler(t, SamplerConfig{Percent: 50, Seed: 2})
	a2 := newSampler(t, SamplerConfig{Percent: 50, Seed: 1})
	differ := 0
	for _, e := range cs {
		if a.Keeps(e) != a2.Keeps(e) {
			t.Fatal("one seed, two decisions")
		}
		if a.Keeps(e) != b.Keeps(e) {
			differ++
		}
	}
	if differ < 800 || differ > 1200 {
		t.Errorf("seeds 1 and 2 disagree on %d of 2000 connections, want about half", differ)
	}
}

// A ramp grows linearly from RampFrom to Percent, and a connection once
// kept stays kept.
func TestSamplerRamp(t *testing.T) {
	clk := new(fakeClock)
	cs := conns(10000, 4)
	s := newSampler(t, SamplerConfig{Ramp: 100 * time.Second, Clock: clk.Now})
	was := make([]bool, len(cs))
	for step := range 12 {
		want := math.Min(1+99*float64(step)*10/100, 100)
		if got := s.Percent(); math.Abs(got-want) > 1e-9 {
			t.Fatalf("at %ds: Percent() = %v, want %v", step*10, got, want)
		}
		k := 0
		for i, e := range cs {
			keep := s.Keeps(e)
			if was[i] && !keep {
				t.Fatalf("at %ds: %s kept before, left out now", step*10, e)
			}
			was[i] = keep
			if keep {
				k++
			}
		}
		if got := 100 * float64(k) / float64(len(cs)); math.Abs(got-want) > 2 {
			t.Errorf("at %ds: kept %.2f%%, want about %.1f%%", step*10, got, want)
		}
		clk.Advance(10 * time.Second)
	}
	if !s.rampOver.Load() {
		t.Error("ramp not marked over")
	}

	// A ramp to 40% from 10%, starting later than now.
	clk2 := new(fakeClock)
	s = newSampler(t, SamplerConfig{Percent: 40, RampFrom: 10, Ramp: time.Minute, RampStart: clk2.Now().Add(time.Minute), Clock: clk2.Now})
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 10}, {time.Minute, 10}, {90 * time.Second, 25}, {2 * time.Minute, 40}, {time.Hour, 40}} {
		clk2.ns.Store(int64(tc.at))
		if got := s.Percent(); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("at %v: Percent() = %v, want %v", tc.at, got, tc.want)
		}
	}
}
