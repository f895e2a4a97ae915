package emit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"github.com/mdlayher/packet"
	"github.com/shadowcopy/tcpcopy/internal/linklayer"
	"golang.org/x/sys/unix"
)

// AFPacket is an Emitter that injects datagrams at the link layer, through
// an AF_PACKET socket (github.com/mdlayher/packet) bound to one interface:
// each datagram goes out in an Ethernet frame from SrcMAC to the next hop's
// address. It bypasses the local routing decision and netfilter (no
// OUTPUT or POSTROUTING rule, no conntrack), for networks where IP-layer
// sends are filtered or rewritten, and for sending from addresses the host
// does not own without touching its routes.
//
// Without a configured DstMAC the next hop is looked up per destination
// in the kernel's routing and neighbour tables and kept for NeighbourTTL;
// a datagram whose next hop is not resolved yet is counted as NoNeighbour
// and the kernel is asked to resolve it, so later datagrams go out.
//
// Emit batches with sendmmsg, gathering each frame from a header the
// AFPacket owns and the caller's datagram (no copy), never blocks, and
// does not allocate in steady state. Datagrams larger than the interface
// MTU are counted as MsgSize, a full send buffer or device queue as
// NoBuffers. It is safe for concurrent use; concurrent calls are
// serialized.
type AFPacket struct {
	Counters

	mu     sync.Mutex
	closed bool
	conn   *packet.Conn
	rc     syscall.RawConn
	name   string
	src    [6]byte
	dst    [6]byte
	fixed  bool // dst is configured
	res    *resolver

	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec // two per message: the Ethernet header, the datagram
	eth    []byte       // 14 bytes per message
	lens   []int
	sendFn func(fd uintptr)
	// Arguments and results of sendFn.
	k, kEnd, n int
	errno      unix.Errno
}

var _ Emitter = (*AFPacket)(nil)

const arphrdEther = 1

// NewAFPacket opens the AF_PACKET socket on cfg.Interface. It needs
// CAP_NET_RAW, and CAP_NET_ADMIN for a SendBuffer above the kernel's limit
// and for resolving neighbours.
func NewAFPacket(cfg *AFPacketConfig) (*AFPacket, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return nil, fmt.Errorf("emit: AF_PACKET on %s: %w", c.Interface, err)
	}
	// Protocol 0: the socket receives nothing, it only sends.
	conn, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("emit: open AF_PACKET socket on %s: %w", c.Interface, err)
	}
	a := &AFPacket{conn: conn, name: c.Interface}
	if err := a.setup(&c, ifi); err != nil {
		conn.Close()
		if a.res != nil {
			a.res.close()
		}
		return nil, err
	}
	a.hdrs = make([]unix.Mmsghdr, c.Batch)
	a.iovs = make([]unix.Iovec, 2*c.Batch)
	a.eth = make([]byte, linklayer.EthernetLen*c.Batch)
	a.lens = make([]int, c.Batch)
	for i := range a.hdrs {
		h := &a.hdrs[i].Hdr
		h.Iov = &a.iovs[2*i]
		h.SetIovlen(2)
		a.iovs[2*i].Base = &a.eth[linklayer.EthernetLen*i]
		a.iovs[2*i].SetLen(linklayer.EthernetLen)
	}
	a.sendFn = a.sendmmsg
	return a, nil
}

