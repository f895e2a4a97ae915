package netlab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/internal/netns"
)

// helperEnv selects a helper role when the test binary re-executes itself.
const helperEnv = "NETLAB_TEST_HELPER"

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// exchange accepts one connection on ln, sends "hello" over c and expects it
// back upper-cased; it returns the client address the server saw.
func exchange(t *testing.T, ln net.Listener, c net.Conn) netip.AddrPort {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		remote netip.AddrPort
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		if err := ln.(*net.TCPListener).SetDeadline(deadline); err != nil {
			ch <- result{err: err}
			return
		}
		s, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer s.Close()
		s.SetDeadline(deadline)
		buf := make([]byte, 5)
		if _, err := io.ReadFull(s, buf); err != nil {
			ch <- result{err: err}
			return
		}
		if _, err := s.Write(bytes.ToUpper(buf)); err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{remote: s.RemoteAddr().(*net.TCPAddr).AddrPort()}
	}()
	c.SetDeadline(deadline)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != "HELLO" {
		t.Fatalf("read %q, want HELLO", buf)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	return netip.AddrPortFrom(r.remote.Addr().Unmap(), r.remote.Port())
}

// rootLinks returns the root namespace's links (read only).
func rootLinks(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	return string(out)
}

func TestLinkTCP(t *testing.T) {
	t.Parallel()
	t.Run("IPv4", func(t *testing.T) {
		t.Parallel()
		l := New(t)
		a, b := l.Namespace("a"), l.Namespace("b")
		aIf, bIf := l.Link(a, pfx("198.18.0.1/24"), b, pfx("198.18.0.2/24"))
		if aIf != "veth0" || bIf != "veth0" {
			t.Errorf("Link returned %q, %q; want veth0, veth0", aIf, bIf)
		}
		if got := b.Addrs(bIf); !containsPrefix(got, pfx("198.18.0.2/24")) {
			t.Errorf("Addrs(%s) = %v, want 198.18.0.2/24 among them", bIf, got)
		}
		if links := rootLinks(t); strings.Contains(links, a.Name()) || strings.Contains(links, b.Name()) {
			t.Errorf("a root-namespace link refers to the lab:\n%s", links)
		}

		var ln net.Listener
		if err := b.Do(func() (err error) { ln, err = net.Listen("tcp4", "198.18.0.2:0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var c net.Conn
		if err := a.Do(func() (err error) { c, err = net.Dial("tcp4", ln.Addr().String()); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := exchange(t, ln, c); got.Addr() != addr("198.18.0.1") {
			t.Errorf("server saw client %v, want 198.18.0.1", got)
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		t.Parallel()
		l := New(t)
		l.RequireIPv6()
		a, b := l.Namespace("a6"), l.Namespace("b6")
		l.Link(a, pfx("fd00:198:18::1/64"), b, pfx("fd00:198:18::2/64"))
		ln := b.Listen("tcp6", "[fd00:198:18::2]:0")
		c := a.Dial("tcp6", ln.Addr().String())
		if got := exchange(t, ln, c); got.Addr() != addr("fd00:198:18::1") {
			t.Errorf("server saw client %v, want fd00:198:18::1", got)
		}
	})
	t.Run("DualStack", func(t *testing.T) {
		t.Parallel()
		l := New(t)
		l.RequireIPv6()
		a, b := l.Namespace("a46"), l.Namespace("b46")
		_, bIf := l.LinkWith(a, b, &LinkConfig{
			AAddrs: []netip.Prefix{pfx("198.18.0.1/24"), pfx("fd00:198:18::1/64")},
			BAddrs: []netip.Prefix{pfx("198.18.0.2/24"), pfx("fd00:198:18::2/64")},
			MTU:    1400,
		})
		if out := b.IP("link", "show", bIf); !strings.Contains(out, "mtu 1400") {
			t.Errorf("MTU not applied:\n%s", out)
		}
		// Link returns only once the kernel has made the link usable.
		st, err := b.linkState(bIf)
		if err != nil {
			t.Fatal(err)
		}
		if st.OperState != "UP" {
			t.Errorf("operstate %q after Link, want UP", st.OperState)
		}
		ll := 0
		for _, a := range st.AddrInfo {
			if a.Tentative {
				t.Errorf("address %s still tentative after Link", a.Local)
			}
			if a.Scope == "link" {
				ll++
			}
		}
		if ll != 1 {
			t.Errorf("%d link-local addresses after Link, want 1: %+v", ll, st.AddrInfo)
		}
		for _, server := range []string{"198.18.0.2", "fd00:198:18::2"} {
			ln := b.Listen("tcp", net.JoinHostPort(server, "0"))
			c := a.Dial("tcp", ln.Addr().String())
			exchange(t, ln, c)
		}
	})
	t.Run("SameNamespace", func(t *testing.T) {
		t.Parallel()
		l := New(t)
		a := l.Namespace("loop")
		aIf, bIf := l.Link(a, pfx("198.18.0.1/24"), a, pfx("198.18.0.2/24"))
		if aIf == bIf {
			t.Fatalf("both ends named %q", aIf)
		}
	})
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// TestRouter connects client and server through a forwarding router, with
// IPv4 and IPv6, and checks the server sees the client's own address.
func TestRouter(t *testing.T) {
	t.Parallel()
	l := New(t)
	l.RequireIPv6()
	client, router, server := l.Namespace("client"), l.Namespace("router"), l.Namespace("server")
	l.LinkWith(client, router, &LinkConfig{
		AAddrs: []netip.Prefix{pfx("198.18.1.1/24"), pfx("fd00:198:18:1::1/64")},
		BAddrs: []netip.Prefix{pfx("198.18.1.254/24"), pfx("fd00:198:18:1::fe/64")},
	})
	l.LinkWith(router, server, &LinkConfig{
		AAddrs: []netip.Prefix{pfx("198.18.2.254/24"), pfx("fd00:198:18:2::fe/64")},
		BAddrs: []netip.Prefix{pfx("198.18.2.1/24"), pfx("fd00:198:18:2::1/64")},
	})
	rootForward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	router.Sysctl("net.ipv4.ip_forward", "1")
	router.Sysctl("net.ipv6.conf.all.forwarding", "1")
	if got := router.GetSysctl("net.ipv4.ip_forward"); got != "1" {
		t.Errorf("router ip_forward = %q, want 1", got)
	}
	client.AddRoute(pfx("198.18.2.0/24"), addr("198.18.1.254"))
	client.AddRoute(pfx("fd00:198:18:2::/64"), addr("fd00:198:18:1::fe"))
	server.AddRouteVia(pfx("198.18.1.0/24"), addr("198.18.2.254"), "veth0")
	server.AddRoute(pfx("fd00:198:18:1::/64"), addr("fd00:198:18:2::fe"))

	for _, tc := range []struct{ server, client string }{
		{"198.18.2.1", "198.18.1.1"},
		{"fd00:198:18:2::1", "fd00:198:18:1::1"},
	} {
		ln := server.Listen("tcp", net.JoinHostPort(tc.server, "0"))
		c := client.Dial("tcp", ln.Addr().String())
		if got := exchange(t, ln, c); got.Addr() != addr(tc.client) {
			t.Errorf("server saw client %v, want %s", got, tc.client)
		}
	}

	if after, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || !bytes.Equal(after, rootForward) {
		t.Errorf("root namespace ip_forward changed: %q -> %q (%v)", rootForward, after, err)
	}
}

// TestParallelLabs runs labs concurrently, as concurrent test binaries and
// parallel tests do, with the same addresses in each.
func TestParallelLabs(t *testing.T) {
	t.Parallel()
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := New(t)
			a, b := l.Namespace("pa"), l.Namespace("pb")
			l.Link(a, pfx("198.18.0.1/30"), b, pfx("198.18.0.2/30"))
			ln := b.Listen("tcp", "198.18.0.2:80")
			exchange(t, ln, a.Dial("tcp", "198.18.0.2:80"))
		})
	}
}

func TestSysctl(t *testing.T) {
	t.Parallel()
	l := New(t)
	n := l.Namespace("sysctl")
	root, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/rp_filter")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"2", "0"} {
		n.Sysctl("net.ipv4.conf.all.rp_filter", v)
		if got := n.GetSysctl("net/ipv4/conf/all/rp_filter"); got != v {
			t.Errorf("rp_filter = %q after setting %q", got, v)
		}
	}
	if after, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/rp_filter"); err != nil || !bytes.Equal(after, root) {
		t.Errorf("root namespace rp_filter changed: %q -> %q (%v)", root, after, err)
	}
}

// fatalTB records Fatal calls instead of failing the test; it must be used
// from a goroutine other than the test's, since Fatal ends the goroutine.
type fatalTB struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) { f.fatal(fmt.Sprint(args...)) }

func (f *fatalTB) Fatalf(format string, args ...any) { f.fatal(fmt.Sprintf(format, args...)) }

func (f *fatalTB) fatal(msg string) {
	f.mu.Lock()
	f.msgs = append(f.msgs, msg)
	f.mu.Unlock()
	runtime.Goexit()
}

// expectFatal runs f with a lab whose failures are recorded and returns the
// message of the Fatal call f must make.
func expectFatal(t *testing.T, l *Lab, f func(*Lab)) string {
	t.Helper()
	ftb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(&Lab{t: ftb, ip: l.ip})
	}()
	<-done
	ftb.mu.Lock()
	defer ftb.mu.Unlock()
	if len(ftb.msgs) != 1 {
		t.Errorf("got %d fatal calls %q, want 1", len(ftb.msgs), ftb.msgs)
		return ""
	}
	return ftb.msgs[0]
}

