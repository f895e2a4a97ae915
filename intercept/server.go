package intercept

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// ServerConfig configures a Server. Every zero value picks the documented
// default.
type ServerConfig struct {
	// Interceptor captures the target's responses. Required.
	Interceptor Interceptor
	// Secret is the shared secret copiers must prove they know (native
	// framing, see wire.go); it never crosses the wire. Zero (empty): the
	// proofs use an empty key, so any copier that speaks the protocol gets
	// in; Serve logs a warning. Use a long random secret in production.
	Secret []byte
	// TLS, when set, makes every copier connection TLS (server side);
	// the handshake proofs are then bound to the TLS session. Zero: plain
	// TCP. TLS and AcceptClassic exclude each other.
	TLS *tls.Config
	// AcceptClassic accepts copiers that speak the classic TCPCopy 1.x
	// framing (classic.go) besides native ones. Classic copiers cannot
	// authenticate, so anybody who reaches the port may announce clients
	// and receive responses: enable it only on a trusted network. Zero:
	// classic connections are refused with a log line.
	AcceptClassic bool
	// ClassicPayload makes classic connections use the payload build's
	// 192-byte records (up to 128 payload bytes each, whatever
	// PayloadLimit says) instead of 64-byte ones; it must match how the
	// classic copier was built. Zero: 64-byte records.
	ClassicPayload bool
	// MaxHandshakes caps the connections in their handshake at once (not
	// yet authenticated); connections beyond it are closed at once and
	// counted as Refused, so a flood of connections holds bounded memory.
	// Zero: 64.
	MaxHandshakes int
	// MaxCopiers caps the established copier connections; more are
	// refused. Zero: 1024.
	MaxCopiers int
	// PayloadLimit is how many TCP payload bytes of each response are
	// reported besides the headers. Zero: 0, headers only (enough for the
	// session engine; response comparison and MySQL mode need payload).
	PayloadLimit int
	// RouteTTL is how long a route lives without a ClientAdd or a response
	// routed over it. Zero: 120 s.
	RouteTTL time.Duration
	// EarlyWait is how long a response whose route is not known yet is held
	// for its ClientAdd (the copier sends ClientAdd before the SYN, but on
	// another connection than the one the SYN-ACK races). Zero: 2 s;
	// negative: such responses are unrouted at once.
	EarlyWait time.Duration
	// EarlyLimit bounds the responses held for EarlyWait. Zero: 4096.
	EarlyLimit int
	// QueueBytes bounds the encoded responses queued for one copier
	// connection; responses beyond it are dropped and counted, so a slow
	// copier never blocks the Interceptor. Zero: 4 MiB.
	QueueBytes int
	// HandshakeTimeout bounds a copier's whole handshake (TLS, hello,
	// proof). Zero: 5 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a copier; a copier that takes no data
	// for that long is disconnected. Zero: 10 s.
	WriteTimeout time.Duration
	// Clock gives the time for route expiry and early holding. Zero:
	// time.Now. (I/O deadlines always use the real clock.)
	Clock func() time.Time
	// Logger receives connection events and errors. Zero: discard.
	Logger *slog.Logger
}

// ServerStats counts what a Server did. Every response the Interceptor
// reported is Routed, Unrouted, Dropped, Oversize or still Held.
type ServerStats struct {
	Copiers     int // copier connections established now
	Handshaking int // connections in their handshake now
	Routes      int // routes known now
	Held        int // responses held now, waiting for their ClientAdd

	Accepted       uint64 // connections accepted by the listener
	Established    uint64 // copier connections that completed the handshake
	Classic        uint64 // of Established: classic TCPCopy framing
	Refused        uint64 // connections closed at once: MaxHandshakes or MaxCopiers reached
	BadHello       uint64 // connections closed for a bad, missing or other-version hello (or classic when not accepted)
	AuthFailures   uint64 // connections closed for a wrong proof (wrong shared secret)
	TLSFailures    uint64 // connections whose TLS handshake failed
	ProtocolErrors uint64 // connections closed for a bad frame
	Announced      uint64 // ClientAdd frames received
	Removed        uint64 // ClientRemove frames received
	Takeovers      uint64 // ClientAdds that moved a route to another connection
	Expired        uint64 // routes expired after RouteTTL without use

	Reported uint64 // responses from the Interceptor
	Routed   uint64 // responses queued to their copier (Waited included)
	Waited   uint64 // of Routed: held until their ClientAdd arrived
	Unrouted uint64 // responses without a route (after EarlyWait, or the hold full)
	Dropped  uint64 // routed responses dropped: copier queue full or connection closing
	Oversize uint64 // responses whose headers do not fit a record
}

