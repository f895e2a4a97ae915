package intercept

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

// TestNFQueue runs the classic deployment in a namespace of its own: an
// iptables OUTPUT rule (installed by NFQueueRules) queues the SYN-ACKs of a
// listener; NFQueue must report them and DROP them (the connecting client
// never completes), and ACCEPT those to a PassList destination (that client
// connects).
func TestNFQueue(t *testing.T) {
	lab := netlab.New(t)
	lab.Require("iptables")
	_, err6 := exec.LookPath("ip6tables")
	ns := lab.Namespace("nfq")
	const (
		server4 = "198.18.0.2"
		pass4   = "198.18.0.1" // the pass-listed client
		server6 = "fd00:198:18::2"
	)
	ns.AddAddr("lo", netip.MustParsePrefix(server4+"/32"))
	ns.AddAddr("lo", netip.MustParsePrefix(pass4+"/32"))
	if err6 == nil {
		ns.AddAddr("lo", netip.MustParsePrefix(server6+"/128"))
	}

	const queue = 7
	q, err := NewNFQueue(&NFQueueConfig{Queue: queue, PassList: []netip.Prefix{netip.MustParsePrefix(pass4 + "/32")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(q.Open); err != nil {
		t.Fatal(err)
	}
	ln4 := ns.Listen("tcp4", server4+":0")
	ports := []uint16{uint16(ln4.Addr().(*net.TCPAddr).Port)}
	var ln6 net.Listener
	if err6 == nil {
		ln6 = ns.Listen("tcp6", "["+server6+"]:0")
		ports = append(ports, uint16(ln6.Addr().(*net.TCPAddr).Port))
	}
	family := "ipv4"
	if err6 == nil {
		family = ""
	}
	InstallTestRules(t, &NFQueueRulesConfig{Ports: ports, Queue: queue, Family: family, Command: ns.Command})

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
		err := ns.Do(func() error {
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
		if _, err := dial("tcp4", pass4, ln4.Addr().String(), 5*time.Second); err != nil {
			t.Fatalf("pass-listed client: %v", err)
		}
		if st := q.Stats(); st.Passed <= before.Passed || st.Reported != before.Reported {
			t.Errorf("stats before %+v after %+v", before, st)
		}
	})
	t.Run("burst", func(t *testing.T) {
		// Many SYNs at once: every SYN-ACK (and its retransmissions) is
		// reported and dropped, with fewer batch verdicts than packets when
		// they queue up. Bounded: 64 dials of at most 1 s each.
		before := q.Stats()
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				if _, err := dial("tcp4", "", ln4.Addr().String(), time.Second); err == nil {
					t.Error("a client connected")
				}
			})
		}
		wg.Wait()
		st := q.Stats()
		reported, batches := st.Reported-before.Reported, st.VerdictBatches-before.VerdictBatches
		t.Logf("burst: %d responses reported in %d batch verdicts", reported, batches)
		if reported < 64 || batches == 0 || batches > reported {
			t.Errorf("burst: %d reported, %d batches", reported, batches)
		}
	})
	t.Run("netns-config", func(t *testing.T) {
		// NFQueueConfig.NetNS opens the socket in a namespace without
		// switching the caller's thread.
		fd, err := unix.Open("/var/run/netns/"+ns.Name(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
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
	// SYN-ACK retransmissions keep coming; wait for a moment with none in
	// flight for the accounting.
	waitFor(t, "accounting", func() bool {
		st := q.Stats()
		return st.Received == st.Reported+st.Passed+st.Undecodable
	})
	if st := q.Stats(); st.Reported == 0 || st.VerdictErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestNFQueueBusyAndClose: a second NFQueue on a bound queue fails with the
// kernel's EPERM (another socket owns the queue, nfqnl_recv_config), Close
// stops a Run blocked in a read promptly, and closing the socket unbinds.
func TestNFQueueBusyAndClose(t *testing.T) {
	lab := netlab.New(t)
	ns := lab.Namespace("nfqc")
	const queue = 5
	q1, err := NewNFQueue(&NFQueueConfig{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(q1.Open); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q1.Run(context.Background(), func([]capture.Packet) {}) }()
	waitBound(t, ns, queue)

	q2, err := NewNFQueue(&NFQueueConfig{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if err := ns.Do(q2.Open); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q2.Run(ctx, func([]capture.Packet) {}); !errors.Is(err, unix.EPERM) {
		t.Errorf("second Run on queue %d: %v, want EPERM", queue, err)
	}

	start := time.Now()
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still running 5 s after Close")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := q1.Run(context.Background(), func([]capture.Packet) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if err := q1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	q3, err := NewNFQueue(&NFQueueConfig{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(q3.Open); err != nil {
		t.Fatal(err)
	}
	ctx3, cancel3 := context.WithCancel(context.Background())
	go func() { done <- q3.Run(ctx3, func([]capture.Packet) {}) }()
	waitBound(t, ns, queue)
	cancel3()
	if err := <-done; err != nil {
		t.Errorf("third Run: %v", err)
	}
}

// TestNFQueueRules installs and removes the rules in a namespace and checks
// that Remove takes away exactly what Install added, that a failed Install
// rolls back, and that Remove is idempotent.
func TestNFQueueRules(t *testing.T) {
	lab := netlab.New(t)
	lab.Require("iptables", "ip6tables")
	ns := lab.Namespace("rules")
	list := func(tool string) string { return ns.Run(tool, "-w", "5", "-S", "OUTPUT") }
	// A rule the administrator had already: Remove must leave it.
	ns.Run("iptables", "-w", "5", "-A", "OUTPUT", "-p", "tcp", "--sport", "80", "-j", "ACCEPT")
	before4, before6 := list("iptables"), list("ip6tables")

	r, err := NewNFQueueRules(&NFQueueRulesConfig{Ports: []uint16{80, 8080}, Queue: 3, Bypass: true, Command: ns.Command})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(); err != nil { // before Install: nothing to do
		t.Fatal(err)
	}
	if err := r.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Remove() })
	if err := r.Install(); err == nil {
		t.Error("second Install accepted")
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		out := list(tool)
		for _, port := range []string{"80", "8080"} {
			want := "--sport " + port + " -m comment --comment tcpcopy-intercept -j NFQUEUE --queue-num 3 --queue-bypass"
			if !strings.Contains(out, want) {
				t.Errorf("%s: no rule %q in\n%s", tool, want, out)
			}
		}
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if a, b := list("iptables"), list("ip6tables"); a != before4 || b != before6 {
		t.Errorf("after Remove:\n%s\n%s\nwant\n%s\n%s", a, b, before4, before6)
	}

	// ip6tables fails: the IPv4 rules already inserted are rolled back.
	bad, err := NewNFQueueRules(&NFQueueRulesConfig{Ports: []uint16{81}, IP6Tables: "/nonexistent/ip6tables", Command: ns.Command})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Install(); err == nil || !strings.Contains(err.Error(), "/nonexistent/ip6tables") {
		t.Errorf("Install with a missing tool: %v", err)
	}
	if a := list("iptables"); a != before4 {
		t.Errorf("after a failed Install:\n%s\nwant\n%s", a, before4)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitBound waits until the namespace's kernel lists queue as bound, so no
// SYN-ACK meets an unbound queue (the kernel would drop it).
func waitBound(t *testing.T, ns *netlab.NS, queue int) {
	t.Helper()
	waitFor(t, "queue bound", func() bool {
		out, _ := ns.RunErr("cat", "/proc/net/netfilter/nfnetlink_queue")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == strconv.Itoa(queue) {
				return true
			}
		}
		return false
	})
}

// InstallTestRules installs the NFQUEUE rules of cfg for a test or
// benchmark and removes them when it ends. (Exported for the package's
// external tests.)
func InstallTestRules(tb testing.TB, cfg *NFQueueRulesConfig) {
	tb.Helper()
	rules, err := NewNFQueueRules(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := rules.Install(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := rules.Remove(); err != nil {
			tb.Errorf("remove rules: %v", err)
		}
	})
}
