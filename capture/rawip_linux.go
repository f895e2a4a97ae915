package capture

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowcopy/tcpcopy/internal/mmsg"
)

// RawIP is a Capturer over a raw IP socket (SOCK_RAW, IPPROTO_TCP) that
// receives every TCP datagram the host delivers locally, on any interface.
//
// Linux hands a raw socket a clone of each datagram on its way into the
// local stack (raw_local_deliver, after defragmentation and GRO), so RawIP
// sees inbound traffic only: not what the host sends, not what it forwards,
// and not other hosts' traffic. Traffic between two sockets of the host
// crosses lo and is seen once, as inbound. IPv4 raw sockets deliver the IP
// header; IPv6 ones deliver only the TCP segment, so RawIP rebuilds a
// 40-byte IPv6 header from the source address, the IPV6_PKTINFO destination,
// the IPV6_HOPLIMIT hop limit and the IPV6_FLOWINFO traffic class and flow
// label; extension headers are lost. Checksums are as they arrived: segments
// from a local socket over lo or veth may carry partial checksums (offload),
// and GRO-merged segments carry the first segment's.
//
// Datagrams the kernel drops for a full receive buffer are counted as
// KernelDrops (SO_RXQ_OVFL); the kernel reports them with the next datagram
// it queues, so the count lags until one arrives.
//
// ReadPackets reads with one recvmmsg per call and does not allocate in
// steady state. One goroutine may call ReadPackets at a time; Stats and
// Close are safe from any goroutine.
type RawIP struct {
	Counters

	f       *os.File
	rc      syscall.RawConn
	network string
	v6      bool
	snap    int
	slot    int // bytes per message buffer: headroom + snap
	head    int // headroom for the rebuilt IPv6 header
	buf     []byte
	iovs    []unix.Iovec
	names   []byte // sockaddr_in6 per message (IPv6 only)
	oob     []byte
	hdrs    []unix.Mmsghdr
	closed  atomic.Bool

	// State of the one reader.
	recvFn func(fd uintptr) bool // r.recv, bound once so Read does not allocate
	want   int
	got    int
	errno  unix.Errno
	drops  uint32 // last SO_RXQ_OVFL count seen
}

var _ Capturer = (*RawIP)(nil)

const (
	ipv6HeaderLen  = 40
	sockaddr6Len   = unix.SizeofSockaddrInet6
	rawOOBLen      = 256 // room for every control message enabled below
	sockOptFlowInf = 11  // IPV6_FLOWINFO (linux/in6.h), missing from x/sys
)

// NewRawIP opens a raw TCP socket of cfg.Network. It needs CAP_NET_RAW.
func NewRawIP(cfg *RawIPConfig) (*RawIP, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &RawIP{network: c.Network, v6: c.Network == "ip6", snap: c.SnapLen}
	family := unix.AF_INET
	if r.v6 {
		family, r.head = unix.AF_INET6, ipv6HeaderLen
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("capture: open raw %s TCP socket: %w", c.Network, err)
	}
	if err := r.setOptions(fd, &c); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor makes the File pollable, so a blocked read
	// parks in the runtime poller and Close wakes it.
	r.f = os.NewFile(uintptr(fd), "raw-"+c.Network+"-tcp")
	if r.rc, err = r.f.SyscallConn(); err != nil {
		r.f.Close()
		return nil, fmt.Errorf("capture: raw %s socket: %w", c.Network, err)
	}
	r.setupBuffers(c.Batch)
	r.recvFn = r.recv
	return r, nil
}

func (r *RawIP) setOptions(fd int, c *RawIPConfig) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, c.RecvBuffer); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, c.RecvBuffer); err != nil {
			return fmt.Errorf("capture: set receive buffer of raw %s socket to %d: %w", c.Network, c.RecvBuffer, err)
		}
	}
	// Kernel receive timestamps and the socket's drop counter are worth
	// having but not required: without them Time falls back to the clock
	// and KernelDrops stays zero.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	if r.v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return fmt.Errorf("capture: enable IPV6_RECVPKTINFO on raw ip6 socket: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1)
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, sockOptFlowInf, 1)
	}
	return nil
}

func (r *RawIP) setupBuffers(batch int) {
	r.slot = r.head + r.snap
	r.buf = make([]byte, batch*r.slot)
	r.iovs = make([]unix.Iovec, batch)
	r.oob = make([]byte, batch*rawOOBLen)
	r.hdrs = make([]unix.Mmsghdr, batch)
	if r.v6 {
		r.names = make([]byte, batch*sockaddr6Len)
	}
	for i := range r.hdrs {
		off := i*r.slot + r.head
		r.iovs[i].Base = &r.buf[off]
		r.iovs[i].SetLen(r.snap)
		h := &r.hdrs[i].Hdr
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oob[i*rawOOBLen]
		if r.v6 {
			h.Name = &r.names[i*sockaddr6Len]
		}
	}
}

