package replay_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/replay"
)

func progressStats() replay.Stats {
	return replay.Stats{
		Packets: 1234, Bytes: 567890, GapsSkipped: 2, Skipped: 3500 * time.Millisecond,
		Round: 2, Rounds: 2, RepeatsDone: 1, Read: 512 << 10, Size: 1 << 20,
		Span: 90 * time.Second, Elapsed: 30 * time.Second,
		TimingSamples: 1234, TimingMedian: 85 * time.Microsecond, TimingP99: 1100 * time.Microsecond,
	}
}

func TestProgressLine(t *testing.T) {
	got := replay.ProgressLine(progressStats())
	want := "round 2/2, 75.0% (512.0 KiB of 1.0 MiB in this round), 1234 packets (554.6 KiB), " +
		"1m30s of capture in 30s, 2 idle gaps skipped (3.5s), timing error median 85µs p99 1.1ms"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Without a size, packets only.
	s := progressStats()
	s.Size, s.Read = 0, 0
	if got := replay.ProgressLine(s); strings.Contains(got, "%") {
		t.Errorf("progress without a size: %q", got)
	}
}

// runProgress runs Progress for a while and returns what it wrote.
func runProgress(t *testing.T, cfg *replay.ProgressConfig, d time.Duration, stats func() replay.Stats) string {
	t.Helper()
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := replay.Progress(ctx, &buf, stats, cfg); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestProgressLines(t *testing.T) {
	// A bytes.Buffer is no terminal: plain lines by default.
	out := runProgress(t, &replay.ProgressConfig{Interval: 20 * time.Millisecond}, 120*time.Millisecond, progressStats)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || len(lines) > 8 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "replay: round 2/2, 75.0%") {
			t.Errorf("line %q", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "replay: end: round 2/2") {
		t.Errorf("last line %q", last)
	}
}

func TestProgressBar(t *testing.T) {
	// Under way (redrawn every 200 ms): three quarters of two rounds of
	// 1 MiB.
	out := runProgress(t, &replay.ProgressConfig{Style: replay.ProgressBar}, 500*time.Millisecond, progressStats)
	for _, want := range []string{"replay 2/2, 1234 pkts, 2 gaps skipped, late p50 85µs p99 1.1ms", " 75% |", "(1.5/2.0 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output lacks %q:\n%q", want, out)
		}
	}
	// Finished: the bar is filled.
	s := progressStats()
	s.RepeatsDone = 2
	out = runProgress(t, &replay.ProgressConfig{Style: replay.ProgressBar}, 50*time.Millisecond, func() replay.Stats { return s })
	if !strings.Contains(out, "100% |") || !strings.HasSuffix(out, "\n") {
		t.Errorf("finished bar:\n%q", out)
	}
	// Without a size it counts packets.
	s.Size = 0
	out = runProgress(t, &replay.ProgressConfig{Style: replay.ProgressBar}, 300*time.Millisecond, func() replay.Stats { return s })
	if !strings.Contains(out, "(1234/-)") {
		t.Errorf("bar without a size:\n%q", out)
	}
}

func TestProgressConfigErrors(t *testing.T) {
	for _, cfg := range []*replay.ProgressConfig{{Interval: -1}, {Style: 9}} {
		if err := replay.Progress(context.Background(), &bytes.Buffer{}, progressStats, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if replay.ProgressBar.String() != "bar" || replay.ProgressStyle(0).String() != "ProgressStyle(0)" {
		t.Error("ProgressStyle.String")
	}
}
