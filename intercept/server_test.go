package intercept

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Packet addresses come from 198.18.0.0/15 and fd00:198:18::/48 only; the
// copier connections run over 127.0.0.1 inside the test process.

func resp(t testing.TB, src, dst string, seq capture.Seq, flags uint8, payload string) []byte {
	t.Helper()
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst),
		Seq: seq, Ack: 1, Flags: flags, Window: 1000, Payload: []byte(payload),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond; the bound is generous because it only matters when
// the test fails.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type harness struct {
	srv  *Server
	mem  *Memory
	addr string
}

func startServer(t *testing.T, cfg ServerConfig) *harness {
	t.Helper()
	mem := NewMemory()
	cfg.Interceptor = mem
	srv, err := NewServer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{srv: srv, mem: mem, addr: ln.Addr().String()}
}

type got struct {
	flow       capture.Flow
	seq        capture.Seq
	flags      uint8
	payload    string
	payloadLen int
	at         time.Time
}

type recorder struct {
	mu   sync.Mutex
	pkts []got
}

func (r *recorder) handle(pkts []capture.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range pkts {
		p := &pkts[i]
		r.pkts = append(r.pkts, got{p.Flow(), p.Seq(), p.Flags(), string(p.Payload()), p.PayloadLen(), p.Time})
	}
}

func (r *recorder) snapshot() []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]got(nil), r.pkts...)
}

func (r *recorder) wait(t testing.TB, n int) []got {
	t.Helper()
	waitFor(t, "responses", func() bool { return len(r.snapshot()) >= n })
	return r.snapshot()
}

func startClient(t *testing.T, cfg ClientConfig) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.Handler = rec.handle
	if cfg.Backoff == 0 {
		cfg.Backoff = 10 * time.Millisecond
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	cl, err := NewClient(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Client.Run: %v", err)
		}
	})
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if err := cl.Ready(rctx); err != nil {
		t.Fatal(err)
	}
	return cl, rec
}

// rawCopier dials addr and runs the native handshake by hand; the test then
// writes frames itself.
func rawCopier(t *testing.T, addr string, secret []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := clientHandshake(c, bufio.NewReader(c), secret, 42); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c
}

func announce(t *testing.T, h *harness, cl *Client, client, target string) {
	t.Helper()
	before := h.srv.Stats().Announced
	if err := cl.Announce(ep(client), ep(target)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ClientAdd at the server", func() bool { return h.srv.Stats().Announced > before })
}

func TestServerRoutesAnnouncedClient(t *testing.T) {
	h := startServer(t, ServerConfig{})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")

	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1000, capture.FlagSYN|capture.FlagACK, ""))
	g := rec.wait(t, 1)
	want := capture.Flow{Src: ep("198.19.0.2:80"), Dst: ep("198.18.0.1:40000")}
	if g[0].flow != want || g[0].seq != 1000 || g[0].flags != capture.FlagSYN|capture.FlagACK {
		t.Fatalf("got %+v", g[0])
	}
	if g[0].at.IsZero() {
		t.Error("Time not set")
	}
	st := h.srv.Stats()
	if st.Copiers != 1 || st.Routes != 1 || st.Routed != 1 || st.Reported != 1 || st.Unrouted != 0 {
		t.Errorf("server stats %+v", st)
	}
	if cs := cl.Stats(); cs.Connected != 1 || cs.Responses != 1 || cs.Announced != 1 {
		t.Errorf("client stats %+v", cs)
	}
}

func TestServerUnroutedCounted(t *testing.T) {
	for _, wait := range []time.Duration{-1, 20 * time.Millisecond} {
		h := startServer(t, ServerConfig{EarlyWait: wait})
		cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
		announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
		h.mem.Push(
			resp(t, "198.19.0.2:80", "198.18.0.9:40000", 1, capture.FlagACK, ""), // nobody's
			resp(t, "198.19.0.2:80", "198.18.0.1:40001", 1, capture.FlagACK, ""), // other port
		)
		waitFor(t, "unrouted", func() bool { return h.srv.Stats().Unrouted == 2 })
		if st := h.srv.Stats(); st.Held != 0 || st.Routed != 0 {
			t.Errorf("EarlyWait %v: stats %+v", wait, st)
		}
		if g := rec.snapshot(); len(g) != 0 {
			t.Errorf("client got %+v", g)
		}
	}
}