type serverCounters struct {
	accepted, established, classic, refused, badHello, authFailures, tlsFailures,
	protocolErrors, announced, removed, takeovers, expired,
	reported, routed, waited, unrouted, dropped, oversize atomic.Uint64
}

// Server accepts copier connections, learns from their ClientAdd frames which
// copier owns which client, runs the Interceptor and sends each response to
// the copier that owns its destination. It is safe for concurrent use.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	c   serverCounters

	handshaking atomic.Int64

	mu          sync.Mutex
	routes      map[capture.Endpoint]route
	held        map[capture.Endpoint][]heldResponse
	nheld       int
	conns       map[*copierConn]struct{}
	touched     []*copierConn // connections given responses in this report
	lastRouteGC int64

	run runOnce
}

type route struct {
	conn   *copierConn
	target capture.Endpoint
	last   int64 // Clock, unix nanoseconds
}

type heldResponse struct {
	at  int64
	rec []byte
}

// NewServer returns a Server for cfg. It starts nothing; Serve does.
func NewServer(cfg *ServerConfig) (*Server, error) {
	if cfg == nil || cfg.Interceptor == nil {
		return nil, errors.New("intercept: ServerConfig.Interceptor is required")
	}
	c := *cfg
	if c.PayloadLimit < 0 {
		return nil, fmt.Errorf("intercept: negative PayloadLimit %d", c.PayloadLimit)
	}
	if c.RouteTTL < 0 || c.EarlyLimit < 0 || c.QueueBytes < 0 || c.HandshakeTimeout < 0 || c.WriteTimeout < 0 ||
		c.MaxHandshakes < 0 || c.MaxCopiers < 0 {
		return nil, errors.New("intercept: negative RouteTTL, EarlyLimit, QueueBytes, HandshakeTimeout, WriteTimeout, MaxHandshakes or MaxCopiers")
	}
	if c.TLS != nil && c.AcceptClassic {
		return nil, errors.New("intercept: ServerConfig.TLS and AcceptClassic exclude each other (classic copiers cannot speak TLS)")
	}
	c.Secret = append([]byte(nil), c.Secret...)
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 64
	}
	if c.MaxCopiers == 0 {
		c.MaxCopiers = 1024
	}
	if c.RouteTTL == 0 {
		c.RouteTTL = 120 * time.Second
	}
	if c.EarlyWait == 0 {
		c.EarlyWait = 2 * time.Second
	}
	if c.EarlyLimit == 0 {
		c.EarlyLimit = 4096
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 4 << 20
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:    c,
		log:    log,
		routes: make(map[capture.Endpoint]route),
		held:   make(map[capture.Endpoint][]heldResponse),
		conns:  make(map[*copierConn]struct{}),
	}, nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	st := ServerStats{Copiers: len(s.conns), Routes: len(s.routes), Held: s.nheld}
	s.mu.Unlock()
	st.Handshaking = int(s.handshaking.Load())
	st.Accepted = s.c.accepted.Load()
	st.Established = s.c.established.Load()
	st.Classic = s.c.classic.Load()
	st.Refused = s.c.refused.Load()
	st.BadHello = s.c.badHello.Load()
	st.AuthFailures = s.c.authFailures.Load()
	st.TLSFailures = s.c.tlsFailures.Load()
	st.ProtocolErrors = s.c.protocolErrors.Load()
	st.Announced = s.c.announced.Load()
	st.Removed = s.c.removed.Load()
	st.Takeovers = s.c.takeovers.Load()
	st.Expired = s.c.expired.Load()
	st.Reported = s.c.reported.Load()
	st.Routed = s.c.routed.Load()
	st.Waited = s.c.waited.Load()
	st.Unrouted = s.c.unrouted.Load()
	st.Dropped = s.c.dropped.Load()
	st.Oversize = s.c.oversize.Load()
	return st
}

