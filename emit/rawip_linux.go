package emit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RawIP is an Emitter that sends whole IP datagrams from raw sockets: one
// socket(AF_INET, SOCK_RAW, IPPROTO_RAW) and one socket(AF_INET6, SOCK_RAW,
// IPPROTO_RAW). On Linux protocol IPPROTO_RAW implies IP_HDRINCL for both
// families (raw(7), inet6_create), so the datagram goes out as given,
// except that for IPv4 the kernel rewrites the total length and header
// checksum and fills an ID of zero (raw_send_hdrinc). The socket is chosen
// by the version nibble and the destination sockaddr by the datagram's
// destination address; routing and netfilter (OUTPUT) apply as to any
// local packet. Datagrams are never fragmented: one larger than the route's
// MTU is dropped as MsgSize.
//
// Emit batches with sendmmsg, never blocks and does not allocate. It is
// safe for concurrent use; concurrent calls are serialized, so give each
// shard its own RawIP.
type RawIP struct {
	Counters

	mu     sync.Mutex
	closed bool
	fd4    int // -1 when closed
	fd6    int // -1 when the kernel has no IPv6 or when closed
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	names  []byte // a sockaddr_in or sockaddr_in6 per message
	lens   []int  // datagram length per message
}

var _ Emitter = (*RawIP)(nil)

const sockaddrLen = unix.SizeofSockaddrInet6 // room for either family

// NewRawIP opens the raw sockets. It needs CAP_NET_RAW. A kernel without
// IPv6 is not an error: IPv6 datagrams are then dropped as Other.
func NewRawIP(cfg *RawIPConfig) (*RawIP, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &RawIP{fd4: -1, fd6: -1}
	if r.fd4, err = openRaw(unix.AF_INET, "ip4", c.SendBuffer); err != nil {
		return nil, err
	}
	if r.fd6, err = openRaw(unix.AF_INET6, "ip6", c.SendBuffer); err != nil {
		if !errors.Is(err, unix.EAFNOSUPPORT) {
			unix.Close(r.fd4)
			return nil, err
		}
		r.fd6 = -1
	}
	r.hdrs = make([]unix.Mmsghdr, c.Batch)
	r.iovs = make([]unix.Iovec, c.Batch)
	r.names = make([]byte, c.Batch*sockaddrLen)
	r.lens = make([]int, c.Batch)
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Name = &r.names[i*sockaddrLen]
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	return r, nil
}

func openRaw(family int, network string, sndbuf int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return -1, fmt.Errorf("emit: open raw %s socket: %w", network, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("emit: set send buffer of raw %s socket to %d: %w", network, sndbuf, err)
		}
	}
	return fd, nil
}

// Emit implements Emitter. Each datagram is sent or counted under a drop
// reason; the only error is ErrClosed.
func (r *RawIP) Emit(pkts [][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	for i := 0; i < len(pkts); {
		// Gather a run of datagrams of one family, up to a batch.
		fd, k := -1, 0
		for ; i < len(pkts) && k < len(r.hdrs); i++ {
			p := pkts[i]
			v := version(p)
			if v == 0 {
				r.AddDrop(Invalid)
				continue
			}
			vfd := r.fd4
			if v == 6 {
				vfd = r.fd6
			}
			if vfd < 0 {
				r.AddDrop(Other)
				continue
			}
			if k > 0 && vfd != fd {
				break
			}
			fd = vfd
			r.fill(k, p, v)
			k++
		}
		if k > 0 {
			r.sendmmsg(fd, r.hdrs[:k], r.lens)
		}
	}
	// Keep no reference to the caller's buffers.
	for k := range r.iovs {
		if r.iovs[k].Base == nil {
			break
		}
		r.iovs[k].Base = nil
	}
	return nil
}

// version returns 4 or 6 for a datagram long enough for its header, else 0.
func version(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	switch p[0] >> 4 {
	case 4:
		if ihl := int(p[0]&0x0f) * 4; ihl >= 20 && ihl <= len(p) {
			return 4
		}
	case 6:
		if len(p) >= 40 {
			return 6
		}
	}
	return 0
}

// fill points message k at datagram p with a sockaddr for its destination.
func (r *RawIP) fill(k int, p []byte, v int) {
	r.iovs[k].Base = &p[0]
	r.iovs[k].SetLen(len(p))
	r.lens[k] = len(p)
	sa := r.names[k*sockaddrLen : (k+1)*sockaddrLen]
	clear(sa)
	h := &r.hdrs[k].Hdr
	if v == 4 {
		binary.NativeEndian.PutUint16(sa, unix.AF_INET)
		copy(sa[4:8], p[16:20]) // sin_addr; sin_port stays 0
		h.Namelen = unix.SizeofSockaddrInet4
	} else {
		binary.NativeEndian.PutUint16(sa, unix.AF_INET6)
		copy(sa[8:24], p[24:40]) // sin6_addr; port, flow info, scope stay 0
		h.Namelen = unix.SizeofSockaddrInet6
	}
}

// sendmmsg hands hdrs to sendmmsg on fd and counts each datagram (lens[i]
// bytes) as sent or dropped. sendmmsg stops at the first failing message
// and reports how many went before it (the error itself is lost), so a
// short count is followed by a call that starts with the failing message
// and reports its error; that message is counted and the rest retried.
// EINTR is retried a few times, then counted as a drop.
func (c *Counters) sendmmsg(fd int, hdrs []unix.Mmsghdr, lens []int) {
	for j, intr := 0, 0; j < len(hdrs); {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&hdrs[j])), uintptr(len(hdrs)-j), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR && intr < 3:
			intr++
			continue
		case e != 0:
			c.AddDrop(reasonOf(e))
			j++
			continue
		case n == 0: // not expected from Linux; never spin on it
			c.AddDrop(Other)
			j++
			continue
		}
		for m := j; m < j+int(n); m++ {
			c.AddSent(lens[m])
		}
		j += int(n)
	}
}

func reasonOf(e unix.Errno) Reason {
	switch e {
	case unix.EMSGSIZE:
		return MsgSize
	case unix.EPERM:
		return Perm
	case unix.ENOBUFS, unix.EAGAIN:
		return NoBuffers
	case unix.EINVAL, unix.EAFNOSUPPORT:
		return Invalid
	}
	return Other
}

// Close releases the sockets. It is idempotent; Emit then returns
// ErrClosed.
func (r *RawIP) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, fd := range [...]*int{&r.fd4, &r.fd6} {
		if *fd >= 0 {
			if err := unix.Close(*fd); err != nil {
				errs = append(errs, fmt.Errorf("emit: close raw socket: %w", err))
			}
			*fd = -1
		}
	}
	return errors.Join(errs...)
}
