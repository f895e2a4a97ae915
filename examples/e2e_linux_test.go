package examples_test

// End-to-end lab tests of the built tcpcopy and intercept programs, run with
// their classic command lines inside network namespaces against real HTTP
// servers and the real Linux TCP stack. Addresses: 198.18.0.0/15 and
// fd00:198:18::/48 only. Every load is bounded in count and time.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

// accessLog is an HTTP server that writes one line per request to an access
// log file, as nginx or Apache would; the tests count requests the way
// TCPCopy's manual does, by counting the lines of the servers' logs.
type accessLog struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

func newAccessLog(t *testing.T, name string) *accessLog {
	path := filepath.Join(t.TempDir(), name+".access.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &accessLog{f: f, path: path}
}

func (a *accessLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := strings.Repeat("answer to "+r.URL.Path+"\n", 1+len(r.URL.Path)*7%300)
	a.mu.Lock()
	fmt.Fprintf(a.f, "%s - - [%s] \"%s %s %s\" 200 %d\n", r.RemoteAddr, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
		r.Method, r.URL.RequestURI(), r.Proto, len(body))
	a.mu.Unlock()
	io.WriteString(w, body)
}

// count is "grep -c PATTERN access.log".
func (a *accessLog) count(t *testing.T, pattern string) int {
	t.Helper()
	b, err := os.ReadFile(a.path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && strings.Contains(line, pattern) {
			n++
		}
	}
	return n
}

func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// prog is a built program running in a namespace.
type prog struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	out   *syncBuffer
	exit  chan error
	ready chan struct{}
}

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

// start runs the program in ns and waits (bounded) until it logs "ready".
func start(t *testing.T, ns *netlab.NS, name string, args ...string) *prog {
	t.Helper()
	p := &prog{t: t, name: name, out: &syncBuffer{}, exit: make(chan error, 1), ready: make(chan struct{})}
	p.cmd = ns.Command(filepath.Join(binaries(t), name), args...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	ns.StartCmd(p.cmd)
	t.Logf("started %s %s (pid %d)", name, strings.Join(args, " "), p.cmd.Process.Pid)
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		p.exit <- err
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var once sync.Once
		for sc.Scan() {
			p.out.Write(append(sc.Bytes(), '\n'))
			if strings.Contains(sc.Text(), "msg=ready") {
				once.Do(func() { close(p.ready) })
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.out.String())
		}
	})
	select {
	case <-p.ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not log ready in 20 s:\n%s", name, p.out.String())
	}
	return p
}

// term sends SIGTERM and waits (bounded) for the exit; it returns the exit
// code and how long the program took.
func (p *prog) term() (int, time.Duration) {
	p.t.Helper()
	begin := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case err := <-p.exit:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			p.t.Fatalf("%s: %v", p.name, err)
		}
		return code, time.Since(begin)
	case <-time.After(15 * time.Second):
		p.t.Fatalf("%s did not exit within 15 s of SIGTERM:\n%s", p.name, p.out.String())
	}
	return -1, 0
}