// Serve accepts copier connections on ln and runs the Interceptor until ctx
// ends, Close is called, the Interceptor fails or ln fails. It closes ln and
// every copier connection before it returns, and returns nil for the first
// two causes. Serve runs once per Server; after Close it returns ErrClosed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, end, err := s.run.begin(ctx, "Server.Serve")
	if errors.Is(err, ErrClosed) {
		ln.Close()
	}
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := context.WithCancel(ctx) // also stops the loops when one fails
	defer cancel()
	if len(s.cfg.Secret) == 0 {
		s.log.Warn("intercept: serving without a shared secret: any copier that speaks the protocol is accepted", "addr", ln.Addr())
	}
	if s.cfg.AcceptClassic {
		s.log.Warn("intercept: classic TCPCopy framing accepted: classic copiers are not authenticated", "addr", ln.Addr())
	}

	var wg sync.WaitGroup
	var icErr error
	wg.Go(func() {
		err := s.cfg.Interceptor.Run(ctx, s.report)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			icErr = err
			cancel()
			return
		}
		s.log.Warn("intercept: interceptor stopped; serving without responses")
	})
	wg.Go(func() { s.sweeper(ctx) })
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var lnErr error
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// EMFILE and friends: back off like net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("intercept: accept", "err", err, "retry_in", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			lnErr = fmt.Errorf("intercept: accept on %v: %w", ln.Addr(), err)
			break
		}
		delay = 0
		s.c.accepted.Add(1)
		// Only this loop adds to handshaking, so it never passes the cap.
		if s.handshaking.Load() >= int64(s.cfg.MaxHandshakes) {
			nc.Close()
			if n := s.c.refused.Add(1); isPow2(n) {
				s.log.Warn("intercept: refused connection: too many handshakes in progress", "remote", nc.RemoteAddr(), "max", s.cfg.MaxHandshakes, "refused", n)
			}
			continue
		}
		s.handshaking.Add(1)
		wg.Go(func() { s.handle(ctx, nc) })
	}
	cancel()
	ln.Close()
	wg.Wait()
	if icErr != nil {
		return fmt.Errorf("intercept: interceptor: %w", icErr)
	}
	return lnErr
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Close stops Serve and waits for it to return. It is idempotent.
func (s *Server) Close() error {
	s.run.close(nil)
	return nil
}

// copierConn is one copier connection as the server sees it.
type copierConn struct {
	nc      net.Conn
	remote  string
	id      uint64 // copier id from the hello; 0 for classic connections
	classic bool
	notify  chan struct{}

	touched bool // guarded by Server.mu

	mu   sync.Mutex
	enc  ResponsesEncoder // pending frames (native)
	cenc ClassicEncoder   // pending frames (classic)
	dead bool
}

func (s *Server) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	remote := nc.RemoteAddr().String()

	c, br := s.handshake(nc, remote)
	s.handshaking.Add(-1)
	if c == nil {
		return
	}
	s.mu.Lock()
	if len(s.conns) >= s.cfg.MaxCopiers {
		s.mu.Unlock()
		if n := s.c.refused.Add(1); isPow2(n) {
			s.log.Warn("intercept: refused copier: too many copier connections", "remote", remote, "max", s.cfg.MaxCopiers, "refused", n)
		}
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.c.established.Add(1)
	if c.classic {
		s.c.classic.Add(1)
	}
	s.log.Info("intercept: copier connected", "remote", remote, "classic", c.classic)

	writerDone := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop(c, quit)
	}()

	var err error
	if c.classic {
		err = s.readClassic(c, br)
	} else {
		err = s.readLoop(c, br)
	}
	s.unregister(c)
	close(quit)
	c.nc.Close()
	<-writerDone
	switch {
	case errors.Is(err, ErrProtocol):
		s.c.protocolErrors.Add(1)
		s.log.Warn("intercept: copier broke the protocol; connection closed", "remote", remote, "err", err)
	case ctx.Err() != nil, errors.Is(err, io.EOF):
		s.log.Info("intercept: copier disconnected", "remote", remote)
	default:
		s.log.Info("intercept: copier connection lost", "remote", remote, "err", err)
	}
}

