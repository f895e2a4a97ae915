package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/capture"
)

// NFQueue is an Interceptor that reads the target's responses from an
// NFQUEUE queue (the classic deployment: `iptables -I OUTPUT -p tcp --sport
// PORT -j NFQUEUE --queue-num N` on the target; NFQueue does not install the
// rule, NFQueueRules does). Each packet that decodes and is not on the
// PassList gets the verdict DROP and is reported; the others get ACCEPT.
// IPv4 and IPv6 share the queue (the kernel ignores the bind family since
// Linux 3.8).
//
// Verdicts are batched: ACCEPTs go out one by one as packets arrive, and
// the DROPs of each batch handed to report go out as one
// NFQNL_MSG_VERDICT_BATCH for the batch's highest packet id, which the
// kernel applies to every packet still queued with an id up to it
// (nfqnl_recv_verdict_batch). Packet ids rise in queue order and every
// earlier ACCEPT was sent before, so the batch covers exactly the packets
// to drop, plus any whose netlink message was lost to a socket overrun
// (ReceiveErrors), which are dropped instead of left to fill the queue.
//
// The netlink socket lives in the network namespace of the thread that calls
// Open, or Run when Open was not called, unless NFQueueConfig.NetNS names
// one. An NFQueue is safe for concurrent use; Run runs once at a time.
type NFQueue struct {
	cfg NFQueueConfig
	log *slog.Logger
	c   struct {
		received, reported, passed, undecodable, verdictBatches, verdictErrors, receiveErrors atomic.Uint64
	}

	mu      sync.Mutex
	nf      *nfqueue.Nfqueue
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ Interceptor = (*NFQueue)(nil)

// nfSlot carries one packet from the netlink reader to Run.
type nfSlot struct {
	id  uint32 // the kernel's packet id
	buf []byte
	pkt capture.Packet
}

// NewNFQueue returns an NFQueue for cfg (nil: defaults). It opens nothing.
func NewNFQueue(cfg *NFQueueConfig) (*NFQueue, error) {
	c, log, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &NFQueue{cfg: c, log: log}, nil
}

// Stats returns a snapshot of the counters.
func (q *NFQueue) Stats() NFQueueStats {
	return NFQueueStats{
		Received:       q.c.received.Load(),
		Reported:       q.c.reported.Load(),
		Passed:         q.c.passed.Load(),
		Undecodable:    q.c.undecodable.Load(),
		VerdictBatches: q.c.verdictBatches.Load(),
		VerdictErrors:  q.c.verdictErrors.Load(),
		ReceiveErrors:  q.c.receiveErrors.Load(),
	}
}

// Open creates the netlink socket, in the calling thread's network
// namespace unless NFQueueConfig.NetNS is set. Binding the queue waits for
// Run. Open is optional (Run opens when needed) and does nothing when the
// socket is open already; it exists so a caller can open the socket inside
// a namespace (runtime.LockOSThread + setns) and call Run from any
// goroutine.
func (q *NFQueue) Open() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	return q.openLocked()
}

func (q *NFQueue) openLocked() error {
	if q.nf != nil {
		return nil
	}
	var flags uint32
	if q.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        q.cfg.NetNS,
		NfQueue:      q.cfg.Queue,
		MaxQueueLen:  q.cfg.MaxQueueLen,
		MaxPacketLen: 0xffff,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        flags,
		AfFamily:     unix.AF_INET,
		Logger:       nfLogger{q.log},
	})
	if err != nil {
		return fmt.Errorf("intercept: open NFQUEUE %d: %w", q.cfg.Queue, err)
	}
	if err := nf.Con.SetReadBuffer(q.cfg.ReadBuffer); err != nil {
		q.log.Warn("intercept: set NFQUEUE socket receive buffer", "queue", q.cfg.Queue, "bytes", q.cfg.ReadBuffer, "err", err)
	}
	q.nf = nf
	return nil
}

// Close releases the socket and stops Run; later calls return ErrClosed.
// It is idempotent.
func (q *NFQueue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	if q.running {
		cancel, done := q.cancel, q.done
		q.mu.Unlock()
		cancel()
		<-done
		return nil
	}
	nf := q.nf
	q.nf = nil
	q.mu.Unlock()
	if nf != nil {
		return nf.Close()
	}
	return nil
}

