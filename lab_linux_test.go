package tcpcopy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
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

// countingServer is an HTTP server that records the request lines it
// handled and the body bytes it received. Paths choose the answer:
//
//	/big/N      N bytes
//	/slow/MS    waits MS milliseconds first (on servers with slow set)
//	/close/...  answers with "Connection: close" (on servers with closer set)
//	anything    a body whose size depends on the path (up to 9000 bytes)
type countingServer struct {
	slow, closer bool
	mu           sync.Mutex
	lines        []string
	received     atomic.Int64
}

func (s *countingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	s.received.Add(n)
	s.mu.Lock()
	s.lines = append(s.lines, r.Method+" "+r.URL.RequestURI())
	s.mu.Unlock()
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/big/"):
		size, _ := strconv.Atoi(path[len("/big/"):])
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := strings.Repeat("b", 64<<10)
		for size > 0 {
			k := min(size, len(chunk))
			io.WriteString(w, chunk[:k])
			size -= k
		}
		return
	case strings.HasPrefix(path, "/slow/") && s.slow:
		ms, _ := strconv.Atoi(path[len("/slow/"):])
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case strings.HasPrefix(path, "/close/") && s.closer:
		w.Header().Set("Connection", "close")
	}
	io.WriteString(w, responseBody(path))
}

func (s *countingServer) handled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// responseBody spans several segments for some paths, so that request
// pacing has multi-segment answers to wait for.
func responseBody(path string) string {
	if strings.HasPrefix(path, "/big/") {
		size, _ := strconv.Atoi(path[len("/big/"):])
		return strings.Repeat("b", size)
	}
	n := uint(0)
	for _, c := range path {
		n = n*31 + uint(c)
	}
	return "answer to " + path + "\n" + strings.Repeat("x", int(n%9000))
}

func serve(t *testing.T, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// labOptions vary the copying lab.
type labOptions struct {
	ipv6      bool
	session   session.Config // template for each shard's table (Emitter and hooks are set by the lab)
	rewriters []rewrite.Rewriter
	copies    tcpcopy.CopyRewriter
	shards    int
	slow      bool // the target answers /slow/ paths late
	closer    bool // the target closes /close/ connections
	noCopier  bool // the test starts the copier itself (startCopier)
}

// copyLab is the copying topology in three namespaces:
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//
// (fd00:198:18::/64 and fd00:198:18:1::/64 with ipv6). The target routes the
// client's network back through the online host, but an NFQUEUE rule hands
// its port 80 answers to intercept, which drops them and reports them to the
// copier on the online host.
type copyLab struct {
	t                      *testing.T
	opts                   labOptions
	client, online, target *netlab.NS
	onlineAddr, targetAddr string // host:port
	onlineSrv, targetSrv   *countingServer
	tables                 []*session.Table
	copier                 *tcpcopy.Copier
	ic                     *intercept.Client
	ctx                    context.Context
	goRun                  func(name string, f func() error)
}

func newCopyLab(t *testing.T, opts labOptions) *copyLab {
	lab := netlab.New(t)
	lab.Require("iptables")
	l := &copyLab{
		t: t, opts: opts,
		client: lab.Namespace("client"),
		online: lab.Namespace("online"),
		target: lab.Namespace("target"),
	}
	network, iptables := "tcp4", "iptables"
	clientP, onlineP := "198.18.0.1/24", "198.18.0.2/24"
	routerP, targetP, clientNet := "198.18.1.1/24", "198.18.1.2/24", "198.18.0.0/24"
	if opts.ipv6 {
		network, iptables = "tcp6", "ip6tables"
		clientP, onlineP = "fd00:198:18::1/64", "fd00:198:18::2/64"
		routerP, targetP, clientNet = "fd00:198:18:1::1/64", "fd00:198:18:1::2/64", "fd00:198:18::/64"
		lab.Require("ip6tables")
	}
	lab.Link(l.client, netip.MustParsePrefix(clientP), l.online, netip.MustParsePrefix(onlineP))
	lab.Link(l.online, netip.MustParsePrefix(routerP), l.target, netip.MustParsePrefix(targetP))
	l.target.AddRoute(netip.MustParsePrefix(clientNet), netip.MustParsePrefix(routerP).Addr())
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		l.target.Sysctl(k, "0")
	}
	l.target.Run(iptables, "-I", "OUTPUT", "-p", "tcp", "--sport", "80", "-j", "NFQUEUE", "--queue-num", "7")
	l.onlineAddr = netip.AddrPortFrom(netip.MustParsePrefix(onlineP).Addr(), 80).String()
	l.targetAddr = netip.AddrPortFrom(netip.MustParsePrefix(targetP).Addr(), 80).String()

	l.onlineSrv = &countingServer{}
	l.targetSrv = &countingServer{slow: opts.slow, closer: opts.closer}
	serve(t, l.online.Listen(network, l.onlineAddr), l.onlineSrv)
	serve(t, l.target.Listen(network, l.targetAddr), l.targetSrv)

	ctx, cancel := context.WithCancel(context.Background())
	l.ctx = ctx
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	l.goRun = func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}

	interceptAddr := netip.AddrPortFrom(netip.MustParsePrefix(targetP).Addr(), 36524).String()
	var srv *intercept.Server
	var nfq *intercept.NFQueue
	l.ic, srv, nfq = interceptPair(t, ctx, cancel, l.goRun, l.target, l.online, network, interceptAddr, 0,
		func(pkts []capture.Packet) {
			if c := l.copier; c != nil {
				c.Responses(pkts)
			}
		})
	if !opts.noCopier {
		l.startCopier()
	}
	t.Cleanup(func() {
		t.Logf("session stats: %+v", l.stats())
		if l.copier != nil {
			t.Logf("copier stats: %+v", l.copier.Stats())
		}
		t.Logf("intercept server: %+v", srv.Stats())
		t.Logf("nfqueue: %+v", nfq.Stats())
	})
	return l
}