func TestServerHoldsEarlyResponse(t *testing.T) {
	h := startServer(t, ServerConfig{EarlyWait: time.Hour})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 7, capture.FlagSYN|capture.FlagACK, ""))
	waitFor(t, "held", func() bool { return h.srv.Stats().Held == 1 })

	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	g := rec.wait(t, 1)
	if g[0].seq != 7 {
		t.Fatalf("got %+v", g[0])
	}
	if st := h.srv.Stats(); st.Held != 0 || st.Waited != 1 || st.Routed != 1 || st.Unrouted != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerEarlyLimitAndExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := startServer(t, ServerConfig{EarlyWait: 2 * time.Second, EarlyLimit: 2, RouteTTL: time.Minute, Clock: clock})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:1", "198.19.0.2:80")
	h.mem.Push(
		resp(t, "198.19.0.2:80", "198.18.0.2:1", 1, capture.FlagACK, ""),
		resp(t, "198.19.0.2:80", "198.18.0.2:1", 2, capture.FlagACK, ""),
		resp(t, "198.19.0.2:80", "198.18.0.2:1", 3, capture.FlagACK, ""), // over the limit
	)
	waitFor(t, "held", func() bool { st := h.srv.Stats(); return st.Held == 2 && st.Unrouted == 1 })

	mu.Lock()
	now = now.Add(3 * time.Second)
	mu.Unlock()
	h.srv.sweep(clock())
	if st := h.srv.Stats(); st.Held != 0 || st.Unrouted != 3 || st.Routes != 1 {
		t.Fatalf("after EarlyWait: %+v", st)
	}

	// The route is used at +3 s; silence for RouteTTL expires it.
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:1", 1, capture.FlagACK, ""))
	rec.wait(t, 1)
	mu.Lock()
	now = now.Add(59 * time.Second)
	mu.Unlock()
	h.srv.sweep(clock())
	if st := h.srv.Stats(); st.Routes != 1 || st.Expired != 0 {
		t.Fatalf("route expired early: %+v", st)
	}
	// Routes are scanned every RouteTTL/8, so expiry comes within that.
	mu.Lock()
	now = now.Add(time.Minute / 8)
	mu.Unlock()
	h.srv.sweep(clock())
	if st := h.srv.Stats(); st.Routes != 0 || st.Expired != 1 {
		t.Fatalf("route not expired: %+v", st)
	}
}

func TestServerTwoCopiers(t *testing.T) {
	h := startServer(t, ServerConfig{})
	cl1, rec1 := startClient(t, ClientConfig{Servers: []string{h.addr}})
	cl2, rec2 := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl1, "198.18.0.1:40000", "198.19.0.2:80")
	announce(t, h, cl2, "198.18.0.2:40000", "198.19.0.2:80")

	var batch [][]byte
	for i := range 10 {
		dst := "198.18.0.1:40000"
		if i%2 == 1 {
			dst = "198.18.0.2:40000"
		}
		batch = append(batch, resp(t, "198.19.0.2:80", dst, capture.Seq(i), capture.FlagACK, ""))
	}
	h.mem.Push(batch...)
	g1, g2 := rec1.wait(t, 5), rec2.wait(t, 5)
	waitFor(t, "routed", func() bool { return h.srv.Stats().Routed == 10 })
	for i, g := range g1 {
		if g.flow.Dst != ep("198.18.0.1:40000") || g.seq != capture.Seq(2*i) {
			t.Errorf("copier 1 got %+v", g)
		}
	}
	for i, g := range g2 {
		if g.flow.Dst != ep("198.18.0.2:40000") || g.seq != capture.Seq(2*i+1) {
			t.Errorf("copier 2 got %+v", g)
		}
	}
	if len(rec1.snapshot()) != 5 || len(rec2.snapshot()) != 5 {
		t.Errorf("got %d and %d responses", len(rec1.snapshot()), len(rec2.snapshot()))
	}
}

