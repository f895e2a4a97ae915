package intercept

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// ClientConfig configures a Client. Every zero value picks the documented
// default.
type ClientConfig struct {
	// Servers are the intercepts to dial, as host:port (tcpcopy's -s).
	// Required.
	Servers []string
	// Conns is the number of connections to each server (tcpcopy's -C); a
	// client's ClientAdd goes over one of them, picked by a hash of the
	// client (the next one up when that one is down), and its responses
	// come back over the same one. Zero: 1.
	Conns int
	// Handler receives the responses, in batches, from the connections'
	// reader goroutines (so it may run concurrently with itself when there
	// is more than one connection). The packets are decoded with
	// capture.Packet.DecodeHeaders: Payload holds the bytes the server's
	// PayloadLimit let through, PayloadLen the true length. Time is the
	// Clock when the batch arrived. The packets and their Data are valid
	// during the call only. Required.
	Handler func(pkts []capture.Packet)
	// Secret is the shared secret of the servers (see ServerConfig.Secret).
	// Zero (empty): the empty key, which only servers without a secret
	// accept. Ignored with Classic.
	Secret []byte
	// TLS, when set, makes every connection TLS (client side). An empty
	// ServerName is set to the host of each server address. Zero: plain
	// TCP. Not with Classic.
	TLS *tls.Config
	// Classic makes the Client speak the classic TCPCopy 1.x framing, to
	// pair with the C intercept: IPv4 only (Announce of an IPv6 client
	// reports an error), no authentication, and no ClientRemove (the C
	// intercept expires its routes). Zero: the native framing.
	Classic bool
	// ClassicPayload expects the payload build's 192-byte records from a
	// classic server. Zero: 64-byte records.
	ClassicPayload bool
	// Dial dials a server. Zero: a net.Dialer with HandshakeTimeout; pass
	// (*net.Dialer).DialContext for another one, or a function that dials
	// inside a network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Backoff is the first wait before redialling a server; it doubles up
	// to MaxBackoff (each wait varied by up to a fifth, so copiers do not
	// redial in step) and starts again after a successful handshake.
	// Zero: 100 ms.
	Backoff time.Duration
	// MaxBackoff caps the redial wait. Zero: 5 s.
	MaxBackoff time.Duration
	// QueueBytes bounds the ClientAdd/ClientRemove frames queued for one
	// connection; Announce drops (and counts) what does not fit, so it never
	// blocks on a slow server. Zero: 256 KiB (about 6000 frames).
	QueueBytes int
	// MaxTracked bounds the clients the Client remembers (announced and not
	// removed) to announce again when a connection comes back after a
	// server restart. Announces beyond it are sent but not remembered, and
	// counted as Untracked. Zero: 262144 (about 20 MiB at most).
	MaxTracked int
	// HandshakeTimeout bounds dialling plus the handshake (TLS, hello,
	// proofs). Zero: 5 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a server; a server that takes no
	// data for that long is disconnected. Zero: 10 s.
	WriteTimeout time.Duration
	// Clock stamps received responses and errors. Zero: time.Now.
	Clock func() time.Time
	// Logger receives connection events and errors. Zero: discard.
	Logger *slog.Logger
}

// ClientStats counts what a Client did.
type ClientStats struct {
	Connected int // connections up now (handshake done), all servers
	Tracked   int // clients announced and not removed, remembered for re-announcing

	Dials          uint64 // dial attempts
	DialErrors     uint64 // dials or handshakes that failed
	Disconnects    uint64 // established connections lost
	Reconnects     uint64 // connections established again after one was lost
	ProtocolErrors uint64 // connections closed because the server broke the protocol
	AuthFailures   uint64 // handshakes that failed a proof (wrong shared secret on one side)

	Announced       uint64 // ClientAdd frames queued, one per server
	Removed         uint64 // ClientRemove frames queued, one per server
	AnnounceDropped uint64 // frames not queued or lost: server not connected, queue full, connection lost
	Reannounced     uint64 // ClientAdd frames sent again when a connection came up
	Untracked       uint64 // Announces not remembered for re-announcing: MaxTracked reached

	Frames    uint64 // Responses frames received
	Responses uint64 // responses passed to Handler

	// Servers holds the state of each server, in ClientConfig.Servers order.
	Servers []ServerState
}