// interceptPair runs the target side (an NFQUEUE interceptor on the lab's
// queue 7 and an intercept server at addr, reporting payload bytes of each
// response) and the intercept client that dials it from online, handing
// responses to handler. It returns once the client is connected.
func interceptPair(t *testing.T, ctx context.Context, cancel context.CancelFunc, goRun func(string, func() error),
	target, online *netlab.NS, network, addr string, payload int, handler func([]capture.Packet),
) (*intercept.Client, *intercept.Server, *intercept.NFQueue) {
	t.Helper()
	nfq, err := intercept.NewNFQueue(&intercept.NFQueueConfig{Queue: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Do(nfq.Open); err != nil {
		t.Fatal(err)
	}
	srv, err := intercept.NewServer(&intercept.ServerConfig{Interceptor: nfq, PayloadLimit: payload})
	if err != nil {
		t.Fatal(err)
	}
	ln := target.Listen(network, addr)
	t.Cleanup(cancel) // before the lab closes the listener
	goRun("intercept server", func() error { return srv.Serve(ctx, ln) })
	// The client connects first, so that sessions can be announced before
	// their SYN.
	ic, err := intercept.NewClient(&intercept.ClientConfig{
		Servers: []string{addr},
		Handler: handler,
		Dial: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = online.Do(func() error {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	goRun("intercept client", func() error { return ic.Run(ctx) })
	readyCtx, readyCancel := context.WithTimeout(ctx, 10*time.Second)
	defer readyCancel()
	if err := ic.Ready(readyCtx); err != nil {
		t.Fatalf("intercept client not connected: %v", err)
	}
	return ic, srv, nfq
}

// newTables makes each shard's session table from template, with the
// lab's emitter, announcements to intercept, debug logs when verbose, and
// collects the tables in *tables.
func newTables(t *testing.T, template session.Config, em emit.Emitter, ic *intercept.Client, tables *[]*session.Table) func(int) tcpcopy.SessionTable {
	var mu sync.Mutex
	return func(int) tcpcopy.SessionTable {
		cfg := template
		cfg.Emitter = em
		if cfg.Logger == nil && testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		cfg.OnOpen = func(c, tg capture.Endpoint) { ic.Announce(c, tg) }
		cfg.OnClose = func(c, tg capture.Endpoint) { ic.Remove(c, tg) }
		tab := session.New(&cfg)
		mu.Lock()
		*tables = append(*tables, tab)
		mu.Unlock()
		return tab
	}
}

// makeCopier builds the online side: raw IP capture, the transfer map and
// other rewriters, one session table per shard, raw IP emit.
func (l *copyLab) makeCopier() {
	t := l.t
	network := "ip4"
	if l.opts.ipv6 {
		network = "ip6"
	}
	var capt *capture.RawIP
	var em *emit.RawIP
	if err := l.online.Do(func() (err error) {
		if capt, err = capture.NewRawIP(&capture.RawIPConfig{Network: network}); err != nil {
			return err
		}
		em, err = emit.NewRawIP(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		t.Logf("capture: %+v, emit: %+v", capt.Stats(), em.Stats())
		em.Close()
	})
	transfer, err := rewrite.ParseTransfer(l.onlineAddr + "-" + l.targetAddr)
	if err != nil {
		t.Fatal(err)
	}
	var rw rewrite.Rewriter = transfer
	if len(l.opts.rewriters) > 0 {
		rw = rewrite.Chain(append([]rewrite.Rewriter{transfer}, l.opts.rewriters...)...)
	}
	l.copier, err = tcpcopy.NewCopier(&tcpcopy.Config{
		Capturer: capt,
		Rewriter: rw,
		Copies:   l.opts.copies,
		Shards:   l.opts.shards,
		NewTable: newTables(t, l.opts.session, em, l.ic, &l.tables),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startCopier opens the capture socket and starts copying: packets from
// before are not seen.
func (l *copyLab) startCopier() {
	l.makeCopier()
	l.goRun("copier", func() error { return l.copier.Run(l.ctx) })
}

// stats sums the shards' session counters.
func (l *copyLab) stats() session.Stats {
	var st session.Stats
	for _, t := range l.tables {
		st = st.Add(t.Stats())
	}
	return st
}

// httpClient dials from the client namespace.
func (l *copyLab) httpClient(keepAlive bool) *http.Client { return l.httpClientLinger(keepAlive, -1) }

// httpClientLinger sets SO_LINGER on its connections (0: close with RST,
// leaving no TIME-WAIT behind, so ports come back at once; negative: the
// default).
func (l *copyLab) httpClientLinger(keepAlive bool, linger int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 64,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = l.client.Do(func() error {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					if err == nil && linger >= 0 {
						err = c.(*net.TCPConn).SetLinger(linger)
					}
					return err
				})
				return c, err
			},
		},
	}
}

// get makes a request to the online server and checks the real client got
// its answer unchanged. It may run on any goroutine (it reports with Errorf).
func (l *copyLab) get(hc *http.Client, path string) bool {
	return l.do(hc, "GET", path, 0)
}

// do makes a request with a body of n bytes (a POST when n > 0).
func (l *copyLab) do(hc *http.Client, method, path string, n int) bool {
	var body io.Reader
	if n > 0 {
		body = strings.NewReader(strings.Repeat("u", n))
	}
	req, err := http.NewRequest(method, "http://"+l.onlineAddr+path, body)
	if err != nil {
		l.t.Errorf("request %s: %v", path, err)
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		l.t.Errorf("client request %s: %v", path, err)
		return false
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(got) != responseBody(path) {
		l.t.Errorf("client request %s: status %d, %d bytes, err %v: the client's own answer was disturbed",
			path, resp.StatusCode, len(got), err)
		return false
	}
	return true
}

// waitTarget waits (bounded) until the target handled want requests.
func (l *copyLab) waitTarget(want int) []string {
	deadline := time.Now().Add(20 * time.Second)
	for len(l.targetSrv.handled()) < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // and not more than want
	return l.targetSrv.handled()
}

// waitCopied waits (bounded) until the target handled as many requests as
// the online server times copies, then compares the two lists.
func (l *copyLab) waitCopied(copies int) {
	l.t.Helper()
	online := l.onlineSrv.handled()
	var want []string
	for range copies {
		want = append(want, online...)
	}
	got := l.waitTarget(len(want))
	slices.Sort(want)
	slices.Sort(got)
	l.t.Logf("online server handled %d requests, target %d (copies %d)", len(online), len(got), copies)
	if !slices.Equal(got, want) {
		l.t.Fatalf("target handled %d requests, want %d:\n target %q\n want   %q", len(got), len(want), trim(got), trim(want))
	}
}

// tlogWriter sends log lines to t.Log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func trim(s []string) []string {
	if len(s) > 40 {
		return append(s[:40:40], fmt.Sprintf("... %d more", len(s)-40))
	}
	return s
}
