package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/mmsg"
	"github.com/shadowcopy/tcpcopy/internal/netns"
)

// NFQueue is an Interceptor that reads the target's responses from an
// NFQUEUE queue (the classic deployment: `iptables -I OUTPUT -p tcp --sport
// PORT -j NFQUEUE --queue-num N` on the target; NFQueue does not install the
// rule, NFQueueRules does). Each packet that decodes and is not on the
// PassList gets the verdict DROP and is reported; the others get ACCEPT.
// IPv4 and IPv6 share the queue (the kernel ignores the bind family since
// Linux 3.8).
//
// NFQueue speaks the queue's netlink protocol (nfnetlink_queue) itself on
// one socket read by one goroutine: each recvmmsg takes up to Batch
// queued packets, which are decoded where they landed in the receive
// buffers and reported from there, so the steady state makes no copy and no
// allocation per packet.
//
// Verdicts are batched: what one read returned gets its verdicts in one
// sendmsg, first an ACCEPT (NFQNL_MSG_VERDICT) for each packet not
// reported, then one NFQNL_MSG_VERDICT_BATCH DROP for the highest id
// reported, which the kernel applies to every packet still queued with an
// id up to it (nfqnl_recv_verdict_batch). Packet ids rise in queue order,
// the kernel handles the messages of a sendmsg in order, and every earlier
// ACCEPT was sent before, so the batch covers exactly the packets to drop,
// plus any whose netlink message was lost to a socket overrun
// (ReceiveErrors), which are dropped instead of left to fill the queue.
//
// The netlink socket lives in the network namespace of the thread that calls
// Open, or Run when Open was not called, unless NFQueueConfig.NetNS names
// one. An NFQueue is safe for concurrent use; Run runs once at a time.
type NFQueue struct {
	cfg NFQueueConfig
	log *slog.Logger
	now func() time.Time
	c   nfqCounters

	mu      sync.Mutex
	sock    *nfqSocket
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ Interceptor = (*NFQueue)(nil)

// nfqSlot is the receive buffer of one datagram: the largest message the
// kernel sends, a packet of NFQNL_MAX_COPY_RANGE (65531) bytes behind its
// metadata attributes (a few hundred bytes), fits with room to spare.
const nfqSlot = 64<<10 + 4<<10

// NewNFQueue returns an NFQueue for cfg (nil: defaults). It opens nothing.
func NewNFQueue(cfg *NFQueueConfig) (*NFQueue, error) {
	c, log, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &NFQueue{cfg: c, log: log, now: time.Now}, nil
}

// Stats returns a snapshot of the counters.
func (q *NFQueue) Stats() NFQueueStats { return q.c.stats() }

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
	if q.sock != nil {
		return nil
	}
	s, err := openNFQSocket(&q.cfg, q.log)
	if err != nil {
		return err
	}
	q.sock = s
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
		<-done // Run closes the socket once its reader has stopped
		return nil
	}
	s := q.sock
	q.sock = nil
	q.mu.Unlock()
	if s != nil {
		return s.close()
	}
	return nil
}

// Run binds the queue and reports responses until ctx ends or Close is
// called (then it closes the socket, which unbinds the queue, and returns
// nil) or the socket fails. See Interceptor.
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
	s := q.sock
	ctx, cancel := context.WithCancel(ctx)
	q.running, q.cancel, q.done = true, cancel, make(chan struct{})
	q.mu.Unlock()

	// A read deadline in the past wakes the reader parked in the poller;
	// while packets keep coming it costs nothing.
	stop := context.AfterFunc(ctx, s.wake)
	err := q.read(ctx, s, report)
	stop()
	cancel()
	// Closing the socket unbinds the queue; the kernel drops what it still
	// holds for us (nfqnl_rcv_nl_event). Every packet read was reported.
	s.close()

	q.mu.Lock()
	q.sock, q.running = nil, false
	close(q.done)
	q.mu.Unlock()
	return err
}

// read is Run's loop, on the one goroutine that reads the socket.
func (q *NFQueue) read(ctx context.Context, s *nfqSocket, report func([]capture.Packet)) error {
	r := newNFQReader(&q.cfg, &q.c, q.log, q.now, s.send, report)
	if err := s.send(r.configMessage(q.cfg.MaxQueueLen, q.cfg.FailOpen)); err != nil {
		return errNFQueueConfig(q.cfg.Queue, err)
	}
	m := newNFQMmsg(s, q.cfg.Batch)
	for {
		n, err := m.recv()
		for i := range n {
			h := &m.hdrs[i]
			r.datagram(m.buf[i*nfqSlot:i*nfqSlot+int(h.Len)], h.Hdr.Flags&unix.MSG_TRUNC != 0)
		}
		if errors.Is(err, unix.ENOBUFS) {
			// The socket buffer overflowed: the kernel dropped messages to
			// us (those packets get the next batch DROP), but the queue
			// still works.
			r.rxErrors++
			err = nil
		}
		r.flush()
		switch {
		case r.cfgErr != nil:
			return errNFQueueConfig(q.cfg.Queue, r.cfgErr)
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("intercept: receive from NFQUEUE %d: %w", q.cfg.Queue, err)
		}
	}
}

