package replay

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shadowcopy/tcpcopy/session"
)

// CopierCounts are the Copier's counters of the same names
// (tcpcopy.Stats). It is a type of its own so that package tcpcopy may use
// replay without an import cycle: fill it from Copier.Stats().
type CopierCounts struct {
	Captured   uint64 // packets the Pacer handed to the Copier
	Filtered   uint64 // not client packets of the transfer map (other flows, the server's answers)
	Dispatched uint64 // client packets handed to the session tables (copies included)
	Responses  uint64 // target responses reported by intercept
}

// Report is the end-of-replay summary: the Pacer's, the Copier's and the
// session tables' figures in the terms of offline replay. Build it with
// Summarize.
type Report struct {
	Packets    uint64 // packets replayed from the capture (all rounds)
	Bytes      uint64 // their IP bytes
	Filtered   uint64 // of those, not client packets
	Rounds     int    // rounds played to the end
	Unreadable uint64 // source records not replayed: truncated, malformed, not TCP, fragments

	GapsSkipped uint64        // idle gaps shortened to the threshold, each once
	TimeSkipped time.Duration // capture time cut from them

	// Span is the capture time replayed, Elapsed how long it took; Speed
	// is the speed factor achieved, (Span-TimeSkipped)/Elapsed.
	Span, Elapsed time.Duration
	Speed         float64

	Sessions   uint64 // sessions replayed (started)
	Complete   uint64 // closed in order: FIN or RST exchanged with the target
	Incomplete uint64 // the others, explained below

	// Why sessions were incomplete, as the session tables count it.
	// NoSYN counts the connections the capture holds no SYN of (captured
	// mid-stream, replayed with a forged handshake), complete or not.
	NoSYN             uint64
	GapTimeouts       uint64 // a captured packet was missing
	HandshakeTimeouts uint64 // the target never answered the SYN
	TargetResets      uint64 // the target reset the connection
	IdleTimeouts      uint64 // idle or keepalive-only too long
	Retired           uint64 // cut off by a new connection on their port
	SkippedByProtocol uint64 // the protocol module could not copy them
	Other             uint64 // still open when the replay ended, or closed otherwise

	Shed uint64 // new sessions refused over the memory cap (not in Sessions)

	Requests  uint64 // requests sent to the target
	Responses uint64 // target response packets reported by intercept

	// Timing error: how late packets were released after their due time.
	TimingMedian, TimingP99, TimingMax time.Duration
	TimingSamples                      uint64

	// The inputs, for anything else.
	Pacer   Stats
	Copier  CopierCounts
	Session session.Stats
}

// Summarize combines the Pacer's stats, the Copier's counters and the
// session tables' stats (summed) taken once the replay has ended.
func Summarize(p Stats, c CopierCounts, tables ...session.Stats) Report {
	var s session.Stats
	for _, t := range tables {
		s = s.Add(t)
	}
	src := p.Source
	r := Report{
		Packets: p.Packets, Bytes: p.Bytes, Filtered: c.Filtered, Rounds: p.RepeatsDone,
		Unreadable:  src.Truncated + src.Malformed + src.NotTCP + src.Fragments,
		GapsSkipped: p.GapsSkipped, TimeSkipped: p.Skipped,
		Span: p.Span, Elapsed: p.Elapsed, Speed: p.Speed(),
		Sessions: s.Started, Complete: min(s.Finished, s.Started),
		NoSYN: s.Forged, GapTimeouts: s.GapTimeouts, HandshakeTimeouts: s.HandshakeTimeouts,
		TargetResets: s.TargetResets, IdleTimeouts: s.IdleTimeouts, Retired: s.Retired,
		SkippedByProtocol: s.SkippedByProtocol, Shed: s.Shed,
		Requests: s.Requests, Responses: s.Responses,
		TimingMedian: p.TimingMedian, TimingP99: p.TimingP99, TimingMax: p.TimingMax,
		TimingSamples: p.TimingSamples,
		Pacer:         p, Copier: c, Session: s,
	}
	if r.Responses == 0 {
		r.Responses = c.Responses
	}
	r.Incomplete = r.Sessions - r.Complete
	known := r.GapTimeouts + r.HandshakeTimeouts + r.TargetResets + r.IdleTimeouts + r.Retired + r.SkippedByProtocol
	if r.Incomplete > known {
		r.Other = r.Incomplete - known
	}
	return r
}

