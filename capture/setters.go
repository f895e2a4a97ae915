package capture

import (
	"encoding/binary"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/internal/header"
)

// Setters change the datagram in place and adjust the checksums by the
// difference (RFC 1624), so their cost does not grow with the payload. They
// assume the checksums were right before; ComputeChecksums repairs them when
// they were not.

func (p *Packet) tcpCsum() uint16     { return binary.BigEndian.Uint16(p.Data[p.tcp+16:]) }
func (p *Packet) setTCPCsum(c uint16) { binary.BigEndian.PutUint16(p.Data[p.tcp+16:], c) }
func (p *Packet) set16(off int, v uint16) {
	old := header.TCP(p.Data[p.tcp:]).Set16(off, v)
	p.setTCPCsum(header.Update16(p.tcpCsum(), old, v))
}
func (p *Packet) set32(off int, v uint32) {
	old := header.TCP(p.Data[p.tcp:]).Set32(off, v)
	p.setTCPCsum(header.Update32(p.tcpCsum(), old, v))
}

// SetSrcPort, SetDstPort, SetSeq, SetAck and SetWindow write the TCP header
// fields of the same names.
func (p *Packet) SetSrcPort(v uint16) { p.set16(0, v) }
func (p *Packet) SetDstPort(v uint16) { p.set16(2, v) }
func (p *Packet) SetSeq(v Seq)        { p.set32(4, uint32(v)) }
func (p *Packet) SetAck(v Seq)        { p.set32(8, uint32(v)) }
func (p *Packet) SetWindow(v uint16)  { p.set16(14, v) }

// SetFlags replaces the TCP flags byte.
func (p *Packet) SetFlags(f uint8) {
	w := binary.BigEndian.Uint16(p.Data[p.tcp+12:])
	p.set16(12, w&0xff00|uint16(f))
}

// SetSrc sets the source address; it must be of the packet's family.
func (p *Packet) SetSrc(a netip.Addr) error { return p.setAddr(p.srcIP(), a) }

// SetDst sets the destination address; it must be of the packet's family.
func (p *Packet) SetDst(a netip.Addr) error { return p.setAddr(p.dstIP(), a) }

func (p *Packet) setAddr(field []byte, a netip.Addr) error {
	var nb [16]byte
	switch {
	case a.Is4() && !p.v6:
		nb4 := a.As4()
		copy(nb[:], nb4[:])
	case a.Is6() && !a.Is4In6() && p.v6:
		nb = a.As16()
	default:
		return ErrFamily
	}
	n := nb[:len(field)]
	// Addresses are in the TCP pseudo-header, and for IPv4 in the IP header.
	p.setTCPCsum(header.UpdateBytes(p.tcpCsum(), field, n))
	if !p.v6 {
		ip := header.IPv4(p.Data)
		ip.SetChecksum(header.UpdateBytes(ip.Checksum(), field, n))
	}
	copy(field, n)
	return nil
}

// SetMSS rewrites the MSS option in place; it reports false when the packet
// has none.
func (p *Packet) SetMSS(v uint16) bool {
	o, ok := header.Option(p.Options(), header.OptMSS)
	if !ok || len(o) != 2 {
		return false
	}
	var nb [2]byte
	binary.BigEndian.PutUint16(nb[:], v)
	p.setOption(o, nb[:])
	return true
}

// SetTimestamps rewrites the timestamps option in place; it reports false
// when the packet has none.
func (p *Packet) SetTimestamps(val, ecr uint32) bool {
	o, ok := header.Option(p.Options(), header.OptTimestamps)
	if !ok || len(o) != 8 {
		return false
	}
	var nb [8]byte
	binary.BigEndian.PutUint32(nb[:], val)
	binary.BigEndian.PutUint32(nb[4:], ecr)
	p.setOption(o, nb[:])
	return true
}

// setOption overwrites the option bytes o (a sub-slice of Data) with nb.
// Options may sit at odd offsets, so the checksum is adjusted over the
// enclosing 16-bit-aligned span, its sum before and after. The TCP header
// itself always starts at an even offset (IHL and IPv6 extension lengths are
// multiples of 4), so Data's alignment is the segment's.
func (p *Packet) setOption(o, nb []byte) {
	start := p.tcp + header.TCPMinLen
	first := cap(p.Data[start:]) - cap(o) + start // offset of o in Data
	lo, hi := first&^1, first+len(o)
	if hi&1 == 1 {
		hi++
	}
	span := p.Data[lo:hi]
	before := header.Fold(header.Sum(0, span))
	copy(p.Data[first:], nb)
	after := header.Fold(header.Sum(0, span))
	p.setTCPCsum(header.Update16(p.tcpCsum(), before, after))
}

// ComputeChecksums recomputes the IPv4 header checksum and the TCP checksum
// from scratch: the reference the incremental setters are held to, and the
// repair for packets built by hand. It needs the whole datagram (not one
// decoded with DecodeHeaders and cut short).
func (p *Packet) ComputeChecksums() {
	if !p.v6 {
		ip := header.IPv4(p.Data)
		ip.SetChecksum(0)
		ip.SetChecksum(ip.ComputeChecksum())
	}
	p.setTCPCsum(0)
	p.setTCPCsum(p.tcpChecksum())
}

func (p *Packet) tcpChecksum() uint16 {
	seg := p.Data[p.tcp:]
	acc := header.PseudoSum(p.srcIP(), p.dstIP(), header.ProtoTCP, len(seg))
	return ^header.Fold(header.Sum(acc, seg))
}

// ChecksumsValid reports whether the IPv4 header checksum (if any) and the
// TCP checksum are right. It needs the whole datagram.
func (p *Packet) ChecksumsValid() bool {
	if !p.v6 {
		ip := header.IPv4(p.Data)
		if header.Fold(header.Sum(0, ip[:ip.IHL()])) != 0xffff {
			return false
		}
	}
	seg := p.Data[p.tcp:]
	acc := header.PseudoSum(p.srcIP(), p.dstIP(), header.ProtoTCP, len(seg))
	return header.Fold(header.Sum(acc, seg)) == 0xffff
}