// ServerState is what a Client knows of one server.
type ServerState struct {
	Addr        string
	Up          int    // connections up now, of ClientConfig.Conns
	Dials       uint64 // dial attempts
	DialErrors  uint64 // dials or handshakes that failed
	Disconnects uint64 // established connections lost
	Reconnects  uint64 // connections established again after one was lost
	// Missed counts ClientAdds this server did not get when they were
	// made: no connection was up, the queue was full, or the connection
	// was lost with them queued. The clients still active are announced
	// again when a connection comes up, so Missed bounds the sessions
	// whose beginning (SYN-ACK) the server could not route.
	Missed uint64
	// LastError is the last dial, handshake or connection error, and
	// LastErrorTime when it happened (Clock); nil and zero when none.
	LastError     error
	LastErrorTime time.Time
}

type clientCounters struct {
	dials, dialErrors, disconnects, reconnects, protocolErrors, authFailures,
	announced, removed, announceDropped, reannounced, untracked,
	frames, responses atomic.Uint64
}

// Client is the copier's side of the wire protocol: it keeps connections to
// every server, sends them ClientAdd/ClientRemove frames and passes the
// responses they route back to Handler. It remembers the clients announced
// and not removed (up to MaxTracked) and announces them again whenever a
// connection comes up, so sessions open across a server restart get their
// responses again once it is back. It is safe for concurrent use.
type Client struct {
	cfg      ClientConfig
	log      *slog.Logger
	c        clientCounters
	servers  []*serverState
	conns    []*clientConn // server i, connection j at i*Conns+j
	copierID uint64
	run      runOnce

	trackMu sync.Mutex
	tracked map[capture.Endpoint]capture.Endpoint // client -> target

	mu    sync.Mutex
	state chan struct{} // closed and replaced when a connection goes up or down
}

type serverState struct {
	addr string
	host string // for TLS ServerName

	dials, dialErrors, disconnects, reconnects, missed atomic.Uint64

	mu        sync.Mutex
	lastErr   error
	lastErrAt time.Time
}

type clientConn struct {
	srv    *serverState
	si, j  int // server index, connection index
	notify chan struct{}

	wasUp bool // guarded by the keep goroutine

	mu       sync.Mutex
	up       bool
	pending  []byte
	nPending int // frames in pending
	nAdds    int // of those, ClientAdds
}

// NewClient returns a Client for cfg. It starts nothing; Run does.
func NewClient(cfg *ClientConfig) (*Client, error) {
	if cfg == nil || len(cfg.Servers) == 0 {
		return nil, errors.New("intercept: ClientConfig.Servers is required")
	}
	if cfg.Handler == nil {
		return nil, errors.New("intercept: ClientConfig.Handler is required")
	}
	c := *cfg
	c.Servers = append([]string(nil), cfg.Servers...)
	c.Secret = append([]byte(nil), cfg.Secret...)
	if c.Conns < 0 || c.Backoff < 0 || c.MaxBackoff < 0 || c.QueueBytes < 0 || c.HandshakeTimeout < 0 ||
		c.WriteTimeout < 0 || c.MaxTracked < 0 {
		return nil, errors.New("intercept: negative Conns, Backoff, MaxBackoff, QueueBytes, HandshakeTimeout, WriteTimeout or MaxTracked")
	}
	if c.Classic && c.TLS != nil {
		return nil, errors.New("intercept: ClientConfig.Classic and TLS exclude each other (the classic framing has no TLS)")
	}
	if c.Conns == 0 {
		c.Conns = 1
	}
	if c.Backoff == 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.Backoff)
	if c.QueueBytes == 0 {
		c.QueueBytes = 256 << 10
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 1 << 18
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
	if c.Dial == nil {
		d := &net.Dialer{Timeout: c.HandshakeTimeout}
		c.Dial = d.DialContext
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl := &Client{cfg: c, log: log, state: make(chan struct{}), tracked: make(map[capture.Endpoint]capture.Endpoint)}
	var id [8]byte
	for cl.copierID == 0 {
		rand.Read(id[:])
		cl.copierID = binary.BigEndian.Uint64(id[:])
	}
	for i, s := range c.Servers {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("intercept: server address %q: %w", s, err)
		}
		srv := &serverState{addr: s, host: host}
		cl.servers = append(cl.servers, srv)
		for j := range c.Conns {
			cl.conns = append(cl.conns, &clientConn{srv: srv, si: i, j: j, notify: make(chan struct{}, 1)})
		}
	}
	return cl, nil
}