func TestRejects(t *testing.T) {
	t.Parallel()
	l := New(t)
	a, b := l.Namespace("reja"), l.Namespace("rejb")
	on := func(fl *Lab, n *NS) *NS { return &NS{lab: fl, name: n.name, path: n.path} }
	for _, tc := range []struct {
		name, want string
		f          func(*Lab)
	}{
		{"Link", "198.51.100.1", func(fl *Lab) {
			fl.Link(a, pfx("198.51.100.1/24"), b, pfx("198.18.0.2/24"))
		}},
		{"LinkB", "2001:db8::2", func(fl *Lab) {
			fl.LinkWith(a, b, &LinkConfig{BAddrs: []netip.Prefix{pfx("2001:db8::2/64")}})
		}},
		{"AddAddr", "192.0.2.1", func(fl *Lab) { on(fl, a).AddAddr("lo", pfx("192.0.2.1/24")) }},
		{"AddRouteDst", "0.0.0.0/0", func(fl *Lab) { on(fl, a).AddRoute(pfx("0.0.0.0/0"), addr("198.18.0.2")) }},
		{"AddRouteVia", "10.0.0.1", func(fl *Lab) { on(fl, a).AddRoute(pfx("198.18.5.0/24"), addr("10.0.0.1")) }},
		{"AddRouteFamily", "mixes", func(fl *Lab) { on(fl, a).AddRoute(pfx("198.18.5.0/24"), addr("fd00:198:18::1")) }},
		{"AddRouteDev", "::/0", func(fl *Lab) { on(fl, a).AddRouteDev(pfx("::/0"), "lo") }},
		{"Sysctl", "kernel.hostname", func(fl *Lab) { on(fl, a).Sysctl("kernel.hostname", "x") }},
		{"Role", "a/b", func(fl *Lab) { fl.Namespace("a/b") }},
		{"DialName", "IP literal", func(fl *Lab) { on(fl, a).Dial("tcp", "localhost:80") }},
		{"StartCmd", "not made by", func(fl *Lab) { on(fl, a).StartCmd(exec.Command("true")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := expectFatal(t, l, tc.f); !strings.Contains(msg, tc.want) {
				t.Errorf("fatal message %q does not mention %q", msg, tc.want)
			}
		})
	}
	// Nothing was created or changed by the rejected calls.
	for _, n := range []*NS{a, b} {
		if out := n.IP("-o", "link", "show"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
			t.Errorf("%s: links after rejected calls:\n%s", n, out)
		}
		if out := n.IP("-o", "addr", "show"); strings.Contains(out, "192.0.2.1") {
			t.Errorf("%s: addresses after rejected calls:\n%s", n, out)
		}
		for _, fam := range []string{"-4", "-6"} {
			if out := n.IP(fam, "route", "show"); strings.Contains(out, "198.18.5.0") || strings.Contains(out, "default") {
				t.Errorf("%s: routes after rejected calls:\n%s", n, out)
			}
		}
	}
}

// nsInode returns the inode of a network-namespace file.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// TestDo is not parallel: it ends by checking every thread of the process is
// back in the root namespace, which needs no Do in flight elsewhere.
func TestDo(t *testing.T) {
	l := New(t)
	n := l.Namespace("do")
	want := nsInode(t, n.path)
	root := nsInode(t, "/proc/self/ns/net")

	var inside uint64
	if err := n.Do(func() error {
		var st unix.Stat_t
		err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st)
		inside = st.Ino
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want || inside == root {
		t.Errorf("namespace inside Do: inode %d, want %d (root %d)", inside, want, root)
	}

	errBoom := errors.New("boom")
	if err := n.Do(func() error { return errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("Do returned %v, want %v", err, errBoom)
	}
	if err := n.Do(func() error { runtime.Goexit(); return nil }); !errors.Is(err, netns.ErrGoexit) {
		t.Errorf("Do with Goexit returned %v, want netns.ErrGoexit", err)
	}
	func() {
		defer func() {
			if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "kaboom") {
				t.Errorf("recovered %v, want a panic mentioning kaboom", p)
			}
		}()
		n.Do(func() error { panic("kaboom") })
	}()

	var gone *NS
	t.Run("deleted", func(t *testing.T) { gone = New(t).Namespace("gone") })
	if err := gone.Do(func() error { return nil }); err == nil {
		t.Error("Do in a deleted namespace succeeded")
	}

	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat(task, &st); err != nil {
			continue // the thread exited meanwhile
		}
		if st.Ino != root {
			t.Errorf("%s is in namespace %d, not the root one %d", task, st.Ino, root)
		}
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	t.Run("TERM", func(t *testing.T) {
		t.Parallel()
		var cmd *exec.Cmd
		t.Run("start", func(t *testing.T) {
			l := New(t)
			n := l.Namespace("sleep")
			cmd = n.Start("sleep", "60")
			// "ip netns exec" enters the namespace, then execs sleep in place.
			want := nsInode(t, n.path)
			procNS := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
			for i := 0; ; i++ {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
				if strings.TrimSpace(string(comm)) == "sleep" && nsInode(t, procNS) == want {
					break
				}
				if i == 100 {
					t.Fatalf("pid %d is %q, not sleep inside %s", cmd.Process.Pid, comm, n)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		checkStopped(t, cmd, syscall.SIGTERM)
	})
	t.Run("KILL", func(t *testing.T) {
		t.Parallel()
		var cmd *exec.Cmd
		t.Run("start", func(t *testing.T) {
			l := New(t)
			n := l.Namespace("stubborn")
			cmd = n.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"=ignore-term")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			n.StartCmd(cmd)
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				t.Fatalf("helper said %q, %v; want ready", line, err)
			}
		})
		checkStopped(t, cmd, syscall.SIGKILL)
	})
	t.Run("Waited", func(t *testing.T) {
		t.Parallel()
		l := New(t)
		cmd := l.Namespace("true").Start("true")
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Run", func(t *testing.T) {
		t.Parallel()
		l := New(t)
		n := l.Namespace("run")
		l.Link(n, pfx("198.18.3.1/24"), l.Namespace("peer"), pfx("198.18.3.2/24"))
		if out := n.Run("ip", "-o", "addr", "show", "dev", "veth0"); !strings.Contains(out, "198.18.3.1/24") {
			t.Errorf("ip addr inside the namespace:\n%s", out)
		}
		out, err := n.RunErr("sh", "-c", "echo oops; exit 3")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || out != "oops\n" {
			t.Errorf("RunErr = %q, %v; want oops and exit status 3", out, err)
		}
	})
}

// checkStopped checks the lab stopped and reaped cmd with sig.
func checkStopped(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) {
	t.Helper()
	if cmd == nil {
		t.Fatal("no process was started")
	}
	if cmd.ProcessState == nil {
		t.Fatalf("pid %d was not reaped by the cleanup", cmd.Process.Pid)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != sig {
		t.Errorf("pid %d ended with %v, want signal %v", cmd.Process.Pid, cmd.ProcessState, sig)
	}
	if err := unix.Kill(cmd.Process.Pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("kill(%d, 0) = %v after cleanup, want ESRCH", cmd.Process.Pid, err)
	}
}

// TestHelperProcess is not a test: other tests run the test binary with
// helperEnv set to get a child process with a given behaviour.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("helper process for other tests")
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	case "fail":
		// Fail after building a lab: the cleanup must still remove it.
		l := New(t)
		a, b := l.Namespace("fa"), l.Namespace("fb")
		l.Link(a, pfx("198.18.0.1/24"), b, pfx("198.18.0.2/24"))
		a.Start("sleep", "60")
		fmt.Println("namespaces", a.Name(), b.Name())
		t.Fatal("failing on purpose")
	case "pid-reuse":
		// A namespace bearing our pid, made before our first New, is from an
		// earlier process with the same pid: New must sweep it.
		o, err := self()
		if err != nil {
			t.Fatal(err)
		}
		name := nsName(o, 1<<40, "old")
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
		}
		New(t)
		if nsExists(t, name) {
			exec.Command("ip", "netns", "del", name).Run()
			t.Fatalf("New kept %s", name)
		}
		fmt.Println("swept", name)
	case "crash":
		// Exit without cleanup, as a crashed test binary would.
		l := New(t)
		fmt.Println("namespaces", l.Namespace("crash").Name())
		os.Exit(3)
	}
}

// nsExists reports whether "ip netns" still knows name.
func nsExists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	_, err = os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	t.Run("Passed", func(t *testing.T) {
		t.Parallel()
		var names []string
		t.Run("lab", func(t *testing.T) {
			l := New(t)
			a, b := l.Namespace("ca"), l.Namespace("cb")
			l.Link(a, pfx("198.18.0.1/24"), b, pfx("198.18.0.2/24"))
			a.Start("sleep", "60")
			names = []string{a.Name(), b.Name()}
			for _, name := range names {
				if !nsExists(t, name) {
					t.Fatalf("namespace %s missing during the test", name)
				}
			}
		})
		if len(names) == 0 {
			t.Fatal("the lab subtest did not run")
		}
		for _, name := range names {
			if nsExists(t, name) {
				t.Errorf("namespace %s remains after cleanup", name)
			}
		}
	})
	t.Run("Failed", func(t *testing.T) {
		t.Parallel()
		New(t) // skip as the child would
		out, err := helper(t, "fail")
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("the failing helper returned %v, want an exit error\n%s", err, out)
		}
		names := helperNamespaces(t, out, 2)
		for _, name := range names {
			if nsExists(t, name) {
				t.Errorf("namespace %s remains after a failed test\n%s", name, out)
			}
		}
		if !strings.Contains(out, "output of") {
			t.Errorf("a failed test does not log its processes' output:\n%s", out)
		}
	})
	// Stale is not parallel, so that it finishes before the Failed helper
	// (whose New also sweeps stale namespaces) starts.
	t.Run("PidReuse", func(t *testing.T) {
		t.Parallel()
		New(t) // skip as the child would
		out, err := helper(t, "pid-reuse")
		if err != nil || !strings.Contains(out, "swept tcn") || !strings.Contains(out, "deleted stale namespace") {
			t.Errorf("helper: %v\n%s", err, out)
		}
	})
	t.Run("Stale", func(t *testing.T) {
		l := New(t)
		mine := l.Namespace("mine")
		out, err := helper(t, "crash")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("the crashing helper returned %v, want exit status 3\n%s", err, out)
		}
		stale := helperNamespaces(t, out, 1)[0]
		t.Cleanup(func() { // if the sweep below fails
			if nsExists(t, stale) {
				l.run("netns", "del", stale)
			}
		})
		if !nsExists(t, stale) {
			t.Skipf("the crashed helper's namespace %s was swept by a concurrent test binary", stale)
		}
		l.removeStale(false)
		if nsExists(t, stale) {
			t.Errorf("stale namespace %s was not removed", stale)
		}
		if !nsExists(t, mine.Name()) {
			t.Errorf("namespace %s of a live process was removed", mine)
		}
	})
}