func (a *AFPacket) setup(c *AFPacketConfig, ifi *net.Interface) error {
	var err error
	if a.rc, err = a.conn.SyscallConn(); err != nil {
		return fmt.Errorf("emit: AF_PACKET socket on %s: %w", a.name, err)
	}
	var hatype uint16
	var serr error
	cerr := a.rc.Control(func(fd uintptr) {
		s := int(fd)
		sa, err := unix.Getsockname(s)
		if err != nil {
			serr = err
			return
		}
		if ll, ok := sa.(*unix.SockaddrLinklayer); ok {
			hatype = ll.Hatype
		}
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, c.SendBuffer); err != nil {
			if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, c.SendBuffer); err != nil {
				serr = fmt.Errorf("set send buffer to %d: %w", c.SendBuffer, err)
				return
			}
		}
		if c.QdiscBypass {
			if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
				serr = fmt.Errorf("bypass the qdisc: %w", err)
			}
		}
	})
	if err := errors.Join(cerr, serr); err != nil {
		return fmt.Errorf("emit: AF_PACKET socket on %s: %w", a.name, err)
	}
	if hatype != arphrdEther {
		// Loopback takes Ethernet frames too, but the stack does not
		// route what arrives on lo without a route attached: not useful.
		return fmt.Errorf("emit: AF_PACKET on %s: link type %d is not Ethernet: %w", a.name, hatype, ErrNotSupported)
	}
	copy(a.src[:], ifi.HardwareAddr)
	if c.SrcMAC != nil {
		copy(a.src[:], c.SrcMAC)
	}
	if c.DstMAC != nil {
		copy(a.dst[:], c.DstMAC)
		a.fixed = true
		return nil
	}
	a.res, err = newResolver(ifi.Index, c.NeighbourTTL, c.Now)
	return err
}

// Emit implements Emitter. Each datagram is sent or counted under a drop
// reason; the only error is ErrClosed.
func (a *AFPacket) Emit(pkts [][]byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	for i := 0; i < len(pkts); {
		k := 0
		for ; i < len(pkts) && k < len(a.hdrs); i++ {
			p := pkts[i]
			v := version(p)
			if v == 0 {
				a.AddDrop(Invalid)
				continue
			}
			dst := a.dst
			if !a.fixed {
				var d netip.Addr
				if v == 4 {
					d = netip.AddrFrom4([4]byte(p[16:20]))
				} else {
					d = netip.AddrFrom16([16]byte(p[24:40]))
				}
				var ok bool
				if dst, ok = a.res.lookup(d); !ok {
					a.AddDrop(NoNeighbour)
					continue
				}
			}
			eth := a.eth[linklayer.EthernetLen*k : linklayer.EthernetLen*(k+1)]
			linklayer.PutEthernet(eth, dst[:], a.src[:], linklayer.EtherTypeOf(p))
			iov := &a.iovs[2*k+1]
			iov.Base = &p[0]
			iov.SetLen(len(p))
			a.lens[k] = len(p)
			k++
		}
		if k > 0 {
			a.send(k)
		}
	}
	// Keep no reference to the caller's buffers.
	for k := range a.hdrs {
		a.iovs[2*k+1].Base = nil
	}
	return nil
}

// send hands messages 0..k-1 to sendmmsg, like RawIP.send: a short count
// is followed by a call that starts at the failing message and reports
// its error; that message is counted and the rest retried.
func (a *AFPacket) send(k int) {
	for j := 0; j < k; {
		a.k = j
		a.kEnd = k
		a.n, a.errno = 0, 0
		if err := a.rc.Control(a.sendFn); err != nil {
			for ; j < k; j++ {
				a.AddDrop(Other)
			}
			return
		}
		switch {
		case a.errno == unix.EINTR:
			continue
		case a.errno != 0:
			a.AddDrop(reasonOf(a.errno))
			j++
			continue
		case a.n == 0:
			a.AddDrop(Other)
			j++
			continue
		}
		for m := j; m < j+a.n; m++ {
			a.AddSent(a.lens[m])
		}
		j += a.n
	}
}

// sendmmsg is the RawConn callback for send.
func (a *AFPacket) sendmmsg(fd uintptr) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd,
		uintptr(unsafe.Pointer(&a.hdrs[a.k])), uintptr(a.kEnd-a.k), unix.MSG_DONTWAIT, 0, 0)
	a.n, a.errno = int(n), e
}

// Close releases the socket. It is idempotent; Emit then returns
// ErrClosed.
func (a *AFPacket) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var errs []error
	if err := a.conn.Close(); err != nil {
		errs = append(errs, fmt.Errorf("emit: close AF_PACKET socket on %s: %w", a.name, err))
	}
	if a.res != nil {
		if err := a.res.close(); err != nil {
			errs = append(errs, fmt.Errorf("emit: close rtnetlink socket: %w", err))
		}
	}
	return errors.Join(errs...)
}
