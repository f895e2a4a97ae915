// Package linklayer strips link-layer headers off captured frames and builds
// the few the project writes. It knows the pcap link types
// (https://www.tcpdump.org/linktypes.html) that carry IP: Ethernet with
// 802.1Q/802.1ad tags, Linux cooked capture (SLL and SLL2), BSD loopback
// (NULL and LOOP) and raw IP. Nothing here allocates or panics on bad input.
package linklayer

import (
	"encoding/binary"
	"strconv"
)

// Type is a pcap link type (LINKTYPE_* value), as stored in pcap and pcapng
// files.
type Type uint16

// Link types that carry IP datagrams.
const (
	Null      Type = 0   // BSD loopback: 4-byte address family in the writer's byte order
	Ethernet  Type = 1   // IEEE 802.3 Ethernet, possibly VLAN-tagged
	RawDLT12  Type = 12  // raw IP: DLT_RAW on most systems, found in old files
	RawDLT14  Type = 14  // raw IP: DLT_RAW on OpenBSD, found in its files
	Raw       Type = 101 // raw IP (LINKTYPE_RAW), IPv4 or IPv6 by the version nibble
	Loop      Type = 108 // OpenBSD loopback: 4-byte address family, network byte order
	LinuxSLL  Type = 113 // Linux cooked capture v1 (16-byte header)
	IPv4      Type = 228 // raw IPv4 only
	IPv6      Type = 229 // raw IPv6 only
	LinuxSLL2 Type = 276 // Linux cooked capture v2 (20-byte header)
)

// Supported reports whether Strip understands t.
func Supported(t Type) bool {
	switch t {
	case Null, Ethernet, RawDLT12, RawDLT14, Raw, Loop, LinuxSLL, IPv4, IPv6, LinuxSLL2:
		return true
	}
	return false
}

var typeNames = map[Type]string{
	Null: "NULL", Ethernet: "ETHERNET", RawDLT12: "RAW(12)", RawDLT14: "RAW(14)", Raw: "RAW",
	Loop: "LOOP", LinuxSLL: "LINUX_SLL", IPv4: "IPV4", IPv6: "IPV6", LinuxSLL2: "LINUX_SLL2",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return "LINKTYPE(" + strconv.Itoa(int(t)) + ")"
}

// Result says what Strip found.
type Result uint8

const (
	// OK: the frame carries an IP datagram, returned.
	OK Result = iota + 1
	// Short: the frame ends inside its link header (or a VLAN tag).
	Short
	// NotIP: the frame carries something other than IPv4 or IPv6 (ARP,
	// LLC, an unknown address family, too many VLAN tags).
	NotIP
)

// Packet types of the Linux cooked headers (sll_pkttype, packet(7)).
const (
	PacketHost      = 0 // to us
	PacketBroadcast = 1
	PacketMulticast = 2
	PacketOtherHost = 3 // to someone else, seen in promiscuous mode
	PacketOutgoing  = 4 // sent by us
	PacketUnknown   = -1
)

// EtherTypes.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeIPv6  = 0x86dd
	EtherTypeVLAN  = 0x8100 // IEEE 802.1Q
	EtherTypeQinQ  = 0x88a8 // IEEE 802.1ad service tag
	EtherTypeQinQ9 = 0x9100 // pre-standard QinQ, still in use
)

// MaxTags is how many stacked VLAN tags StripTags walks before giving up.
const MaxTags = 4

// Header lengths.
const (
	EthernetLen  = 14
	SLLLen       = 16
	SLL2Len      = 20
	NullLen      = 4
	VLANTagLen   = 4
	MaxHeaderLen = SLL2Len + MaxTags*VLANTagLen // the longest header Strip removes
)

