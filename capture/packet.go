package capture

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/shadowcopy/tcpcopy/internal/header"
)

// TCP flags (RFC 9293 section 3.1).
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
)

// Packet is the unit every stage handles: a capture timestamp and one IP
// datagram (IPv4 or IPv6) that carries TCP. Accessors read the datagram in
// place and setters write it in place, keeping the IP and TCP checksums right
// incrementally (RFC 1624); none of them allocates.
//
// A Packet does not own Data: whoever filled it says for how long the bytes
// stay valid (see Capturer). The zero Packet is empty; Decode fills it.
// A Packet is not safe for concurrent use.
type Packet struct {
	// Time is when the packet was captured (or is due, in offline replay).
	Time time.Time
	// Data is the IP datagram, cut to the length its IP header gives; for
	// packets decoded with DecodeHeaders it may end before that length.
	Data []byte
	// Dir is the way the packet crossed the capturing host's interface,
	// where the source records it: AFPacket always, RawIP always DirIn,
	// files for Linux cooked captures and pcapng packets with direction
	// flags. Zero (DirUnknown) elsewhere. Like Time, Decode leaves it as
	// it is.
	Dir Direction

	tcp int  // offset of the TCP header in Data
	pay int  // offset of the TCP payload in Data
	end int  // end of the datagram as the IP header says (>= len(Data))
	v6  bool // IPv6
}

// Decode parses b as an IP datagram carrying TCP and points p at it; p.Time
// and p.Dir are left as they are. It checks every length field against
// len(b) and reports a truncated or malformed packet as an error matching
// ErrTruncated, ErrMalformed, ErrNotTCP or ErrFragment. Bytes after the IP length
// (Ethernet padding) are cut off. Decode never allocates and never panics.
func (p *Packet) Decode(b []byte) error { return p.decode(b, false) }

// DecodeHeaders is Decode for a datagram whose bytes may stop early (a
// snapped capture or an intercept report): the IP and TCP headers must be
// complete, the payload may be cut short. PayloadLen still gives the length
// the IP header claims; Payload gives the bytes present.
func (p *Packet) DecodeHeaders(b []byte) error { return p.decode(b, true) }

func (p *Packet) decode(b []byte, snapped bool) error {
	*p = Packet{Time: p.Time, Dir: p.Dir}
	if len(b) == 0 {
		return errEmpty
	}
	var l4, end int
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinLen {
			return errShortIPv4
		}
		ip := header.IPv4(b)
		ihl := ip.IHL()
		end = ip.TotalLen()
		switch {
		case ihl < header.IPv4MinLen:
			return errBadIHL
		case end < ihl:
			return errTotalLen
		case ihl > len(b):
			// Within the total length but not captured: cut short, not
			// malformed.
			return errShortIPv4Opts
		}
		if ip.IsFragment() {
			return errFragment4
		}
		if ip.Protocol() != header.ProtoTCP {
			return errNotTCP
		}
		l4 = ihl
	case 6:
		if len(b) < header.IPv6Len {
			return errShortIPv6
		}
		ip := header.IPv6(b)
		if ip.PayloadLen() == 0 {
			return errJumbo
		}
		end = header.IPv6Len + ip.PayloadLen()
		var err error
		if l4, err = walkIPv6(b, end, ip.NextHeader()); err != nil {
			return err
		}
		p.v6 = true
	default:
		return errBadVersion
	}
	if end > len(b) {
		if !snapped {
			return errTotalLenLies
		}
	} else {
		b = b[:end]
	}
	if l4+header.TCPMinLen > len(b) || l4+header.TCPMinLen > end {
		return errShortTCP
	}
	off := header.TCP(b[l4:]).DataOffset()
	if off < header.TCPMinLen || l4+off > end {
		return errBadDataOffset
	}
	if l4+off > len(b) { // only when snapped: else len(b) == end by now
		return errShortTCPOpts
	}
	if !header.ValidOptions(b[l4+header.TCPMinLen : l4+off]) {
		return errBadTCPOptions
	}
	p.Data, p.tcp, p.pay, p.end = b, l4, l4+off, end
	return nil
}

// walkIPv6 follows the extension header chain (RFC 8200 section 4) to TCP
// and returns the offset of the TCP header. A header that runs past end (the
// payload length) is malformed; one that runs past the captured bytes only
// is cut short.
func walkIPv6(b []byte, end int, next uint8) (int, error) {
	off := header.IPv6Len
	for {
		var unit, extra int
		switch next {
		case header.ProtoTCP:
			return off, nil
		case 0, 43, 60: // hop-by-hop, routing, destination options: 8-octet units, not counting the first
			unit, extra = 8, 1
		case 51: // authentication header (RFC 4302): 4-octet units minus 2
			unit, extra = 4, 2
		case 44:
			return 0, errFragment6
		case 50, 59:
			return 0, errExtUnwalkable
		default:
			return 0, errNotTCP
		}
		// Every extension header is at least 8 bytes long.
		if err := extBounds(off+8, end, len(b)); err != nil {
			return 0, err
		}
		next, off = b[off], off+(int(b[off+1])+extra)*unit
		if err := extBounds(off, end, len(b)); err != nil {
			return 0, err
		}
	}
}

