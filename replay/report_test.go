package replay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
	"github.com/shadowcopy/tcpcopy/session"
)

func TestSummarize(t *testing.T) {
	p := replay.Stats{
		Packets: 1000, Bytes: 2 << 20, GapsSkipped: 1, Skipped: 4 * time.Second, Round: 1, Rounds: 1,
		RepeatsDone: 1, Span: 44 * time.Second, Elapsed: 10 * time.Second,
		TimingSamples: 1000, TimingMedian: 80 * time.Microsecond, TimingP99: 2 * time.Millisecond, TimingMax: 5 * time.Millisecond,
		Source: capture.Stats{Packets: 1000, Truncated: 2, NotTCP: 3},
	}
	c := replay.CopierCounts{Captured: 1000, Filtered: 400, Dispatched: 600, Responses: 700}
	shard1 := session.Stats{Started: 6, Forged: 2, Finished: 4, GapTimeouts: 1, Requests: 20, Responses: 300}
	shard2 := session.Stats{Started: 4, Forged: 1, Finished: 2, HandshakeTimeouts: 1, Requests: 10, Responses: 350, Active: 1}
	r := replay.Summarize(p, c, shard1, shard2)
	want := replay.Report{
		Packets: 1000, Bytes: 2 << 20, Filtered: 400, Rounds: 1, Unreadable: 5,
		GapsSkipped: 1, TimeSkipped: 4 * time.Second, Span: 44 * time.Second, Elapsed: 10 * time.Second, Speed: 4,
		Sessions: 10, Complete: 6, Incomplete: 4, NoSYN: 3, GapTimeouts: 1, HandshakeTimeouts: 1, Other: 2,
		Requests: 30, Responses: 650,
		TimingMedian: 80 * time.Microsecond, TimingP99: 2 * time.Millisecond, TimingMax: 5 * time.Millisecond, TimingSamples: 1000,
		Pacer: p, Copier: c, Session: shard1.Add(shard2),
	}
	if r != want {
		t.Errorf("report\n%+v\nwant\n%+v", r, want)
	}
	text := r.String()
	for _, s := range []string{
		"replayed 1000 packets (2.0 MiB) in 1 round(s): 44s of capture in 10s (speed 4.00x), 1 idle gap(s) skipped (4s)",
		"sessions: 10 replayed, 6 complete, 4 incomplete (1 gap in the capture, 1 handshake timeout, 2 open at the end or closed otherwise); 3 without a SYN in the capture",
		"requests 30, response packets 650",
		"timing error: median 80µs, p99 2ms, max 5ms over 1000 packets",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("report text lacks %q:\n%s", s, text)
		}
	}
	if len(r.Attrs()) < 20 {
		t.Errorf("%d attributes", len(r.Attrs()))
	}
	// Nothing at all: no division by zero, nothing incomplete.
	if r := replay.Summarize(replay.Stats{}, replay.CopierCounts{}); r.Speed != 0 || r.Incomplete != 0 || r.String() == "" {
		t.Errorf("empty report %+v", r)
	}
}
