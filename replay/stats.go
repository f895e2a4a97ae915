package replay

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Stats is a snapshot of what a Pacer did.
type Stats struct {
	Packets uint64 // packets handed out, over all rounds
	Bytes   uint64 // IP bytes of those packets

	// GapsSkipped counts the idle gaps of the capture longer than
	// Config.MaxIdle, each once; Skipped is the capture time cut from
	// them (each was shortened to MaxIdle).
	GapsSkipped uint64
	Skipped     time.Duration

	Round       int // the round under way, from 1 (0 before the first read)
	Rounds      int // the rounds to play (Config.Repeat)
	RepeatsDone int // rounds played to the end of the source

	// Span is the capture time replayed so far (last packet's capture time
	// less the first's, over all rounds, idle gaps included); Elapsed is
	// the time on the Pacer's clock from the first packet's release to
	// the last's. (Span-Skipped)/Elapsed is the speed achieved
	// (Stats.Speed): Config.Speed when the consumer kept up.
	Span, Elapsed time.Duration

	// Timing error: how late packets were handed out after their due
	// time, over a bounded sample of them (TimingSamples measured in all):
	// median, 99th percentile and the largest seen. Zero in Fast mode.
	TimingSamples uint64
	TimingMedian  time.Duration
	TimingP99     time.Duration
	TimingMax     time.Duration

	// Read and Size are how many bytes of the current round's source were
	// read, of its size, when the source tells (see Positioner); Size is
	// zero when it does not, and progress is then counted in packets only.
	Read, Size int64

	// Source sums the source's own counters over the rounds (decode
	// failures of the file, say), when it has a Stats() capture.Stats
	// method.
	Source capture.Stats
}

// Progress is the share of the whole replay (all rounds) read so far, in
// [0, 1], and whether it is known (the source tells its size).
func (s Stats) Progress() (float64, bool) {
	if s.Size <= 0 || s.Rounds <= 0 {
		return 0, false
	}
	round := float64(s.RepeatsDone)
	if s.Round > s.RepeatsDone { // a round under way
		round += min(float64(s.Read)/float64(s.Size), 1)
	}
	return min(round/float64(s.Rounds), 1), true
}

// Speed is the speed factor achieved, (Span-Skipped)/Elapsed: the
// capture time replayed, less the idle time skipped, over the time it
// took. It is 0 before two packets went out.
func (s Stats) Speed() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Span-s.Skipped) / float64(s.Elapsed)
}

// sampleSize bounds the timing error sample: 8192 durations, 64 KiB.
const sampleSize = 8192

// sample is a uniform reservoir sample (Vitter's algorithm R) of the
// timing errors; its percentiles are exact while fewer than sampleSize
// packets were measured. Not safe for concurrent use.
type sample struct {
	vals []time.Duration
	seen uint64
	max  time.Duration
	rng  *rand.Rand
}

func newSample() *sample {
	// A fixed seed keeps runs reproducible; the sample needs no secrecy.
	return &sample{rng: rand.New(rand.NewPCG(1, 2))}
}

func (s *sample) add(d time.Duration) {
	s.seen++
	s.max = max(s.max, d)
	if len(s.vals) < sampleSize {
		s.vals = append(s.vals, d) // grows to sampleSize, then stays
		return
	}
	if j := s.rng.Uint64N(s.seen); j < uint64(len(s.vals)) {
		s.vals[j] = d
	}
}

// quantile returns the nearest-rank q-quantile of sorted values (the
// smallest value with at least q of them at or below it), or 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}