func TestServerIPv6AndPayloadLimit(t *testing.T) {
	h := startServer(t, ServerConfig{PayloadLimit: 5})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "[fd00:198:18::1]:40000", "[fd00:198:18::2]:80")
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(
		resp(t, "[fd00:198:18::2]:80", "[fd00:198:18::1]:40000", 5, capture.FlagACK|capture.FlagPSH, "hello world"),
		resp(t, "[fd00:198:18::2]:80", "[fd00:198:18::1]:40001", 6, capture.FlagACK, ""), // unrouted
		resp(t, "198.19.0.2:80", "198.18.0.1:40000", 9, capture.FlagACK, "abc"),
	)
	g := rec.wait(t, 2)
	if g[0].flow.Src != ep("[fd00:198:18::2]:80") || g[0].payload != "hello" || g[0].payloadLen != 11 {
		t.Errorf("IPv6 response %+v", g[0])
	}
	if g[1].payload != "abc" || g[1].payloadLen != 3 {
		t.Errorf("IPv4 response %+v", g[1])
	}
	waitFor(t, "unrouted", func() bool { return h.srv.Stats().Unrouted == 1 })
}

func TestServerHeadersOnlyByDefault(t *testing.T) {
	h := startServer(t, ServerConfig{})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 5, capture.FlagACK, "0123456789"))
	if g := rec.wait(t, 1); g[0].payload != "" || g[0].payloadLen != 10 {
		t.Errorf("got %+v", g[0])
	}
}

func TestServerRejectsGarbageHello(t *testing.T) {
	h := startServer(t, ServerConfig{})
	for _, tt := range []struct {
		name, in string
		reply    []byte
	}{
		{"http", "GET / HTTP/1.1\r\n\r\n", nil},
		{"classic", string(AppendClassicVersion(nil)), nil},
		{"version 1", "TCPC\x01\x00\x00\x00", AppendHello(nil, Hello{Version: 2})},
		{"version 3", "TCPC\x03\x00\x00\x00" + strings.Repeat("x", 24), AppendHello(nil, Hello{Version: 2})},
		{"short", "TC", nil},
	} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(tt.in))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if !bytes.Equal(b, tt.reply) {
			t.Errorf("%s: server answered %q, want %q", tt.name, b, tt.reply)
		}
	}
	waitFor(t, "bad hellos", func() bool { return h.srv.Stats().BadHello == 5 })

	// The server still serves good copiers.
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	rec.wait(t, 1)
}

func TestServerClosesOnProtocolError(t *testing.T) {
	h := startServer(t, ServerConfig{})
	c := rawCopier(t, h.addr, nil)
	add, _ := AppendClientAdd(nil, ep("198.18.0.1:1"), ep("198.19.0.2:80"))
	c.Write(add)
	c.Write([]byte{byte(FrameResponses), 0, 0, 2, 0, 0}) // wrong direction
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v; want EOF", b, err)
	}
	waitFor(t, "protocol error", func() bool { st := h.srv.Stats(); return st.ProtocolErrors == 1 && st.Copiers == 0 })
	if st := h.srv.Stats(); st.Routes != 0 || st.Announced != 1 {
		t.Errorf("routes of a closed copier survive: %+v", st)
	}
}

func TestServerClientRemove(t *testing.T) {
	h := startServer(t, ServerConfig{EarlyWait: -1})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	if err := cl.Remove(ep("198.18.0.1:40000"), ep("198.19.0.2:80")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "remove", func() bool { return h.srv.Stats().Routes == 0 })
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	waitFor(t, "unrouted", func() bool { return h.srv.Stats().Unrouted == 1 })
	if len(rec.snapshot()) != 0 {
		t.Error("removed client still gets responses")
	}
}

