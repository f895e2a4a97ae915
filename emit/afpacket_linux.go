package emit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/shadowcopy/tcpcopy/internal/linklayer"
	"golang.org/x/sys/unix"
)

// AFPacket is an Emitter that injects datagrams at the link layer, through
// an AF_PACKET socket bound to one interface:
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
// Emit never blocks and does not allocate in steady state. It copies
// each frame into a PACKET_TX_RING (AFPacketConfig.TXRing) and hands a
// batch to the kernel with one send call. A frame counts as Sent when the
// kernel takes it from the ring. One the kernel cannot take yet (full send
// buffer or device queue, interface down) waits in the ring and is offered
// again at the next Emit; Close counts those still waiting under the
// reason of the last send error. When no frame is free (the kernel still
// holds them all) a datagram is dropped as NoBuffers. A frame the kernel
// refuses as malformed is counted under its error; the kernel never sends
// past such a frame, so the ring is then given up for sendmmsg.
//
// Without the ring, and for datagrams too large for a frame, Emit batches
// with sendmmsg, gathering each frame from a header the AFPacket owns and
// the caller's datagram. Datagrams larger than the interface MTU are
// counted as MsgSize, a full send buffer or device queue as NoBuffers.
//
// It is safe for concurrent use; concurrent calls are serialized.
type AFPacket struct {
	Counters

	mu     sync.Mutex
	closed bool
	// The sockets stay out of the runtime's netpoller: Emit never waits on
	// them, and a socket in an epoll set has every skb it frees wake the
	// poller (sock_def_write_space, ep_poll_callback).
	fd    int
	name  string
	src   [6]byte
	dst   [6]byte
	fixed bool // dst is configured
	res   *resolver
	ring  *txRing // nil without TXRing

	hdrs []unix.Mmsghdr
	iovs []unix.Iovec // two per message: the Ethernet header, the datagram
	eth  []byte       // 14 bytes per message
	lens []int
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
	a := &AFPacket{fd: -1, name: c.Interface}
	a.fd, err = openPacket(ifi.Index, &c)
	if err == nil {
		err = a.setup(&c, ifi)
	}
	if err == nil && c.TXRing > 0 {
		a.ring, err = newTXRing(&c, ifi)
		if err != nil && (cfg == nil || cfg.TXRing == 0) {
			// The ring is only the default: do without where the
			// kernel has none to give (gVisor, memory).
			a.ring, err = nil, nil
		}
	}
	if err != nil {
		if a.fd >= 0 {
			unix.Close(a.fd)
		}
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
	return a, nil
}

// openPacket opens an AF_PACKET socket bound to interface ifindex, with
// c's send options. Protocol 0: the socket receives nothing, it only
// sends.
func openPacket(ifindex int, c *AFPacketConfig) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("emit: open AF_PACKET socket on %s: %w", c.Interface, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("emit: bind AF_PACKET socket to %s: %w", c.Interface, err)
	}
	if err := setSendOptions(fd, c); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("emit: AF_PACKET socket on %s: %w", c.Interface, err)
	}
	return fd, nil
}

func (a *AFPacket) setup(c *AFPacketConfig, ifi *net.Interface) error {
	sa, err := unix.Getsockname(a.fd)
	if err != nil {
		return fmt.Errorf("emit: AF_PACKET socket on %s: %w", a.name, err)
	}
	var hatype uint16
	if ll, ok := sa.(*unix.SockaddrLinklayer); ok {
		hatype = ll.Hatype
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

// setSendOptions sets the send buffer and the qdisc bypass of socket s.
func setSendOptions(s int, c *AFPacketConfig) error {
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, c.SendBuffer); err != nil {
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, c.SendBuffer); err != nil {
			return fmt.Errorf("set send buffer to %d: %w", c.SendBuffer, err)
		}
	}
	if c.QdiscBypass {
		if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("bypass the qdisc: %w", err)
		}
	}
	return nil
}