// helper runs the test binary as a helper process with the given role.
func helper(t *testing.T, role string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	cmd.WaitDelay = waitDelay
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// helperNamespaces extracts the namespace names a helper printed.
func helperNamespaces(t *testing.T, out string, want int) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "namespaces "); ok {
			names := strings.Fields(rest)
			if len(names) != want {
				break
			}
			return names
		}
	}
	t.Fatalf("helper output lacks %d namespace names:\n%s", want, out)
	return nil
}

func TestDisableOffloads(t *testing.T) {
	t.Parallel()
	l := New(t)
	a, b := l.Namespace("ofa"), l.Namespace("ofb")
	aIf, bIf := l.Link(a, pfx("198.18.0.1/24"), b, pfx("198.18.0.2/24"))
	if on, err := a.offload(aIf, "tx-checksum"); err != nil || !on {
		t.Logf("tx-checksum before: on=%v, %v (a veth usually starts with it on)", on, err)
	}
	a.DisableOffloads(aIf)
	b.DisableOffloads(bIf)
	for _, o := range offloads {
		on, err := a.offload(aIf, o.name)
		if err != nil {
			t.Errorf("read %s: %v", o.name, err)
		} else if on {
			t.Errorf("%s still on", o.name)
		}
	}
	ln := b.Listen("tcp", "198.18.0.2:0")
	exchange(t, ln, a.Dial("tcp", ln.Addr().String()))
}
