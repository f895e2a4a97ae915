package intercept

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func TestAuthSharedSecret(t *testing.T) {
	var slog logBuffer
	h := startServer(t, ServerConfig{Secret: []byte("s3cret"), Logger: slog.logger()})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}, Secret: []byte("s3cret")})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	rec.wait(t, 1)

	// A copier with the wrong secret: clear log line, closed, counted; the
	// good copier is unaffected.
	bad, err := NewClient(&ClientConfig{Servers: []string{h.addr}, Secret: []byte("guess"), Handler: func([]capture.Packet) {},
		Backoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bad.Run(ctx) }()
	waitFor(t, "auth failures", func() bool { return h.srv.Stats().AuthFailures >= 2 && bad.Stats().AuthFailures >= 2 })
	cancel()
	<-done
	st := bad.Stats()
	if st.Connected != 0 || st.Servers[0].LastError == nil || !errors.Is(st.Servers[0].LastError, ErrAuth) {
		t.Errorf("bad copier: %+v", st)
	}
	if !strings.Contains(st.Servers[0].LastError.Error(), "server's proof is wrong") {
		t.Errorf("bad copier's error: %v", st.Servers[0].LastError)
	}
	if log := slog.String(); !strings.Contains(log, "copier failed authentication (wrong shared secret?)") {
		t.Errorf("no clear log line:\n%s", log)
	}
	if s := h.srv.Stats(); s.Copiers != 1 || s.Routes != 1 {
		t.Errorf("server stats %+v", s)
	}
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 2, capture.FlagACK, ""))
	rec.wait(t, 2)
}

// An impostor server (it does not know the secret) never gets a proof or a
// ClientAdd from the copier.
func TestAuthImpostorServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var ch [ClientHelloLen]byte
		io.ReadFull(c, ch[:])
		// A server hello with a proof made with another secret.
		sh := AppendHello(nil, Hello{Version: WireVersion})
		nonce := make([]byte, NonceLen)
		sh = append(sh, nonce...)
		sh = append(sh, serverProof([]byte("other"), ch[:], nonce, nil)...)
		c.Write(sh)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		rest, _ := io.ReadAll(c)
		got <- rest
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	err = clientHandshake(c, bufio.NewReader(c), []byte("mine"), 1)
	c.Close()
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("handshake with an impostor: %v", err)
	}
	if rest := <-got; len(rest) != 0 {
		t.Errorf("the copier sent %x to an impostor", rest)
	}
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "intercept test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	secret := []byte("tls and a secret")
	h := startServer(t, ServerConfig{Secret: secret, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}, Secret: secret, TLS: &tls.Config{RootCAs: pool}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	rec.wait(t, 1)

	// A plain-TCP copier, and one that does not trust the certificate.
	for _, tc := range []*tls.Config{nil, {}} {
		c, err := NewClient(&ClientConfig{Servers: []string{h.addr}, Secret: secret, TLS: tc, Handler: func([]capture.Packet) {},
			HandshakeTimeout: time.Second, Backoff: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		before := h.srv.Stats().TLSFailures
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		waitFor(t, "TLS failure", func() bool { return h.srv.Stats().TLSFailures > before && c.Stats().DialErrors > 0 })
		cancel()
		<-done
		if st := c.Stats(); st.Connected != 0 {
			t.Errorf("TLS config %v: connected", tc)
		}
	}
	if _, err := NewServer(&ServerConfig{Interceptor: NewMemory(), TLS: &tls.Config{}, AcceptClassic: true}); err == nil {
		t.Error("TLS with AcceptClassic accepted")
	}
}

// The proofs are bound to the TLS session: a proof computed for a plain
// connection (empty binding) does not pass under TLS.
func TestTLSBinding(t *testing.T) {
	cert, pool := selfSigned(t)
	h := startServer(t, ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := appendClientHello(nil, 9)
	c.Write(ch)
	var sh [ServerHelloLen]byte
	if _, err := io.ReadFull(c, sh[:]); err != nil {
		t.Fatal(err)
	}
	c.Write(clientProof(nil, ch, sh[:HelloLen+NonceLen], nil)) // no binding
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("server answered %x", b)
	}
	waitFor(t, "auth failure", func() bool { return h.srv.Stats().AuthFailures == 1 })
}

func TestClassicServerAndClient(t *testing.T) {
	for _, payload := range []bool{false, true} {
		h := startServer(t, ServerConfig{AcceptClassic: true, ClassicPayload: payload})
		cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}, Classic: true, ClassicPayload: payload})
		announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
		if err := cl.Announce(ep("[fd00:198:18::1]:1"), ep("[fd00:198:18::2]:80")); err == nil {
			t.Error("classic client announced IPv6")
		}
		long := strings.Repeat("p", 300)
		h.mem.Push(
			resp(t, "198.19.0.2:80", "198.18.0.1:40000", 5, capture.FlagSYN|capture.FlagACK, ""),
			resp(t, "198.19.0.2:80", "198.18.0.1:40000", 6, capture.FlagACK, long),
		)
		g := rec.wait(t, 2)
		if g[0].seq != 5 || g[0].flags != capture.FlagSYN|capture.FlagACK || g[1].payloadLen != 300 {
			t.Errorf("payload %v: got %+v", payload, g)
		}
		if want := map[bool]string{false: "", true: long[:128]}[payload]; g[1].payload != want {
			t.Errorf("payload %v: %d payload bytes", payload, len(g[1].payload))
		}
		if st := h.srv.Stats(); st.Classic != 1 || st.Routed != 2 {
			t.Errorf("server stats %+v", st)
		}
		// Remove sends nothing in classic mode but forgets the client.
		if err := cl.Remove(ep("198.18.0.1:40000"), ep("198.19.0.2:80")); err != nil {
			t.Fatal(err)
		}
		if st := cl.Stats(); st.Tracked != 0 || st.Removed != 0 {
			t.Errorf("client stats %+v", st)
		}
	}
}

