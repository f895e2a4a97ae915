package replay_test

import (
	"io"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
)

// benchOffsets is a 1-second capture of 500 packets in bursts: 50 bursts
// 20 ms apart, 10 packets 0.1 ms apart in each.
func benchOffsets() []time.Duration {
	var offs []time.Duration
	for b := range 50 {
		for k := range 10 {
			offs = append(offs, time.Duration(b)*20*time.Millisecond+time.Duration(k)*100*time.Microsecond)
		}
	}
	return offs
}

// BenchmarkPacerSpeed replays the 1-second capture at -a 4 on the real
// clock and reports the speed achieved (about 4) and the timing error:
// how late packets went out, median and p99, in microseconds. With Spin,
// the last 1 or 2 ms of each wait are spent busy-waiting instead of
// sleeping.
//
//	go test -run NONE -bench PacerSpeed -benchtime 5x ./replay
func BenchmarkPacerSpeed(b *testing.B) {
	for _, c := range []struct {
		name  string
		clock replay.RealClock
	}{{"sleep", replay.RealClock{}}, {"spin1ms", replay.RealClock{Spin: time.Millisecond}}, {"spin2ms", replay.RealClock{Spin: 2 * time.Millisecond}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			offs := benchOffsets()
			var speed, p50, p99 float64
			runs := 0
			for b.Loop() {
				p, err := replay.New(&replay.Config{Open: memoryOpener(offs, nil), Speed: 4, Clock: c.clock})
				if err != nil {
					b.Fatal(err)
				}
				pkts := make([]capture.Packet, 64)
				for {
					if _, err := p.ReadPackets(pkts); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				st := p.Stats()
				p.Close()
				speed += st.Speed()
				p50 += float64(st.TimingMedian) / 1e3
				p99 += float64(st.TimingP99) / 1e3
				runs++
			}
			b.ReportMetric(speed/float64(runs), "speed")
			b.ReportMetric(p50/float64(runs), "late-p50-µs")
			b.ReportMetric(p99/float64(runs), "late-p99-µs")
		})
	}
}

// BenchmarkPacerFast is the cost of handing out one packet in Fast mode.
func BenchmarkPacerFast(b *testing.B) {
	b.ReportAllocs()
	offs := make([]time.Duration, 4096)
	for i := range offs {
		offs[i] = time.Duration(i) * time.Microsecond
	}
	p, err := replay.New(&replay.Config{Open: memoryOpener(offs, nil), Fast: true, Repeat: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pkts := make([]capture.Packet, 64)
	n := 0
	for b.Loop() {
		k, err := p.ReadPackets(pkts)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(n, 1)), "ns/packet")
}
