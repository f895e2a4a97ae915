package intercept_test

// Privileged lab tests of the deployments of DESIGN.md section 2, built
// from the real stages (raw IP capture and emit, the session table, the
// Copier) in network namespaces with the real Linux TCP stack. Addresses
// are from 198.18.0.0/15 only.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/intercept"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session"
)

var labSecret = []byte("lab secret: 32 bytes of entropy!")

// countingServer is an HTTP server that records the request lines it
// handled and answers with a body whose size depends on the path.
type countingServer struct {
	mu    sync.Mutex
	lines []string
}

func (s *countingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.lines = append(s.lines, r.Method+" "+r.URL.RequestURI())
	s.mu.Unlock()
	io.WriteString(w, responseBody(r.URL.Path))
}

func (s *countingServer) handled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// responseBody spans several segments for some paths.
func responseBody(path string) string {
	n := uint(0)
	for _, c := range path {
		n = n*31 + uint(c)
	}
	return "answer to " + path + "\n" + strings.Repeat("x", int(n%6000))
}

func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// runner starts goroutines that end with the test, reporting errors that
// are not caused by the end.
type runner struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRunner(t *testing.T) *runner {
	r := &runner{t: t}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { r.cancel(); r.wg.Wait() })
	return r
}

func (r *runner) go_(name string, ctx context.Context, f func(ctx context.Context) error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := f(ctx); err != nil && ctx.Err() == nil {
			r.t.Errorf("%s: %v", name, err)
		}
	}()
}

// copierSide is tcpcopy on an online host: raw IP capture, a Rewriter,
// the session table, raw IP emit, and an intercept Client.
type copierSide struct {
	name    string
	ns      *netlab.NS
	own     netip.Prefix // the client addresses this copier announces
	table   *session.Table
	copier  *tcpcopy.Copier
	ic      *intercept.Client
	foreign atomic.Int64 // responses handed to this copier for another's client
	got     atomic.Int64 // responses handed to this copier
}