func TestClientTwoServersAndConns(t *testing.T) {
	h1 := startServer(t, ServerConfig{})
	h2 := startServer(t, ServerConfig{})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h1.addr, h2.addr}, Conns: 3})
	if st := cl.Stats(); st.Connected != 6 {
		t.Fatalf("connected %d, want 6", st.Connected)
	}
	waitFor(t, "copiers", func() bool { return h1.srv.Stats().Copiers == 3 && h2.srv.Stats().Copiers == 3 })
	clients := []string{"198.18.0.1:1", "198.18.0.1:2", "198.18.0.1:3", "198.18.0.1:4", "198.18.0.1:5"}
	for _, c := range clients {
		if err := cl.Announce(ep(c), ep("198.19.0.2:80")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "routes", func() bool { return h1.srv.Stats().Routes == 5 && h2.srv.Stats().Routes == 5 })
	for _, c := range clients {
		h1.mem.Push(resp(t, "198.19.0.2:80", c, 1, capture.FlagACK, ""))
		h2.mem.Push(resp(t, "198.19.0.2:80", c, 2, capture.FlagACK, ""))
	}
	rec.wait(t, 10)
	if st := cl.Stats(); st.Announced != 10 || st.Responses != 10 || st.AnnounceDropped != 0 {
		t.Errorf("client stats %+v", st)
	}
}

