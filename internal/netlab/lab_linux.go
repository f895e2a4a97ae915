package netlab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/internal/netns"
)

// netnsDir is where "ip netns" keeps its named namespaces (NETNS_RUN_DIR).
const netnsDir = "/var/run/netns"

const (
	// stopGrace is how long a started process has to exit after SIGTERM.
	stopGrace = 3 * time.Second
	// waitDelay bounds the wait for output pipes held open by a grandchild.
	waitDelay = 5 * time.Second
	// readyTimeout bounds the wait for the kernel to make a link or an
	// address usable.
	readyTimeout = 10 * time.Second
	// dialTimeout bounds [NS.Dial]; inside a lab a connect either completes
	// or is refused at once, so hitting it means the topology is wrong.
	dialTimeout = 30 * time.Second
)

var (
	nsSeq     atomic.Uint64 // namespaces made by this process
	staleOnce sync.Once     // the stale-namespace sweep runs once per process
)

// A Lab makes namespaces and links for one test and removes them when the
// test ends. It is safe for concurrent use; like t.Fatal, the methods of a Lab
// and its namespaces that fail the test belong on the test's goroutine.
type Lab struct {
	t  testing.TB
	ip string // path of the ip tool
}

// New returns a lab bound to t. It skips the test when the process is not
// root, lacks CAP_SYS_ADMIN or CAP_NET_ADMIN, or the ip tool is missing. The
// first call in a process deletes namespaces left by crashed earlier runs.
func New(t testing.TB) *Lab {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		t.Skipf("netlab: not root (euid %d): skipping privileged test", euid)
	}
	if err := checkCaps(); err != nil {
		t.Skipf("netlab: %v: skipping privileged test", err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("netlab: ip not found in PATH: skipping")
	}
	l := &Lab{t: t, ip: ip}
	staleOnce.Do(func() { l.removeStale(true) })
	return l
}

// checkCaps reports a missing capability (root in a restricted container).
func checkCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}} {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			return fmt.Errorf("missing %s", c.name)
		}
	}
	return nil
}

// Require skips the test unless every tool is in PATH.
func (l *Lab) Require(tools ...string) {
	l.t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			l.t.Skipf("netlab: %s not found in PATH: skipping", tool)
		}
	}
}

// RequireIPv6 skips the test when the kernel has IPv6 disabled.
func (l *Lab) RequireIPv6() {
	l.t.Helper()
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		l.t.Skip("netlab: kernel without IPv6: skipping")
	}
}

// removeStale deletes namespaces named by this package that no running test
// owns: those whose creating process is gone and, when ownAreStale is set (on
// the first New of the process, before it made any namespace), those bearing
// this process's pid, which an earlier process with the same pid left. A live
// pid other than ours keeps its namespaces even if the pid was reused, and so
// does a namespace made in another pid namespace, whose pids cannot be checked
// from here: deleting too little is harmless, deleting too much is not.
func (l *Lab) removeStale(ownAreStale bool) {
	self, err := self()
	if err != nil {
		l.t.Logf("netlab: not sweeping stale namespaces: %v", err)
		return
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // no namespaces at all
	}
	for _, e := range entries {
		o, ok := nsOwner(e.Name())
		if !ok || o.pidNS != self.pidNS {
			continue
		}
		why := fmt.Sprintf("pid %d is gone", o.pid)
		if o.pid == self.pid {
			if !ownAreStale {
				continue
			}
			why = fmt.Sprintf("made by an earlier process with pid %d", o.pid)
		} else if pidAlive(o.pid) {
			continue
		}
		out, err := l.run("netns", "del", e.Name())
		if err != nil {
			if _, serr := os.Stat(filepath.Join(netnsDir, e.Name())); errors.Is(serr, os.ErrNotExist) {
				continue // a concurrent run swept it first
			}
			l.t.Logf("netlab: delete stale namespace %s (%s): %v: %s", e.Name(), why, err, out)
			continue
		}
		l.t.Logf("netlab: deleted stale namespace %s (%s)", e.Name(), why)
	}
}

func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// self returns this process as the owner of the namespaces it makes.
func self() (owner, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return owner{}, fmt.Errorf("netlab: stat /proc/self/ns/pid: %w", err)
	}
	return owner{pidNS: st.Ino, pid: os.Getpid()}, nil
}

