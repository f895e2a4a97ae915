package capture_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Test packets use only benchmarking addresses: 198.18.0.0/15 (RFC 2544)
// and fd00:198:18::/48 (a unique local prefix).
var (
	cli4 = netip.MustParseAddrPort("198.18.0.1:40000")
	srv4 = netip.MustParseAddrPort("198.19.255.254:80")
	alt4 = netip.MustParseAddrPort("198.18.7.9:8080")
	cli6 = netip.MustParseAddrPort("[fd00:198:18::1]:40000")
	srv6 = netip.MustParseAddrPort("[fd00:198:18:ffff::2]:443")
	alt6 = netip.MustParseAddrPort("[fd00:198:18:1:2:3:4:5]:8443")
)

// synOptions is the Linux SYN option layout: MSS, NOP NOP SACK-permitted,
// NOP NOP timestamps, NOP window scale (24 bytes).
func synOptions(mss uint16, tsval, tsecr uint32, ws uint8) []byte {
	o := capture.AppendMSS(nil, mss)
	o = capture.AppendSACKPermitted(o)
	o = capture.AppendTimestamps(o, tsval, tsecr)
	return capture.AppendWindowScale(o, ws)
}

// oddTSOptions puts the timestamps value at an odd offset of the segment:
// one NOP, then kind 8 (value starts at TCP offset 23), then End padding.
func oddTSOptions(val, ecr uint32) []byte {
	o := []byte{1, 8, 10}
	o = binary.BigEndian.AppendUint32(o, val)
	return binary.BigEndian.AppendUint32(o, ecr)
}

// oddMSSOptions puts the MSS value at an odd offset (TCP offset 23).
func oddMSSOptions(mss uint16) []byte {
	return []byte{1, 2, 4, byte(mss >> 8), byte(mss)}
}

// segment builds a datagram with AppendSegment, failing the test on error.
func segment(tb testing.TB, s capture.Segment) []byte {
	tb.Helper()
	b, err := capture.AppendSegment(nil, &s)
	if err != nil {
		tb.Fatalf("AppendSegment(%+v): %v", s, err)
	}
	return b
}

// decoded decodes b (which the packet then aliases) or fails the test.
func decoded(tb testing.TB, b []byte) *capture.Packet {
	tb.Helper()
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		tb.Fatalf("Decode(% x): %v", b, err)
	}
	return &p
}

// clone copies b so a test can mutate it.
func clone(b []byte) []byte { return append([]byte(nil), b...) }

// with returns a copy of b changed by f.
func with(b []byte, f func(b []byte)) []byte {
	b = clone(b)
	f(b)
	return b
}

// refSum is a deliberately naive RFC 1071 sum over 16-bit words of the
// concatenation of parts, independent of internal/header.
func refSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// fixV4 fills in the IPv4 header and TCP checksums of a hand-built
// datagram with an IHL-long header and a TCP segment after it, using refSum.
func fixV4(b []byte) []byte {
	ihl := int(b[0]&0xf) * 4
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^refSum(b[:ihl]))
	seg := b[ihl:]
	seg[16], seg[17] = 0, 0
	pseudo := []byte{0, 6, byte(len(seg) >> 8), byte(len(seg))}
	binary.BigEndian.PutUint16(seg[16:], ^refSum(b[12:20], pseudo, seg))
	return b
}

// fixV6 fills in the TCP checksum of a hand-built IPv6 datagram whose TCP
// header starts at tcp.
func fixV6(b []byte, tcp int) []byte {
	seg := b[tcp:]
	seg[16], seg[17] = 0, 0
	pseudo := []byte{0, 0, byte(len(seg) >> 8), byte(len(seg)), 0, 0, 0, 6}
	binary.BigEndian.PutUint16(seg[16:], ^refSum(b[8:40], pseudo, seg))
	return b
}

// handV4SYN is a SYN from cli4 to srv4 with an MSS option, built byte by
// byte (RFC 791, RFC 9293).
func handV4SYN() []byte {
	return fixV4([]byte{
		0x45, 0x00, 0x00, 0x2c, // version 4, IHL 5; TOS; total length 44
		0x12, 0x34, 0x40, 0x00, // ID; DF, offset 0
		0x40, 0x06, 0x00, 0x00, // TTL 64; TCP; header checksum
		198, 18, 0, 1, // src
		198, 19, 255, 254, // dst
		0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
		0x01, 0x02, 0x03, 0x04, // seq
		0x00, 0x00, 0x00, 0x00, // ack
		0x60, 0x02, 0xff, 0xff, // data offset 6, SYN; window
		0x00, 0x00, 0x00, 0x00, // checksum; urgent
		0x02, 0x04, 0x05, 0xb4, // MSS 1460
	})
}

// handV6Ext is an IPv6 PSH|ACK from cli6 to srv6 whose TCP header follows
// a hop-by-hop header (8 bytes) and a destination options header (16
// bytes), with a 3-byte payload. The TCP header starts at 64.
func handV6Ext() []byte {
	b := []byte{
		0x60, 0x00, 0x00, 0x00, // version 6, class, flow label
		0x00, 0x2f, 0x00, 0x40, // payload length 47; next = hop-by-hop; hop limit 64
	}
	b = append(b, cli6.Addr().AsSlice()...)
	b = append(b, srv6.Addr().AsSlice()...)
	b = append(b,
		60, 0, 1, 4, 0, 0, 0, 0, // hop-by-hop: next = dest opts, len 0; PadN(4)
		6, 1, 1, 12, 0, 0, 0, 0, // dest opts: next = TCP, len 1 (16 bytes); PadN(12)
		0, 0, 0, 0, 0, 0, 0, 0,
		0x9c, 0x40, 0x01, 0xbb, // ports 40000 -> 443
		0xde, 0xad, 0xbe, 0xef, // seq
		0x00, 0x00, 0x10, 0x00, // ack
		0x50, 0x18, 0x01, 0x00, // data offset 5, PSH|ACK; window 256
		0x00, 0x00, 0x00, 0x00, // checksum; urgent
		'a', 'b', 'c',
	)
	return fixV6(b, 64)
}
