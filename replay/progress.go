package replay

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ProgressStyle is how Progress shows a replay. The zero value is
// invalid; ProgressConfig.Style documents its default.
type ProgressStyle uint8

const (
	// ProgressBar redraws a progress bar in place (for a terminal).
	ProgressBar ProgressStyle = iota + 1
	// ProgressLines writes a plain line now and then (for logs and pipes).
	ProgressLines
)

func (s ProgressStyle) String() string {
	switch s {
	case ProgressBar:
		return "bar"
	case ProgressLines:
		return "lines"
	}
	return "ProgressStyle(" + strconv.Itoa(int(s)) + ")"
}

// ProgressConfig configures Progress. The zero value (or nil) is ready.
type ProgressConfig struct {
	// Style is how progress is shown. Zero means ProgressBar when the
	// writer is a terminal, ProgressLines otherwise.
	Style ProgressStyle
	// Interval is the time between two plain lines. Zero means 10 s. The
	// bar is redrawn every 200 ms.
	Interval time.Duration
}

// barRefresh is how often the bar is redrawn.
const barRefresh = 200 * time.Millisecond

// Progress shows the progress of a replay on w, reading stats (usually a
// Pacer's Stats method) now and then, until ctx ends; then it shows the
// final state once more and returns. It is meant for the program that
// runs the replay (run it on a goroutine of its own); the Pacer itself
// writes nothing. The bar counts bytes of the file when the source tells
// its size (see Positioner), packets otherwise.
func Progress(ctx context.Context, w io.Writer, stats func() Stats, cfg *ProgressConfig) error {
	var c ProgressConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Interval < 0 {
		return fmt.Errorf("replay: progress interval %v is negative", c.Interval)
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	switch c.Style {
	case 0:
		c.Style = ProgressLines
		if isTerminal(w) {
			c.Style = ProgressBar
		}
	case ProgressBar, ProgressLines:
	default:
		return fmt.Errorf("replay: progress style %v is invalid", c.Style)
	}
	if c.Style == ProgressLines {
		return progressLines(ctx, w, stats, c.Interval)
	}
	return progressBar(ctx, w, stats)
}

// isTerminal reports whether w is a terminal (an *os.File on a tty).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func progressLines(ctx context.Context, w io.Writer, stats func() Stats, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if _, err := fmt.Fprintln(w, "replay: "+ProgressLine(stats())); err != nil {
				return fmt.Errorf("replay: progress: %w", err)
			}
		case <-ctx.Done():
			if _, err := fmt.Fprintln(w, "replay: end: "+ProgressLine(stats())); err != nil {
				return fmt.Errorf("replay: progress: %w", err)
			}
			return nil
		}
	}
}

func progressBar(ctx context.Context, w io.Writer, stats func() Stats) error {
	s := stats()
	total := int64(-1)
	if s.Size > 0 && s.Rounds > 0 {
		total = s.Size * int64(s.Rounds)
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowBytes(total > 0),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(total > 0),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		// No spinner goroutine: the bar is redrawn here only.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetDescription(barDescription(s)),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
	update := func(s Stats) error {
		if bar.IsFinished() {
			return nil // drawn in full, with its newline
		}
		bar.Describe(barDescription(s))
		if total > 0 {
			done := s.Size*int64(s.RepeatsDone) + min(s.Read, s.Size)
			if s.Round <= s.RepeatsDone {
				done = s.Size * int64(s.RepeatsDone)
			}
			return bar.Set64(min(done, total))
		}
		return bar.Set64(int64(s.Packets))
	}
	tick := time.NewTicker(barRefresh)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := update(stats()); err != nil {
				return fmt.Errorf("replay: progress: %w", err)
			}
		case <-ctx.Done():
			s := stats()
			if err := update(s); err != nil {
				return fmt.Errorf("replay: progress: %w", err)
			}
			switch {
			case bar.IsFinished():
				return nil
			case s.Rounds > 0 && s.RepeatsDone >= s.Rounds:
				return bar.Finish() // complete: fill the bar
			}
			return bar.Exit() // stopped early: leave it where it is
		}
	}
}

func barDescription(s Stats) string {
	d := fmt.Sprintf("replay %d/%d, %d pkts", max(s.Round, 1), max(s.Rounds, 1), s.Packets)
	if s.GapsSkipped > 0 {
		d += fmt.Sprintf(", %d gaps skipped", s.GapsSkipped)
	}
	if s.TimingSamples > 0 {
		d += fmt.Sprintf(", late p50 %v p99 %v", roundDur(s.TimingMedian), roundDur(s.TimingP99))
	}
	return d
}

// ProgressLine is one line about a replay under way, as Progress writes
// it when not on a terminal.
func ProgressLine(s Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "round %d/%d", max(s.Round, 1), max(s.Rounds, 1))
	if f, ok := s.Progress(); ok {
		fmt.Fprintf(&b, ", %.1f%% (%s of %s in this round)", 100*f, bytesString(uint64(max(s.Read, 0))), bytesString(uint64(s.Size)))
	}
	fmt.Fprintf(&b, ", %d packets (%s)", s.Packets, bytesString(s.Bytes))
	fmt.Fprintf(&b, ", %v of capture in %v", roundDur(s.Span), roundDur(s.Elapsed))
	if s.GapsSkipped > 0 {
		fmt.Fprintf(&b, ", %d idle gaps skipped (%v)", s.GapsSkipped, roundDur(s.Skipped))
	}
	if s.TimingSamples > 0 {
		fmt.Fprintf(&b, ", timing error median %v p99 %v", roundDur(s.TimingMedian), roundDur(s.TimingP99))
	}
	return b.String()
}

// roundDur rounds d to three significant digits or so, for people.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}