// run runs the ip tool with args in the caller's namespace and returns its
// combined output. Callers pass "-n NAME" or "netns ..." arguments: the lab
// never changes the root namespace.
func (l *Lab) run(args ...string) (string, error) {
	cmd := exec.Command(l.ip, args...)
	cmd.WaitDelay = waitDelay
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Namespace creates a network namespace for role (letters, digits, '-', '_'),
// brings its loopback up, turns IPv6 duplicate address detection off (the lab
// picks unique addresses), and deletes the namespace when the test ends.
func (l *Lab) Namespace(role string) *NS {
	l.t.Helper()
	if err := checkRole(role); err != nil {
		l.t.Fatal(err)
	}
	o, err := self()
	if err != nil {
		l.t.Fatal(err)
	}
	name := nsName(o, nsSeq.Add(1), role)
	if out, err := l.run("netns", "add", name); err != nil {
		l.t.Fatalf("netlab: ip netns add %s: %v\n%s", name, err, out)
	}
	n := &NS{lab: l, name: name, path: filepath.Join(netnsDir, name)}
	l.t.Cleanup(func() {
		if out, err := l.run("netns", "del", name); err != nil {
			l.t.Errorf("netlab: ip netns del %s: %v\n%s", name, err, out)
		}
	})
	n.IP("link", "set", "lo", "up")
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		// No duplicate address detection, also for the link-local addresses
		// of later links: while a link-local address is tentative the kernel
		// sends no neighbour solicitation for a forwarded packet (it has no
		// source address for it, ndisc_send_ns), so a router would drop the
		// first packets of a flow for about a second.
		n.Sysctl("net.ipv6.conf.all.accept_dad", "0")
		n.Sysctl("net.ipv6.conf.default.accept_dad", "0")
	}
	return n
}

// Link connects a and b with a veth pair, assigns aAddr to a's end and bAddr
// to b's, brings both up and returns the interface names.
func (l *Lab) Link(a *NS, aAddr netip.Prefix, b *NS, bAddr netip.Prefix) (aIf, bIf string) {
	l.t.Helper()
	return l.LinkWith(a, b, &LinkConfig{AAddrs: []netip.Prefix{aAddr}, BAddrs: []netip.Prefix{bAddr}})
}

// LinkWith connects a and b with a veth pair configured by c (nil: no
// addresses, default MTU), brings both ends up and returns their names. a and
// b may be the same namespace.
func (l *Lab) LinkWith(a, b *NS, c *LinkConfig) (aIf, bIf string) {
	l.t.Helper()
	if c == nil {
		c = &LinkConfig{}
	}
	for _, p := range slices.Concat(c.AAddrs, c.BAddrs) {
		if err := checkPrefix(p); err != nil {
			l.t.Fatal(err)
		}
	}
	if c.MTU < 0 {
		l.t.Fatalf("netlab: negative MTU %d", c.MTU)
	}
	aIf, bIf = a.nextIf(), b.nextIf()
	a.IP("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.name)
	if c.MTU != 0 {
		a.IP("link", "set", aIf, "mtu", fmt.Sprint(c.MTU))
		b.IP("link", "set", bIf, "mtu", fmt.Sprint(c.MTU))
	}
	// Up first, addresses second: an IPv6 address added while the link is
	// down leaves the first neighbour solicitation unanswered (seen on
	// Linux 6.18), delaying the first connection by the 1 s retransmit.
	a.IP("link", "set", aIf, "up")
	b.IP("link", "set", bIf, "up")
	for _, p := range c.AAddrs {
		a.AddAddr(aIf, p)
	}
	for _, p := range c.BAddrs {
		b.AddAddr(bIf, p)
	}
	a.waitLinkReady(aIf)
	b.waitLinkReady(bIf)
	return aIf, bIf
}

// An NS is a network namespace made by a [Lab]. It is safe for concurrent use.
type NS struct {
	lab  *Lab
	name string
	path string

	mu    sync.Mutex
	veths int // veth ends named so far
}

// Name returns the namespace name, as "ip netns" knows it.
func (n *NS) Name() string { return n.name }

// String returns the namespace name.
func (n *NS) String() string { return n.name }

func (n *NS) nextIf() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	name := fmt.Sprintf("veth%d", n.veths)
	n.veths++
	return name
}

