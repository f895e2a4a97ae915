package rewrite

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// SamplerConfig configures a Sampler. The zero value keeps everything.
type SamplerConfig struct {
	// Percent is the share of connections kept (-r), in (0, 100].
	// Fractions are allowed: 0.5 keeps one connection in two hundred (the
	// decision has 64-bit resolution). Zero means 100.
	Percent float64
	// PerClient decides per client address rather than per connection: a
	// client's connections are all kept or all left out (for protocols
	// whose connections depend on each other). With few clients, the kept
	// share strays far from Percent.
	PerClient bool
	// Seed chooses which connections make up the sample; copiers with one
	// seed and one percentage keep the same connections. Zero is a seed
	// like any other.
	Seed uint64
	// Ramp, if positive, grows the percentage linearly from RampFrom to
	// Percent over this long, from RampStart on.
	Ramp time.Duration
	// RampFrom is the percentage a ramp starts at, in (0, Percent]. Zero
	// means 1.
	RampFrom float64
	// RampStart is when the ramp starts. Zero means when NewSampler is
	// called (by Clock).
	RampStart time.Time
	// Clock reads the time while a ramp runs. Nil means time.Now.
	Clock func() time.Time
}

// Sampler keeps a share of connections (TCPCopy's -r) and refuses the
// rest. The decision is a pure function of the client endpoint (address
// and port, or the address alone with PerClient) and the seed: every
// packet of a connection gets the same decision, with no state, and a
// connection keeps its decision across restarts. Put it before any
// Rewriter that changes the source.
//
// A ramp only ever raises the percentage, so a kept connection stays kept.
// A connection left out at its SYN may be kept later in the ramp, without
// its SYN; the session table treats it as captured mid-stream.
//
// It is safe for concurrent use.
type Sampler struct {
	perClient bool
	seed      uint64
	pct       float64 // the percentage (after a ramp)
	all       bool    // pct is 100
	thr       uint64  // otherwise keep when the hash is below

	ramp     bool
	from     float64
	start    time.Time
	dur      time.Duration
	clock    func() time.Time
	rampOver atomic.Bool

	kept, out atomic.Uint64
}

// NewSampler checks cfg (nil means defaults) and returns a Sampler.
func NewSampler(cfg *SamplerConfig) (*Sampler, error) {
	if cfg == nil {
		cfg = &SamplerConfig{}
	}
	pct := cfg.Percent
	if pct == 0 {
		pct = 100
	}
	if !(pct > 0 && pct <= 100) {
		return nil, fmt.Errorf("rewrite: sampling percentage %v: want more than 0, at most 100", cfg.Percent)
	}
	s := &Sampler{
		perClient: cfg.PerClient,
		seed:      mix64(cfg.Seed + 0x9e3779b97f4a7c15),
		pct:       pct,
		clock:     cfg.Clock,
	}
	s.all, s.thr = threshold(pct)
	if cfg.Ramp < 0 {
		return nil, fmt.Errorf("rewrite: negative sampling ramp %v", cfg.Ramp)
	}
	if cfg.Ramp == 0 {
		return s, nil
	}
	from := cfg.RampFrom
	if from == 0 {
		from = 1
	}
	if !(from > 0 && from <= pct) {
		return nil, fmt.Errorf("rewrite: sampling ramp from %v%%: want more than 0, at most the percentage (%v)", cfg.RampFrom, pct)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	s.ramp, s.from, s.dur, s.start = true, from, cfg.Ramp, cfg.RampStart
	if s.start.IsZero() {
		s.start = s.clock()
	}
	return s, nil
}

// threshold turns a percentage into the hash bound below which a
// connection is kept.
func threshold(pct float64) (all bool, thr uint64) {
	if pct >= 100 {
		return true, 0
	}
	return false, uint64(math.Ldexp(pct/100, 64))
}

// Percent is the share of connections kept now.
func (s *Sampler) Percent() float64 {
	if !s.ramp || s.rampOver.Load() {
		return s.pct
	}
	return s.rampPercent(s.clock())
}

func (s *Sampler) rampPercent(now time.Time) float64 {
	el := now.Sub(s.start)
	switch {
	case el <= 0:
		return s.from
	case el >= s.dur:
		s.rampOver.Store(true)
		return s.pct
	}
	return s.from + (s.pct-s.from)*float64(el)/float64(s.dur)
}

// Keeps reports whether connections from client e are kept now.
func (s *Sampler) Keeps(e capture.Endpoint) bool {
	all, thr := s.all, s.thr
	if s.ramp && !s.rampOver.Load() {
		all, thr = threshold(s.rampPercent(s.clock()))
	}
	if all {
		return true
	}
	h := e.Hash()
	if s.perClient {
		h = clientHash(e)
	}
	return mix64(h^s.seed) < thr
}

// Rewrite implements Rewriter: it changes nothing and refuses the packets
// of connections left out of the sample.
func (s *Sampler) Rewrite(p *capture.Packet) bool {
	if s.all && !s.ramp || s.Keeps(p.SrcEndpoint()) {
		s.kept.Add(1)
		return true
	}
	s.out.Add(1)
	return false
}

// SamplerStats counts Rewrite's decisions, in packets.
type SamplerStats struct {
	Kept       uint64 // packets of kept connections
	SampledOut uint64 // packets of connections left out
}

// Stats returns a snapshot of the counters.
func (s *Sampler) Stats() SamplerStats {
	return SamplerStats{Kept: s.kept.Load(), SampledOut: s.out.Load()}
}
