package rewrite

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Test packets and pools use only benchmarking addresses: 198.18.0.0/15
// (RFC 2544) and fd00:198:18::/48 (a unique local prefix). The few other
// addresses in the tests are inputs a parser must reject.
var (
	cli4 = netip.MustParseAddrPort("198.18.0.1:40000")
	srv4 = netip.MustParseAddrPort("198.18.0.80:80")
	tgt4 = netip.MustParseAddrPort("198.19.0.2:8080")
	cli6 = netip.MustParseAddrPort("[fd00:198:18::1]:40000")
	srv6 = netip.MustParseAddrPort("[fd00:198:18::80]:80")
	tgt6 = netip.MustParseAddrPort("[fd00:198:18:1::2]:8080")
)

// segment builds a datagram with capture.AppendSegment or fails the test.
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

// packet builds and decodes one segment from src to dst.
func packet(tb testing.TB, src, dst netip.AddrPort, flags uint8, payload string) *capture.Packet {
	tb.Helper()
	return decoded(tb, segment(tb, capture.Segment{Src: src, Dst: dst, Seq: 1000, Ack: 2000,
		Flags: flags, Window: 501, Options: capture.AppendTimestamps(nil, 7, 8), Payload: []byte(payload)}))
}

// syn is a client SYN from src to dst.
func syn(tb testing.TB, src, dst netip.AddrPort) *capture.Packet {
	tb.Helper()
	return packet(tb, src, dst, capture.FlagSYN, "")
}

// fakeClock is an injected clock that tests move by hand; safe for
// concurrent use.
type fakeClock struct{ ns atomic.Int64 }

var clockBase = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return clockBase.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// addr4 is the i-th address of 198.18.0.0/15 counted from 198.18.0.1.
func addr4(i int) netip.Addr {
	u := uint32(198)<<24 | uint32(18)<<16 + uint32(i%131070) + 1
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// addr6 is the i-th address of fd00:198:18::/48 after fd00:198:18::.
func addr6(i int) netip.Addr {
	b := netip.MustParseAddr("fd00:198:18::").As16()
	binary.BigEndian.PutUint64(b[8:], uint64(i)+1)
	return netip.AddrFrom16(b)
}

// netip4 is cli4's address with another port.
func netip4(port uint16) netip.AddrPort { return netip.AddrPortFrom(cli4.Addr(), port) }