// String is the report as a few lines of text for people.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replayed %d packets (%s) in %d round(s): %v of capture in %v (speed %.2fx)",
		r.Packets, bytesString(r.Bytes), r.Rounds, r.Span.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), r.Speed)
	if r.GapsSkipped > 0 {
		fmt.Fprintf(&b, ", %d idle gap(s) skipped (%v)", r.GapsSkipped, r.TimeSkipped.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\npackets: %d not client packets, %d records unreadable", r.Filtered, r.Unreadable)
	fmt.Fprintf(&b, "\nsessions: %d replayed, %d complete, %d incomplete", r.Sessions, r.Complete, r.Incomplete)
	var why []string
	for _, w := range []struct {
		n    uint64
		what string
	}{
		{r.GapTimeouts, "gap in the capture"}, {r.HandshakeTimeouts, "handshake timeout"},
		{r.TargetResets, "reset by the target"}, {r.IdleTimeouts, "idle timeout"},
		{r.Retired, "port reused"}, {r.SkippedByProtocol, "protocol module skipped"},
		{r.Other, "open at the end or closed otherwise"},
	} {
		if w.n > 0 {
			why = append(why, fmt.Sprintf("%d %s", w.n, w.what))
		}
	}
	if len(why) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(why, ", "))
	}
	fmt.Fprintf(&b, "; %d without a SYN in the capture", r.NoSYN)
	if r.Shed > 0 {
		fmt.Fprintf(&b, "; %d shed over the memory cap", r.Shed)
	}
	fmt.Fprintf(&b, "\nrequests %d, response packets %d", r.Requests, r.Responses)
	if r.TimingSamples > 0 {
		fmt.Fprintf(&b, "\ntiming error: median %v, p99 %v, max %v over %d packets",
			r.TimingMedian, r.TimingP99, r.TimingMax, r.TimingSamples)
	}
	return b.String()
}

// Attrs is the report as structured log attributes.
func (r Report) Attrs() []slog.Attr {
	return []slog.Attr{
		slog.Uint64("packets", r.Packets), slog.Uint64("bytes", r.Bytes),
		slog.Uint64("filtered", r.Filtered), slog.Int("rounds", r.Rounds),
		slog.Uint64("unreadable", r.Unreadable),
		slog.Uint64("gaps_skipped", r.GapsSkipped), slog.Duration("time_skipped", r.TimeSkipped),
		slog.Duration("span", r.Span), slog.Duration("elapsed", r.Elapsed), slog.Float64("speed", r.Speed),
		slog.Uint64("sessions", r.Sessions), slog.Uint64("complete", r.Complete),
		slog.Uint64("incomplete", r.Incomplete), slog.Uint64("no_syn", r.NoSYN),
		slog.Uint64("gap_timeouts", r.GapTimeouts), slog.Uint64("handshake_timeouts", r.HandshakeTimeouts),
		slog.Uint64("target_resets", r.TargetResets), slog.Uint64("idle_timeouts", r.IdleTimeouts),
		slog.Uint64("retired", r.Retired), slog.Uint64("skipped_by_protocol", r.SkippedByProtocol),
		slog.Uint64("other_incomplete", r.Other), slog.Uint64("shed", r.Shed),
		slog.Uint64("requests", r.Requests), slog.Uint64("responses", r.Responses),
		slog.Duration("timing_error_median", r.TimingMedian), slog.Duration("timing_error_p99", r.TimingP99),
		slog.Duration("timing_error_max", r.TimingMax),
	}
}

func bytesString(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