// handshake runs TLS (if configured) and the hello of either framing under
// HandshakeTimeout. It returns nil after logging and counting a failure.
func (s *Server) handshake(nc net.Conn, remote string) (*copierConn, *bufio.Reader) {
	s.mu.Lock()
	full := len(s.conns) >= s.cfg.MaxCopiers
	s.mu.Unlock()
	if full {
		// Checked again when the copier is registered; this spares the
		// handshake (and the copier a welcome followed by a close).
		if n := s.c.refused.Add(1); isPow2(n) {
			s.log.Warn("intercept: refused copier: too many copier connections", "remote", remote, "max", s.cfg.MaxCopiers, "refused", n)
		}
		return nil, nil
	}
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	conn := nc
	if s.cfg.TLS != nil {
		tc := tls.Server(nc, s.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			s.c.tlsFailures.Add(1)
			s.log.Warn("intercept: TLS handshake with copier failed; connection closed", "remote", remote, "err", err)
			return nil, nil
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, 4096)
	var pre [ClassicMsgLen]byte
	if _, err := io.ReadFull(br, pre[:4]); err != nil {
		s.c.badHello.Add(1)
		s.log.Warn("intercept: copier sent no hello; connection closed", "remote", remote, "err", err)
		return nil, nil
	}
	bad := func(err error) (*copierConn, *bufio.Reader) {
		s.c.badHello.Add(1)
		s.log.Warn("intercept: rejected copier; connection closed", "remote", remote, "err", err)
		return nil, nil
	}
	c := &copierConn{nc: conn, remote: remote, notify: make(chan struct{}, 1)}
	switch {
	case [4]byte(pre[:4]) == helloMagic:
		if _, err := io.ReadFull(br, pre[4:HelloLen]); err != nil {
			return bad(fmt.Errorf("intercept: read hello: %w", err))
		}
		h, _ := ParseHello(pre[:HelloLen]) // the magic is right
		if err := h.checkVersion(); err != nil {
			// Answer with our version so the peer can say what to speak.
			conn.Write(AppendHello(nil, Hello{Version: WireVersion}))
			return bad(err)
		}
		id, err := serverHandshake(conn, br, pre[:HelloLen], s.cfg.Secret)
		if errors.Is(err, ErrAuth) {
			n := s.c.authFailures.Add(1)
			s.log.Warn("intercept: copier failed authentication (wrong shared secret?); connection closed", "remote", remote, "err", err, "failures", n)
			return nil, nil
		}
		if err != nil {
			return bad(err)
		}
		c.id = id
	case pre[0] == 0 && pre[1] == 0 && pre[2] == 0 && pre[3] == 0:
		if !s.cfg.AcceptClassic {
			return bad(protoErrorf("classic TCPCopy framing is not accepted (it cannot authenticate; set ServerConfig.AcceptClassic to allow it)"))
		}
		if _, err := io.ReadFull(br, pre[4:]); err != nil {
			return bad(fmt.Errorf("intercept: read classic version message: %w", err))
		}
		m, err := ParseClassicMessage(pre[:])
		if err == nil && m.Type != ClassicVersion {
			err = protoErrorf("classic copier started with %v, not the version message", m.Type)
		}
		if err != nil {
			return bad(err)
		}
		c.classic = true
		c.cenc.Payload = s.cfg.ClassicPayload
	default:
		return bad(protoErrorf("bad hello: %q is neither the native magic %q nor a classic version message", pre[:4], helloMagic[:]))
	}
	conn.SetDeadline(time.Time{})
	return c, br
}

func (s *Server) readLoop(c *copierConn, r io.Reader) error {
	fr := NewFrameReader(r, FrameClientAdd, FrameClientRemove)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		client, target, err := ParseClient(f.Body)
		if err != nil {
			return err // ReadFrame checked it already
		}
		if f.Type == FrameClientAdd {
			s.addRoute(c, client, target)
		} else {
			s.removeRoute(c, client)
		}
	}
}

