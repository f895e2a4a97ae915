package netlab

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// WatchFrom counts the TCP datagrams from src that reach ns until the test
// ends: a raw IP socket sees every TCP datagram delivered there, before
// TCP. Deployment tests use it to show that no target answer reached the
// real client.
func WatchFrom(t testing.TB, ns *NS, src netip.Addr) *atomic.Int64 {
	t.Helper()
	network := "ip4"
	if src.Is6() {
		network = "ip6"
	}
	var capt *capture.RawIP
	if err := ns.Do(func() (err error) {
		capt, err = capture.NewRawIP(&capture.RawIPConfig{Network: network})
		return err
	}); err != nil {
		t.Fatalf("netlab: watch %s in %s: %v", src, ns.name, err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		capture.Count(capt, &n, func(p *capture.Packet) bool { return p.Src() == src })
	}()
	t.Cleanup(func() { capt.Close(); <-done })
	return &n
}

// Collect reads n packets that keep accepts (nil keeps all) from c, as
// copies; after 10 s it closes c and fails the test.
func Collect(t testing.TB, c capture.Capturer, n int, keep func(*capture.Packet) bool) []capture.Packet {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	out, err := capture.Collect(c, n, keep)
	if err != nil {
		t.Fatalf("netlab: read after %d of %d packets: %v", len(out), n, err)
	}
	return out
}
