package emit

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// resolver finds the link-layer address of a destination's next hop on one
// interface, from the kernel's routing and neighbour tables (rtnetlink),
// and keeps what it found for a while. It is not safe for concurrent use
// (AFPacket serialises Emit).
type resolver struct {
	conn    *netlink.Conn
	ifindex int
	ttl     time.Duration
	retry   time.Duration
	now     func() time.Time
	cache   map[netip.Addr]neighEntry
}

type neighEntry struct {
	mac   [6]byte
	ok    bool
	until time.Time
}

// Neighbour states whose address can be used (linux/neighbour.h).
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE | unix.NUD_PROBE | unix.NUD_STALE | unix.NUD_DELAY

func newResolver(ifindex int, ttl time.Duration, now func() time.Time) (*resolver, error) {
	conn, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("emit: open rtnetlink socket: %w", err)
	}
	return &resolver{conn: conn, ifindex: ifindex, ttl: ttl, retry: max(ttl/50, 10*time.Millisecond),
		now: now, cache: make(map[netip.Addr]neighEntry)}, nil
}

// lookup returns the next hop's address for dst; false means unknown for
// now. Only a cache miss or an expired entry costs system calls.
func (r *resolver) lookup(dst netip.Addr) ([6]byte, bool) {
	now := r.now()
	if e, hit := r.cache[dst]; hit && now.Before(e.until) {
		return e.mac, e.ok
	}
	mac, ok := r.resolve(dst)
	e := neighEntry{mac: mac, ok: ok, until: now.Add(r.ttl)}
	if !ok {
		e.until = now.Add(r.retry)
	}
	if len(r.cache) >= 1<<16 {
		clear(r.cache) // a bound on memory; rebuilt on demand
	}
	r.cache[dst] = e
	return mac, ok
}

func (r *resolver) resolve(dst netip.Addr) ([6]byte, bool) {
	hop := r.nextHop(dst)
	if mac, ok := r.neighbour(hop); ok {
		return mac, true
	}
	r.solicit(hop)
	return [6]byte{}, false
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// nextHop asks the kernel for the route to dst through the interface
// (like "ip route get DST oif IF"): its gateway, or dst when on-link.
func (r *resolver) nextHop(dst netip.Addr) netip.Addr {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_DST, dst.AsSlice())
	ae.Uint32(unix.RTA_OIF, uint32(r.ifindex))
	attrs, err := ae.Encode()
	if err != nil {
		return dst
	}
	rtm := make([]byte, unix.SizeofRtMsg)
	rtm[0], rtm[1] = family(dst), uint8(dst.BitLen())
	msgs, err := r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETROUTE, Flags: netlink.Request},
		Data:   append(rtm, attrs...),
	})
	if err != nil {
		return dst // no route through the interface: try dst on the link
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofRtMsg:])
		if err != nil {
			continue
		}
		for ad.Next() {
			if ad.Type() == unix.RTA_GATEWAY {
				if gw, ok := netip.AddrFromSlice(ad.Bytes()); ok {
					return gw
				}
			}
		}
	}
	return dst
}

// ndmsg builds a struct ndmsg for hop on the interface.
func (r *resolver) ndmsg(hop netip.Addr, state uint16, flags uint8) []byte {
	b := make([]byte, unix.SizeofNdMsg)
	b[0] = family(hop)
	binary.NativeEndian.PutUint32(b[4:], uint32(r.ifindex))
	binary.NativeEndian.PutUint16(b[8:], state)
	b[10] = flags
	return b
}

// neighbour reads hop's entry from the neighbour table (RTM_GETNEIGH for
// one address, Linux 4.20 and later).
func (r *resolver) neighbour(hop netip.Addr) ([6]byte, bool) {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.NDA_DST, hop.AsSlice())
	attrs, err := ae.Encode()
	if err != nil {
		return [6]byte{}, false
	}
	msgs, err := r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETNEIGH, Flags: netlink.Request},
		Data:   append(r.ndmsg(hop, 0, 0), attrs...),
	})
	if err != nil {
		return [6]byte{}, false
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH || len(m.Data) < unix.SizeofNdMsg {
			continue
		}
		if binary.NativeEndian.Uint16(m.Data[8:])&nudValid == 0 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofNdMsg:])
		if err != nil {
			continue
		}
		for ad.Next() {
			if ad.Type() == unix.NDA_LLADDR && len(ad.Bytes()) == 6 {
				return [6]byte(ad.Bytes()), true
			}
		}
	}
	return [6]byte{}, false
}

// solicit asks the kernel to resolve hop (RTM_NEWNEIGH with NTF_USE, as
// "ip neigh replace ... use" would): it creates an entry and sends an ARP
// request or neighbour solicitation, as it would for its own traffic.
// Failure is not an error: the next lookup tries again.
func (r *resolver) solicit(hop netip.Addr) {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.NDA_DST, hop.AsSlice())
	attrs, err := ae.Encode()
	if err != nil {
		return
	}
	_, _ = r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWNEIGH, Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
		Data:   append(r.ndmsg(hop, unix.NUD_NONE, unix.NTF_USE), attrs...),
	})
}

func (r *resolver) close() error { return r.conn.Close() }
