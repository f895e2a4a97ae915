package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

// AFPacketConfig configures an AFPacket interceptor. Every zero value picks
// the documented default.
type AFPacketConfig struct {
	// Ports are the target service's ports: the kernel filter keeps the
	// TCP packets sent from them (the responses). Required.
	Ports []uint16
	// Interfaces are where the responses arrive: on an assistant host the
	// interface facing the target, in the two-box deployment the one the
	// responses to the fake client addresses come back on. Zero: every
	// interface of the namespace.
	Interfaces []string
	// Targets, when set, keeps only responses whose source address is in
	// one of these prefixes (the targets). Zero: any source.
	Targets []netip.Prefix
	// PassList holds destinations whose packets are not reported (an
	// AF_PACKET socket sees packets, it cannot drop them). Zero: none.
	PassList []netip.Prefix
	// Batch is the most packets read, and handed to report, at once.
	// Zero: 64.
	Batch int
	// Capture holds further settings of the capture socket (ring size,
	// snap length, block timeout, fanout, promiscuous mode). Its
	// Interfaces, Filter, RawFilter and Direction are replaced by the
	// fields above: received packets only, from Ports (and Targets). Zero:
	// the capture package's defaults.
	Capture *capture.AFPacketConfig
	// Logger receives lifecycle events. Zero: discard.
	Logger *slog.Logger
}

// AFPacketStats counts what an AFPacket interceptor saw.
type AFPacketStats struct {
	Reported uint64 // responses handed to report
	Passed   uint64 // destination on the PassList: not reported
	// Capture is the capture socket's own count: packets read, those that
	// did not decode, and KernelDrops when the ring overflowed.
	Capture capture.Stats
}

// AFPacket is an Interceptor for the assistant and two-box deployments
// (DESIGN.md section 2): it captures the target's responses at the link
// layer with capture.AFPacket and a kernel (BPF) filter on the target
// service's source ports, and reports them. It does not keep them from the
// real clients; the deployment does: on an assistant host, IP forwarding
// is off, so the responses routed to it are dropped after AF_PACKET has
// seen them; in the two-box deployment an iptables INPUT rule drops them
// (AF_PACKET taps the device before netfilter).
//
// The socket lives in the network namespace of the thread that calls Open,
// or Run when Open was not called. An AFPacket is safe for concurrent use;
// Run runs once at a time.
type AFPacket struct {
	cfg   AFPacketConfig
	ccfg  capture.AFPacketConfig
	log   *slog.Logger
	batch int

	reported, passed atomic.Uint64

	mu      sync.Mutex
	capt    *capture.AFPacket
	last    capture.Stats // of sockets closed by earlier Runs
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ Interceptor = (*AFPacket)(nil)

// NewAFPacket checks cfg and returns an AFPacket interceptor. It opens
// nothing.
func NewAFPacket(cfg *AFPacketConfig) (*AFPacket, error) {
	if cfg == nil || len(cfg.Ports) == 0 {
		return nil, errors.New("intercept: AFPacketConfig.Ports is required")
	}
	c := *cfg
	c.Ports = append([]uint16(nil), cfg.Ports...)
	c.Interfaces = append([]string(nil), cfg.Interfaces...)
	c.Targets = append([]netip.Prefix(nil), cfg.Targets...)
	c.PassList = append([]netip.Prefix(nil), cfg.PassList...)
	for _, p := range c.PassList {
		if !p.IsValid() {
			return nil, fmt.Errorf("intercept: invalid PassList prefix %v", p)
		}
	}
	if c.Batch < 0 {
		return nil, fmt.Errorf("intercept: negative Batch %d", c.Batch)
	}
	batch := c.Batch
	if batch == 0 {
		batch = 64
	}
	var cc capture.AFPacketConfig
	if c.Capture != nil {
		cc = *c.Capture
	}
	cc.Interfaces = c.Interfaces
	cc.Filter = &capture.Filter{SrcPorts: c.Ports, SrcNets: c.Targets}
	cc.RawFilter = nil
	cc.Direction = capture.DirIn
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AFPacket{cfg: c, ccfg: cc, log: log, batch: batch}, nil
}

// Stats returns a snapshot of the counters.
func (a *AFPacket) Stats() AFPacketStats {
	a.mu.Lock()
	cs := a.last
	if a.capt != nil {
		cs = cs.Add(a.capt.Stats())
	}
	a.mu.Unlock()
	return AFPacketStats{Reported: a.reported.Load(), Passed: a.passed.Load(), Capture: cs}
}

// Open opens the capture socket in the calling thread's network namespace.
// It is optional (Run opens when needed) and does nothing when the socket
// is open already; it exists so a caller can open the socket inside a
// namespace and call Run from any goroutine.
func (a *AFPacket) Open() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	return a.openLocked()
}

func (a *AFPacket) openLocked() error {
	if a.capt != nil {
		return nil
	}
	c, err := capture.NewAFPacket(&a.ccfg)
	if err != nil {
		return fmt.Errorf("intercept: %w", err)
	}
	a.capt = c
	return nil
}

// Close releases the socket and stops Run; later calls return ErrClosed.
// It is idempotent.
func (a *AFPacket) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	if a.running {
		cancel, done := a.cancel, a.done
		a.mu.Unlock()
		cancel()
		<-done
		return nil
	}
	c := a.capt
	a.capt = nil
	if c != nil {
		a.last = a.last.Add(c.Stats())
	}
	a.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// Run reports the captured responses until ctx ends or Close is called
// (then it closes the socket and returns nil) or the socket fails. See
// Interceptor.
func (a *AFPacket) Run(ctx context.Context, report func(pkts []capture.Packet)) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	if a.running {
		a.mu.Unlock()
		return errors.New("intercept: AFPacket.Run called twice")
	}
	if err := a.openLocked(); err != nil {
		a.mu.Unlock()
		return err
	}
	c := a.capt
	ctx, cancel := context.WithCancel(ctx)
	a.running, a.cancel, a.done = true, cancel, make(chan struct{})
	a.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	a.log.Info("intercept: capturing responses", "interfaces", a.cfg.Interfaces, "ports", a.cfg.Ports)

	pkts := make([]capture.Packet, a.batch)
	out := make([]capture.Packet, 0, a.batch)
	var err error
	for {
		var n int
		n, err = c.ReadPackets(pkts)
		out = out[:0]
		for i := range n {
			if passes(a.cfg.PassList, pkts[i].Dst()) {
				a.passed.Add(1)
				continue
			}
			out = append(out, pkts[i])
		}
		if len(out) > 0 {
			report(out)
			a.reported.Add(uint64(len(out)))
		}
		if err != nil {
			break
		}
	}
	stop()
	cancel()
	c.Close()
	a.mu.Lock()
	a.last = a.last.Add(c.Stats())
	a.capt, a.running = nil, false
	close(a.done)
	a.mu.Unlock()
	if ctx.Err() != nil || errors.Is(err, capture.ErrClosed) {
		return nil
	}
	return fmt.Errorf("intercept: AF_PACKET capture: %w", err)
}
