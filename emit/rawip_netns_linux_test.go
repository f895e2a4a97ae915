package emit_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A self-contained two-namespace lab for the raw socket tests: namespaces
// A and B joined by a veth pair, addresses from 198.18.0.0/15 and
// fd00:198:18::/48 only, static neighbours so no packet waits on ARP or ND.
type rawipLab struct{ a, b string }

const (
	labA4, labB4 = "198.18.0.1", "198.18.0.2"
	labA6, labB6 = "fd00:198:18::1", "fd00:198:18::2"
	labMACA      = "02:00:c6:12:00:01"
	labMACB      = "02:00:c6:12:00:02"
)

var rawipLabSeq atomic.Int32

func newRawipLab(t testing.TB) *rawipLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: raw sockets and network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip tool (iproute2) is not installed")
	}
	n := rawipLabSeq.Add(1)
	l := &rawipLab{
		a: fmt.Sprintf("tcnraw-%d-%d", os.Getpid(), 2*n),
		b: fmt.Sprintf("tcnraw-%d-%d", os.Getpid(), 2*n+1),
	}
	for _, ns := range []string{l.a, l.b} {
		labIP(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	labIP(t, "-n", l.a, "link", "add", "ra", "address", labMACA, "type", "veth",
		"peer", "name", "rb", "address", labMACB, "netns", l.b)
	for _, side := range []struct{ ns, dev, v4, v6, peer4, peer6, peerMAC string }{
		{l.a, "ra", labA4, labA6, labB4, labB6, labMACB},
		{l.b, "rb", labB4, labB6, labA4, labA6, labMACA},
	} {
		labIP(t, "-n", side.ns, "addr", "add", side.v4+"/24", "dev", side.dev)
		labIP(t, "-n", side.ns, "addr", "add", side.v6+"/64", "dev", side.dev, "nodad")
		labIP(t, "-n", side.ns, "link", "set", "lo", "up")
		labIP(t, "-n", side.ns, "link", "set", side.dev, "up")
		labIP(t, "-n", side.ns, "neigh", "replace", side.peer4, "lladdr", side.peerMAC, "dev", side.dev, "nud", "permanent")
		labIP(t, "-n", side.ns, "neigh", "replace", side.peer6, "lladdr", side.peerMAC, "dev", side.dev, "nud", "permanent")
	}
	// Even a nodad address is tentative (and drops what it receives) until
	// the kernel's addrconf work runs after the link comes up.
	for _, side := range []struct{ ns, dev string }{{l.a, "ra"}, {l.b, "rb"}} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			out, err := exec.Command("ip", "-n", side.ns, "-6", "addr", "show", "dev", side.dev, "scope", "global", "tentative").CombinedOutput()
			if err != nil {
				t.Fatalf("ip -6 addr show: %v: %s", err, out)
			}
			if len(bytes.TrimSpace(out)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("IPv6 addresses in %s still tentative after 10 s: %s", side.ns, out)
			}
		}
	}
	return l
}

func labIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNS runs fn on a thread switched into namespace ns. Sockets fn creates
// stay in ns. The thread is switched back; if that fails it is not
// unlocked, so the runtime discards it with its goroutine.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", ns, err)
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