// finalReport returns the value of key in the program's final report line.
func (p *prog) finalReport(key string) string {
	for _, line := range strings.Split(p.out.String(), "\n") {
		if !strings.Contains(line, `msg="final report"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok && k == key {
				return v
			}
		}
	}
	return ""
}

// client makes requests from a namespace: half on keep-alive connections,
// half on a connection each.
type client struct {
	keep, short *http.Client
}

func newClient(ns *netlab.NS) *client {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = ns.Do(func() error {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &client{
		keep:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 16}},
		short: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}},
	}
}

// load makes n requests to base+"/tag/i" from k goroutines and returns how
// many failed. It is bounded by n and by the clients' timeouts.
func (c *client) load(base, tag string, n, k int) int {
	var failed, next atomic.Int64
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				hc := c.keep
				if i%2 == 1 {
					hc = c.short
				}
				resp, err := hc.Get(fmt.Sprintf("%s/%s/%d", base, tag, i))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	c.keep.CloseIdleConnections()
	return int(failed.Load())
}

// waitCount waits (at most 20 s, or 5 s without progress) until the log
// counts want lines matching pattern, and returns the count.
func waitCount(t *testing.T, log *accessLog, pattern string, want int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last, lastChange := -1, time.Now()
	for {
		n := log.count(t, pattern)
		if n >= want || time.Now().After(deadline) {
			time.Sleep(100 * time.Millisecond) // and not more
			return log.count(t, pattern)
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 5*time.Second {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func noRPFilter(nss ...*netlab.NS) {
	for _, ns := range nss {
		ns.Sysctl("net.ipv4.conf.all.rp_filter", "0")
		ns.Sysctl("net.ipv4.conf.default.rp_filter", "0")
	}
}

// rulesLeft returns the tcpcopy-intercept rules in ns's OUTPUT chain.
func rulesLeft(t *testing.T, ns *netlab.NS, tool string) []string {
	t.Helper()
	var left []string
	for _, line := range strings.Split(ns.Run(tool, "-w", "5", "-S", "OUTPUT"), "\n") {
		if strings.Contains(line, "tcpcopy-intercept") {
			left = append(left, line)
		}
	}
	return left
}

// nfqLab is the classic deployment: intercept on the target with its NFQUEUE
// rule; the target routes the clients back through the online host, which
// forwards, so only intercept keeps the responses from the real client.
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//	(fd00:198:18::1 -- ::2 online fd00:198:18:1::1 -- fd00:198:18:1::2 with ipv6)
type nfqLab struct {
	client, online, target *netlab.NS
	clientIP, onlineIP     netip.Addr
	targetIP               netip.Addr
	onlineLog, targetLog   *accessLog
	leaks                  *atomic.Int64
	tool                   string
}

func newNFQLab(t *testing.T, ipv6 bool) *nfqLab {
	lab := netlab.New(t)
	lab.Require("iptables")
	l := &nfqLab{client: lab.Namespace("client"), online: lab.Namespace("online"), target: lab.Namespace("target"), tool: "iptables"}
	cP, oP, rP, tP, cNet, tNet := "198.18.0.1/24", "198.18.0.2/24", "198.18.1.1/24", "198.18.1.2/24", "198.18.0.0/24", "198.18.1.0/24"
	network := "tcp4"
	if ipv6 {
		lab.Require("ip6tables")
		lab.RequireIPv6()
		l.tool, network = "ip6tables", "tcp6"
		cP, oP, rP, tP = "fd00:198:18::1/64", "fd00:198:18::2/64", "fd00:198:18:1::1/64", "fd00:198:18:1::2/64"
		cNet, tNet = "fd00:198:18::/64", "fd00:198:18:1::/64"
	}
	lab.Link(l.client, pfx(cP), l.online, pfx(oP))
	lab.Link(l.online, pfx(rP), l.target, pfx(tP))
	l.clientIP, l.onlineIP, l.targetIP = pfx(cP).Addr(), pfx(oP).Addr(), pfx(tP).Addr()
	l.client.AddRoute(pfx(tNet), l.onlineIP)
	l.target.AddRoute(pfx(cNet), pfx(rP).Addr())
	if ipv6 {
		l.online.Sysctl("net.ipv6.conf.all.forwarding", "1")
	} else {
		l.online.Sysctl("net.ipv4.ip_forward", "1")
	}
	noRPFilter(l.client, l.online, l.target)
	l.onlineLog, l.targetLog = newAccessLog(t, "online"), newAccessLog(t, "target")
	serveHTTP(t, l.online.Listen(network, netip.AddrPortFrom(l.onlineIP, 80).String()), l.onlineLog)
	serveHTTP(t, l.target.Listen(network, netip.AddrPortFrom(l.targetIP, 80).String()), l.targetLog)
	l.leaks = netlab.WatchFrom(t, l.client, l.targetIP)
	return l
}

func (l *nfqLab) hostport(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// startPair starts intercept on the target (installing its rule) and
// tcpcopy on the online host, with extra tcpcopy flags.
func (l *nfqLab) startPair(t *testing.T, tcpcopyArgs ...string) (ic, tc *prog) {
	t.Helper()
	family := "ipv4"
	if l.targetIP.Is6() {
		family = "ipv6"
	}
	ic = start(t, l.target, "intercept", "--rules", "80", "--rules-family", family, "-b", l.targetIP.String(),
		"--secret", "e2e secret", "--stats-interval", "1")
	if n := len(rulesLeft(t, l.target, l.tool)); n != 1 {
		t.Fatalf("intercept --rules 80 installed %d rules, want 1", n)
	}
	args := append([]string{"-x", l.hostport(l.onlineIP, 80) + "-" + l.hostport(l.targetIP, 80),
		"-s", l.hostport(l.targetIP, 36524), "--secret", "e2e secret", "--stats-interval", "1"}, tcpcopyArgs...)
	tc = start(t, l.online, "tcpcopy", args...)
	return ic, tc
}

// stopPair stops both programs with SIGTERM, checks they exit 0 with a
// final report, and that the rule is gone.
func (l *nfqLab) stopPair(t *testing.T, ic, tc *prog) {
	t.Helper()
	for _, p := range []*prog{tc, ic} {
		code, took := p.term()
		if code != 0 || p.finalReport("captured") == "" {
			t.Errorf("%s: exit %d after SIGTERM (%v), final report captured=%q", p.name, code, took, p.finalReport("captured"))
		}
	}
	if left := rulesLeft(t, l.target, l.tool); len(left) != 0 {
		t.Errorf("rules left after intercept exited: %q", left)
	}
}

func (l *nfqLab) base() string { return "http://" + l.hostport(l.onlineIP, 80) }

// TestNFQueueDeployment: intercept on the target with the rule it installs
// itself; every request the online server handled is handled by the target,
// no response reaches the real client, and the rule is gone at the end.
func TestNFQueueDeployment(t *testing.T) {
	l := newNFQLab(t, false)
	ic, tc := l.startPair(t, "--metrics-addr", "198.18.0.2:9100")
	const n = 300
	if failed := newClient(l.client).load(l.base(), "nfq", n, 4); failed != 0 {
		t.Fatalf("%d client requests failed", failed)
	}
	online := l.onlineLog.count(t, "/nfq/")
	got := waitCount(t, l.targetLog, "/nfq/", online)
	t.Logf("online server: %d requests, target: %d", online, got)
	if online != n || got != n {
		t.Errorf("online %d, target %d, want %d each", online, got, n)
	}
	// The Prometheus endpoint has the same counters.
	metrics := scrape(t, l.client, "http://198.18.0.2:9100/metrics")
	for _, want := range []string{"tcpcopy_session_started_total ", "tcpcopy_copy_ratio 1", "tcpcopy_capture_kernel_drops_total 0", "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if leaks := l.leaks.Load(); leaks != 0 {
		t.Errorf("%d packets of the target reached the real client", leaks)
	}
	l.stopPair(t, ic, tc)
	t.Logf("tcpcopy final: ratio=%s started=%s; intercept final: routed=%s", tc.finalReport("ratio"),
		tc.finalReport("started"), ic.finalReport("routed"))
}

// scrape fetches url from ns.
func scrape(t *testing.T, ns *netlab.NS, url string) string {
	t.Helper()
	resp, err := newClient(ns).keep.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: status %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestCopiesTwo: tcpcopy -n 2 doubles the target's load.
// TestCopiesTwo also captures with TCPCopy's raw IP socket
// (--raw-capture); the other tests use the default AF_PACKET ring.
func TestCopiesTwo(t *testing.T) {
	l := newNFQLab(t, false)
	ic, tc := l.startPair(t, "-n", "2", "--raw-capture")
	const n = 200
	if failed := newClient(l.client).load(l.base(), "two", n, 4); failed != 0 {
		t.Fatalf("%d client requests failed", failed)
	}
	got := waitCount(t, l.targetLog, "/two/", 2*n)
	t.Logf("online server: %d requests, target: %d (-n 2)", l.onlineLog.count(t, "/two/"), got)
	if got != 2*n {
		t.Errorf("target handled %d requests, want %d", got, 2*n)
	}
	l.stopPair(t, ic, tc)
}

// TestIPv6: the classic deployment over IPv6 (ip6tables rule, raw IPv6
// capture and emit, native wire protocol over IPv6).
func TestIPv6(t *testing.T) {
	l := newNFQLab(t, true)
	ic, tc := l.startPair(t)
	const n = 100
	if failed := newClient(l.client).load(l.base(), "v6", n, 4); failed != 0 {
		t.Fatalf("%d client requests failed", failed)
	}
	got := waitCount(t, l.targetLog, "/v6/", n)
	t.Logf("online server: %d requests, target: %d (IPv6)", l.onlineLog.count(t, "/v6/"), got)
	if got != n {
		t.Errorf("target handled %d requests, want %d", got, n)
	}
	if leaks := l.leaks.Load(); leaks != 0 {
		t.Errorf("%d packets of the target reached the real client", leaks)
	}
	l.stopPair(t, ic, tc)
}

// TestAssistantDeployment: TCPCopy 1.x's default. The target routes the
// client network to the assistant, whose IP forwarding is off; intercept
// there captures the responses with AF_PACKET (-i, -F) and the assistant
// black-holes them.
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//	online 198.18.3.1 -- 198.18.3.2 assistant 198.18.2.2 -- 198.18.2.1 target
func TestAssistantDeployment(t *testing.T) {
	lab := netlab.New(t)
	client, online := lab.Namespace("client"), lab.Namespace("online")
	target, assistant := lab.Namespace("target"), lab.Namespace("assistant")
	lab.Link(client, pfx("198.18.0.1/24"), online, pfx("198.18.0.2/24"))
	lab.Link(online, pfx("198.18.1.1/24"), target, pfx("198.18.1.2/24"))
	_, toTarget := lab.Link(target, pfx("198.18.2.1/24"), assistant, pfx("198.18.2.2/24"))
	lab.Link(online, pfx("198.18.3.1/24"), assistant, pfx("198.18.3.2/24"))
	client.AddRoute(pfx("198.18.1.0/24"), addr("198.18.0.2"))
	online.Sysctl("net.ipv4.ip_forward", "1")
	assistant.Sysctl("net.ipv4.ip_forward", "0")
	// The black hole is all that keeps the responses from the client: the
	// assistant even has a route to the clients.
	assistant.AddRoute(pfx("198.18.0.0/24"), addr("198.18.3.1"))
	target.AddRoute(pfx("198.18.0.0/24"), addr("198.18.2.2"))
	noRPFilter(client, online, target, assistant)
	onlineLog, targetLog := newAccessLog(t, "online"), newAccessLog(t, "target")
	serveHTTP(t, online.Listen("tcp4", "198.18.0.2:80"), onlineLog)
	serveHTTP(t, target.Listen("tcp4", "198.18.1.2:80"), targetLog)
	leaks := netlab.WatchFrom(t, client, addr("198.18.1.2"))

	ic := start(t, assistant, "intercept", "-i", toTarget, "-F", "tcp and src port 80", "-b", "198.18.3.2", "--stats-interval", "1")
	tc := start(t, online, "tcpcopy", "-x", "80-198.18.1.2:80", "-s", "198.18.3.2", "--stats-interval", "1")
	const n = 300
	if failed := newClient(client).load("http://198.18.0.2", "assistant", n, 4); failed != 0 {
		t.Fatalf("%d client requests failed", failed)
	}
	got := waitCount(t, targetLog, "/assistant/", n)
	t.Logf("online server: %d requests, target: %d", onlineLog.count(t, "/assistant/"), got)
	if got != n {
		t.Errorf("target handled %d requests, want %d", got, n)
	}
	if n := leaks.Load(); n != 0 {
		t.Errorf("%d packets of the target reached the real client", n)
	}
	for _, p := range []*prog{tc, ic} {
		if code, _ := p.term(); code != 0 {
			t.Errorf("%s exited %d", p.name, code)
		}
	}
	t.Logf("intercept final: captured=%s routed=%s", ic.finalReport("captured"), ic.finalReport("routed"))
}

// TestManualExample is TCPCopy's manual's own example: two online servers,
// each under its own client load and each with its own tcpcopy (-f 0 and
// -f 1), copy to one target through one intercept, which routes each
// response to the tcpcopy that owns the client; the target receives the
// sum. Requests are counted as the manual does, in the servers' access
// logs, and the loss ratio 1 - target/(online1 + online2) is reported and
// held to at most 1%.
//
//	client1 198.18.0.1 -- 198.18.0.2 online1 198.18.1.1 -- 198.18.1.2 target
//	client2 198.18.4.1 -- 198.18.4.2 online2 198.18.5.1 -- 198.18.5.2 target
func TestManualExample(t *testing.T) {
	const maxLoss = 0.01
	lab := netlab.New(t)
	lab.Require("iptables")
	client1, online1 := lab.Namespace("client1"), lab.Namespace("online1")
	client2, online2 := lab.Namespace("client2"), lab.Namespace("online2")
	target := lab.Namespace("target")
	lab.Link(client1, pfx("198.18.0.1/24"), online1, pfx("198.18.0.2/24"))
	lab.Link(client2, pfx("198.18.4.1/24"), online2, pfx("198.18.4.2/24"))
	lab.Link(online1, pfx("198.18.1.1/24"), target, pfx("198.18.1.2/24"))
	lab.Link(online2, pfx("198.18.5.1/24"), target, pfx("198.18.5.2/24"))
	target.AddRoute(pfx("198.18.0.0/24"), addr("198.18.1.1"))
	target.AddRoute(pfx("198.18.4.0/24"), addr("198.18.5.1"))
	online1.Sysctl("net.ipv4.ip_forward", "1")
	online2.Sysctl("net.ipv4.ip_forward", "1")
	noRPFilter(online1, online2, target)
	log1, log2, targetLog := newAccessLog(t, "online1"), newAccessLog(t, "online2"), newAccessLog(t, "target")
	serveHTTP(t, online1.Listen("tcp4", "198.18.0.2:80"), log1)
	serveHTTP(t, online2.Listen("tcp4", "198.18.4.2:80"), log2)
	serveHTTP(t, target.Listen("tcp4", "0.0.0.0:80"), targetLog)

	ic := start(t, target, "intercept", "--rules", "80", "--rules-family", "ipv4", "--stats-interval", "1")
	tc1 := start(t, online1, "tcpcopy", "-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "-f", "0", "--stats-interval", "1")
	tc2 := start(t, online2, "tcpcopy", "-x", "80-198.18.5.2:80", "-s", "198.18.5.2", "-f", "1", "--stats-interval", "1")

	const n = 1000 // per online server
	var f1, f2 int
	var wg sync.WaitGroup
	wg.Go(func() { f1 = newClient(client1).load("http://198.18.0.2", "manual", n, 4) })
	wg.Go(func() { f2 = newClient(client2).load("http://198.18.4.2", "manual", n, 4) })
	wg.Wait()
	on1, on2 := log1.count(t, "/manual/"), log2.count(t, "/manual/")
	got := waitCount(t, targetLog, "/manual/", on1+on2)
	loss := 1 - float64(got)/float64(on1+on2)
	t.Logf("manual example: online1 handled %d, online2 %d, target %d: loss ratio %.4f%% (client errors %d, %d)",
		on1, on2, got, 100*loss, f1, f2)
	if on1 != n || on2 != n {
		t.Errorf("online servers handled %d and %d requests, want %d each", on1, on2, n)
	}
	if loss > maxLoss || got > on1+on2 {
		t.Errorf("target handled %d of %d requests: loss ratio %.4f%%, bound %.2f%%", got, on1+on2, 100*loss, 100*maxLoss)
	}
	for _, p := range []*prog{tc1, tc2, ic} {
		if code, _ := p.term(); code != 0 {
			t.Errorf("%s exited %d", p.name, code)
		}
	}
	t.Logf("tcpcopy 1: ratio=%s, tcpcopy 2: ratio=%s, intercept: routed=%s unrouted=%s",
		tc1.finalReport("ratio"), tc2.finalReport("ratio"), ic.finalReport("routed"), ic.finalReport("unrouted"))
	if left := rulesLeft(t, target, "iptables"); len(left) != 0 {
		t.Errorf("rules left: %q", left)
	}
}

// TestSIGTERMMidRun stops tcpcopy and intercept with SIGTERM while clients
// are still making requests: both exit 0 promptly with a final report, and
// intercept's rule is gone.
func TestSIGTERMMidRun(t *testing.T) {
	l := newNFQLab(t, false)
	ic, tc := l.startPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		newClient(l.client).load(l.base(), "term", 2000, 4)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for l.targetLog.count(t, "/term/") < 50 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	l.stopPair(t, ic, tc)
	for _, p := range []*prog{tc, ic} {
		if err := p.cmd.Process.Signal(syscall.Signal(0)); err == nil {
			t.Errorf("%s (pid %d) still runs", p.name, p.cmd.Process.Pid)
		}
	}
	<-done // the clients' load is bounded
}

// TestDemoSIGTERM runs the demo program and stops it with SIGTERM in the
// middle: it must leave no namespace, rule or process behind.
func TestDemoSIGTERM(t *testing.T) {
	netlab.New(t) // skips unless root with the ip tool
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not found: skipping")
	}
	bin := binaries(t)
	cmd := exec.Command(filepath.Join(bin, "demo"), "-bin", bin, "-deployment", "nfqueue", "-hold", "60s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	pid := cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "holding the lab") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not reach its load in 60 s:\n%s", out.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("the demo exited early (%v):\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	children := processesUnder(bin)
	if len(children) != 2 {
		t.Errorf("want tcpcopy and intercept running under the demo, found %v", children)
	}
	if ns := namespacesOf(pid); len(ns) != 4 {
		t.Errorf("want the demo's 4 namespaces, found %v", ns)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the demo did not exit within 30 s of SIGTERM:\n%s", out.String())
	}
	t.Logf("demo output:\n%s", out.String())
	if ns := namespacesOf(pid); len(ns) != 0 {
		t.Errorf("namespaces left behind: %v", ns)
	}
	if ps := processesUnder(bin); len(ps) != 0 {
		t.Errorf("processes left behind: %v", ps)
	}
	if !strings.Contains(out.String(), "lab removed") {
		t.Errorf("the demo did not report its cleanup")
	}
}

// namespacesOf lists the lab namespaces made by process pid (netlab names
// them tcn<pidns>.<pid>.<n>-<role>).
func namespacesOf(pid int) []string {
	entries, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "tcn") && strings.Contains(e.Name(), "."+strconv.Itoa(pid)+".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// processesUnder lists the processes whose executable lies in dir.
func processesUnder(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+"/") && !strings.HasSuffix(exe, "/demo") {
			out = append(out, e.Name()+" "+exe)
		}
	}
	return out
}

// TestOffline records the client side of a load on the online host into a
// pcap file, then replays it with tcpcopy -i FILE against the target: the
// target handles every recorded request, and tcpcopy ends by itself once
// the file and its sessions are done.
func TestOffline(t *testing.T) {
	l := newNFQLab(t, false)
	// Record: a raw IP socket on the online host sees the client's packets.
	file := filepath.Join(t.TempDir(), "online.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := emit.NewPcapWriter(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var capt *capture.RawIP
	if err := l.online.Do(func() (err error) { capt, err = capture.NewRawIP(nil); return err }); err != nil {
		t.Fatal(err)
	}
	recorded := make(chan error, 1)
	go func() {
		pkts := make([]capture.Packet, 64)
		for {
			n, err := capt.ReadPackets(pkts)
			for i := range n {
				if pkts[i].DstPort() == 80 {
					pw.WritePacket(pkts[i].Time, pkts[i].Data)
				}
			}
			if err != nil {
				recorded <- pw.Close()
				return
			}
		}
	}()
	const n = 100
	if failed := newClient(l.client).load(l.base(), "offline", n, 4); failed != 0 {
		t.Fatalf("%d client requests failed", failed)
	}
	time.Sleep(200 * time.Millisecond) // the last FINs
	capt.Close()
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Replay twice (-T 2) at 4x with the intercept on the target: the
	// target serves each recorded request twice.
	ic := start(t, l.target, "intercept", "--rules", "80", "--rules-family", "ipv4", "-b", l.targetIP.String(), "--stats-interval", "1")
	tc := l.online.Command(filepath.Join(binaries(t), "tcpcopy"), "-x", "198.18.0.2:80-198.18.1.2:80", "-s", "198.18.1.2",
		"-i", file, "-a", "4", "-I", "500", "-T", "2", "--tail", "10", "--stats-interval", "1")
	var out syncBuffer
	tc.Stdout, tc.Stderr = &out, &out
	l.online.StartCmd(tc)
	exited := make(chan error, 1)
	go func() { exited <- tc.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("tcpcopy offline: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("tcpcopy did not end its offline replay in 60 s:\n%s", out.String())
	}
	got := waitCount(t, l.targetLog, "/offline/", 2*n)
	t.Logf("recorded %d requests, the target handled %d from two rounds of replay", l.onlineLog.count(t, "/offline/"), got)
	if got != 2*n {
		t.Errorf("target handled %d requests, want %d\n%s", got, 2*n, out.String())
	}
	if code, _ := ic.term(); code != 0 {
		t.Errorf("intercept exited %d", code)
	}
}

// TestLinkLayer: tcpcopy captures at the link layer (-i, TCPCopy's
// --pcap-capture) and sends at the link layer (-o, --pcap-send), with the
// next hop's MAC from the neighbour table.
func TestLinkLayer(t *testing.T) {
	l := newNFQLab(t, false)
	// The online host's veth0 faces the client, veth1 the target.
	ic, tc := l.startPair(t, "-i", "veth0", "-F", "tcp and dst port 80 and dst host 198.18.0.2", "-o", "veth1")
	const n = 200
	if failed := newClient(l.client).load(l.base(), "link", n, 4); failed != 0 {
		t.Fatalf("%d client requests failed", failed)
	}
	got := waitCount(t, l.targetLog, "/link/", n)
	t.Logf("online server: %d requests, target: %d (AF_PACKET capture and send)", l.onlineLog.count(t, "/link/"), got)
	if got != n {
		t.Errorf("target handled %d requests, want %d", got, n)
	}
	l.stopPair(t, ic, tc)
}

// TestDaemonPIDFile: intercept -d goes to the background, -P writes its
// pid, -l its log; SIGTERM to that pid removes the rule and the pid file.
func TestDaemonPIDFile(t *testing.T) {
	l := newNFQLab(t, false)
	dir := t.TempDir()
	pidFile, logFile := filepath.Join(dir, "intercept.pid"), filepath.Join(dir, "intercept.log")
	out, err := l.target.RunErr(filepath.Join(binaries(t), "intercept"), "--rules", "80", "--rules-family", "ipv4",
		"-d", "-P", pidFile, "-l", logFile)
	if err != nil {
		t.Fatalf("intercept -d: %v: %s", err, out)
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		logged, _ := os.ReadFile(logFile)
		if pid > 0 && strings.Contains(string(logged), "msg=ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid file or ready log line in 10 s (parent printed %q):\n%s", out, logged)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if strings.TrimSpace(out) != strconv.Itoa(pid) {
		t.Errorf("the parent printed %q, the pid file says %d", out, pid)
	}
	if n := len(rulesLeft(t, l.target, "iptables")); n != 1 {
		t.Errorf("%d rules installed, want 1", n)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("daemon %d still runs 15 s after SIGTERM", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	if left := rulesLeft(t, l.target, "iptables"); len(left) != 0 {
		t.Errorf("rules left: %q", left)
	}
	logged, _ := os.ReadFile(logFile)
	if !strings.Contains(string(logged), `msg="final report"`) {
		t.Errorf("no final report in the log:\n%s", logged)
	}
}

// alive reports whether pid runs (a zombie, exited but not yet reaped by
// whoever adopted it, does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
