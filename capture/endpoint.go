package capture

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Endpoint is a packed, comparable IP address and port, usable as a map key
// without allocation. IPv4 addresses are stored 4-in-6 mapped with the v4
// flag set, so an IPv4 endpoint never equals an IPv6 one. The zero value is
// the invalid endpoint.
type Endpoint struct {
	ip   [16]byte
	port uint16
	v4   bool
	ok   bool
}

// EndpointFrom converts a netip.AddrPort. Zones are dropped.
func EndpointFrom(ap netip.AddrPort) Endpoint {
	a := ap.Addr()
	if !a.IsValid() {
		return Endpoint{}
	}
	return Endpoint{ip: a.As16(), port: ap.Port(), v4: a.Is4(), ok: true}
}

func endpointFromBytes(ip []byte, port uint16) Endpoint {
	e := Endpoint{port: port, ok: true}
	if len(ip) == 4 {
		e.v4 = true
		e.ip[10], e.ip[11] = 0xff, 0xff
		copy(e.ip[12:], ip)
	} else {
		copy(e.ip[:], ip)
	}
	return e
}

// IsValid reports whether e was made from a valid address.
func (e Endpoint) IsValid() bool { return e.ok }

// Addr returns the address.
func (e Endpoint) Addr() netip.Addr {
	if !e.ok {
		return netip.Addr{}
	}
	a := netip.AddrFrom16(e.ip)
	if e.v4 {
		return a.Unmap()
	}
	return a
}

// Port returns the port.
func (e Endpoint) Port() uint16 { return e.port }

// AddrPort returns e as a netip.AddrPort.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr(), e.port) }

// WithPort returns e with another port.
func (e Endpoint) WithPort(p uint16) Endpoint { e.port = p; return e }

// String formats e as addr:port or [addr]:port.
func (e Endpoint) String() string {
	if !e.ok {
		return "invalid"
	}
	if e.v4 {
		return e.Addr().String() + ":" + strconv.Itoa(int(e.port))
	}
	return "[" + e.Addr().String() + "]:" + strconv.Itoa(int(e.port))
}

// Hash returns a well-mixed 64-bit hash of e (for sharding and sampling);
// it is stable across runs and machines.
func (e Endpoint) Hash() uint64 {
	h := binary.LittleEndian.Uint64(e.ip[:8])*0x9e3779b97f4a7c15 ^
		binary.LittleEndian.Uint64(e.ip[8:])
	h ^= uint64(e.port) << 48
	// splitmix64 finaliser
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Flow is a packed, comparable TCP flow key: source and destination
// endpoints as they appear in one packet.
type Flow struct {
	Src, Dst Endpoint
}

// Reverse returns the flow in the other direction.
func (f Flow) Reverse() Flow { return Flow{Src: f.Dst, Dst: f.Src} }

// String formats the flow as src->dst.
func (f Flow) String() string { return f.Src.String() + "->" + f.Dst.String() }