func TestClassicRefusedByDefault(t *testing.T) {
	var log logBuffer
	h := startServer(t, ServerConfig{Logger: log.logger()})
	c, err := NewClient(&ClientConfig{Servers: []string{h.addr}, Classic: true, Handler: func([]capture.Packet) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "refusal", func() bool { return h.srv.Stats().BadHello >= 1 })
	cancel()
	<-done
	if !strings.Contains(log.String(), "classic TCPCopy framing is not accepted") {
		t.Errorf("log:\n%s", log.String())
	}
	if st := h.srv.Stats(); st.Established != 0 || st.Routes != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Floods of idle and garbage connections: at most MaxHandshakes are held,
// the rest are refused at once, idle ones are dropped after the handshake
// timeout, and a copier gets in once the flood stops.
func TestServerFlood(t *testing.T) {
	h := startServer(t, ServerConfig{MaxHandshakes: 4, HandshakeTimeout: 300 * time.Millisecond})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 40 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			c.Write(bytes.Repeat([]byte{0xff, 0x01, 0x7f}, 1000)) // garbage
		}
		if hs := h.srv.Stats().Handshaking; hs > 4 {
			t.Fatalf("%d handshakes held", hs)
		}
	}
	waitFor(t, "flood handled", func() bool {
		st := h.srv.Stats()
		return st.Accepted == 40 && st.Handshaking == 0 && st.Refused+st.BadHello == 40
	})
	st := h.srv.Stats()
	if st.Refused == 0 || st.Copiers != 0 {
		t.Errorf("stats %+v", st)
	}
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""))
	rec.wait(t, 1)

	// Memory: a flood of connections stuck in their handshake holds a
	// bounded heap (goroutines and buffers of MaxHandshakes connections).
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 200 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("TCPC"))
		conns = append(conns, c)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 4<<20 {
		t.Errorf("heap grew by %d bytes for 200 stuck connections", grow)
	}
}