func TestClientReconnects(t *testing.T) {
	h := startServer(t, ServerConfig{})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})

	// Kill the copier connection from the server side.
	h.srv.mu.Lock()
	for c := range h.srv.conns {
		c.nc.Close()
	}
	h.srv.mu.Unlock()
	waitFor(t, "disconnect", func() bool { return cl.Stats().Disconnects == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	rec.wait(t, 1)
}

func TestClientReadyTimesOutAndAnnounceDrops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: dials fail
	cl, err := NewClient(&ClientConfig{Servers: []string{addr}, Handler: func([]capture.Packet) {}, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer rcancel()
	if err := cl.Ready(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready = %v", err)
	}
	if err := cl.Announce(ep("198.18.0.1:1"), ep("198.19.0.2:80")); err != nil {
		t.Fatal(err)
	}
	if err := cl.Announce(capture.Endpoint{}, ep("198.19.0.2:80")); err == nil {
		t.Error("invalid endpoint accepted")
	}
	waitFor(t, "dial errors", func() bool { return cl.Stats().DialErrors >= 2 })
	if st := cl.Stats(); st.AnnounceDropped != 1 || st.Announced != 0 {
		t.Errorf("stats %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cl.Close()
	cl.Close()
	if err := cl.Announce(ep("198.18.0.1:1"), ep("198.19.0.2:80")); err != ErrClosed {
		t.Errorf("Announce after Close = %v", err)
	}
	if err := cl.Run(context.Background()); err != ErrClosed {
		t.Errorf("Run after Close = %v", err)
	}
}

func TestClientRejectsOtherVersion(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write(AppendHello(nil, Hello{Version: 9}))
			c.Close()
		}
	}()
	cl, err := NewClient(&ClientConfig{Servers: []string{ln.Addr().String()}, Handler: func([]capture.Packet) {}, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	waitFor(t, "protocol errors", func() bool { return cl.Stats().ProtocolErrors >= 1 })
	if st := cl.Stats(); st.Connected != 0 || st.Disconnects != 0 {
		t.Errorf("stats %+v", st)
	}
	cancel()
	<-done
}

func TestServerSlowCopierDoesNotBlock(t *testing.T) {
	h := startServer(t, ServerConfig{PayloadLimit: 1 << 16, QueueBytes: 64 << 10, WriteTimeout: time.Hour})
	// A copier that announces and then never reads.
	c := rawCopier(t, h.addr, nil)
	add, _ := AppendClientAdd(nil, ep("198.18.0.9:1"), ep("198.19.0.2:80"))
	c.Write(add)
	waitFor(t, "slow copier's route", func() bool { return h.srv.Stats().Routes == 1 })
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")

	payload := string(make([]byte, 8000))
	slow := resp(t, "198.19.0.2:80", "198.18.0.9:1", 1, capture.FlagACK, payload)
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = slow
	}
	// Socket buffers take some megabytes; the bounded queue drops the rest.
	for i := 0; i < 200 && h.srv.Stats().Dropped == 0; i++ {
		h.mem.Push(batch...)
		waitFor(t, "interceptor to report", func() bool { return h.mem.Reported() == uint64((i+1)*len(batch)) })
	}
	if h.srv.Stats().Dropped == 0 {
		t.Fatal("no drops")
	}
	// The fast copier is unaffected.
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	rec.wait(t, 1)
	st := h.srv.Stats()
	if st.Reported != st.Routed+st.Dropped {
		t.Errorf("accounting: %+v", st)
	}
}

func TestServerLifecycle(t *testing.T) {
	if _, err := NewServer(nil); err == nil {
		t.Error("nil config accepted")
	}
	if _, err := NewServer(&ServerConfig{Interceptor: NewMemory(), PayloadLimit: -1}); err == nil {
		t.Error("negative PayloadLimit accepted")
	}
	srv, err := NewServer(&ServerConfig{Interceptor: NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	c := rawCopier(t, ln.Addr().String(), nil)
	waitFor(t, "copier", func() bool { return srv.Stats().Copiers == 1 })
	srv.Close()
	srv.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("copier connection after Close: %q, %v", b, err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open")
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := srv.Serve(context.Background(), ln2); err != ErrClosed {
		t.Errorf("Serve after Close = %v", err)
	}
}

type failingInterceptor struct{}

func (failingInterceptor) Run(context.Context, func([]capture.Packet)) error {
	return errors.New("boom")
}

func TestServerReturnsInterceptorError(t *testing.T) {
	srv, err := NewServer(&ServerConfig{Interceptor: failingInterceptor{}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background(), ln); err == nil || err.Error() != "intercept: interceptor: boom" {
		t.Fatalf("Serve = %v", err)
	}
}

func TestAnnounceAllocs(t *testing.T) {
	cl, err := NewClient(&ClientConfig{Servers: []string{"127.0.0.1:1"}, Handler: func([]capture.Packet) {}})
	if err != nil {
		t.Fatal(err)
	}
	cc := cl.conns[0]
	cc.up = true // as if connected; nobody writes
	cc.pending = make([]byte, 0, 1<<20)
	c, tg := ep("198.18.0.1:40000"), ep("198.19.0.2:80")
	if n := testing.AllocsPerRun(100, func() {
		cl.Announce(c, tg)
	}); n != 0 {
		t.Errorf("%v allocations per Announce", n)
	}
}

func TestServerReportAllocs(t *testing.T) {
	srv, err := NewServer(&ServerConfig{Interceptor: NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	c := &copierConn{notify: make(chan struct{}, 1)}
	c.enc.B = make([]byte, 0, 1<<20)
	srv.routes[ep("198.18.0.1:40000")] = route{conn: c}
	pkts := []capture.Packet{*decode(t, synAck4(t)), *decode(t, synAck4(t))}
	srv.report(pkts) // size the touched list
	if n := testing.AllocsPerRun(100, func() {
		c.enc.Reset()
		srv.report(pkts)
	}); n != 0 {
		t.Errorf("%v allocations per report", n)
	}
}

func BenchmarkServerReport(b *testing.B) {
	srv, err := NewServer(&ServerConfig{Interceptor: NewMemory(), QueueBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	c := &copierConn{notify: make(chan struct{}, 1)}
	c.enc.B = make([]byte, 0, 1<<20)
	srv.routes[ep("198.18.0.1:40000")] = route{conn: c}
	pkts := make([]capture.Packet, 32)
	for i := range pkts {
		pkts[i] = *decode(b, synAck4(b))
	}
	b.ReportAllocs()
	for b.Loop() {
		c.enc.Reset()
		srv.report(pkts)
	}
}