// ReadPackets implements Capturer. It blocks until at least one TCP
// datagram decodes; datagrams that do not are counted and skipped.
func (r *RawIP) ReadPackets(pkts []Packet) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	want := min(len(pkts), len(r.hdrs))
	if want == 0 {
		return 0, nil
	}
	for {
		for i := range want {
			h := &r.hdrs[i].Hdr
			h.SetControllen(rawOOBLen)
			h.Flags = 0
			if r.v6 {
				h.Namelen = sockaddr6Len
			}
		}
		r.want, r.got, r.errno = want, 0, 0
		err := r.rc.Read(r.recvFn)
		if r.closed.Load() {
			return 0, ErrClosed
		}
		if err != nil {
			return 0, fmt.Errorf("capture: read raw %s socket: %w", r.network, err)
		}
		if r.errno != 0 {
			return 0, fmt.Errorf("capture: recvmmsg on raw %s socket: %w", r.network, r.errno)
		}
		if n := r.decodeBatch(pkts, r.got); n > 0 {
			return n, nil
		}
	}
}

// recv is the RawConn callback: false asks the poller to wait for data.
func (r *RawIP) recv(fd uintptr) bool {
	n, e, wait := mmsg.Recv(fd, r.hdrs[:r.want])
	r.got, r.errno = n, e
	return !wait
}

func (r *RawIP) decodeBatch(pkts []Packet, got int) int {
	var now time.Time
	n := 0
	for i := range got {
		h := &r.hdrs[i]
		size := int(h.Len)
		var cm rawCmsgs
		cm.parse(r.oob[i*rawOOBLen : i*rawOOBLen+int(h.Hdr.Controllen)])
		if cm.hasDrops {
			// SO_RXQ_OVFL reports the socket's running drop count.
			r.AddKernelDrops(uint64(cm.drops - r.drops))
			r.drops = cm.drops
		}
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > r.snap {
			r.Reject(errSnapped)
			continue
		}
		off := i * r.slot
		data := r.buf[off : off+r.head+size]
		if r.v6 {
			if !cm.hasDst {
				r.Reject(errNoPktinfo)
				continue
			}
			name := r.names[i*sockaddr6Len : (i+1)*sockaddr6Len]
			r.rebuildIPv6(data, name[8:24], &cm, size)
		}
		p := &pkts[n]
		if err := p.Decode(data); err != nil {
			r.Reject(err)
			continue
		}
		switch {
		case cm.hasTime:
			p.Time = cm.time
		default:
			if now.IsZero() {
				now = time.Now()
			}
			p.Time = now
		}
		p.Dir = DirIn
		r.Accept(p)
		n++
	}
	return n
}

// rebuildIPv6 writes the IPv6 header (RFC 8200 section 3) in front of the
// segment of size bytes received into hdr[40:].
func (r *RawIP) rebuildIPv6(hdr, src []byte, cm *rawCmsgs, size int) {
	copy(hdr[0:4], cm.flow[:]) // traffic class and flow label, masked by the kernel
	hdr[0] = 0x60 | hdr[0]&0x0f
	binary.BigEndian.PutUint16(hdr[4:], uint16(size))
	hdr[6] = unix.IPPROTO_TCP
	hdr[7] = 64 // only if IPV6_RECVHOPLIMIT is unavailable
	if cm.hasHop {
		hdr[7] = cm.hop
	}
	copy(hdr[8:24], src)
	copy(hdr[24:40], cm.dst[:])
}

// Close implements Capturer. It is idempotent and wakes a blocked
// ReadPackets, which then returns ErrClosed.
func (r *RawIP) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("capture: close raw %s socket: %w", r.network, err)
	}
	return nil
}

// rawCmsgs holds the control messages RawIP asks for.
type rawCmsgs struct {
	time     time.Time
	dst      [16]byte
	flow     [4]byte
	drops    uint32
	hop      uint8
	hasTime  bool
	hasDrops bool
	hasDst   bool
	hasHop   bool
}

// cmsgAlign is the size of a C long, which CMSG_ALIGN rounds to, and also
// the size of cmsghdr.cmsg_len (the header's other two fields are ints).
const cmsgAlign = unix.SizeofCmsghdr - 8

// parse walks a control message buffer (cmsg(3)) without allocating.
func (c *rawCmsgs) parse(b []byte) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofCmsghdr {
		var l int
		if cmsgAlign == 8 {
			l = int(ne.Uint64(b))
		} else {
			l = int(ne.Uint32(b))
		}
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
		}
		level := int32(ne.Uint32(b[cmsgAlign:]))
		typ := int32(ne.Uint32(b[cmsgAlign+4:]))
		d := b[unix.SizeofCmsghdr:l]
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS:
			// struct timespec in the width of the ABI's long.
			switch len(d) {
			case 16:
				c.time = time.Unix(int64(ne.Uint64(d)), int64(ne.Uint64(d[8:])))
				c.hasTime = true
			case 8:
				c.time = time.Unix(int64(int32(ne.Uint32(d))), int64(int32(ne.Uint32(d[4:]))))
				c.hasTime = true
			}
		case level == unix.SOL_SOCKET && typ == unix.SO_RXQ_OVFL && len(d) >= 4:
			c.drops, c.hasDrops = ne.Uint32(d), true
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(d) >= 16:
			copy(c.dst[:], d)
			c.hasDst = true
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_HOPLIMIT && len(d) >= 4:
			c.hop, c.hasHop = uint8(ne.Uint32(d)), true
		case level == unix.IPPROTO_IPV6 && typ == sockOptFlowInf && len(d) >= 4:
			copy(c.flow[:], d)
		}
		l = (l + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if l >= len(b) {
			return
		}
		b = b[l:]
	}
}
