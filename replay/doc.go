// Package replay paces a file-fed Capturer by its capture timestamps for
// offline replay against a live target (TCPCopy's offline mode: -i FILE,
// -a, -I, -T).
//
// A Pacer wraps the source (usually a pcap or pcapng file opened by
// FileOpener) and is itself a capture.Capturer, so it plugs into
// tcpcopy.Config.Capturer. It hands each packet out when it is due on its
// Clock: the capture's own pace divided by Speed, idle gaps longer than
// MaxIdle shortened, Repeat rounds one after another, or everything at
// once in Fast mode. Packets come out stamped with their due time, so the
// session tables measure the capture's round-trip times and pauses,
// scaled; give the Copier the same clock (Pacer.Now).
//
//	p, err := replay.New(&replay.Config{
//		Open:    replay.FileOpener("traffic.pcap", nil),
//		Speed:   4,                       // -a 4
//		MaxIdle: 1000 * time.Millisecond, // -I 1000
//		Repeat:  2,                       // -T 2
//	})
//	...
//	copier, err := tcpcopy.NewCopier(&tcpcopy.Config{
//		Capturer: p, Clock: p.Now, Drain: 30 * time.Second, ...})
//	go replay.Progress(ctx, os.Stderr, p.Stats, nil)
//	err = copier.Run(ctx)
//	fmt.Println(replay.Summarize(p.Stats(), counts, tableStats...))
//
// Every round replays the same client ports and sequence numbers; with
// Repeat, chain a RoundCopies after the transfer map so that each round's
// connections are new ones to the session tables and the target.
//
// The Pacer measures its timing error, how late each packet went out after
// its due time (median and 99th percentile over a bounded sample), and
// Summarize puts it in the end-of-replay Report with the session figures:
// sessions replayed, complete, incomplete and why. Progress shows a bar on
// a terminal and plain lines elsewhere; the Pacer itself writes nothing.
package replay