// Stats returns a snapshot of the counters.
func (cl *Client) Stats() ClientStats {
	st := ClientStats{
		Dials:           cl.c.dials.Load(),
		DialErrors:      cl.c.dialErrors.Load(),
		Disconnects:     cl.c.disconnects.Load(),
		Reconnects:      cl.c.reconnects.Load(),
		ProtocolErrors:  cl.c.protocolErrors.Load(),
		AuthFailures:    cl.c.authFailures.Load(),
		Announced:       cl.c.announced.Load(),
		Removed:         cl.c.removed.Load(),
		AnnounceDropped: cl.c.announceDropped.Load(),
		Reannounced:     cl.c.reannounced.Load(),
		Untracked:       cl.c.untracked.Load(),
		Frames:          cl.c.frames.Load(),
		Responses:       cl.c.responses.Load(),
	}
	cl.trackMu.Lock()
	st.Tracked = len(cl.tracked)
	cl.trackMu.Unlock()
	for _, s := range cl.servers {
		ss := ServerState{
			Addr:        s.addr,
			Dials:       s.dials.Load(),
			DialErrors:  s.dialErrors.Load(),
			Disconnects: s.disconnects.Load(),
			Reconnects:  s.reconnects.Load(),
			Missed:      s.missed.Load(),
		}
		s.mu.Lock()
		ss.LastError, ss.LastErrorTime = s.lastErr, s.lastErrAt
		s.mu.Unlock()
		st.Servers = append(st.Servers, ss)
	}
	for _, cc := range cl.conns {
		cc.mu.Lock()
		if cc.up {
			st.Connected++
			st.Servers[cc.si].Up++
		}
		cc.mu.Unlock()
	}
	return st
}

// Run dials every server, keeps the connections up (redialling with
// backoff) and reads responses until ctx ends or Close is called; then it
// closes the connections and returns nil. Run runs once per Client; after
// Close it returns ErrClosed.
func (cl *Client) Run(ctx context.Context) error {
	ctx, end, err := cl.run.begin(ctx, "Client.Run")
	if err != nil {
		return err
	}
	defer end()
	if !cl.cfg.Classic && len(cl.cfg.Secret) == 0 {
		cl.log.Warn("intercept: no shared secret: only servers without one will accept this copier")
	}

	var wg sync.WaitGroup
	for _, cc := range cl.conns {
		wg.Go(func() { cl.keep(ctx, cc) })
	}
	wg.Wait()
	return nil
}

// Close stops Run, waits for it to return and makes later calls return
// ErrClosed. It is idempotent.
func (cl *Client) Close() error {
	cl.run.close(func() {
		cl.mu.Lock()
		close(cl.state) // wake Ready
		cl.state = make(chan struct{})
		cl.mu.Unlock()
	})
	return nil
}

// Ready waits until every connection to every server is up (handshake
// done), or ctx ends, or the Client is closed. A copier calls it before it
// starts copying so no early session loses its responses.
func (cl *Client) Ready(ctx context.Context) error {
	for {
		cl.mu.Lock()
		ch := cl.state
		cl.mu.Unlock()
		if cl.run.closed.Load() {
			return ErrClosed
		}
		var down []string
		for _, cc := range cl.conns {
			cc.mu.Lock()
			if !cc.up {
				down = append(down, cc.srv.addr)
			}
			cc.mu.Unlock()
		}
		if len(down) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("intercept: waiting for servers %s: %w", strings.Join(down, ", "), ctx.Err())
		}
	}
}