// IP runs "ip -n NAME args..." and returns its output; an error fails the test.
func (n *NS) IP(args ...string) string {
	n.lab.t.Helper()
	args = append([]string{"-n", n.name}, args...)
	out, err := n.lab.run(args...)
	if err != nil {
		n.lab.t.Fatalf("netlab: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// AddAddr adds p to interface ifname. IPv6 addresses skip duplicate address
// detection (nodad), and AddAddr waits until the kernel has made them usable.
// Add addresses after the link is up, as [Lab.Link] does: an IPv6 address
// added to a link that is down leaves the first neighbour solicitation after
// the link comes up unanswered (seen on Linux 6.18).
func (n *NS) AddAddr(ifname string, p netip.Prefix) {
	n.lab.t.Helper()
	if err := checkPrefix(p); err != nil {
		n.lab.t.Fatal(err)
	}
	args := []string{"addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	n.IP(args...)
	if p.Addr().Is6() {
		n.waitUntil(ifname, "address "+p.String()+" usable", func(s linkState) bool {
			for _, a := range s.AddrInfo {
				if a.prefix() == p {
					return !a.Tentative
				}
			}
			return false
		})
	}
}

// AddRoute adds a route to dst through gateway via, of the same family.
func (n *NS) AddRoute(dst netip.Prefix, via netip.Addr) {
	n.lab.t.Helper()
	n.checkRoute(dst, via)
	n.IP("route", "add", dst.Masked().String(), "via", via.String())
}

// AddRouteVia adds a route to dst through gateway via on interface dev.
func (n *NS) AddRouteVia(dst netip.Prefix, via netip.Addr, dev string) {
	n.lab.t.Helper()
	n.checkRoute(dst, via)
	n.IP("route", "add", dst.Masked().String(), "via", via.String(), "dev", dev)
}

// AddRouteDev adds a route to dst directly out of interface dev (on-link).
func (n *NS) AddRouteDev(dst netip.Prefix, dev string) {
	n.lab.t.Helper()
	if err := checkPrefix(dst); err != nil {
		n.lab.t.Fatal(err)
	}
	n.IP("route", "add", dst.Masked().String(), "dev", dev)
}

func (n *NS) checkRoute(dst netip.Prefix, via netip.Addr) {
	n.lab.t.Helper()
	if err := checkPrefix(dst); err != nil {
		n.lab.t.Fatal(err)
	}
	if err := checkAddr(via); err != nil {
		n.lab.t.Fatal(err)
	}
	if dst.Addr().Is4() != via.Is4() {
		n.lab.t.Fatalf("netlab: route to %v via %v mixes address families", dst, via)
	}
}

// Addrs returns the addresses on interface ifname, link-local ones included.
func (n *NS) Addrs(ifname string) []netip.Prefix {
	n.lab.t.Helper()
	s, err := n.linkState(ifname)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	var ps []netip.Prefix
	for _, a := range s.AddrInfo {
		ps = append(ps, a.prefix())
	}
	return ps
}

// linkState is what the lab reads from "ip -j addr show dev IF".
type linkState struct {
	OperState string     `json:"operstate"`
	AddrInfo  []addrInfo `json:"addr_info"`
}

type addrInfo struct {
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
	Scope     string `json:"scope"`
	Tentative bool   `json:"tentative"`
	DADFailed bool   `json:"dadfailed"`
}

// prefix returns the address as a prefix; invalid if ip printed nonsense.
func (a addrInfo) prefix() netip.Prefix {
	ip, err := netip.ParseAddr(a.Local)
	if err != nil {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(ip, a.PrefixLen)
}

func (n *NS) linkState(ifname string) (linkState, error) {
	out, err := n.lab.run("-n", n.name, "-j", "addr", "show", "dev", ifname)
	if err != nil {
		return linkState{}, fmt.Errorf("netlab: %s: ip -j addr show dev %s: %v: %s", n.name, ifname, err, out)
	}
	var links []linkState
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return linkState{}, fmt.Errorf("netlab: %s: parse ip -j addr show dev %s: %v\n%s", n.name, ifname, err, out)
	}
	return links[0], nil
}

// waitUntil polls the state of ifname until ready reports true; after
// readyTimeout it fails the test, as it does at once on a failed DAD.
func (n *NS) waitUntil(ifname, what string, ready func(linkState) bool) {
	n.lab.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		s, err := n.linkState(ifname)
		if err != nil {
			n.lab.t.Fatal(err)
		}
		for _, a := range s.AddrInfo {
			if a.DADFailed {
				n.lab.t.Fatalf("netlab: %s: %s: duplicate address detection failed for %s", n.name, ifname, a.Local)
			}
		}
		if ready(s) {
			return
		}
		if time.Now().After(deadline) {
			n.lab.t.Fatalf("netlab: %s: %s: waited %v for %s:\n%s", n.name, ifname, readyTimeout, what,
				n.IP("addr", "show", "dev", ifname))
		}
		time.Sleep(delay)
	}
}

// waitLinkReady waits until a veth end can carry traffic: the kernel has
// processed the carrier change (operstate UP; until then the device keeps the
// noop qdisc, which drops every packet), made its IPv6 link-local address
// (the source of neighbour solicitations for forwarded packets) and finished
// with every tentative address. The kernel does these asynchronously (the
// linkwatch and addrconf work queues, both behind the RTNL lock), so under
// load they may lag the "ip" commands by a second.
func (n *NS) waitLinkReady(ifname string) {
	n.lab.t.Helper()
	wantLL := n.ipv6LinkLocal(ifname)
	n.waitUntil(ifname, "the link to come up", func(s linkState) bool {
		if s.OperState != "UP" {
			return false
		}
		haveLL := false
		for _, a := range s.AddrInfo {
			if a.Tentative {
				return false
			}
			haveLL = haveLL || a.Scope == "link"
		}
		return haveLL || !wantLL
	})
}

// ipv6LinkLocal reports whether the kernel will give ifname an IPv6
// link-local address: IPv6 is on and address generation is not "none".
func (n *NS) ipv6LinkLocal(ifname string) bool {
	want := false
	err := n.Do(func() error {
		dis, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6")
		if err != nil {
			return nil // kernel without IPv6
		}
		mode, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/addr_gen_mode")
		if err != nil {
			return err
		}
		want = strings.TrimSpace(string(dis)) == "0" && strings.TrimSpace(string(mode)) != "1" // IN6_ADDR_GEN_MODE_NONE
		return nil
	})
	if err != nil {
		n.lab.t.Fatalf("netlab: %s: read IPv6 settings of %s: %v", n.name, ifname, err)
	}
	return want
}

// Sysctl sets a per-namespace sysctl such as "net.ipv4.ip_forward" (dots or
// slashes; keys outside net. are refused) by writing its /proc/sys file from
// inside the namespace.
func (n *NS) Sysctl(key, value string) {
	n.lab.t.Helper()
	path, err := sysctlPath(key)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	if err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0) }); err != nil {
		n.lab.t.Fatalf("netlab: %s: sysctl %s=%s: %v", n.name, key, value, err)
	}
}

