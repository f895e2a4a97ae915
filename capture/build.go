package capture

import (
	"encoding/binary"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/internal/header"
)

// Segment describes a TCP segment to build with AppendSegment.
type Segment struct {
	Src, Dst netip.AddrPort // same family; IPv4 or IPv6 picks the header
	Seq, Ack Seq
	Flags    uint8
	Window   uint16
	Options  []byte // raw TCP options, padded by AppendSegment to 4 bytes
	Payload  []byte
	TTL      uint8 // zero means 64
	ID       uint16
}

// AppendSegment appends the IP datagram for s to dst, with right checksums,
// and returns the extended slice. It reports ErrFamily when the addresses
// are not of one family and ErrMalformed when options exceed 40 bytes or
// the datagram exceeds 65535 bytes.
func AppendSegment(dst []byte, s *Segment) ([]byte, error) {
	src, dstA := s.Src.Addr(), s.Dst.Addr()
	v4 := src.Is4() && dstA.Is4()
	if !v4 && (src.Is4() || dstA.Is4() || !src.IsValid() || !dstA.IsValid()) {
		return dst, ErrFamily
	}
	optLen := (len(s.Options) + 3) &^ 3
	if optLen > header.TCPMaxHdrLen-header.TCPMinLen {
		return dst, ErrMalformed
	}
	ipLen := header.IPv6Len
	if v4 {
		ipLen = header.IPv4MinLen
	}
	tcpLen := header.TCPMinLen + optLen
	total := ipLen + tcpLen + len(s.Payload)
	if total > 0xffff {
		return dst, ErrMalformed
	}
	start := len(dst)
	dst = append(dst, make([]byte, total)...)
	b := dst[start:]
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	if v4 {
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(total))
		binary.BigEndian.PutUint16(b[4:], s.ID)
		b[6] = 0x40 // DF
		b[8], b[9] = ttl, header.ProtoTCP
		s4, d4 := src.As4(), dstA.As4()
		copy(b[12:], s4[:])
		copy(b[16:], d4[:])
	} else {
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(total-header.IPv6Len))
		b[6], b[7] = header.ProtoTCP, ttl
		s16, d16 := src.As16(), dstA.As16()
		copy(b[8:], s16[:])
		copy(b[24:], d16[:])
	}
	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:], s.Src.Port())
	binary.BigEndian.PutUint16(t[2:], s.Dst.Port())
	binary.BigEndian.PutUint32(t[4:], uint32(s.Seq))
	binary.BigEndian.PutUint32(t[8:], uint32(s.Ack))
	t[12] = byte(tcpLen/4) << 4
	t[13] = s.Flags
	binary.BigEndian.PutUint16(t[14:], s.Window)
	copy(t[header.TCPMinLen:], s.Options) // padding stays zero (End)
	copy(t[tcpLen:], s.Payload)
	var p Packet
	if err := p.Decode(b); err != nil {
		return dst[:start], err
	}
	p.ComputeChecksums()
	return dst, nil
}

// Option encoders for AppendSegment, in the usual SYN layout.

// AppendMSS appends an MSS option.
func AppendMSS(b []byte, mss uint16) []byte {
	return append(b, header.OptMSS, 4, byte(mss>>8), byte(mss))
}

// AppendWindowScale appends NOP and a window scale option.
func AppendWindowScale(b []byte, shift uint8) []byte {
	return append(b, header.OptNOP, header.OptWindowScale, 3, shift)
}

// AppendSACKPermitted appends two NOPs and SACK-permitted.
func AppendSACKPermitted(b []byte) []byte {
	return append(b, header.OptNOP, header.OptNOP, header.OptSACKPermitted, 2)
}

// AppendTimestamps appends two NOPs and a timestamps option.
func AppendTimestamps(b []byte, val, ecr uint32) []byte {
	b = append(b, header.OptNOP, header.OptNOP, header.OptTimestamps, 10)
	b = binary.BigEndian.AppendUint32(b, val)
	return binary.BigEndian.AppendUint32(b, ecr)
}
