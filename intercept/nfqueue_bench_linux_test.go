package intercept_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/intercept"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

// BenchmarkNFQueue measures NFQueue on its own: in a namespace of its own, an
// iptables OUTPUT rule queues TCP segments from port 9000 that a raw socket
// sends (emit.RawIP, one sendmmsg per 64 prebuilt segments) from one local
// address to another; NFQueue reports and DROPs every one. An iteration is a
// burst of nfqBurst segments, sent at once and waited for until all are
// reported (the burst fits the queue and the socket buffer, so nothing is
// lost). It reports segments per second and the process's CPU time per
// segment (getrusage): the sender's share (sendmmsg, netfilter, queueing) is
// the same for any NFQueue implementation, the rest is the reader's. allocs/op
// is per burst; allocs/pkt divides it.
func BenchmarkNFQueue(b *testing.B) {
	for _, payload := range []int{100, 1400} {
		b.Run(fmt.Sprintf("payload%d", payload), func(b *testing.B) { benchNFQueue(b, payload) })
	}
}

const nfqBurst = 1024

func benchNFQueue(b *testing.B, payload int) {
	lab := netlab.New(b)
	lab.Require("iptables")
	ns := lab.Namespace("nfqb")
	src := netip.MustParseAddrPort("198.18.0.2:9000")
	dst := netip.MustParseAddrPort("198.18.0.3:40000")
	ns.AddAddr("lo", netip.PrefixFrom(src.Addr(), 32))
	ns.AddAddr("lo", netip.PrefixFrom(dst.Addr(), 32))

	const queue = 11
	q, err := intercept.NewNFQueue(&intercept.NFQueueConfig{Queue: queue})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	if err := ns.Do(q.Open); err != nil {
		b.Fatal(err)
	}
	intercept.InstallTestRules(b, &intercept.NFQueueRulesConfig{Ports: []uint16{src.Port()}, Queue: queue, Family: "ipv4", Command: ns.Command})
	e := netlab.Open(b, ns, func() (*emit.RawIP, error) { return emit.NewRawIP(nil) })

	var batch [][]byte
	for i := range 64 {
		p, err := capture.AppendSegment(nil, &capture.Segment{
			Src: src, Dst: dst, Seq: capture.Seq(1000 + i*payload), Ack: 1,
			Flags: capture.FlagACK | capture.FlagPSH, Window: 512, Payload: make([]byte, payload),
		})
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, p)
	}

	var reported atomic.Int64
	var target atomic.Int64
	arrived := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- q.Run(ctx, func(pkts []capture.Packet) {
			if n := reported.Add(int64(len(pkts))); n >= target.Load() {
				select {
				case arrived <- struct{}{}:
				default:
				}
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	// The queue is bound when the kernel lists it; packets sent before
	// would meet no listener and be dropped.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		out, _ := ns.RunErr("cat", "/proc/net/netfilter/nfnetlink_queue")
		if f := strings.Fields(out); len(f) > 0 && f[0] == strconv.Itoa(queue) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("queue not bound after 10 s")
		}
	}

	burst := func() {
		want := reported.Load() + nfqBurst
		target.Store(want)
		for range nfqBurst / len(batch) {
			if err := e.Emit(batch); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.NewTimer(10 * time.Second) // never hang
		defer deadline.Stop()
		for reported.Load() < want {
			select {
			case <-arrived:
			case <-deadline.C:
				b.Fatalf("%d of %d segments reported after 10 s; stats %+v, emitter %+v", reported.Load()-want+nfqBurst, nfqBurst, q.Stats(), e.Stats())
			}
		}
	}
	burst() // warm up: buffers, the kernel's queue

	var ru0, ru1 unix.Rusage
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru0); err != nil {
		b.Fatal(err)
	}
	start, before := time.Now(), q.Stats()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		burst()
		n += nfqBurst
	}
	elapsed := time.Since(start)
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru1); err != nil {
		b.Fatal(err)
	}
	runtime.ReadMemStats(&ms1)
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	st := q.Stats()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/pkt")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "allocs/pkt")
	b.ReportMetric(float64(st.Reported-before.Reported)/float64(st.VerdictBatches-before.VerdictBatches+1), "pkts/verdict")
	if st.ReceiveErrors != 0 || st.VerdictErrors != 0 || st.Undecodable != 0 {
		b.Errorf("stats %+v", st)
	}
}