// GetSysctl reads a per-namespace sysctl (see [NS.Sysctl]), trimmed.
func (n *NS) GetSysctl(key string) string {
	n.lab.t.Helper()
	path, err := sysctlPath(key)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	var b []byte
	if err := n.Do(func() (err error) { b, err = os.ReadFile(path); return err }); err != nil {
		n.lab.t.Fatalf("netlab: %s: read sysctl %s: %v", n.name, key, err)
	}
	return strings.TrimSpace(string(b))
}

// Command returns an unstarted command that runs name with args inside the
// namespace ("ip netns exec NAME name args..."). If the test binary dies, the
// kernel kills the command (PR_SET_PDEATHSIG); note the signal fires when the
// creating OS thread exits, so do not start commands from a goroutine that
// stays locked to its thread and exits.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(n.lab.ip, append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay
	return cmd
}

// RunErr runs name with args inside the namespace and returns its combined
// output.
func (n *NS) RunErr(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := n.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("netlab: %s: %s: %w", n.name, strings.Join(cmd.Args[4:], " "), err)
	}
	return out.String(), err
}

// Run is [NS.RunErr] that fails the test, with the output, on error.
func (n *NS) Run(name string, args ...string) string {
	n.lab.t.Helper()
	out, err := n.RunErr(name, args...)
	if err != nil {
		n.lab.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// Start starts name with args in the background inside the namespace. When
// the test ends the lab sends the process SIGTERM, then SIGKILL after a grace
// period, and reaps it; its combined output is logged if the test failed.
// The caller may stop it early with cmd.Process.Signal and may call cmd.Wait,
// but must return from Wait before the test ends.
func (n *NS) Start(name string, args ...string) *exec.Cmd {
	n.lab.t.Helper()
	cmd := n.Command(name, args...)
	n.StartCmd(cmd)
	return cmd
}

// StartCmd starts cmd, which must come from [NS.Command] (its Stdout, Stderr,
// Stdin, Env and so on may have been set), and stops it like [NS.Start]. If
// Stdout and Stderr are both nil, the output is kept for the failure log.
func (n *NS) StartCmd(cmd *exec.Cmd) {
	n.lab.t.Helper()
	if cmd.Path != n.lab.ip || len(cmd.Args) < 5 || !slices.Equal(cmd.Args[1:4], []string{"netns", "exec", n.name}) {
		n.lab.t.Fatalf("netlab: StartCmd: %v was not made by %s.Command", cmd.Args, n.name)
	}
	var out *syncBuffer
	if cmd.Stdout == nil && cmd.Stderr == nil {
		out = new(syncBuffer)
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := cmd.Start(); err != nil {
		n.lab.t.Fatalf("netlab: %s: start %s: %v", n.name, strings.Join(cmd.Args[4:], " "), err)
	}
	n.lab.t.Cleanup(func() { n.stop(cmd, out) })
}

// stop ends a started process. os.Process signals through a pidfd, so a
// process already reaped is never confused with a later one of the same pid.
func (n *NS) stop(cmd *exec.Cmd, out *syncBuffer) {
	t := n.lab.t
	what := fmt.Sprintf("%s: %s (pid %d)", n.name, strings.Join(cmd.Args[4:], " "), cmd.Process.Pid)
	if cmd.ProcessState == nil { // the caller did not wait for it
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("netlab: SIGTERM %s: %v", what, err)
		}
		var err error
		select {
		case err = <-done:
		case <-time.After(stopGrace):
			t.Logf("netlab: %s ignored SIGTERM for %v: sending SIGKILL", what, stopGrace)
			if kerr := cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
				t.Errorf("netlab: SIGKILL %s: %v", what, kerr)
			}
			select {
			case err = <-done:
			case <-time.After(stopGrace + waitDelay):
				t.Errorf("netlab: %s did not exit after SIGKILL", what)
				return
			}
		}
		if t.Failed() {
			t.Logf("netlab: %s: %v", what, err)
		}
	}
	if out != nil && t.Failed() {
		t.Logf("netlab: output of %s:\n%s", what, out.String())
	}
}

// Do runs f on a new goroutine locked to an OS thread that is switched into
// the namespace, switches the thread back, and returns f's error
// (netns.Do). Sockets f creates stay in the namespace for their life and
// may be used from any goroutine afterwards; goroutines f starts run in the
// caller's namespace. Because f runs on another goroutine it must not call
// t.FailNow (t.Fatal); it returns an error instead. A panic in f is
// re-raised in the caller.
func (n *NS) Do(f func() error) error {
	fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", n.path, err)
	}
	defer unix.Close(fd)
	return netns.Do(fd, f)
}