func (s *Server) readClassic(c *copierConn, r io.Reader) error {
	mr := NewClassicMessageReader(r)
	for {
		m, err := mr.ReadMessage()
		if err != nil {
			return err
		}
		switch m.Type {
		case ClassicAdd:
			s.addRoute(c, m.Client, m.Target)
		case ClassicRemove:
			s.removeRoute(c, m.Client)
		}
		// A repeated version message is harmless: ignored.
	}
}

func (s *Server) writeLoop(c *copierConn, quit <-chan struct{}) {
	var spare []byte
	for {
		select {
		case <-c.notify:
		case <-quit:
			return
		}
		c.mu.Lock()
		var buf []byte
		if c.classic {
			c.cenc.Flush()
			buf, c.cenc.B = c.cenc.B, spare[:0]
		} else {
			c.enc.Flush()
			buf, c.enc.B = c.enc.B, spare[:0]
		}
		c.mu.Unlock()
		if len(buf) > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := c.nc.Write(buf); err != nil {
				s.log.Warn("intercept: write to copier", "remote", c.remote, "err", err)
				c.mu.Lock()
				c.dead = true
				c.mu.Unlock()
				c.nc.Close() // the reader sees it and unregisters c
				return
			}
		}
		spare = buf
	}
}

func (s *Server) addRoute(c *copierConn, client, target capture.Endpoint) {
	s.c.announced.Add(1)
	now := s.cfg.Clock().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.routes[client]; ok && old.conn != c && !old.conn.sameCopier(c) {
		s.c.takeovers.Add(1)
	}
	s.routes[client] = route{conn: c, target: target, last: now}
	hs, ok := s.held[client]
	if !ok {
		return
	}
	delete(s.held, client)
	s.nheld -= len(hs)
	for _, h := range hs {
		var p capture.Packet
		p.DecodeHeaders(h.rec) // it decoded when it was held
		if c.enqueue(&p, s.cfg.PayloadLimit, s.cfg.QueueBytes) == nil {
			s.c.routed.Add(1)
			s.c.waited.Add(1)
		} else {
			s.c.dropped.Add(1)
		}
	}
	c.flush()
}

func (s *Server) removeRoute(c *copierConn, client capture.Endpoint) {
	s.c.removed.Add(1)
	s.mu.Lock()
	if r, ok := s.routes[client]; ok && (r.conn == c || r.conn.sameCopier(c)) {
		delete(s.routes, client)
	}
	s.mu.Unlock()
}

// sameCopier reports whether c and d are connections of one native copier
// (same non-zero copier id).
func (c *copierConn) sameCopier(d *copierConn) bool {
	return c.id != 0 && c.id == d.id
}