// nfqSocket is an NFQUEUE netlink socket. Its descriptor is non-blocking
// and held by an os.File, so a blocked read parks in the runtime's poller
// and a read deadline wakes it.
type nfqSocket struct {
	f  *os.File
	rc syscall.RawConn

	// send's state; only the reader sends.
	out    []byte
	errno  unix.Errno
	sendFn func(fd uintptr) bool
}

// openNFQSocket opens the socket in the calling thread's network namespace
// or cfg.NetNS.
func openNFQSocket(cfg *NFQueueConfig, log *slog.Logger) (*nfqSocket, error) {
	var fd int
	var err error
	if cfg.NetNS != 0 {
		fd, err = socketInNetNS(cfg.NetNS)
	} else {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return nil, fmt.Errorf("intercept: open NFQUEUE %d: %w", cfg.Queue, err)
	}
	// Port id zero: the kernel picks one (netlink_autobind).
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("intercept: open NFQUEUE %d: bind netlink socket: %w", cfg.Queue, err)
	}
	// NETLINK_NO_ENOBUFS stays off: an overrun is reported to the next
	// read as ENOBUFS and counted.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReadBuffer); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.ReadBuffer); err != nil {
			log.Warn("intercept: set NFQUEUE socket receive buffer", "queue", cfg.Queue, "bytes", cfg.ReadBuffer, "err", err)
		}
	}
	s := &nfqSocket{f: os.NewFile(uintptr(fd), fmt.Sprintf("nfqueue-%d", cfg.Queue))}
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, fmt.Errorf("intercept: open NFQUEUE %d: %w", cfg.Queue, err)
	}
	s.sendFn = s.sendOnce
	return s, nil
}

// socketInNetNS opens the netlink socket in the network namespace nsFD
// refers to.
func socketInNetNS(nsFD int) (int, error) {
	fd := -1
	err := netns.Do(nsFD, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil && fd >= 0 {
		unix.Close(fd) // made, but the thread could not leave the namespace
		fd = -1
	}
	return fd, err
}

// send writes netlink messages to the kernel in one datagram.
func (s *nfqSocket) send(b []byte) error {
	s.out, s.errno = b, 0
	err := s.rc.Write(s.sendFn)
	s.out = nil
	if err != nil {
		return err
	}
	if s.errno != 0 {
		return s.errno
	}
	return nil
}

// sendOnce is the RawConn callback of send: false asks the poller to wait.
func (s *nfqSocket) sendOnce(fd uintptr) bool {
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.out[0])), uintptr(len(s.out)), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.errno = e
		return true
	}
}

// wake makes a blocked or later read return os.ErrDeadlineExceeded.
func (s *nfqSocket) wake() { s.f.SetReadDeadline(time.Unix(1, 0)) }

func (s *nfqSocket) close() error { return s.f.Close() }

// nfqMmsg reads up to len(hdrs) datagrams with one recvmmsg, each into its
// nfqSlot of buf.
type nfqMmsg struct {
	s     *nfqSocket
	buf   []byte
	iovs  []unix.Iovec
	hdrs  []unix.Mmsghdr
	got   int
	errno unix.Errno
	fn    func(fd uintptr) bool
}

func newNFQMmsg(s *nfqSocket, batch int) *nfqMmsg {
	m := &nfqMmsg{
		s:    s,
		buf:  make([]byte, batch*nfqSlot),
		iovs: make([]unix.Iovec, batch),
		hdrs: make([]unix.Mmsghdr, batch),
	}
	for i := range m.hdrs {
		m.iovs[i].Base = &m.buf[i*nfqSlot]
		m.iovs[i].SetLen(nfqSlot)
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	m.fn = m.recvOnce
	return m
}

// recv returns the number of datagrams read and the error that stopped it:
// the deadline wake sets, a closed socket, or recvmmsg's errno (ENOBUFS
// after an overrun). It parks in the poller only when nothing is queued.
func (m *nfqMmsg) recv() (int, error) {
	m.got, m.errno = 0, 0
	if err := m.s.rc.Read(m.fn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, m.errno
	}
	return m.got, nil
}

// recvOnce is the RawConn callback of recv: false asks the poller to wait.
func (m *nfqMmsg) recvOnce(fd uintptr) bool {
	n, e, wait := mmsg.Recv(fd, m.hdrs)
	m.got, m.errno = n, e
	return !wait
}
