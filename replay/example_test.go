package replay_test

import (
	"fmt"
	"io"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
)

// A capture with a 30-second idle stretch, replayed twice as fast with
// idle gaps cut to one second, on a fake clock so the example runs at once.
func ExamplePacer() {
	open := func() (capture.Capturer, error) {
		m := capture.NewMemory() // a pcap file in real use: replay.FileOpener(path, nil)
		for i, at := range []time.Duration{0, 200 * time.Millisecond, 30 * time.Second, 30*time.Second + 400*time.Millisecond} {
			m.Push(t0.Add(at), segment(i))
		}
		m.CloseWrite()
		return m, nil
	}
	clock := replay.NewFakeClock(start)
	p, err := replay.New(&replay.Config{Open: open, Speed: 2, MaxIdle: time.Second, Clock: clock})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	pkts := make([]capture.Packet, 8)
	for {
		n, err := p.ReadPackets(pkts)
		for i := range pkts[:n] {
			fmt.Printf("packet %d due at +%v\n", idOf(&pkts[i]), pkts[i].Time.Sub(start))
		}
		if err == io.EOF {
			break
		}
	}
	st := p.Stats()
	fmt.Printf("%v of capture in %v, %d gap skipped (%v)\n", st.Span, st.Elapsed, st.GapsSkipped, st.Skipped)
	// Output:
	// packet 0 due at +0s
	// packet 1 due at +100ms
	// packet 2 due at +600ms
	// packet 3 due at +800ms
	// 30.4s of capture in 800ms, 1 gap skipped (28.8s)
}