func startCopier(t *testing.T, r *runner, name string, ns *netlab.NS, rw rewrite.Rewriter, own netip.Prefix, servers []string) *copierSide {
	t.Helper()
	c := &copierSide{name: name, ns: ns, own: own}
	var capt *capture.RawIP
	var em *emit.RawIP
	if err := ns.Do(func() (err error) {
		if capt, err = capture.NewRawIP(nil); err != nil {
			return err
		}
		em, err = emit.NewRawIP(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	c.table = session.New(&session.Config{
		Emitter: em,
		OnOpen:  func(cl, tg capture.Endpoint) { c.ic.Announce(cl, tg) },
		OnClose: func(cl, tg capture.Endpoint) { c.ic.Remove(cl, tg) },
	})
	var err error
	c.copier, err = tcpcopy.NewCopier(&tcpcopy.Config{Capturer: capt, Rewriter: rw, Shards: 1,
		NewTable: func(int) tcpcopy.SessionTable { return c.table }})
	if err != nil {
		t.Fatal(err)
	}
	c.ic, err = intercept.NewClient(&intercept.ClientConfig{
		Servers:    servers,
		Secret:     labSecret,
		Backoff:    20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Handler: func(pkts []capture.Packet) {
			for i := range pkts {
				if !c.own.Contains(pkts[i].Dst()) {
					c.foreign.Add(1)
				}
			}
			c.got.Add(int64(len(pkts)))
			c.copier.Responses(pkts)
		},
		Dial: func(ctx context.Context, network, addr string) (nc net.Conn, err error) {
			err = ns.Do(func() error {
				nc, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return nc, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.go_(name+" intercept client", r.ctx, c.ic.Run)
	rctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if err := c.ic.Ready(rctx); err != nil {
		t.Fatalf("%s: intercept client not connected: %v", name, err)
	}
	r.go_(name+" copier", r.ctx, c.copier.Run)
	t.Cleanup(func() {
		t.Logf("%s: session %+v", name, c.table.Stats())
		t.Logf("%s: intercept client %+v", name, c.ic.Stats())
		t.Logf("%s: capture %+v, emit %+v", name, capt.Stats(), em.Stats())
	})
	return c
}

// interceptSide is intercept: an Interceptor and a Server.
type interceptSide struct {
	srv  *intercept.Server
	stop func() // closes the server and waits for Serve
}

func startServer(t *testing.T, r *runner, ns *netlab.NS, ic intercept.Interceptor, addr string) *interceptSide {
	t.Helper()
	srv, err := intercept.NewServer(&intercept.ServerConfig{Interceptor: ic, Secret: labSecret})
	if err != nil {
		t.Fatal(err)
	}
	ln := ns.Listen("tcp4", addr)
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.go_("intercept server", ctx, func(ctx context.Context) error {
		defer close(done)
		return srv.Serve(ctx, ln)
	})
	var once sync.Once
	s := &interceptSide{srv: srv, stop: func() { once.Do(func() { cancel(); <-done }) }}
	// Before the listener's own cleanup (cleanups run last first), so
	// Serve sees the end as an end, not as a failed listener.
	t.Cleanup(func() { s.stop(); t.Logf("intercept server: %+v", srv.Stats()) })
	return s
}

// startNFQueue opens an NFQueue in ns.
func startNFQueue(t *testing.T, ns *netlab.NS, queue uint16) *intercept.NFQueue {
	t.Helper()
	q, err := intercept.NewNFQueue(&intercept.NFQueueConfig{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(q.Open); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(); t.Logf("nfqueue: %+v", q.Stats()) })
	return q
}

// installRules installs the NFQUEUE rule for port in ns, removed at the end.
func installRules(t *testing.T, ns *netlab.NS, port, queue uint16) {
	t.Helper()
	intercept.InstallTestRules(t, &intercept.NFQueueRulesConfig{
		Ports: []uint16{port}, Queue: queue, Family: "ipv4", Command: ns.Command,
	})
}

// control sends a SYN from src in ns to dst (nobody listens there) and
// waits until the watcher counted it: the check that the watcher would see
// a leak.
func control(t *testing.T, from *netlab.NS, src, dst string, seen *atomic.Int64) {
	t.Helper()
	before := seen.Load()
	from.Do(func() error {
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp4", dst)
		if err == nil {
			c.Close()
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for seen.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if seen.Load() == before {
		t.Fatalf("control: a packet from %s to %s did not reach the watcher", from, dst)
	}
}

// httpClient makes requests from ns, one connection per request unless
// keepAlive.
func httpClient(ns *netlab.NS, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: !keepAlive,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = ns.Do(func() error {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// get makes a request and checks the real client got its answer unchanged.
func get(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("client request %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	path := url[strings.Index(url[len("http://"):], "/")+len("http://"):]
	if err != nil || resp.StatusCode != 200 || string(body) != responseBody(path) {
		t.Fatalf("client request %s: status %d, %d bytes, err %v: the client's own answer was disturbed",
			url, resp.StatusCode, len(body), err)
	}
}

// waitCopied waits (bounded) until target handled every request in want,
// and fails listing the missing ones.
func waitCopied(t *testing.T, target *countingServer, want []string) {
	t.Helper()
	missing := func() []string {
		got := target.handled()
		var m []string
		for _, w := range want {
			if !slices.Contains(got, w) {
				m = append(m, w)
			}
		}
		return m
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("%d of %d requests not copied to the target: %q", len(m), len(want), m)
	}
}

// requests makes n short-connection requests and, over keep-alive
// connections, m more; it returns the request lines.
func requests(t *testing.T, ns *netlab.NS, online, tag string, n, m int) []string {
	t.Helper()
	var lines []string
	hc := httpClient(ns, false)
	for i := range n {
		p := fmt.Sprintf("/%s/short/%d", tag, i)
		get(t, hc, "http://"+online+p)
		lines = append(lines, "GET "+p)
	}
	ka := httpClient(ns, true)
	for i := range m {
		p := fmt.Sprintf("/%s/keepalive/%d", tag, i)
		get(t, ka, "http://"+online+p)
		lines = append(lines, "GET "+p)
	}
	ka.CloseIdleConnections()
	return lines
}

func transfer(t *testing.T, spec string) *rewrite.Transfer {
	t.Helper()
	tr, err := rewrite.ParseTransfer(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// classicLab is the classic deployment:
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//
// The target routes the client network back through the online host,
// which forwards, so without intercept the target's answers would reach
// the real client. An NFQUEUE rule (NFQueueRules) hands them to NFQueue on
// the target, which drops and reports them to the intercept Server there.
type classicLab struct {
	r                      *runner
	client, online, target *netlab.NS
	onlineSrv, targetSrv   *countingServer
	leaks                  *atomic.Int64
}

const (
	clientAddr = "198.18.0.1"
	onlineAddr = "198.18.0.2"
	targetAddr = "198.18.1.2"
	nfQueueNum = 7
)

func newClassicLab(t *testing.T) *classicLab {
	lab := netlab.New(t)
	lab.Require("iptables")
	l := &classicLab{
		r:      newRunner(t),
		client: lab.Namespace("client"),
		online: lab.Namespace("online"),
		target: lab.Namespace("target"),
	}
	lab.Link(l.client, pfx(clientAddr+"/24"), l.online, pfx(onlineAddr+"/24"))
	lab.Link(l.online, pfx("198.18.1.1/24"), l.target, pfx(targetAddr+"/24"))
	l.client.AddRoute(pfx("198.18.1.0/24"), addr(onlineAddr))
	l.online.Sysctl("net.ipv4.ip_forward", "1")
	l.target.AddRoute(pfx("198.18.0.0/24"), addr("198.18.1.1"))
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		l.target.Sysctl(k, "0")
	}
	l.onlineSrv, l.targetSrv = &countingServer{}, &countingServer{}
	serveHTTP(t, l.online.Listen("tcp4", onlineAddr+":80"), l.onlineSrv)
	serveHTTP(t, l.target.Listen("tcp4", targetAddr+":80"), l.targetSrv)
	l.leaks = netlab.WatchFrom(t, l.client, addr(targetAddr))
	return l
}

// TestDeployClassicNFQueue: intercept on the target with an NFQUEUE rule.
func TestDeployClassicNFQueue(t *testing.T) {
	l := newClassicLab(t)
	installRules(t, l.target, 80, nfQueueNum)
	startServer(t, l.r, l.target, startNFQueue(t, l.target, nfQueueNum), targetAddr+":36524")
	cp := startCopier(t, l.r, "copier", l.online, transfer(t, onlineAddr+":80-"+targetAddr+":80"),
		pfx("198.18.0.0/24"), []string{targetAddr + ":36524"})

	want := requests(t, l.client, onlineAddr, "nfq", 20, 10)
	waitCopied(t, l.targetSrv, want)
	if n := l.leaks.Load(); n != 0 {
		t.Errorf("%d packets from the target reached the real client", n)
	}
	if st := cp.table.Stats(); st.HandshakeTimeouts != 0 || cp.foreign.Load() != 0 {
		t.Errorf("session stats %+v, foreign responses %d", st, cp.foreign.Load())
	}
	control(t, l.target, targetAddr, clientAddr+":9", l.leaks)
}

// TestDeployServerRestart kills the intercept (Server and NFQueue) during a
// copy and starts a new one on the same address: the copier keeps running,
// reconnects and re-announces, sessions started afterwards are copied, and
// the sessions lost meanwhile are counted.
func TestDeployServerRestart(t *testing.T) {
	l := newClassicLab(t)
	installRules(t, l.target, 80, nfQueueNum)
	first := startServer(t, l.r, l.target, startNFQueue(t, l.target, nfQueueNum), targetAddr+":36524")
	cp := startCopier(t, l.r, "copier", l.online, transfer(t, onlineAddr+":80-"+targetAddr+":80"),
		pfx("198.18.0.0/24"), []string{targetAddr + ":36524"})

	before := requests(t, l.client, onlineAddr, "before", 10, 0)
	waitCopied(t, l.targetSrv, before)

	first.stop() // the intercept dies: no queue bound, the kernel drops the answers
	waitFor(t, "copier to see the server gone", func() bool { return cp.ic.Stats().Connected == 0 })
	during := requests(t, l.client, onlineAddr, "during", 5, 0)

	startServer(t, l.r, l.target, startNFQueue(t, l.target, nfQueueNum), targetAddr+":36524")
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cp.ic.Ready(rctx); err != nil {
		t.Fatalf("copier did not reconnect: %v", err)
	}
	after := requests(t, l.client, onlineAddr, "after", 10, 5)
	waitCopied(t, l.targetSrv, after)

	// The sessions of the outage either recover (re-announced, the target's
	// retransmitted SYN-ACK is routed) or time out in their handshake.
	copied := func() (n int) {
		got := l.targetSrv.handled()
		for _, d := range during {
			if slices.Contains(got, d) {
				n++
			}
		}
		return n
	}
	waitFor(t, "outage sessions to settle", func() bool {
		return copied()+int(cp.table.Stats().HandshakeTimeouts) >= len(during)
	})
	lost := len(during) - copied()
	ist, sst := cp.ic.Stats(), cp.table.Stats()
	t.Logf("sessions started while intercept was down: %d, of which lost: %d; ClientAdds the server missed: %d, re-announced: %d, reconnects: %d, handshake timeouts: %d",
		len(during), lost, ist.Servers[0].Missed, ist.Reannounced, ist.Servers[0].Reconnects, sst.HandshakeTimeouts)
	if ist.Servers[0].Reconnects != 1 || ist.Servers[0].Missed == 0 {
		t.Errorf("client stats %+v", ist)
	}
	if n := l.leaks.Load(); n != 0 {
		t.Errorf("%d packets from the target reached the real client", n)
	}
}

// TestDeployTwoCopiers: two online hosts, each with its own clients and
// copier, feed one target through one intercept server; each copier gets
// exactly its own responses.
//
//	client1 198.18.0.1 -- 198.18.0.2 online1 198.18.1.1 -- 198.18.1.2 target
//	client2 198.18.4.1 -- 198.18.4.2 online2 198.18.5.1 -- 198.18.5.2 target
func TestDeployTwoCopiers(t *testing.T) {
	lab := netlab.New(t)
	lab.Require("iptables")
	r := newRunner(t)
	client1, online1 := lab.Namespace("client1"), lab.Namespace("online1")
	client2, online2 := lab.Namespace("client2"), lab.Namespace("online2")
	target := lab.Namespace("target")
	lab.Link(client1, pfx("198.18.0.1/24"), online1, pfx("198.18.0.2/24"))
	lab.Link(client2, pfx("198.18.4.1/24"), online2, pfx("198.18.4.2/24"))
	lab.Link(online1, pfx("198.18.1.1/24"), target, pfx("198.18.1.2/24"))
	lab.Link(online2, pfx("198.18.5.1/24"), target, pfx("198.18.5.2/24"))
	target.AddRoute(pfx("198.18.0.0/24"), addr("198.18.1.1"))
	target.AddRoute(pfx("198.18.4.0/24"), addr("198.18.5.1"))
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		target.Sysctl(k, "0")
	}
	online1Srv, online2Srv, targetSrv := &countingServer{}, &countingServer{}, &countingServer{}
	serveHTTP(t, online1.Listen("tcp4", "198.18.0.2:80"), online1Srv)
	serveHTTP(t, online2.Listen("tcp4", "198.18.4.2:80"), online2Srv)
	serveHTTP(t, target.Listen("tcp4", "0.0.0.0:80"), targetSrv)
	leaks1 := netlab.WatchFrom(t, client1, addr("198.18.1.2"))
	leaks2 := netlab.WatchFrom(t, client2, addr("198.18.5.2"))

	installRules(t, target, 80, nfQueueNum)
	srv := startServer(t, r, target, startNFQueue(t, target, nfQueueNum), "0.0.0.0:36524")
	cp1 := startCopier(t, r, "copier1", online1, transfer(t, "198.18.0.2:80-198.18.1.2:80"),
		pfx("198.18.0.0/24"), []string{"198.18.1.2:36524"})
	cp2 := startCopier(t, r, "copier2", online2, transfer(t, "198.18.4.2:80-198.18.5.2:80"),
		pfx("198.18.4.0/24"), []string{"198.18.5.2:36524"})

	var want1, want2 []string
	var wg sync.WaitGroup
	wg.Go(func() { want1 = requests(t, client1, "198.18.0.2", "one", 15, 10) })
	wg.Go(func() { want2 = requests(t, client2, "198.18.4.2", "two", 15, 10) })
	wg.Wait()
	if t.Failed() {
		return
	}
	waitCopied(t, targetSrv, append(slices.Clone(want1), want2...))
	for _, cp := range []*copierSide{cp1, cp2} {
		if cp.foreign.Load() != 0 || cp.got.Load() == 0 {
			t.Errorf("%s: %d responses, %d of them for the other copier's clients", cp.name, cp.got.Load(), cp.foreign.Load())
		}
		if st := cp.table.Stats(); st.HandshakeTimeouts != 0 {
			t.Errorf("%s: session stats %+v", cp.name, st)
		}
	}
	if st := srv.srv.Stats(); st.Copiers != 2 || st.Takeovers != 0 {
		t.Errorf("server stats %+v", st)
	}
	if n1, n2 := leaks1.Load(), leaks2.Load(); n1+n2 != 0 {
		t.Errorf("%d and %d packets from the target reached the real clients", n1, n2)
	}
}

// waitFor polls cond for at most 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startAFPacket opens an AFPacket interceptor on ifname in ns.
func startAFPacket(t *testing.T, ns *netlab.NS, ifname string, targets ...netip.Prefix) *intercept.AFPacket {
	t.Helper()
	a, err := intercept.NewAFPacket(&intercept.AFPacketConfig{Ports: []uint16{80}, Interfaces: []string{ifname}, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(a.Open); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); t.Logf("af_packet: %+v", a.Stats()) })
	return a
}

// TestDeployAssistant: TCPCopy 1.x's default deployment.
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//	                     online 198.18.3.1 -- 198.18.3.2 assistant 198.18.2.2 -- 198.18.2.1 target
//
// The target routes the client network to the assistant, whose IP
// forwarding is off: it black-holes the answers after its AF_PACKET
// interceptor has seen them. The assistant has a route to the clients
// through the online host (which forwards), so the black hole is all that
// keeps the answers from the real client; the control at the end turns
// forwarding on and shows a packet then gets through.
func TestDeployAssistant(t *testing.T) {
	lab := netlab.New(t)
	r := newRunner(t)
	client, online := lab.Namespace("client"), lab.Namespace("online")
	target, assistant := lab.Namespace("target"), lab.Namespace("assistant")
	lab.Link(client, pfx(clientAddr+"/24"), online, pfx(onlineAddr+"/24"))
	lab.Link(online, pfx("198.18.1.1/24"), target, pfx(targetAddr+"/24"))
	_, toTarget := lab.Link(target, pfx("198.18.2.1/24"), assistant, pfx("198.18.2.2/24"))
	lab.Link(online, pfx("198.18.3.1/24"), assistant, pfx("198.18.3.2/24"))
	online.Sysctl("net.ipv4.ip_forward", "1")
	assistant.Sysctl("net.ipv4.ip_forward", "0")
	assistant.AddRoute(pfx("198.18.0.0/24"), addr("198.18.3.1"))
	target.AddRoute(pfx("198.18.0.0/24"), addr("198.18.2.2"))
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		target.Sysctl(k, "0")
		assistant.Sysctl(k, "0")
		online.Sysctl(k, "0")
	}
	onlineSrv, targetSrv := &countingServer{}, &countingServer{}
	serveHTTP(t, online.Listen("tcp4", onlineAddr+":80"), onlineSrv)
	serveHTTP(t, target.Listen("tcp4", targetAddr+":80"), targetSrv)
	leaks := netlab.WatchFrom(t, client, addr(targetAddr))

	af := startAFPacket(t, assistant, toTarget)
	startServer(t, r, assistant, af, "198.18.3.2:36524")
	cp := startCopier(t, r, "copier", online, transfer(t, onlineAddr+":80-"+targetAddr+":80"),
		pfx("198.18.0.0/24"), []string{"198.18.3.2:36524"})

	want := requests(t, client, onlineAddr, "assistant", 20, 10)
	waitCopied(t, targetSrv, want)
	if n := leaks.Load(); n != 0 {
		t.Errorf("%d packets from the target reached the real client", n)
	}
	if st := cp.table.Stats(); st.HandshakeTimeouts != 0 || cp.foreign.Load() != 0 {
		t.Errorf("session stats %+v, foreign responses %d", st, cp.foreign.Load())
	}
	if st := af.Stats(); st.Reported == 0 {
		t.Errorf("af_packet stats %+v", st)
	}
	assistant.Sysctl("net.ipv4.ip_forward", "1")
	control(t, target, targetAddr, clientAddr+":9", leaks)
}

// fakeClient is the -c rewrite of the two-box test: every copied packet's
// source becomes one fake client address.
type fakeClient struct{ a netip.Addr }

func (f fakeClient) Rewrite(p *capture.Packet) bool { return p.SetSrc(f.a) == nil }

// TestDeployTwoBox: intercept on the online host.
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//
// The copier rewrites the client address to 198.18.9.1, an address of the
// online host, and the target routes it back there; an iptables INPUT rule
// drops the answers (so the online host's TCP never sees them and answers
// with RSTs) after the AF_PACKET interceptor there has seen them.
func TestDeployTwoBox(t *testing.T) {
	lab := netlab.New(t)
	lab.Require("iptables")
	r := newRunner(t)
	client, online, target := lab.Namespace("client"), lab.Namespace("online"), lab.Namespace("target")
	lab.Link(client, pfx(clientAddr+"/24"), online, pfx(onlineAddr+"/24"))
	toTarget, _ := lab.Link(online, pfx("198.18.1.1/24"), target, pfx(targetAddr+"/24"))
	const fake = "198.18.9.1"
	online.AddAddr("lo", pfx(fake+"/32"))
	online.Sysctl("net.ipv4.ip_forward", "1")
	target.AddRoute(pfx("198.18.9.0/24"), addr("198.18.1.1"))
	target.AddRoute(pfx("198.18.0.0/24"), addr("198.18.1.1"))
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		target.Sysctl(k, "0")
	}
	drop := []string{"INPUT", "-s", targetAddr, "-d", fake, "-p", "tcp", "--sport", "80", "-j", "DROP"}
	online.Run("iptables", append([]string{"-w", "5", "-I"}, drop...)...)
	t.Cleanup(func() { online.RunErr("iptables", append([]string{"-w", "5", "-D"}, drop...)...) })

	onlineSrv, targetSrv := &countingServer{}, &countingServer{}
	serveHTTP(t, online.Listen("tcp4", onlineAddr+":80"), onlineSrv)
	serveHTTP(t, target.Listen("tcp4", targetAddr+":80"), targetSrv)
	leaks := netlab.WatchFrom(t, client, addr(targetAddr))

	af := startAFPacket(t, online, toTarget, pfx(targetAddr+"/32"))
	startServer(t, r, online, af, "198.18.1.1:36524")
	rw := rewrite.Chain(transfer(t, onlineAddr+":80-"+targetAddr+":80"), fakeClient{addr(fake)})
	cp := startCopier(t, r, "copier", online, rw, pfx(fake+"/32"), []string{"198.18.1.1:36524"})

	want := requests(t, client, onlineAddr, "twobox", 20, 10)
	waitCopied(t, targetSrv, want)
	if n := leaks.Load(); n != 0 {
		t.Errorf("%d packets from the target reached the real client", n)
	}
	if st := cp.table.Stats(); st.HandshakeTimeouts != 0 || st.TargetResets != 0 || cp.foreign.Load() != 0 {
		t.Errorf("session stats %+v, foreign responses %d", st, cp.foreign.Load())
	}
	if st := af.Stats(); st.Reported == 0 {
		t.Errorf("af_packet stats %+v", st)
	}
	// The drop rule saw the answers: the online host's TCP did not.
	out := online.Run("iptables", "-w", "5", "-L", "INPUT", "-v", "-x", "-n")
	dropped := 0
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "DROP" {
			fmt.Sscan(f[0], &dropped)
		}
	}
	t.Logf("INPUT drop rule: %d packets", dropped)
	if dropped == 0 {
		t.Errorf("the INPUT rule dropped nothing:\n%s", out)
	}
	control(t, target, targetAddr, clientAddr+":9", leaks)
}