// unregister forgets c. Its routes move to another connection of the
// same copier, if one is up (the copier's hash sends later ClientAdds there
// too), or end.
func (s *Server) unregister(c *copierConn) {
	s.mu.Lock()
	delete(s.conns, c)
	var heir *copierConn
	for d := range s.conns {
		if d.sameCopier(c) {
			heir = d
			break
		}
	}
	for k, r := range s.routes {
		if r.conn == c {
			if heir != nil {
				r.conn = heir
				s.routes[k] = r
			} else {
				delete(s.routes, k)
			}
		}
	}
	s.mu.Unlock()
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

// report is the Interceptor's callback: it routes one batch.
func (s *Server) report(pkts []capture.Packet) {
	if len(pkts) == 0 {
		return
	}
	now := s.cfg.Clock().UnixNano()
	limit := s.cfg.PayloadLimit
	var routed, dropped, oversize, unrouted uint64
	s.mu.Lock()
	for i := range pkts {
		p := &pkts[i]
		key := p.DstEndpoint()
		r, ok := s.routes[key]
		if !ok {
			if _, err := ReportLen(p, limit); err != nil {
				oversize++
			} else if !s.hold(p, key, now) {
				unrouted++
			}
			continue
		}
		r.last = now
		s.routes[key] = r
		switch err := r.conn.enqueue(p, limit, s.cfg.QueueBytes); {
		case err == errOversize:
			oversize++
		case err != nil:
			dropped++
		default:
			routed++
			if !r.conn.touched {
				r.conn.touched = true
				s.touched = append(s.touched, r.conn)
			}
		}
	}
	// The interceptor's batch ends here: send what it gave each copier.
	for i, c := range s.touched {
		c.touched = false
		c.flush()
		s.touched[i] = nil
	}
	s.touched = s.touched[:0]
	s.mu.Unlock()
	s.c.reported.Add(uint64(len(pkts)))
	s.c.routed.Add(routed)
	s.c.dropped.Add(dropped)
	s.c.oversize.Add(oversize)
	s.c.unrouted.Add(unrouted)
}

// hold keeps a copy of an unroutable response for EarlyWait. s.mu is held.
func (s *Server) hold(p *capture.Packet, key capture.Endpoint, now int64) bool {
	if s.cfg.EarlyWait < 0 || s.nheld >= s.cfg.EarlyLimit {
		return false
	}
	limit := s.cfg.PayloadLimit
	if s.cfg.ClassicPayload {
		limit = max(limit, ClassicPayloadLen)
	}
	n, _ := ReportLen(p, limit) // checked by the caller
	s.held[key] = append(s.held[key], heldResponse{at: now, rec: append([]byte(nil), p.Data[:n]...)})
	s.nheld++
	return true
}

var (
	errOversize  = errors.New("intercept: response headers exceed a record")
	errQueueFull = errors.New("intercept: copier queue full")
)

// enqueue adds a record for p to c's pending frames.
func (c *copierConn) enqueue(p *capture.Packet, limit, queueBytes int) error {
	if c.classic {
		if p.IsIPv6() {
			return errOversize // a classic copier cannot announce IPv6: never happens
		}
		recLen, _ := classicLayout(c.cenc.Payload)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.dead || len(c.cenc.B)+recLen+2 > queueBytes {
			return errQueueFull
		}
		return c.cenc.Add(p)
	}
	n, err := ReportLen(p, limit)
	if err != nil {
		return errOversize
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || len(c.enc.B)+n+FrameHeaderLen+4 > queueBytes {
		return errQueueFull
	}
	c.enc.addRecord(p.Data[:n])
	return nil
}

// flush wakes the writer.
func (c *copierConn) flush() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (s *Server) sweeper(ctx context.Context) {
	period := s.cfg.RouteTTL / 8
	if s.cfg.EarlyWait > 0 {
		period = min(period, s.cfg.EarlyWait/4)
	}
	period = min(max(period, 10*time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep(s.cfg.Clock())
		}
	}
}

// sweep expires silent routes and held responses older than EarlyWait.
// Routes are scanned at most every RouteTTL/8 (the scan is O(routes)).
func (s *Server) sweep(now time.Time) {
	n := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	var unrouted uint64
	if s.nheld > 0 {
		wait := int64(s.cfg.EarlyWait)
		for k, hs := range s.held {
			i := 0
			for i < len(hs) && n-hs[i].at >= wait {
				i++
			}
			if i == 0 {
				continue
			}
			unrouted += uint64(i)
			s.nheld -= i
			if i == len(hs) {
				delete(s.held, k)
			} else {
				s.held[k] = hs[i:]
			}
		}
	}
	s.c.unrouted.Add(unrouted)
	ttl := int64(s.cfg.RouteTTL)
	if n-s.lastRouteGC < ttl/8 {
		return
	}
	s.lastRouteGC = n
	for k, r := range s.routes {
		if n-r.last >= ttl {
			delete(s.routes, k)
			s.c.expired.Add(1)
		}
	}
}