func extBounds(n, end, captured int) error {
	switch {
	case n > end:
		return errExtHeader
	case n > captured:
		return errExtCut
	}
	return nil
}

// IsIPv6 reports whether the datagram is IPv6.
func (p *Packet) IsIPv6() bool { return p.v6 }

// IPHeaderLen is the length of the IP header including IPv6 extension
// headers.
func (p *Packet) IPHeaderLen() int { return p.tcp }

// TCP returns the TCP header view (including options).
func (p *Packet) TCP() header.TCP { return header.TCP(p.Data[p.tcp:p.pay]) }

func (p *Packet) srcIP() []byte {
	if p.v6 {
		return p.Data[8:24]
	}
	return p.Data[12:16]
}

func (p *Packet) dstIP() []byte {
	if p.v6 {
		return p.Data[24:40]
	}
	return p.Data[16:20]
}

// Src is the source address.
func (p *Packet) Src() netip.Addr { return addrFrom(p.srcIP()) }

// Dst is the destination address.
func (p *Packet) Dst() netip.Addr { return addrFrom(p.dstIP()) }

func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}

// SrcPort, DstPort, Seq, Ack, Flags, Window and DataOffset read the TCP
// header fields of the same names.
func (p *Packet) SrcPort() uint16 { return binary.BigEndian.Uint16(p.Data[p.tcp:]) }
func (p *Packet) DstPort() uint16 { return binary.BigEndian.Uint16(p.Data[p.tcp+2:]) }
func (p *Packet) Seq() Seq        { return Seq(binary.BigEndian.Uint32(p.Data[p.tcp+4:])) }
func (p *Packet) Ack() Seq        { return Seq(binary.BigEndian.Uint32(p.Data[p.tcp+8:])) }
func (p *Packet) Flags() uint8    { return p.Data[p.tcp+13] }
func (p *Packet) Window() uint16  { return binary.BigEndian.Uint16(p.Data[p.tcp+14:]) }
func (p *Packet) DataOffset() int { return p.pay - p.tcp }

// HasFlags reports whether all of f are set.
func (p *Packet) HasFlags(f uint8) bool { return p.Flags()&f == f }

// SrcEndpoint and DstEndpoint are the packed source and destination.
func (p *Packet) SrcEndpoint() Endpoint { return endpointFromBytes(p.srcIP(), p.SrcPort()) }
func (p *Packet) DstEndpoint() Endpoint { return endpointFromBytes(p.dstIP(), p.DstPort()) }

// Flow is the packet's flow key.
func (p *Packet) Flow() Flow { return Flow{Src: p.SrcEndpoint(), Dst: p.DstEndpoint()} }

// Options returns the raw TCP options.
func (p *Packet) Options() []byte { return p.Data[p.tcp+header.TCPMinLen : p.pay] }

// Payload returns the TCP payload bytes present in Data.
func (p *Packet) Payload() []byte { return p.Data[p.pay:] }

// PayloadLen is the payload length the IP header claims; it differs from
// len(Payload()) only for packets decoded with DecodeHeaders.
func (p *Packet) PayloadLen() int { return p.end - p.pay }

// SeqLen is the sequence space the segment occupies: payload plus one each
// for SYN and FIN.
func (p *Packet) SeqLen() uint32 {
	n := uint32(p.PayloadLen())
	f := p.Flags()
	if f&FlagSYN != 0 {
		n++
	}
	if f&FlagFIN != 0 {
		n++
	}
	return n
}

// EndSeq is Seq plus SeqLen: the next sequence number after this segment.
func (p *Packet) EndSeq() Seq { return p.Seq().Add(p.SeqLen()) }

// MSS returns the MSS option of a SYN.
func (p *Packet) MSS() (uint16, bool) {
	v, ok := header.Option(p.Options(), header.OptMSS)
	if !ok || len(v) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(v), true
}

// WindowScale returns the window scale shift (RFC 7323 section 2).
func (p *Packet) WindowScale() (uint8, bool) {
	v, ok := header.Option(p.Options(), header.OptWindowScale)
	if !ok || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

// SACKPermitted reports whether the SACK-permitted option is present.
func (p *Packet) SACKPermitted() bool {
	_, ok := header.Option(p.Options(), header.OptSACKPermitted)
	return ok
}

// Timestamps returns TSval and TSecr (RFC 7323 section 3).
func (p *Packet) Timestamps() (val, ecr uint32, ok bool) {
	v, ok := header.Option(p.Options(), header.OptTimestamps)
	if !ok || len(v) != 8 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:]), true
}