func (cl *Client) stateChanged() {
	cl.mu.Lock()
	close(cl.state)
	cl.state = make(chan struct{})
	cl.mu.Unlock()
}

// Announce sends a ClientAdd for client (the address and port the target
// answers to, after any rewriting) and target to every connected server,
// so the server routes the responses to client here, and remembers the
// client until Remove. It queues the frame and returns at once; frames
// that cannot be queued (server not connected, queue full) are counted in
// AnnounceDropped and the server's Missed, and sent when a connection to
// that server comes up, if the client is still active. It reports an
// error only for invalid endpoints (IPv6 ones with Classic) or a closed
// Client.
func (cl *Client) Announce(client, target capture.Endpoint) error {
	if cl.run.closed.Load() {
		return ErrClosed
	}
	var buf [FrameHeaderLen + maxClientBody]byte
	f, err := cl.appendFrame(buf[:0], FrameClientAdd, client, target)
	if err != nil {
		return err
	}
	cl.trackMu.Lock()
	if _, ok := cl.tracked[client]; ok || len(cl.tracked) < cl.cfg.MaxTracked {
		cl.tracked[client] = target
	} else {
		cl.c.untracked.Add(1)
	}
	cl.trackMu.Unlock()
	cl.send(f, true, client, &cl.c.announced)
	return nil
}

// Remove sends a ClientRemove for client and target to every connected
// server, like Announce, and forgets the client. With Classic nothing is
// sent.
func (cl *Client) Remove(client, target capture.Endpoint) error {
	if cl.run.closed.Load() {
		return ErrClosed
	}
	if !client.IsValid() || !target.IsValid() {
		return fmt.Errorf("intercept: ClientRemove with an invalid endpoint (client %v, target %v)", client, target)
	}
	cl.trackMu.Lock()
	delete(cl.tracked, client)
	cl.trackMu.Unlock()
	if cl.cfg.Classic {
		return nil
	}
	var buf [FrameHeaderLen + maxClientBody]byte
	f, err := cl.appendFrame(buf[:0], FrameClientRemove, client, target)
	if err != nil {
		return err
	}
	cl.send(f, false, client, &cl.c.removed)
	return nil
}

// appendFrame encodes a ClientAdd or ClientRemove in the configured framing.
func (cl *Client) appendFrame(b []byte, t FrameType, client, target capture.Endpoint) ([]byte, error) {
	if cl.cfg.Classic {
		ct := ClassicAdd
		if t == FrameClientRemove {
			ct = ClassicRemove
		}
		return AppendClassicMessage(b, ct, client, target)
	}
	return appendClientFrame(b, t, client, target)
}

// send queues frame f on the connection to each server that client hashes
// to, or the next one up.
func (cl *Client) send(f []byte, add bool, client capture.Endpoint, ctr *atomic.Uint64) {
	n := cl.cfg.Conns
	first := int(client.Hash() % uint64(n))
	for s, srv := range cl.servers {
		queued := false
		for k := range n {
			cc := cl.conns[s*n+(first+k)%n]
			if ok, up := cc.enqueue(f, add, cl.cfg.QueueBytes); up {
				queued = ok
				break
			}
		}
		if queued {
			ctr.Add(1)
		} else {
			cl.c.announceDropped.Add(1)
			if add {
				srv.missed.Add(1)
			}
		}
	}
}

// enqueue queues frame f if the connection is up and has room.
func (cc *clientConn) enqueue(f []byte, add bool, queueBytes int) (ok, up bool) {
	cc.mu.Lock()
	if !cc.up {
		cc.mu.Unlock()
		return false, false
	}
	if len(cc.pending)+len(f) > queueBytes {
		cc.mu.Unlock()
		return false, true
	}
	cc.pending = append(cc.pending, f...)
	cc.nPending++
	if add {
		cc.nAdds++
	}
	cc.mu.Unlock()
	select {
	case cc.notify <- struct{}{}:
	default:
	}
	return true, true
}

