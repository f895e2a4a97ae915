package capture_test

import (
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
)

// benchCapture measures packets per second through a capturer in B while
// A's raw IP emitter streams batches of 64 segments (100-byte payload,
// sendmmsg) from another goroutine until the reader is done; B's stack
// answers each with a RST, the same work for every capturer. An iteration
// reads 64 packets. What the capturer could not keep up with shows as
// kernel drops.
func benchCapture(b *testing.B, n labNet, open func(l *netlab.Pair) capture.Capturer) {
	l := netlab.NewPair(b)
	c := open(l)
	e := netlab.Open(b, l.A, func() (*emit.RawIP, error) { return emit.NewRawIP(nil) })
	var batch [][]byte
	for i := range 64 {
		batch = append(batch, labSegment(b, n, i, 100, 9000))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.Emit(batch); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	pkts := make([]capture.Packet, 64)
	timer := time.AfterFunc(time.Hour, func() { c.Close() })
	defer timer.Stop()
	b.ReportAllocs()
	b.SetBytes(int64(len(batch) * len(batch[0])))
	got := 0
	for b.Loop() {
		timer.Reset(10 * time.Second) // never hang
		for want := got + len(batch); got < want; {
			k, err := c.ReadPackets(pkts)
			if err != nil {
				b.Fatalf("after %d packets: %v", got, err)
			}
			for i := range pkts[:k] {
				if pkts[i].DstPort() == 9000 {
					got++
				}
			}
		}
	}
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "pkts/s")
	type stater interface{ Stats() capture.Stats }
	if s, ok := c.(stater); ok {
		b.ReportMetric(float64(s.Stats().KernelDrops)/float64(got+1), "drops/pkt")
	}
}

func BenchmarkCaptureRawIP(b *testing.B) {
	for _, n := range labNets {
		b.Run(n.network, func(b *testing.B) {
			benchCapture(b, n, func(l *netlab.Pair) capture.Capturer {
				var c *capture.RawIP
				if err := l.B.Do(func() (err error) { c, err = capture.NewRawIP(&capture.RawIPConfig{Network: n.network}); return err }); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				return c
			})
		})
	}
}

func BenchmarkCaptureAFPacket(b *testing.B) {
	for _, n := range labNets {
		b.Run(n.network, func(b *testing.B) {
			benchCapture(b, n, func(l *netlab.Pair) capture.Capturer {
				return openAFPacket(b, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn,
					Filter: &capture.Filter{DstPorts: []uint16{9000}}})
			})
		})
	}
}