// Strip returns the IP datagram inside frame, of link type t, and the Linux
// packet type when the header records one (SLL, SLL2), else PacketUnknown.
// An unsupported t gives NotIP.
func Strip(t Type, frame []byte) (ip []byte, pktType int, r Result) {
	switch t {
	case Ethernet:
		ip, r = StripEthernet(frame)
		return ip, PacketUnknown, r
	case Raw, RawDLT12, RawDLT14:
		ip, r = rawIP(frame, 0)
		return ip, PacketUnknown, r
	case IPv4:
		ip, r = rawIP(frame, 4)
		return ip, PacketUnknown, r
	case IPv6:
		ip, r = rawIP(frame, 6)
		return ip, PacketUnknown, r
	case Null, Loop:
		ip, r = stripNull(frame)
		return ip, PacketUnknown, r
	case LinuxSLL:
		if len(frame) < SLLLen {
			return nil, PacketUnknown, Short
		}
		// pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
		pt := int(binary.BigEndian.Uint16(frame))
		ip, r = StripTags(binary.BigEndian.Uint16(frame[14:]), frame[SLLLen:])
		return ip, pt, r
	case LinuxSLL2:
		if len(frame) < SLL2Len {
			return nil, PacketUnknown, Short
		}
		// protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
		pt := int(frame[10])
		ip, r = StripTags(binary.BigEndian.Uint16(frame), frame[SLL2Len:])
		return ip, pt, r
	}
	return nil, PacketUnknown, NotIP
}

// StripEthernet returns the IP datagram of an Ethernet II frame, walking
// up to MaxTags 802.1Q/802.1ad tags. Linux loopback frames are Ethernet
// frames with zero addresses.
func StripEthernet(frame []byte) ([]byte, Result) {
	if len(frame) < EthernetLen {
		return nil, Short
	}
	return StripTags(binary.BigEndian.Uint16(frame[12:]), frame[EthernetLen:])
}

// StripTags returns the IP datagram that follows an EtherType: b itself for
// IPv4 and IPv6, or what follows up to MaxTags VLAN tags (each 2 bytes of
// tag control information and the next EtherType).
func StripTags(etherType uint16, b []byte) ([]byte, Result) {
	for range MaxTags + 1 {
		switch etherType {
		case EtherTypeIPv4, EtherTypeIPv6:
			return b, OK
		case EtherTypeVLAN, EtherTypeQinQ, EtherTypeQinQ9:
			if len(b) < VLANTagLen {
				return nil, Short
			}
			etherType, b = binary.BigEndian.Uint16(b[2:]), b[VLANTagLen:]
		default:
			return nil, NotIP
		}
	}
	return nil, NotIP
}

// rawIP checks the version nibble of a raw datagram; want 0 accepts both.
func rawIP(b []byte, want byte) ([]byte, Result) {
	if len(b) == 0 {
		return nil, Short
	}
	v := b[0] >> 4
	if (v != 4 && v != 6) || (want != 0 && v != want) {
		return nil, NotIP
	}
	return b, OK
}

// BSD address families for IP and IPv6 as the NULL and LOOP headers carry
// them: IPv6's value differs between systems.
const (
	afInet       = 2
	afInet6Linux = 10
	afInet6BSD   = 24 // NetBSD, OpenBSD, BSD/OS
	afInet6Free  = 28 // FreeBSD, DragonFly
	afInet6Apple = 30 // Darwin
)

// stripNull handles NULL (host byte order of the capturing machine) and
// LOOP (network byte order, though some writers use host order): the family
// is read in both orders, which cannot be confused for these small values.
func stripNull(frame []byte) ([]byte, Result) {
	if len(frame) < NullLen {
		return nil, Short
	}
	fam := binary.LittleEndian.Uint32(frame)
	if fam > 0xffff {
		fam = binary.BigEndian.Uint32(frame)
	}
	switch fam {
	case afInet, afInet6Linux, afInet6BSD, afInet6Free, afInet6Apple:
		return frame[NullLen:], OK
	}
	return nil, NotIP
}

// NullFamily returns the NULL/LOOP header value for an IP version: AF_INET
// or, for IPv6, the BSD value 24, which every reader accepts.
func NullFamily(version int) uint32 {
	if version == 6 {
		return afInet6BSD
	}
	return afInet
}

// EtherTypeOf returns the EtherType for a datagram by its version nibble,
// or 0 when it is neither IPv4 nor IPv6.
func EtherTypeOf(ip []byte) uint16 {
	if len(ip) == 0 {
		return 0
	}
	switch ip[0] >> 4 {
	case 4:
		return EtherTypeIPv4
	case 6:
		return EtherTypeIPv6
	}
	return 0
}

// PutEthernet writes an Ethernet II header (dst, src, EtherType) into
// b[:14].
func PutEthernet(b []byte, dst, src []byte, etherType uint16) {
	_ = b[EthernetLen-1]
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], etherType)
}