// Run binds the queue and reports responses until ctx ends or Close is
// called (then it closes the socket and returns nil) or the socket fails.
// See Interceptor.
func (q *NFQueue) Run(ctx context.Context, report func(pkts []capture.Packet)) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if q.running {
		q.mu.Unlock()
		return errors.New("intercept: NFQueue.Run called twice")
	}
	if err := q.openLocked(); err != nil {
		q.mu.Unlock()
		return err
	}
	nf := q.nf
	ctx, cancel := context.WithCancel(ctx)
	q.running, q.cancel, q.done = true, cancel, make(chan struct{})
	q.mu.Unlock()

	nslots := 4 * q.cfg.Batch
	slots := make([]nfSlot, nslots)
	free := make(chan *nfSlot, nslots)
	ready := make(chan *nfSlot, nslots)
	for i := range slots {
		free <- &slots[i]
	}

	fatal := make(chan error, 1)
	errfn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, unix.ENOBUFS) {
			// The socket buffer overflowed; those packets are lost to us
			// (the kernel dropped them) but the queue still works.
			if n := q.c.receiveErrors.Add(1); isPow2(n) {
				q.log.Warn("intercept: NFQUEUE socket overrun", "queue", q.cfg.Queue, "count", n)
			}
			return 0
		}
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Timeout() {
			return 0
		}
		select {
		case fatal <- err:
		default:
		}
		cancel()
		return 1
	}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		id := *a.PacketID
		q.c.received.Add(1)
		var payload []byte
		if a.Payload != nil {
			payload = *a.Payload
		}
		var p capture.Packet
		if err := p.Decode(payload); err != nil {
			q.c.undecodable.Add(1)
			q.verdict(nf, id, nfqueue.NfAccept)
			return 0
		}
		if passes(q.cfg.PassList, p.Dst()) {
			q.c.passed.Add(1)
			q.verdict(nf, id, nfqueue.NfAccept)
			return 0
		}
		var s *nfSlot
		select {
		case s = <-free:
		case <-ctx.Done():
			return 1 // no verdict: unbinding the queue drops the packet
		}
		s.id = id
		s.buf = append(s.buf[:0], payload...)
		s.pkt.Decode(s.buf) // decoded above already
		if a.Timestamp != nil {
			s.pkt.Time = *a.Timestamp
		} else {
			s.pkt.Time = time.Now() // locally sent packets carry no timestamp
		}
		ready <- s
		return 0
	}

	var err error
	if err = nf.RegisterWithErrorFunc(ctx, hook, errfn); err != nil {
		err = fmt.Errorf("intercept: bind NFQUEUE %d: %w", q.cfg.Queue, err)
	} else {
		q.consume(ctx, nf, ready, free, report)
	}
	cancel()
	nf.Close() // waits for go-nfqueue's reader, so no more slots come in
	// Report what was read before the end; unbinding the queue made the
	// kernel drop those packets.
	q.drain(ready, free, report)

	q.mu.Lock()
	q.nf, q.running = nil, false
	close(q.done)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case e := <-fatal:
		return fmt.Errorf("intercept: receive from NFQUEUE %d: %w", q.cfg.Queue, e)
	default:
		return nil
	}
}

// consume hands ready packets to report in batches of what is available.
func (q *NFQueue) consume(ctx context.Context, nf *nfqueue.Nfqueue, ready <-chan *nfSlot, free chan<- *nfSlot, report func([]capture.Packet)) {
	taken := make([]*nfSlot, 0, q.cfg.Batch)
	pkts := make([]capture.Packet, 0, q.cfg.Batch)
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-ready:
			taken = append(taken, s)
		}
	more:
		for len(taken) < q.cfg.Batch {
			select {
			case s := <-ready:
				taken = append(taken, s)
			default:
				break more
			}
		}
		// One DROP for the batch before reporting it: the packets are
		// copied, and the kernel holds them (and counts them against
		// MaxQueueLen) until it has a verdict.
		q.verdictBatch(nf, taken[len(taken)-1].id)
		taken, pkts = q.deliver(taken, pkts, free, report)
	}
}

func (q *NFQueue) drain(ready <-chan *nfSlot, free chan<- *nfSlot, report func([]capture.Packet)) {
	var taken []*nfSlot
	var pkts []capture.Packet
	for {
		select {
		case s := <-ready:
			taken = append(taken, s)
		default:
			if len(taken) > 0 {
				q.deliver(taken, pkts, free, report)
			}
			return
		}
	}
}

func (q *NFQueue) deliver(taken []*nfSlot, pkts []capture.Packet, free chan<- *nfSlot, report func([]capture.Packet)) ([]*nfSlot, []capture.Packet) {
	for _, s := range taken {
		pkts = append(pkts, s.pkt)
	}
	report(pkts)
	q.c.reported.Add(uint64(len(pkts)))
	for i, s := range taken {
		free <- s
		taken[i] = nil
	}
	clear(pkts)
	return taken[:0], pkts[:0]
}

func (q *NFQueue) verdictBatch(nf *nfqueue.Nfqueue, id uint32) {
	q.c.verdictBatches.Add(1)
	if err := nf.SetVerdictBatch(id, nfqueue.NfDrop); err != nil {
		if n := q.c.verdictErrors.Add(1); isPow2(n) {
			q.log.Warn("intercept: NFQUEUE batch verdict", "queue", q.cfg.Queue, "err", err, "count", n)
		}
	}
}

func (q *NFQueue) verdict(nf *nfqueue.Nfqueue, id uint32, v int) {
	if err := nf.SetVerdict(id, v); err != nil {
		if n := q.c.verdictErrors.Add(1); isPow2(n) {
			q.log.Warn("intercept: NFQUEUE verdict", "queue", q.cfg.Queue, "err", err, "count", n)
		}
	}
}

// nfLogger sends go-nfqueue's messages to slog at debug level: they include
// routine ones ("Stop receiving nfqueue messages" at every shutdown).
type nfLogger struct{ l *slog.Logger }

func (n nfLogger) Debugf(format string, args ...any) { n.logf(format, args...) }
func (n nfLogger) Errorf(format string, args ...any) { n.logf(format, args...) }

func (n nfLogger) logf(format string, args ...any) {
	if n.l.Enabled(context.Background(), slog.LevelDebug) {
		n.l.Debug("intercept: go-nfqueue: " + fmt.Sprintf(format, args...))
	}
}
