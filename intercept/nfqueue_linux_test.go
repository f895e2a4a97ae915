package intercept

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/capture"
)

// TestNFQueue runs the classic deployment in a namespace of its own: an
// iptables OUTPUT rule queues the SYN-ACKs of a listener; NFQueue must
// report them and DROP them (the connecting client never completes), and
// ACCEPT those to a PassList destination (that client connects).
func TestNFQueue(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and iptables rules")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	_, err6 := exec.LookPath("ip6tables")
	ns := newNetns(t)
	cmd(t, "ip", "-n", ns, "link", "set", "lo", "up")
	cmd(t, "ip", "-n", ns, "addr", "add", "198.18.0.1/32", "dev", "lo") // the pass-listed client

	const queue = 7
	q, err := NewNFQueue(&NFQueueConfig{Queue: queue, PassList: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/31")}})
	if err != nil {
		t.Fatal(err)
	}
	var ln4, ln6 net.Listener
	err = inNetns(ns, func() error {
		var err error
		if ln4, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if err6 == nil {
			if ln6, err = net.Listen("tcp6", "[::1]:0"); err != nil {
				return err
			}
		}
		return q.Open()
	})
	if ln4 != nil {
		t.Cleanup(func() { ln4.Close() })
	}
	if ln6 != nil {
		t.Cleanup(func() { ln6.Close() })
	}
	if err != nil {
		q.Close()
		t.Fatal(err)
	}
	port4 := ln4.Addr().(*net.TCPAddr).Port
	addRule(t, ns, "iptables", port4, queue)
	var port6 int
	if ln6 != nil {
		port6 = ln6.Addr().(*net.TCPAddr).Port
		addRule(t, ns, "ip6tables", port6, queue)
	}

	var mu sync.Mutex
	var seen []capture.Flow
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- q.Run(ctx, func(pkts []capture.Packet) {
			mu.Lock()
			defer mu.Unlock()
			for i := range pkts {
				if pkts[i].HasFlags(capture.FlagSYN | capture.FlagACK) {
					seen = append(seen, pkts[i].Flow())
				}
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		q.Close()
	})
	waitBound(t, ns, queue)

	dial := func(network, local, remote string, timeout time.Duration) (netip.AddrPort, error) {
		var la netip.AddrPort
		err := inNetns(ns, func() error {
			d := net.Dialer{Timeout: timeout}
			if local != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, err := d.DialContext(ctx, network, remote)
			if err != nil {
				return err
			}
			la = c.LocalAddr().(*net.TCPAddr).AddrPort()
			return c.Close()
		})
		return la, err
	}
	check := func(name string, listener net.Listener) {
		t.Run(name, func(t *testing.T) {
			remote := listener.Addr().String()
			if _, err := dial("tcp", "", remote, 1500*time.Millisecond); err == nil {
				t.Fatal("client connected: the SYN-ACK was not dropped")
			} else if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				t.Fatalf("dial: %v, want a timeout", err)
			}
			src := capture.EndpointFrom(listener.Addr().(*net.TCPAddr).AddrPort())
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, f := range seen {
				if f.Src == src {
					n++
				}
			}
			if n == 0 {
				t.Fatalf("no SYN-ACK from %v reported; saw %v", src, seen)
			}
		})
	}
	check("ipv4", ln4)
	if ln6 != nil {
		check("ipv6", ln6)
	} else {
		t.Log("ip6tables not found: IPv6 not tested")
	}
	t.Run("passlist", func(t *testing.T) {
		before := q.Stats()
		if _, err := dial("tcp4", "198.18.0.1", ln4.Addr().String(), 5*time.Second); err != nil {
			t.Fatalf("pass-listed client: %v", err)
		}
		if st := q.Stats(); st.Passed <= before.Passed || st.Reported != before.Reported {
			t.Errorf("stats before %+v after %+v", before, st)
		}
	})
	t.Run("netns-config", func(t *testing.T) {
		// NFQueueConfig.NetNS opens the socket in a namespace without
		// switching the caller's thread.
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		q2, err := NewNFQueue(&NFQueueConfig{Queue: queue + 1, NetNS: fd})
		if err != nil {
			t.Fatal(err)
		}
		defer q2.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- q2.Run(ctx, func([]capture.Packet) {}) }()
		waitBound(t, ns, queue+1)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	st := q.Stats()
	if st.Reported == 0 || st.Received != st.Reported+st.Passed+st.Undecodable || st.VerdictErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func cmd(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newNetns creates a network namespace deleted when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("tcnnfq-%d", os.Getpid())
	cmd(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	return ns
}

// addRule queues the responses from port to queue; the rule is deleted
// when the test ends (and dies with the namespace anyway).
func addRule(t *testing.T, ns, tool string, port, queue int) {
	t.Helper()
	rule := []string{"OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(port), "-j", "NFQUEUE", "--queue-num", strconv.Itoa(queue)}
	cmd(t, "ip", append([]string{"netns", "exec", ns, tool, "-I"}, rule...)...)
	t.Cleanup(func() {
		exec.Command("ip", append([]string{"netns", "exec", ns, tool, "-D"}, rule...)...).Run()
	})
}

// waitBound waits until the namespace's kernel lists queue as bound, so no
// SYN-ACK meets an unbound queue (the kernel would drop it).
func waitBound(t *testing.T, ns string, queue int) {
	t.Helper()
	waitFor(t, "queue bound", func() bool {
		out, _ := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/netfilter/nfnetlink_queue").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == strconv.Itoa(queue) {
				return true
			}
		}
		return false
	})
}

// inNetns runs fn on a thread switched into the named namespace, then
// switches back. If switching back fails the thread stays locked, so the
// runtime discards it instead of reusing it in the wrong namespace.
func inNetns(name string, fn func() error) error {
	target, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer unix.Close(target)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
