package intercept

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// Servers are the intercepts to dial, as host:port. Required.
	Servers []string
	// Conns is the number of connections to each server; a client's
	// ClientAdd goes over one of them, picked by a hash of the client, and
	// its responses come back over the same one. Zero: 1.
	Conns int
	// Handler receives the responses, in batches, from the connections'
	// reader goroutines (so it may run concurrently with itself when there
	// is more than one connection). The packets are decoded with
	// capture.Packet.DecodeHeaders: Payload holds the bytes the server's
	// PayloadLimit let through, PayloadLen the true length. Time is the
	// Clock when the batch arrived. The packets and their Data are valid
	// during the call only. Required.
	Handler func(pkts []capture.Packet)
	// Dial dials a server. Zero: a net.Dialer with HandshakeTimeout; pass
	// (*net.Dialer).DialContext for another one, or a function that dials
	// inside a network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Backoff is the first wait before redialling a server; it doubles up
	// to MaxBackoff and starts again after a successful hello. Zero: 100 ms.
	Backoff time.Duration
	// MaxBackoff caps the redial wait. Zero: 5 s.
	MaxBackoff time.Duration
	// QueueBytes bounds the ClientAdd/ClientRemove frames queued for one
	// connection; Announce drops (and counts) what does not fit, so it never
	// blocks on a slow server. Zero: 256 KiB (about 6000 frames).
	QueueBytes int
	// HandshakeTimeout bounds dialling plus the hello exchange. Zero: 5 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a server; a server that takes no
	// data for that long is disconnected. Zero: 10 s.
	WriteTimeout time.Duration
	// Clock stamps received responses. Zero: time.Now.
	Clock func() time.Time
	// Logger receives connection events and errors. Zero: discard.
	Logger *slog.Logger
}

// ClientStats counts what a Client did.
type ClientStats struct {
	Connected int // connections up now (hello done)

	Dials          uint64 // dial attempts
	DialErrors     uint64 // dials or hellos that failed
	Disconnects    uint64 // established connections lost
	ProtocolErrors uint64 // connections closed because the server broke the protocol

	Announced       uint64 // ClientAdd frames queued, one per server
	Removed         uint64 // ClientRemove frames queued, one per server
	AnnounceDropped uint64 // frames not queued or lost: server not connected, queue full, connection lost

	Frames    uint64 // Responses frames received
	Responses uint64 // responses passed to Handler
}

type clientCounters struct {
	dials, dialErrors, disconnects, protocolErrors, announced, removed,
	announceDropped, frames, responses atomic.Uint64
}

