package tcpcopy_test

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

// responseBody spans several segments for some paths, so that request
// pacing has multi-segment answers to wait for.
func responseBody(path string) string {
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

// lab is the walking skeleton's topology:
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//
// The target routes the client's network back through the online host,
// but an NFQUEUE rule hands its port 80 answers to intercept, which drops
// them and reports them to the copier on the online host.
type skeleton struct {
	client, online, target *netlab.NS
	onlineSrv, targetSrv   *countingServer
	table                  *session.Table
	copier                 *tcpcopy.Copier
}

const (
	clientAddr = "198.18.0.1"
	onlineAddr = "198.18.0.2"
	targetAddr = "198.18.1.2"
)

func newSkeleton(t *testing.T) *skeleton {
	lab := netlab.New(t)
	lab.Require("iptables")
	s := &skeleton{
		client: lab.Namespace("client"),
		online: lab.Namespace("online"),
		target: lab.Namespace("target"),
	}
	lab.Link(s.client, netip.MustParsePrefix(clientAddr+"/24"), s.online, netip.MustParsePrefix(onlineAddr+"/24"))
	lab.Link(s.online, netip.MustParsePrefix("198.18.1.1/24"), s.target, netip.MustParsePrefix(targetAddr+"/24"))
	s.target.AddRoute(netip.MustParsePrefix("198.18.0.0/24"), netip.MustParseAddr("198.18.1.1"))
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		s.target.Sysctl(k, "0")
	}
	s.target.Run("iptables", "-I", "OUTPUT", "-p", "tcp", "--sport", "80", "-j", "NFQUEUE", "--queue-num", "7")

	s.onlineSrv, s.targetSrv = &countingServer{}, &countingServer{}
	serve(t, s.online.Listen("tcp4", onlineAddr+":80"), s.onlineSrv)
	serve(t, s.target.Listen("tcp4", targetAddr+":80"), s.targetSrv)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}

	// Target side: NFQUEUE interceptor and the intercept server.
	nfq, err := intercept.NewNFQueue(&intercept.NFQueueConfig{Queue: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.target.Do(nfq.Open); err != nil {
		t.Fatal(err)
	}
	srv, err := intercept.NewServer(&intercept.ServerConfig{Interceptor: nfq})
	if err != nil {
		t.Fatal(err)
	}
	ln := s.target.Listen("tcp4", targetAddr+":36524")
	goRun("intercept server", func() error { return srv.Serve(ctx, ln) })

	// Online side: raw IP capture, transfer map, session table, raw IP emit,
	// and the intercept client feeding responses back.
	var capt *capture.RawIP
	var em *emit.RawIP
	if err := s.online.Do(func() (err error) {
		if capt, err = capture.NewRawIP(nil); err != nil {
			return err
		}
		em, err = emit.NewRawIP(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	transfer, err := rewrite.ParseTransfer(onlineAddr + ":80-" + targetAddr + ":80")
	if err != nil {
		t.Fatal(err)
	}
	var ic *intercept.Client
	s.table = session.New(&session.Config{
		Emitter: em,
		OnOpen:  func(c, tg capture.Endpoint) { ic.Announce(c, tg) },
		OnClose: func(c, tg capture.Endpoint) { ic.Remove(c, tg) },
	})
	s.copier, err = tcpcopy.NewCopier(&tcpcopy.Config{Capturer: capt, Rewriter: transfer, Table: s.table})
	if err != nil {
		t.Fatal(err)
	}
	ic, err = intercept.NewClient(&intercept.ClientConfig{
		Servers: []string{targetAddr + ":36524"},
		Handler: s.copier.Responses,
		Dial: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = s.online.Do(func() error {
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
	goRun("copier", func() error { return s.copier.Run(ctx) })
	t.Cleanup(func() {
		t.Logf("session stats: %+v", s.table.Stats())
		t.Logf("intercept server: %+v", srv.Stats())
		t.Logf("nfqueue: %+v", nfq.Stats())
		t.Logf("capture: %+v, emit: %+v", capt.Stats(), em.Stats())
	})
	return s
}

// httpClient dials from the client namespace.
func (s *skeleton) httpClient(keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: !keepAlive,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = s.client.Do(func() error {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// get makes a request to the online server and checks the real client got
// its answer unchanged.
func (s *skeleton) get(t *testing.T, hc *http.Client, path string) {
	t.Helper()
	resp, err := hc.Get("http://" + onlineAddr + path)
	if err != nil {
		t.Fatalf("client request %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != responseBody(path) {
		t.Fatalf("client request %s: status %d, %d bytes, err %v: the client's own answer was disturbed",
			path, resp.StatusCode, len(body), err)
	}
}

// waitCopied waits (bounded) until the target handled as many requests as
// the online server, then compares the two lists.
func (s *skeleton) waitCopied(t *testing.T) {
	t.Helper()
	want := s.onlineSrv.handled()
	deadline := time.Now().Add(15 * time.Second)
	for len(s.targetSrv.handled()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := s.targetSrv.handled()
	slices.Sort(want)
	slices.Sort(got)
	t.Logf("online server handled %d requests, target %d", len(want), len(got))
	if !slices.Equal(got, want) {
		t.Fatalf("target handled %d requests, online %d:\n target %q\n online %q", len(got), len(want), got, want)
	}
}

func TestSkeletonKeepAlive(t *testing.T) {
	s := newSkeleton(t)
	hc := s.httpClient(true)
	const conns, perConn = 4, 10
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range perConn {
				s.get(t, hc, fmt.Sprintf("/keepalive/%d/%d", c, r))
			}
		}()
	}
	wg.Wait()
	hc.CloseIdleConnections()
	s.waitCopied(t)
	if st := s.table.Stats(); st.Started < conns || st.HandshakeTimeouts != 0 {
		t.Errorf("session stats: %+v", st)
	}
}

func TestSkeletonShortConnections(t *testing.T) {
	s := newSkeleton(t)
	hc := s.httpClient(false)
	const n = 30
	for i := range n {
		s.get(t, hc, fmt.Sprintf("/short/%d", i))
	}
	s.waitCopied(t)
	if st := s.table.Stats(); st.Started != n || st.HandshakeTimeouts != 0 {
		t.Errorf("session stats: %+v", st)
	}
}