// checkLiteral insists on an IP literal (or an empty host) in an internet
// address: resolving a name, and dialing several results in parallel, would
// run on other goroutines, outside the namespace.
func (n *NS) checkLiteral(network, address string) {
	n.lab.t.Helper()
	host := address
	switch {
	case strings.HasPrefix(network, "tcp"), strings.HasPrefix(network, "udp"):
		h, _, err := net.SplitHostPort(address)
		if err != nil {
			n.lab.t.Fatalf("netlab: %s: address %q: %v", n.name, address, err)
		}
		host = h
	case strings.HasPrefix(network, "ip"):
	default:
		return // unix sockets and the like
	}
	if host == "" {
		return
	}
	if _, err := netip.ParseAddr(host); err != nil {
		n.lab.t.Fatalf("netlab: %s: address %q: the host must be an IP literal", n.name, address)
	}
}

// Listen is net.Listen inside the namespace; an error fails the test and the
// listener is closed when the test ends. The host part must be empty or an
// IP literal.
func (n *NS) Listen(network, address string) net.Listener {
	n.lab.t.Helper()
	n.checkLiteral(network, address)
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen(network, address); return err }); err != nil {
		n.lab.t.Fatalf("netlab: %s: listen %s %s: %v", n.name, network, address, err)
	}
	n.lab.t.Cleanup(func() { ln.Close() })
	return ln
}

// ListenPacket is net.ListenPacket inside the namespace, like [NS.Listen].
func (n *NS) ListenPacket(network, address string) net.PacketConn {
	n.lab.t.Helper()
	n.checkLiteral(network, address)
	var pc net.PacketConn
	if err := n.Do(func() (err error) { pc, err = net.ListenPacket(network, address); return err }); err != nil {
		n.lab.t.Fatalf("netlab: %s: listen %s %s: %v", n.name, network, address, err)
	}
	n.lab.t.Cleanup(func() { pc.Close() })
	return pc
}

// Dial is net.Dial inside the namespace with a 30 s timeout; an error fails
// the test and the connection is closed when the test ends. The host must be
// an IP literal.
func (n *NS) Dial(network, address string) net.Conn {
	n.lab.t.Helper()
	n.checkLiteral(network, address)
	var c net.Conn
	d := net.Dialer{Timeout: dialTimeout}
	if err := n.Do(func() (err error) { c, err = d.Dial(network, address); return err }); err != nil {
		n.lab.t.Fatalf("netlab: %s: dial %s %s: %v", n.name, network, address, err)
	}
	n.lab.t.Cleanup(func() { c.Close() })
	return c
}

// syncBuffer collects a started process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