// reannouncement encodes a ClientAdd for every tracked client whose
// connection to cc's server is cc: the first one up in the client's hash
// order. cc is up.
func (cl *Client) reannouncement(cc *clientConn) ([]byte, int) {
	n := cl.cfg.Conns
	up := make([]bool, n)
	for j := range n {
		d := cl.conns[cc.si*n+j]
		d.mu.Lock()
		up[j] = d.up
		d.mu.Unlock()
	}
	up[cc.j] = true
	cl.trackMu.Lock()
	defer cl.trackMu.Unlock()
	var b []byte
	count := 0
	for client, target := range cl.tracked {
		first := int(client.Hash() % uint64(n))
		for k := range n {
			j := (first + k) % n
			if !up[j] {
				continue
			}
			if j == cc.j {
				var err error
				if b, err = cl.appendFrame(b, FrameClientAdd, client, target); err == nil {
					count++
				}
			}
			break
		}
	}
	return b, count
}

// keep keeps one connection up until ctx ends.
func (cl *Client) keep(ctx context.Context, cc *clientConn) {
	backoff := cl.cfg.Backoff
	failures := 0
	srv := cc.srv
	for ctx.Err() == nil {
		established, err := cl.session(ctx, cc)
		if ctx.Err() != nil {
			return
		}
		srv.mu.Lock()
		srv.lastErr, srv.lastErrAt = err, cl.cfg.Clock()
		srv.mu.Unlock()
		switch {
		case established:
			backoff, failures = cl.cfg.Backoff, 0
			cl.c.disconnects.Add(1)
			srv.disconnects.Add(1)
			cl.log.Warn("intercept: lost server; reconnecting", "server", srv.addr, "conn", cc.j, "err", err)
		default:
			cl.c.dialErrors.Add(1)
			srv.dialErrors.Add(1)
			if failures == 0 || errors.Is(err, ErrAuth) || errors.Is(err, ErrProtocol) {
				cl.log.Warn("intercept: cannot connect to server", "server", srv.addr, "conn", cc.j, "err", err)
			} else {
				cl.log.Debug("intercept: cannot connect to server", "server", srv.addr, "conn", cc.j, "err", err, "failures", failures+1)
			}
			failures++
		}
		if errors.Is(err, ErrProtocol) {
			cl.c.protocolErrors.Add(1)
		}
		if errors.Is(err, ErrAuth) {
			cl.c.authFailures.Add(1)
		}
		// Vary each wait by up to a fifth so copiers do not redial in step.
		wait := backoff - time.Duration(mrand.Int64N(int64(backoff)/5+1))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, cl.cfg.MaxBackoff)
	}
}