func TestServerMaxCopiers(t *testing.T) {
	h := startServer(t, ServerConfig{MaxCopiers: 1})
	startClient(t, ClientConfig{Servers: []string{h.addr}})
	c, err := NewClient(&ClientConfig{Servers: []string{h.addr}, Handler: func([]capture.Packet) {}, Backoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "refusal", func() bool { return h.srv.Stats().Refused >= 1 })
	cancel()
	<-done
	if st := h.srv.Stats(); st.Copiers != 1 {
		t.Errorf("stats %+v", st)
	}
}

// After a reconnect the Client announces its active clients again, without
// the copier doing anything, and not the removed ones.
func TestClientReannounces(t *testing.T) {
	h := startServer(t, ServerConfig{EarlyWait: -1})
	cl, rec := startClient(t, ClientConfig{Servers: []string{h.addr}, Conns: 2})
	announce(t, h, cl, "198.18.0.1:40000", "198.19.0.2:80")
	announce(t, h, cl, "198.18.0.1:40001", "198.19.0.2:80")
	announce(t, h, cl, "198.18.0.1:40002", "198.19.0.2:80")
	cl.Remove(ep("198.18.0.1:40002"), ep("198.19.0.2:80"))
	waitFor(t, "routes", func() bool { return h.srv.Stats().Routes == 2 })

	h.srv.mu.Lock()
	for c := range h.srv.conns {
		c.nc.Close()
	}
	h.srv.mu.Unlock()
	waitFor(t, "disconnects", func() bool { return cl.Stats().Disconnects == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-announced routes", func() bool { return h.srv.Stats().Routes == 2 })
	h.mem.Push(
		resp(t, "198.19.0.2:80", "198.18.0.1:40000", 1, capture.FlagACK, ""),
		resp(t, "198.19.0.2:80", "198.18.0.1:40001", 2, capture.FlagACK, ""),
		resp(t, "198.19.0.2:80", "198.18.0.1:40002", 3, capture.FlagACK, ""), // removed
	)
	rec.wait(t, 2)
	waitFor(t, "unrouted", func() bool { return h.srv.Stats().Unrouted == 1 })
	st := cl.Stats()
	if st.Reannounced < 2 || st.Tracked != 2 || st.Reconnects != 2 { // a connection up before the other announces its clients too
		t.Errorf("client stats %+v", st)
	}
	ss := st.Servers[0]
	if ss.Addr != h.addr || ss.Up != 2 || ss.Reconnects != 2 || ss.Disconnects != 2 || ss.LastError == nil || ss.LastErrorTime.IsZero() {
		t.Errorf("server state %+v", ss)
	}
}

// A server restarted on the same address during a copy: the Client
// reconnects, re-announces the sessions still open, counts the ClientAdds
// the server missed meanwhile, and sessions started afterwards are routed.
func TestClientServerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) (*Server, *Memory, func()) {
		mem := NewMemory()
		srv, err := NewServer(&ServerConfig{Interceptor: mem, Secret: []byte("k")})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(context.Background(), ln) }()
		return srv, mem, func() {
			srv.Close()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	srv, _, stop := serve(ln)
	cl, rec := startClient(t, ClientConfig{Servers: []string{addr}, Secret: []byte("k")})
	cl.Announce(ep("198.18.0.1:1"), ep("198.19.0.2:80")) // open across the restart
	waitFor(t, "route", func() bool { return srv.Stats().Routes == 1 })
	// The first connection's own announcement of tracked clients may have
	// raced the Announce above (a harmless duplicate): count from here.
	re0 := cl.Stats().Reannounced
	stop()
	waitFor(t, "disconnect", func() bool { return cl.Stats().Connected == 0 })
	cl.Announce(ep("198.18.0.1:2"), ep("198.19.0.2:80")) // started while the server is down
	cl.Announce(ep("198.18.0.1:3"), ep("198.19.0.2:80"))
	cl.Remove(ep("198.18.0.1:3"), ep("198.19.0.2:80")) // and ended

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv2, mem2, stop2 := serve(ln2)
	defer stop2()
	waitFor(t, "routes after restart", func() bool { return srv2.Stats().Routes == 2 })
	cl.Announce(ep("198.18.0.1:4"), ep("198.19.0.2:80")) // started afterwards
	waitFor(t, "route", func() bool { return srv2.Stats().Routes == 3 })
	for i, c := range []string{"198.18.0.1:1", "198.18.0.1:2", "198.18.0.1:4"} {
		mem2.Push(resp(t, "198.19.0.2:80", c, capture.Seq(i), capture.FlagACK, ""))
	}
	rec.wait(t, 3)
	st := cl.Stats()
	if ss := st.Servers[0]; ss.Missed != 2 || ss.Reconnects != 1 || st.Reannounced-re0 != 2 {
		t.Errorf("client stats %+v", st)
	}
	t.Logf("ClientAdds missed while the server was down: %d (re-announced on reconnect: %d)", st.Servers[0].Missed, st.Reannounced-re0)
}

func TestClientMaxTracked(t *testing.T) {
	h := startServer(t, ServerConfig{})
	cl, _ := startClient(t, ClientConfig{Servers: []string{h.addr}, MaxTracked: 2})
	for _, c := range []string{"198.18.0.1:1", "198.18.0.1:2", "198.18.0.1:3", "198.18.0.1:1"} {
		cl.Announce(ep(c), ep("198.19.0.2:80"))
	}
	if st := cl.Stats(); st.Tracked != 2 || st.Untracked != 1 || st.Announced != 4 {
		t.Errorf("stats %+v", st)
	}
}

// A ClientRemove that travels over another connection of the same copier
// than its ClientAdd still ends the route; routes of a lost connection move
// to another connection of the same copier.
func TestServerCopierIdentity(t *testing.T) {
	h := startServer(t, ServerConfig{EarlyWait: -1})
	a := rawCopier(t, h.addr, nil) // both with copier id 42
	b := rawCopier(t, h.addr, nil)
	add, _ := AppendClientAdd(nil, ep("198.18.0.1:1"), ep("198.19.0.2:80"))
	add, _ = AppendClientAdd(add, ep("198.18.0.1:2"), ep("198.19.0.2:80"))
	a.Write(add)
	waitFor(t, "routes", func() bool { return h.srv.Stats().Routes == 2 })
	rm, _ := AppendClientRemove(nil, ep("198.18.0.1:1"), ep("198.19.0.2:80"))
	b.Write(rm)
	waitFor(t, "remove", func() bool { return h.srv.Stats().Routes == 1 })
	a.Close()
	waitFor(t, "copiers", func() bool { return h.srv.Stats().Copiers == 1 })
	if st := h.srv.Stats(); st.Routes != 1 || st.Takeovers != 0 {
		t.Errorf("stats %+v", st)
	}
	h.mem.Push(resp(t, "198.19.0.2:80", "198.18.0.1:2", 1, capture.FlagACK, ""))
	waitFor(t, "routed", func() bool { return h.srv.Stats().Routed == 1 })
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	pkts, err := DecodeResponses(readFrame(t, b, FrameResponses), nil)
	if err != nil || len(pkts) != 1 || pkts[0].DstPort() != 2 {
		t.Fatalf("got %d responses, %v", len(pkts), err)
	}
}

func readFrame(t *testing.T, r io.Reader, types ...FrameType) []byte {
	t.Helper()
	f, err := NewFrameReader(r, types...).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(f.Body)
}

// fuzzConn is a net.Conn that reads from a fixed input and discards writes.
type fuzzConn struct {
	net.Conn
	r io.Reader
}

func (c *fuzzConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c *fuzzConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) SetDeadline(time.Time) error        { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }

// FuzzServerConn feeds arbitrary bytes to the server's side of a copier
// connection: the handshake of both framings and, when it passes (classic
// needs no secret), the frames that follow. Nothing may panic, and a
// connection that ends must end with a counted reason.
func FuzzServerConn(f *testing.F) {
	hello := appendClientHello(nil, 1)
	f.Add(hello)
	f.Add(append(hello, make([]byte, ProofLen)...))
	add, _ := AppendClassicMessage(AppendClassicVersion(nil), ClassicAdd, ep("198.18.0.1:40000"), ep("198.19.0.2:80"))
	f.Add(add)
	f.Add(append(add, 0, 0, 0, 0, 0, 0, 0, 9))
	f.Add([]byte("TCPC\x01\x00\x00\x00"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	srv, err := NewServer(&ServerConfig{Interceptor: NewMemory(), AcceptClassic: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		before := srv.Stats()
		c, br := srv.handshake(&fuzzConn{r: bytes.NewReader(in)}, "fuzz")
		if c == nil {
			st := srv.Stats()
			if st.BadHello+st.AuthFailures == before.BadHello+before.AuthFailures {
				t.Fatal("failed handshake not counted")
			}
			return
		}
		var err error
		if c.classic {
			err = srv.readClassic(c, br)
		} else {
			err = srv.readLoop(c, br)
		}
		if !errors.Is(err, ErrProtocol) && err != io.EOF && err != io.ErrUnexpectedEOF {
			t.Fatalf("read loop: %v", err)
		}
		srv.unregister(c)
		if st := srv.Stats(); st.Routes != 0 {
			t.Fatalf("%d routes after the connection ended", st.Routes)
		}
	})
}