// Emit implements Emitter. Each datagram is sent or counted under a drop
// reason (with a TX ring, possibly at a later Emit or Close); the only
// error is ErrClosed.
func (a *AFPacket) Emit(pkts [][]byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.ring != nil {
		a.ring.stuck = false
	}
	k := 0 // messages gathered for sendmmsg
	for _, p := range pkts {
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
		if r := a.ring; r != nil && !r.broken && linklayer.EthernetLen+len(p) <= r.room {
			// Frames leave in the order given: what sendmmsg holds
			// goes first.
			if k > 0 {
				a.sendmmsg(a.fd, a.hdrs[:k], a.lens)
				k = 0
			}
			if a.putRing(p, &dst) {
				continue
			}
		}
		if r := a.ring; r != nil && r.unflushed > 0 {
			a.flushRing()
		}
		eth := a.eth[linklayer.EthernetLen*k : linklayer.EthernetLen*(k+1)]
		linklayer.PutEthernet(eth, dst[:], a.src[:], linklayer.EtherTypeOf(p))
		iov := &a.iovs[2*k+1]
		iov.Base = &p[0]
		iov.SetLen(len(p))
		a.lens[k] = len(p)
		if k++; k == len(a.hdrs) {
			a.sendmmsg(a.fd, a.hdrs[:k], a.lens)
			k = 0
		}
	}
	if k > 0 {
		a.sendmmsg(a.fd, a.hdrs[:k], a.lens)
	}
	// Also offers again the frames the kernel could not take before.
	if r := a.ring; r != nil && r.due() {
		a.flushRing()
	}
	// Keep no reference to the caller's buffers.
	for k := range a.hdrs {
		a.iovs[2*k+1].Base = nil
	}
	return nil
}

// putRing puts p in the TX ring, flushing every Batch frames and when the
// ring is full, or drops it as NoBuffers when no frame is free after a
// flush. It returns false, having done nothing, when the ring has been
// given up. No sendmmsg message may be pending.
func (a *AFPacket) putRing(p []byte, dst *[6]byte) bool {
	r := a.ring
	if !r.free() && r.due() {
		a.flushRing()
		if r.broken {
			return false
		}
	}
	if !r.free() {
		a.AddDrop(NoBuffers)
		return true
	}
	r.put(p, dst, &a.src)
	if r.unflushed == len(a.hdrs) {
		a.flushRing()
	}
	return true
}

// flushRing hands the queued frames to the kernel and counts those it took
// as sent. After a malformed frame it gives up the ring and sends the
// frames queued behind it with sendmmsg. No sendmmsg message may be
// pending.
func (a *AFPacket) flushRing() {
	r := a.ring
	r.flush()
	for r.queued > 0 {
		taken, malformed := r.take()
		if malformed {
			a.AddDrop(r.reason())
			r.pop()
			r.broken = true
			a.resendRing()
			return
		}
		if !taken {
			r.stuck = true
			return
		}
		a.AddSent(r.lens[r.tail])
		r.pop()
	}
}

// resendRing sends what is left in the given-up ring with sendmmsg.
func (a *AFPacket) resendRing() {
	r := a.ring
	k := 0
	for r.queued > 0 {
		f := r.pop()
		copy(a.eth[linklayer.EthernetLen*k:], f[:linklayer.EthernetLen])
		iov := &a.iovs[2*k+1]
		iov.Base = &f[linklayer.EthernetLen]
		iov.SetLen(len(f) - linklayer.EthernetLen)
		a.lens[k] = len(f) - linklayer.EthernetLen
		if k++; k == len(a.hdrs) {
			a.sendmmsg(a.fd, a.hdrs[:k], a.lens)
			k = 0
		}
	}
	if k > 0 {
		a.sendmmsg(a.fd, a.hdrs[:k], a.lens)
	}
}

// Close releases the sockets and the TX ring, counting the frames still
// waiting in the ring after a last flush as dropped. It is idempotent;
// Emit then returns ErrClosed.
func (a *AFPacket) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	var errs []error
	if r := a.ring; r != nil {
		if r.queued > 0 && !r.broken {
			r.stuck = false
			a.flushRing()
		}
		for ; r.queued > 0; r.pop() {
			a.AddDrop(r.reason())
		}
		if err := r.close(); err != nil {
			errs = append(errs, fmt.Errorf("emit: AF_PACKET on %s: %w", a.name, err))
		}
	}
	if err := unix.Close(a.fd); err != nil {
		errs = append(errs, fmt.Errorf("emit: close AF_PACKET socket on %s: %w", a.name, err))
	}
	a.fd = -1
	if a.res != nil {
		if err := a.res.close(); err != nil {
			errs = append(errs, fmt.Errorf("emit: close rtnetlink socket: %w", err))
		}
	}
	return errors.Join(errs...)
}