// session dials cc's server, runs the handshake, announces the tracked
// clients and reads responses until the connection fails. established
// reports whether the handshake succeeded.
func (cl *Client) session(ctx context.Context, cc *clientConn) (established bool, err error) {
	srv := cc.srv
	cl.c.dials.Add(1)
	srv.dials.Add(1)
	dctx, cancel := context.WithTimeout(ctx, cl.cfg.HandshakeTimeout)
	defer cancel()
	nc, err := cl.cfg.Dial(dctx, "tcp", srv.addr)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	nc.SetDeadline(time.Now().Add(cl.cfg.HandshakeTimeout))
	if cl.cfg.TLS != nil {
		tcfg := cl.cfg.TLS
		if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
			tcfg = tcfg.Clone()
			tcfg.ServerName = srv.host
		}
		tc := tls.Client(nc, tcfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			return false, fmt.Errorf("intercept: TLS handshake with %s: %w", srv.addr, err)
		}
		nc = tc
		defer nc.Close()
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	if cl.cfg.Classic {
		if _, err := nc.Write(AppendClassicVersion(nil)); err != nil {
			return false, fmt.Errorf("intercept: write classic version message to %s: %w", srv.addr, err)
		}
	} else if err := clientHandshake(nc, br, cl.cfg.Secret, cl.copierID); err != nil {
		return false, fmt.Errorf("%w (server %s)", err, srv.addr)
	}
	nc.SetDeadline(time.Time{})

	cc.mu.Lock()
	cc.up = true
	cc.pending, cc.nPending, cc.nAdds = cc.pending[:0], 0, 0
	cc.mu.Unlock()
	if cc.wasUp {
		cl.c.reconnects.Add(1)
		srv.reconnects.Add(1)
	}
	cc.wasUp = true
	cl.stateChanged()
	cl.log.Info("intercept: connected to server", "server", srv.addr, "conn", cc.j, "classic", cl.cfg.Classic)

	quit := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		// Announce the active clients first: frames Announce and Remove
		// queue meanwhile go after them, in order.
		if b, n := cl.reannouncement(cc); n > 0 {
			nc.SetWriteDeadline(time.Now().Add(cl.cfg.WriteTimeout))
			if _, err := nc.Write(b); err != nil {
				cl.log.Warn("intercept: announce active clients to server", "server", srv.addr, "clients", n, "err", err)
				nc.Close()
				return
			}
			cl.c.reannounced.Add(uint64(n))
			cl.log.Info("intercept: announced active clients to server", "server", srv.addr, "conn", cc.j, "clients", n)
		}
		cl.writeLoop(cc, nc, quit)
	}()
	if cl.cfg.Classic {
		err = cl.readClassic(cc, br)
	} else {
		err = cl.readLoop(cc, br)
	}

	cc.mu.Lock()
	cc.up = false
	lost, lostAdds := cc.nPending, cc.nAdds
	cc.pending, cc.nPending, cc.nAdds = cc.pending[:0], 0, 0
	cc.mu.Unlock()
	cl.c.announceDropped.Add(uint64(lost))
	srv.missed.Add(uint64(lostAdds))
	cl.stateChanged()
	close(quit)
	nc.Close()
	<-writerDone
	return true, err
}

func (cl *Client) readLoop(cc *clientConn, r io.Reader) error {
	fr := NewFrameReader(r, FrameResponses)
	var pkts []capture.Packet
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		pkts, err = DecodeResponses(f.Body, pkts[:0])
		if err != nil {
			return fmt.Errorf("%w (server %s)", err, cc.srv.addr)
		}
		cl.deliver(pkts)
	}
}

func (cl *Client) readClassic(cc *clientConn, r io.Reader) error {
	cr := NewClassicReader(r, cl.cfg.ClassicPayload)
	var pkts []capture.Packet
	for {
		var err error
		pkts, err = cr.ReadResponses(pkts[:0])
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("%w (server %s)", err, cc.srv.addr)
			}
			return err
		}
		cl.deliver(pkts)
	}
}

func (cl *Client) deliver(pkts []capture.Packet) {
	cl.c.frames.Add(1)
	if len(pkts) == 0 {
		return
	}
	now := cl.cfg.Clock()
	for i := range pkts {
		pkts[i].Time = now
	}
	cl.cfg.Handler(pkts)
	cl.c.responses.Add(uint64(len(pkts)))
}

func (cl *Client) writeLoop(cc *clientConn, nc net.Conn, quit <-chan struct{}) {
	var spare []byte
	for {
		select {
		case <-cc.notify:
		case <-quit:
			return
		}
		cc.mu.Lock()
		buf, n, adds := cc.pending, cc.nPending, cc.nAdds
		cc.pending, cc.nPending, cc.nAdds = spare[:0], 0, 0
		cc.mu.Unlock()
		if len(buf) > 0 {
			nc.SetWriteDeadline(time.Now().Add(cl.cfg.WriteTimeout))
			if _, err := nc.Write(buf); err != nil {
				cl.c.announceDropped.Add(uint64(n))
				cc.srv.missed.Add(uint64(adds))
				cl.log.Warn("intercept: write to server", "server", cc.srv.addr, "err", err)
				nc.Close() // the reader sees it and ends the session
				return
			}
		}
		spare = buf
	}
}
