package header

import "encoding/binary"

// Protocol numbers and fixed sizes used by the views.
const (
	ProtoTCP       = 6
	IPv4MinLen     = 20
	IPv6Len        = 40
	TCPMinLen      = 20
	IPv4MaxHdrLen  = 60
	TCPMaxHdrLen   = 60
	ipv4FlagMF     = 0x2000
	ipv4OffsetMask = 0x1fff
)

// IPv4 is a view of an IPv4 header (RFC 791).
type IPv4 []byte

func (b IPv4) IHL() int             { return int(b[0]&0x0f) * 4 }
func (b IPv4) TotalLen() int        { return int(binary.BigEndian.Uint16(b[2:])) }
func (b IPv4) ID() uint16           { return binary.BigEndian.Uint16(b[4:]) }
func (b IPv4) TTL() uint8           { return b[8] }
func (b IPv4) Protocol() uint8      { return b[9] }
func (b IPv4) Checksum() uint16     { return binary.BigEndian.Uint16(b[10:]) }
func (b IPv4) Src() []byte          { return b[12:16] }
func (b IPv4) Dst() []byte          { return b[16:20] }
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[10:], c) }

// IsFragment reports whether the datagram is a fragment (MF set or a
// non-zero offset).
func (b IPv4) IsFragment() bool {
	f := binary.BigEndian.Uint16(b[6:])
	return f&(ipv4FlagMF|ipv4OffsetMask) != 0
}

// SetTotalLen sets the total length, keeping the header checksum right.
func (b IPv4) SetTotalLen(n int) {
	old := binary.BigEndian.Uint16(b[2:])
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	b.SetChecksum(Update16(b.Checksum(), old, uint16(n)))
}

// ComputeChecksum returns the header checksum computed from scratch.
func (b IPv4) ComputeChecksum() uint16 {
	h := b[:b.IHL()]
	acc := Sum(0, h[:10])
	acc = Sum(acc, h[12:])
	return ^Fold(acc)
}

// IPv6 is a view of an IPv6 fixed header (RFC 8200).
type IPv6 []byte

func (b IPv6) PayloadLen() int   { return int(binary.BigEndian.Uint16(b[4:])) }
func (b IPv6) NextHeader() uint8 { return b[6] }
func (b IPv6) HopLimit() uint8   { return b[7] }
func (b IPv6) Src() []byte       { return b[8:24] }
func (b IPv6) Dst() []byte       { return b[24:40] }

// SetPayloadLen sets the payload length (IPv6 has no header checksum).
func (b IPv6) SetPayloadLen(n int) { binary.BigEndian.PutUint16(b[4:], uint16(n)) }