// Client is the copier's side of the wire protocol: it keeps connections to
// every server, sends them ClientAdd/ClientRemove frames and passes the
// responses they route back to Handler. It is safe for concurrent use.
//
// In this version a Client does not re-announce its clients when a
// connection comes back after a server restart; sessions that were open then
// lose their responses until they announce again.
type Client struct {
	cfg    ClientConfig
	log    *slog.Logger
	c      clientCounters
	conns  []*clientConn // server i, connection j at i*Conns+j
	closed atomic.Bool

	mu      sync.Mutex
	state   chan struct{} // closed and replaced when a connection goes up or down
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

type clientConn struct {
	server string
	notify chan struct{}

	mu       sync.Mutex
	up       bool
	pending  []byte
	nPending int // frames in pending
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
	for _, s := range c.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("intercept: server address %q: %w", s, err)
		}
	}
	if c.Conns < 0 || c.Backoff < 0 || c.MaxBackoff < 0 || c.QueueBytes < 0 || c.HandshakeTimeout < 0 || c.WriteTimeout < 0 {
		return nil, errors.New("intercept: negative Conns, Backoff, MaxBackoff, QueueBytes, HandshakeTimeout or WriteTimeout")
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
	cl := &Client{cfg: c, log: log, state: make(chan struct{})}
	for _, s := range c.Servers {
		for range c.Conns {
			cl.conns = append(cl.conns, &clientConn{server: s, notify: make(chan struct{}, 1)})
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
		ProtocolErrors:  cl.c.protocolErrors.Load(),
		Announced:       cl.c.announced.Load(),
		Removed:         cl.c.removed.Load(),
		AnnounceDropped: cl.c.announceDropped.Load(),
		Frames:          cl.c.frames.Load(),
		Responses:       cl.c.responses.Load(),
	}
	for _, cc := range cl.conns {
		cc.mu.Lock()
		if cc.up {
			st.Connected++
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
	cl.mu.Lock()
	if cl.closed.Load() {
		cl.mu.Unlock()
		return ErrClosed
	}
	if cl.running {
		cl.mu.Unlock()
		return errors.New("intercept: Client.Run called twice")
	}
	cl.running = true
	ctx, cancel := context.WithCancel(ctx)
	cl.cancel = cancel
	cl.done = make(chan struct{})
	cl.mu.Unlock()
	defer close(cl.done)
	defer cancel()

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
	cl.mu.Lock()
	if cl.closed.Swap(true) {
		cl.mu.Unlock()
		return nil
	}
	running, cancel, done := cl.running, cl.cancel, cl.done
	close(cl.state) // wake Ready
	cl.state = make(chan struct{})
	cl.mu.Unlock()
	if running {
		cancel()
		<-done
	}
	return nil
}

// Ready waits until every connection to every server is up (hello done),
// or ctx ends, or the Client is closed. A copier calls it before it starts
// copying so no early session loses its responses.
func (cl *Client) Ready(ctx context.Context) error {
	for {
		cl.mu.Lock()
		ch := cl.state
		cl.mu.Unlock()
		if cl.closed.Load() {
			return ErrClosed
		}
		var down []string
		for _, cc := range cl.conns {
			cc.mu.Lock()
			if !cc.up {
				down = append(down, cc.server)
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
// so the server routes the responses to client here. It queues the frame
// and returns at once; frames that cannot be queued (server not connected,
// queue full) are counted in AnnounceDropped. It reports an error only for
// invalid endpoints or a closed Client.
func (cl *Client) Announce(client, target capture.Endpoint) error {
	return cl.send(FrameClientAdd, client, target, &cl.c.announced)
}

// Remove sends a ClientRemove for client and target to every connected
// server, like Announce.
func (cl *Client) Remove(client, target capture.Endpoint) error {
	return cl.send(FrameClientRemove, client, target, &cl.c.removed)
}

func (cl *Client) send(t FrameType, client, target capture.Endpoint, ctr *atomic.Uint64) error {
	if cl.closed.Load() {
		return ErrClosed
	}
	var buf [FrameHeaderLen + maxClientBody]byte
	f, err := appendClientFrame(buf[:0], t, client, target)
	if err != nil {
		return err
	}
	n := cl.cfg.Conns
	first := int(client.Hash() % uint64(n))
	for s := range len(cl.cfg.Servers) {
		queued := false
		// The hashed connection, or the next one up.
		for k := range n {
			cc := cl.conns[s*n+(first+k)%n]
			if ok, up := cc.enqueue(f, cl.cfg.QueueBytes); up {
				queued = ok
				break
			}
		}
		if queued {
			ctr.Add(1)
		} else {
			cl.c.announceDropped.Add(1)
		}
	}
	return nil
}

// enqueue queues frame f if the connection is up and has room.
func (cc *clientConn) enqueue(f []byte, queueBytes int) (ok, up bool) {
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
	cc.mu.Unlock()
	select {
	case cc.notify <- struct{}{}:
	default:
	}
	return true, true
}

// keep keeps one connection up until ctx ends.
func (cl *Client) keep(ctx context.Context, cc *clientConn) {
	backoff := cl.cfg.Backoff
	failures := 0
	for ctx.Err() == nil {
		established, err := cl.session(ctx, cc)
		if ctx.Err() != nil {
			return
		}
		if established {
			backoff, failures = cl.cfg.Backoff, 0
			cl.c.disconnects.Add(1)
			cl.log.Warn("intercept: lost server", "server", cc.server, "err", err)
		} else {
			cl.c.dialErrors.Add(1)
			if failures == 0 {
				cl.log.Warn("intercept: cannot connect to server", "server", cc.server, "err", err)
			} else {
				cl.log.Debug("intercept: cannot connect to server", "server", cc.server, "err", err, "failures", failures+1)
			}
			failures++
		}
		if errors.Is(err, ErrProtocol) {
			cl.c.protocolErrors.Add(1)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, cl.cfg.MaxBackoff)
	}
}

// session dials cc's server, says hello and reads responses until the
// connection fails. established reports whether the hello succeeded.
func (cl *Client) session(ctx context.Context, cc *clientConn) (established bool, err error) {
	cl.c.dials.Add(1)
	dctx, cancel := context.WithTimeout(ctx, cl.cfg.HandshakeTimeout)
	nc, err := cl.cfg.Dial(dctx, "tcp", cc.server)
	cancel()
	if err != nil {
		return false, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	nc.SetDeadline(time.Now().Add(cl.cfg.HandshakeTimeout))
	var hb [HelloLen]byte
	if _, err := nc.Write(AppendHello(hb[:0], Hello{Version: WireVersion})); err != nil {
		return false, fmt.Errorf("intercept: write hello to %s: %w", cc.server, err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return false, fmt.Errorf("intercept: read hello from %s: %w", cc.server, err)
	}
	h, err := ParseHello(hb[:])
	if err == nil {
		err = h.checkVersion()
	}
	if err != nil {
		return false, fmt.Errorf("%w (server %s)", err, cc.server)
	}
	nc.SetDeadline(time.Time{})

	cc.mu.Lock()
	cc.up = true
	cc.pending, cc.nPending = cc.pending[:0], 0
	cc.mu.Unlock()
	cl.stateChanged()
	cl.log.Info("intercept: connected to server", "server", cc.server)

	quit := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		cl.writeLoop(cc, nc, quit)
	}()
	err = cl.readLoop(cc, br)

	cc.mu.Lock()
	cc.up = false
	lost := cc.nPending
	cc.pending, cc.nPending = cc.pending[:0], 0
	cc.mu.Unlock()
	cl.c.announceDropped.Add(uint64(lost))
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
			return fmt.Errorf("%w (server %s)", err, cc.server)
		}
		cl.c.frames.Add(1)
		if len(pkts) == 0 {
			continue
		}
		now := cl.cfg.Clock()
		for i := range pkts {
			pkts[i].Time = now
		}
		cl.cfg.Handler(pkts)
		cl.c.responses.Add(uint64(len(pkts)))
	}
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
		buf, n := cc.pending, cc.nPending
		cc.pending, cc.nPending = spare[:0], 0
		cc.mu.Unlock()
		if len(buf) > 0 {
			nc.SetWriteDeadline(time.Now().Add(cl.cfg.WriteTimeout))
			if _, err := nc.Write(buf); err != nil {
				cl.c.announceDropped.Add(uint64(n))
				cl.log.Warn("intercept: write to server", "server", cc.server, "err", err)
				nc.Close() // the reader sees it and ends the session
				return
			}
		}
		spare = buf
	}
}
