package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// sentinels are the four kinds a decode error can be.
var sentinels = []error{capture.ErrTruncated, capture.ErrMalformed, capture.ErrNotTCP, capture.ErrFragment}

// checkDecodeErr checks that err matches want (nil for success) and no
// other sentinel, and reads like the house style asks.
func checkDecodeErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: got error %v, want success", what, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: succeeded, want error matching %v", what, want)
		return
	}
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("%s: errors.Is(%q, %q) = %v, want %v", what, err, s, got, s == want)
		}
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "capture: ") || msg == want.Error() {
		t.Errorf("%s: error %q should be capture-prefixed and more precise than %q", what, msg, want)
	}
}

// withIPv4Options inserts IP options (a multiple of 4 bytes) into an IPv4
// datagram with a 20-byte header and fixes lengths and checksums.
func withIPv4Options(b, opts []byte) []byte {
	out := append(clone(b[:20]), opts...)
	out = append(out, b[20:]...)
	out[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	return fixV4(out)
}

// withIPv6Ext inserts extension headers ext (whose last header's next
// field must be TCP) after the fixed header of an IPv6 datagram whose next
// header is TCP; first is the first extension's protocol number.
func withIPv6Ext(b []byte, first uint8, ext []byte) []byte {
	out := append(clone(b[:40]), ext...)
	out = append(out, b[40:]...)
	out[6] = first
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return fixV6(out, 40+len(ext))
}

type wantPacket struct {
	v6            bool
	ipHdr, tcpHdr int
	src, dst      netip.AddrPort
	seq, ack      capture.Seq
	flags         uint8
	window        uint16
	mss           uint16 // 0: no MSS option
	ws            int    // -1: no window scale option
	sack          bool
	ts            bool
	tsval, tsecr  uint32
	payload       string
	payloadLen    int
	seqLen        uint32
	dataLen       int
}

func checkPacket(t *testing.T, p *capture.Packet, w wantPacket) {
	t.Helper()
	if got := p.IsIPv6(); got != w.v6 {
		t.Errorf("IsIPv6 = %v, want %v", got, w.v6)
	}
	if got := p.IPHeaderLen(); got != w.ipHdr {
		t.Errorf("IPHeaderLen = %d, want %d", got, w.ipHdr)
	}
	if got := p.DataOffset(); got != w.tcpHdr {
		t.Errorf("DataOffset = %d, want %d", got, w.tcpHdr)
	}
	if got := len(p.TCP()); got != w.tcpHdr {
		t.Errorf("len(TCP()) = %d, want %d", got, w.tcpHdr)
	}
	if got := len(p.Options()); got != w.tcpHdr-20 {
		t.Errorf("len(Options()) = %d, want %d", got, w.tcpHdr-20)
	}
	if got := p.Src(); got != w.src.Addr() {
		t.Errorf("Src = %v, want %v", got, w.src.Addr())
	}
	if got := p.Dst(); got != w.dst.Addr() {
		t.Errorf("Dst = %v, want %v", got, w.dst.Addr())
	}
	if got := p.SrcPort(); got != w.src.Port() {
		t.Errorf("SrcPort = %d, want %d", got, w.src.Port())
	}
	if got := p.DstPort(); got != w.dst.Port() {
		t.Errorf("DstPort = %d, want %d", got, w.dst.Port())
	}
	if got, want := p.SrcEndpoint(), capture.EndpointFrom(w.src); got != want {
		t.Errorf("SrcEndpoint = %v, want %v", got, want)
	}
	if got, want := p.DstEndpoint(), capture.EndpointFrom(w.dst); got != want {
		t.Errorf("DstEndpoint = %v, want %v", got, want)
	}
	if got, want := p.Flow(), (capture.Flow{Src: capture.EndpointFrom(w.src), Dst: capture.EndpointFrom(w.dst)}); got != want {
		t.Errorf("Flow = %v, want %v", got, want)
	}
	if got := p.Seq(); got != w.seq {
		t.Errorf("Seq = %d, want %d", got, w.seq)
	}
	if got := p.Ack(); got != w.ack {
		t.Errorf("Ack = %d, want %d", got, w.ack)
	}
	if got := p.Flags(); got != w.flags {
		t.Errorf("Flags = %#x, want %#x", got, w.flags)
	}
	if !p.HasFlags(w.flags) {
		t.Errorf("HasFlags(%#x) = false", w.flags)
	}
	if w.flags != 0xff && p.HasFlags(^w.flags) {
		t.Errorf("HasFlags(%#x) = true", ^w.flags)
	}
	if got := p.Window(); got != w.window {
		t.Errorf("Window = %d, want %d", got, w.window)
	}
	if got, ok := p.MSS(); ok != (w.mss != 0) || got != w.mss {
		t.Errorf("MSS = %d, %v; want %d, %v", got, ok, w.mss, w.mss != 0)
	}
	if got, ok := p.WindowScale(); ok != (w.ws >= 0) || (ok && int(got) != w.ws) {
		t.Errorf("WindowScale = %d, %v; want %d", got, ok, w.ws)
	}
	if got := p.SACKPermitted(); got != w.sack {
		t.Errorf("SACKPermitted = %v, want %v", got, w.sack)
	}
	if val, ecr, ok := p.Timestamps(); ok != w.ts || val != w.tsval || ecr != w.tsecr {
		t.Errorf("Timestamps = %d, %d, %v; want %d, %d, %v", val, ecr, ok, w.tsval, w.tsecr, w.ts)
	}
	if got := string(p.Payload()); got != w.payload {
		t.Errorf("Payload = %q, want %q", got, w.payload)
	}
	if got := p.PayloadLen(); got != w.payloadLen {
		t.Errorf("PayloadLen = %d, want %d", got, w.payloadLen)
	}
	if got := p.SeqLen(); got != w.seqLen {
		t.Errorf("SeqLen = %d, want %d", got, w.seqLen)
	}
	if got, want := p.EndSeq(), w.seq.Add(w.seqLen); got != want {
		t.Errorf("EndSeq = %d, want %d", got, want)
	}
	if got := len(p.Data); got != w.dataLen {
		t.Errorf("len(Data) = %d, want %d", got, w.dataLen)
	}
}

func TestDecodeValid(t *testing.T) {
	opts := synOptions(1460, 0x01020304, 0, 7)
	syn4 := segment(t, capture.Segment{Src: cli4, Dst: srv4, Seq: 1000, Flags: capture.FlagSYN, Window: 64240, Options: opts})
	syn6 := segment(t, capture.Segment{Src: cli6, Dst: srv6, Seq: 0xfffffff0, Flags: capture.FlagSYN, Window: 64800, Options: opts})
	synWant := wantPacket{
		ipHdr: 20, tcpHdr: 44, src: cli4, dst: srv4, seq: 1000, flags: capture.FlagSYN, window: 64240,
		mss: 1460, ws: 7, sack: true, ts: true, tsval: 0x01020304, seqLen: 1, dataLen: 64,
	}
	syn6Want := synWant
	syn6Want.v6, syn6Want.ipHdr, syn6Want.src, syn6Want.dst = true, 40, cli6, srv6
	syn6Want.seq, syn6Want.window, syn6Want.dataLen = 0xfffffff0, 64800, 84

	data4 := segment(t, capture.Segment{Src: srv4, Dst: cli4, Seq: 7, Ack: 1001, Flags: capture.FlagACK | capture.FlagPSH | capture.FlagFIN, Window: 501,
		Options: capture.AppendTimestamps(nil, 99, 0x01020304), Payload: []byte("hello")})
	data4Want := wantPacket{
		ipHdr: 20, tcpHdr: 32, src: srv4, dst: cli4, seq: 7, ack: 1001, flags: capture.FlagACK | capture.FlagPSH | capture.FlagFIN,
		window: 501, ws: -1, ts: true, tsval: 99, tsecr: 0x01020304, payload: "hello", payloadLen: 5, seqLen: 6, dataLen: 57,
	}
	data6 := segment(t, capture.Segment{Src: srv6, Dst: cli6, Seq: 7, Ack: 1001, Flags: capture.FlagACK, Window: 501, Payload: []byte("hello!")})
	data6Want := wantPacket{
		v6: true, ipHdr: 40, tcpHdr: 20, src: srv6, dst: cli6, seq: 7, ack: 1001, flags: capture.FlagACK,
		window: 501, ws: -1, payload: "hello!", payloadLen: 6, seqLen: 6, dataLen: 66,
	}

	ipOpts4 := withIPv4Options(data4, []byte{1, 1, 1, 0}) // NOP NOP NOP End
	ipOpts4Want := data4Want
	ipOpts4Want.ipHdr, ipOpts4Want.dataLen = 24, 61

	ext6Want := wantPacket{
		v6: true, ipHdr: 64, tcpHdr: 20, src: cli6, dst: srv6, seq: 0xdeadbeef, ack: 0x1000, flags: capture.FlagPSH | capture.FlagACK,
		window: 256, ws: -1, payload: "abc", payloadLen: 3, seqLen: 3, dataLen: 87,
	}
	// A routing header (type 0 is deprecated, but the walk only needs the
	// length) and an authentication header (RFC 4302: 24 bytes, length 4).
	rh := []byte{51, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	ah := make([]byte, 24)
	ah[0], ah[1] = 6, 24/4-2
	rhAH6 := withIPv6Ext(data6, 43, append(rh, ah...))
	rhAH6Want := data6Want
	rhAH6Want.ipHdr, rhAH6Want.dataLen = 80, 106

	endThenJunk := segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagACK, Options: []byte{0, 2, 4, 5, 0xb4}})
	endWant := wantPacket{ipHdr: 20, tcpHdr: 28, src: cli4, dst: srv4, flags: capture.FlagACK, ws: -1, dataLen: 48}

	oddTS := segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagACK, Options: oddTSOptions(5, 6), Payload: []byte("x")})
	oddTSWant := wantPacket{ipHdr: 20, tcpHdr: 32, src: cli4, dst: srv4, flags: capture.FlagACK, ws: -1, ts: true, tsval: 5, tsecr: 6,
		payload: "x", payloadLen: 1, seqLen: 1, dataLen: 53}

	handWant := wantPacket{ipHdr: 20, tcpHdr: 24, src: cli4, dst: srv4, seq: 0x01020304, flags: capture.FlagSYN, window: 0xffff,
		mss: 1460, ws: -1, seqLen: 1, dataLen: 44}

	pad := func(b []byte, n int) []byte { return append(clone(b), make([]byte, n)...) }

	for _, tc := range []struct {
		name string
		b    []byte
		want wantPacket
	}{
		{"v4 SYN with options", syn4, synWant},
		{"v6 SYN with options", syn6, syn6Want},
		{"v4 data with FIN", data4, data4Want},
		{"v6 data", data6, data6Want},
		{"v4 by hand", handV4SYN(), handWant},
		{"v4 with IP options", ipOpts4, ipOpts4Want},
		{"v6 hop-by-hop and destination options by hand", handV6Ext(), ext6Want},
		{"v6 routing and authentication headers", rhAH6, rhAH6Want},
		{"options after End are ignored", endThenJunk, endWant},
		{"timestamps at an odd offset", oddTS, oddTSWant},
		{"v4 Ethernet padding cut off", pad(data4, 7), data4Want},
		{"v6 Ethernet padding cut off", pad(data6, 3), data6Want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := time.Unix(1700000000, 5)
			for _, headers := range []bool{false, true} {
				p := capture.Packet{Time: ts}
				var err error
				if headers {
					err = p.DecodeHeaders(tc.b)
				} else {
					err = p.Decode(tc.b)
				}
				if err != nil {
					t.Fatalf("decode (headers only: %v): %v", headers, err)
				}
				if !p.Time.Equal(ts) {
					t.Errorf("Time = %v, want it left as %v", p.Time, ts)
				}
				checkPacket(t, &p, tc.want)
				if !p.ChecksumsValid() {
					t.Errorf("ChecksumsValid = false")
				}
				if &p.Data[0] != &tc.b[0] {
					t.Errorf("Data does not alias the input")
				}
			}
		})
	}
}

// The hand-built SYN and the one AppendSegment builds are the same bytes,
// so AppendSegment's layout and checksums agree with an independent one.
func TestAppendSegmentMatchesHandBuilt(t *testing.T) {
	got := segment(t, capture.Segment{Src: cli4, Dst: srv4, Seq: 0x01020304, Flags: capture.FlagSYN, Window: 0xffff,
		ID: 0x1234, Options: capture.AppendMSS(nil, 1460)})
	if want := handV4SYN(); !bytes.Equal(got, want) {
		t.Errorf("AppendSegment:\n got % x\nwant % x", got, want)
	}

	// IPv6 through AppendSegment and a hand-built extension chain: strip
	// the chain and the checksum still agrees (the pseudo-header length is
	// the TCP length, RFC 8200 section 8.1).
	h := handV6Ext()
	got6 := segment(t, capture.Segment{Src: cli6, Dst: srv6, Seq: 0xdeadbeef, Ack: 0x1000, Flags: capture.FlagPSH | capture.FlagACK,
		Window: 256, Payload: []byte("abc")})
	if want := h[64:]; !bytes.Equal(got6[40:], want) {
		t.Errorf("AppendSegment TCP segment:\n got % x\nwant % x", got6[40:], want)
	}
}

func TestAppendSegmentAppends(t *testing.T) {
	prefix := []byte("prefix")
	b, err := capture.AppendSegment(clone(prefix), &capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagSYN})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Errorf("AppendSegment dropped the prefix: % x", b)
	}
	p := decoded(t, b[len(prefix):])
	if !p.ChecksumsValid() {
		t.Error("checksums invalid")
	}
	if p.Data[8] != 64 {
		t.Errorf("TTL = %d, want the default 64", p.Data[8])
	}
	b6 := segment(t, capture.Segment{Src: cli6, Dst: srv6, TTL: 3})
	if b6[7] != 3 {
		t.Errorf("hop limit = %d, want 3", b6[7])
	}
}

func TestAppendSegmentErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    capture.Segment
		want error
	}{
		{"v4 to v6", capture.Segment{Src: cli4, Dst: srv6}, capture.ErrFamily},
		{"v6 to v4", capture.Segment{Src: cli6, Dst: srv4}, capture.ErrFamily},
		{"no addresses", capture.Segment{}, capture.ErrFamily},
		{"v4 to mapped v6", capture.Segment{Src: cli4, Dst: netip.MustParseAddrPort("[::ffff:198.19.0.1]:80")}, capture.ErrFamily},
		{"options over 40 bytes", capture.Segment{Src: cli4, Dst: srv4, Options: make([]byte, 41)}, capture.ErrMalformed},
		{"datagram over 65535 bytes", capture.Segment{Src: cli4, Dst: srv4, Payload: make([]byte, 65535-39)}, capture.ErrMalformed},
		{"option length 0", capture.Segment{Src: cli4, Dst: srv4, Options: []byte{2, 0, 5, 0xb4}}, capture.ErrMalformed},
		{"option length 1", capture.Segment{Src: cli4, Dst: srv4, Options: []byte{2, 1, 5, 0xb4}}, capture.ErrMalformed},
		{"option past end", capture.Segment{Src: cli6, Dst: srv6, Options: []byte{8, 10, 0, 0}}, capture.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte{1, 2, 3}
			b, err := capture.AppendSegment(prefix, &tc.s)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(b, prefix) {
				t.Errorf("on error AppendSegment returned % x, want the input % x", b, prefix)
			}
		})
	}
	// 40 bytes of options and the largest datagram are fine.
	segment(t, capture.Segment{Src: cli4, Dst: srv4, Options: bytes.Repeat([]byte{1}, 40)})
	segment(t, capture.Segment{Src: cli4, Dst: srv4, Payload: make([]byte, 65535-40)})
}

func TestDecodeErrors(t *testing.T) {
	base4 := segment(t, capture.Segment{Src: cli4, Dst: srv4, Seq: 1, Flags: capture.FlagACK, Payload: []byte("hello")})  // 45 bytes
	bare4 := segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagACK})                                    // 40 bytes
	nop4 := segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagACK, Options: []byte{1, 1, 1, 1}})        // 44 bytes
	syn4 := segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagSYN, Options: synOptions(1460, 1, 0, 7)}) // 64 bytes
	base6 := segment(t, capture.Segment{Src: cli6, Dst: srv6, Seq: 1, Flags: capture.FlagACK, Payload: []byte("hello")})  // 65 bytes
	nop6 := segment(t, capture.Segment{Src: cli6, Dst: srv6, Flags: capture.FlagACK, Options: []byte{1, 1, 1, 1}})        // 64 bytes
	setU16 := func(off int, v uint16) func([]byte) { return func(b []byte) { binary.BigEndian.PutUint16(b[off:], v) } }
	setByte := func(off int, v byte) func([]byte) { return func(b []byte) { b[off] = v } }
	setBytes := func(off int, v ...byte) func([]byte) { return func(b []byte) { copy(b[off:], v) } }
	ext := func(first uint8, e ...byte) []byte { return withIPv6Ext(base6, first, e) }
	hbh := func(next, n uint8) []byte { // hop-by-hop of (n+1)*8 bytes
		e := make([]byte, (int(n)+1)*8)
		e[0], e[1] = next, n
		return e
	}
	// Payload length 8 covers only the hop-by-hop header; the destination
	// options and TCP headers after it lie in what would be link padding.
	inPadding6 := with(base6[:40], setBytes(4, 0, 8, 0))
	inPadding6 = append(inPadding6, 60, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0)
	inPadding6 = append(inPadding6, base6[40:60]...)

	for _, tc := range []struct {
		name    string
		b       []byte
		decode  error // Decode
		headers error // DecodeHeaders
	}{
		{"empty", nil, capture.ErrTruncated, capture.ErrTruncated},
		{"version 5", with(base4, setByte(0, 0x55)), capture.ErrMalformed, capture.ErrMalformed},
		{"version 0", with(base4, setByte(0, 0x05)), capture.ErrMalformed, capture.ErrMalformed},
		{"one byte", []byte{0x45}, capture.ErrTruncated, capture.ErrTruncated},

		// IPv4 header.
		{"short IPv4", base4[:19], capture.ErrTruncated, capture.ErrTruncated},
		{"IHL 4", with(base4, setByte(0, 0x44)), capture.ErrMalformed, capture.ErrMalformed},
		{"IHL 0", with(base4, setByte(0, 0x40)), capture.ErrMalformed, capture.ErrMalformed},
		{"IHL past end and total length", with(bare4, setByte(0, 0x4f)), capture.ErrMalformed, capture.ErrMalformed},
		{"IHL past captured bytes", with(base4, setByte(0, 0x47))[:24], capture.ErrTruncated, capture.ErrTruncated},
		{"total length below IHL", with(base4, setU16(2, 19)), capture.ErrMalformed, capture.ErrMalformed},
		{"total length 0", with(base4, setU16(2, 0)), capture.ErrMalformed, capture.ErrMalformed},
		{"total length larger than data", with(base4, setU16(2, 55)), capture.ErrTruncated, nil},
		{"snapped payload", base4[:42], capture.ErrTruncated, nil},
		{"fragment with MF", with(base4, setByte(6, 0x20)), capture.ErrFragment, capture.ErrFragment},
		{"fragment with offset", with(base4, setU16(6, 0x4001)), capture.ErrFragment, capture.ErrFragment},
		{"fragment with high offset bits", with(base4, setU16(6, 0x1000)), capture.ErrFragment, capture.ErrFragment},
		{"UDP", with(base4, setByte(9, 17)), capture.ErrNotTCP, capture.ErrNotTCP},
		{"ICMP", with(base4, setByte(9, 1)), capture.ErrNotTCP, capture.ErrNotTCP},

		// TCP header.
		{"short TCP", base4[:39], capture.ErrTruncated, capture.ErrTruncated},
		{"short TCP in total length", with(base4, setU16(2, 39)), capture.ErrTruncated, capture.ErrTruncated},
		{"no TCP at all", with(base4[:20], setU16(2, 20)), capture.ErrTruncated, capture.ErrTruncated},
		{"data offset 4", with(base4, setByte(32, 0x40)), capture.ErrMalformed, capture.ErrMalformed},
		{"data offset 0", with(base4, setByte(32, 0x00)), capture.ErrMalformed, capture.ErrMalformed},
		{"data offset past end", with(bare4, setByte(32, 0x60)), capture.ErrMalformed, capture.ErrMalformed},
		{"data offset past total length", with(base4, setByte(32, 0x70)), capture.ErrMalformed, capture.ErrMalformed},
		{"data offset past captured bytes", syn4[:50], capture.ErrTruncated, capture.ErrTruncated},
		{"option length 0", with(nop4, setBytes(40, 2, 0)), capture.ErrMalformed, capture.ErrMalformed},
		{"option length 1", with(nop4, setBytes(40, 2, 1)), capture.ErrMalformed, capture.ErrMalformed},
		{"option past end", with(nop4, setBytes(40, 8, 10)), capture.ErrMalformed, capture.ErrMalformed},
		{"option length byte missing", with(nop4, setBytes(43, 8)), capture.ErrMalformed, capture.ErrMalformed},
		{"v6 option past end", with(nop6, setBytes(62, 2, 4)), capture.ErrMalformed, capture.ErrMalformed},

		// IPv6 header and extension headers.
		{"short IPv6", base6[:39], capture.ErrTruncated, capture.ErrTruncated},
		{"IPv6 payload length 0", with(base6, setU16(4, 0)), capture.ErrMalformed, capture.ErrMalformed},
		{"IPv6 payload length larger than data", with(base6, setU16(4, 30)), capture.ErrTruncated, nil},
		{"IPv6 snapped payload", base6[:62], capture.ErrTruncated, nil},
		{"IPv6 short TCP", base6[:59], capture.ErrTruncated, capture.ErrTruncated},
		{"IPv6 short TCP in payload length", with(base6, setU16(4, 19)), capture.ErrTruncated, capture.ErrTruncated},
		{"IPv6 UDP", with(base6, setByte(6, 17)), capture.ErrNotTCP, capture.ErrNotTCP},
		{"IPv6 ICMPv6 after hop-by-hop", ext(0, hbh(58, 0)...), capture.ErrNotTCP, capture.ErrNotTCP},
		{"IPv6 fragment header", ext(44, 6, 0, 0, 0, 0, 0, 0, 1), capture.ErrFragment, capture.ErrFragment},
		{"IPv6 fragment after hop-by-hop", ext(0, append(hbh(44, 0), 6, 0, 0, 1, 0, 0, 0, 1)...), capture.ErrFragment, capture.ErrFragment},
		{"IPv6 ESP", ext(50, 0, 0, 0, 1, 0, 0, 0, 1), capture.ErrNotTCP, capture.ErrNotTCP},
		{"IPv6 no next header", with(base6, setByte(6, 59)), capture.ErrNotTCP, capture.ErrNotTCP},
		{"IPv6 no next header after destination options", ext(60, hbh(59, 0)...), capture.ErrNotTCP, capture.ErrNotTCP},
		{"IPv6 extension past end", append(with(base6[:40], setBytes(4, 0, 4, 0)), 6, 0, 1, 0), capture.ErrMalformed, capture.ErrMalformed},
		{"IPv6 extension length past end", ext(0, hbh(6, 200)[:8]...), capture.ErrMalformed, capture.ErrMalformed},
		{"IPv6 AH length past end", ext(51, 6, 200, 0, 0, 0, 0, 0, 0), capture.ErrMalformed, capture.ErrMalformed},
		{"IPv6 extension past payload length, inside padding", inPadding6, capture.ErrMalformed, capture.ErrMalformed},
		{"IPv6 extension past captured bytes", ext(0, hbh(6, 1)...)[:50], capture.ErrTruncated, capture.ErrTruncated},
		{"IPv6 fixed header only", with(base6[:40], setU16(4, 1)), capture.ErrTruncated, capture.ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := clone(tc.b)
			now := time.Unix(1, 0)
			p := capture.Packet{Time: now, Data: []byte("stale")}
			checkDecodeErr(t, "Decode", p.Decode(tc.b), tc.decode)
			if tc.decode != nil && (p.Data != nil || p.PayloadLen() != 0) {
				t.Errorf("Decode failed but left Data = % x", p.Data)
			}
			checkDecodeErr(t, "DecodeHeaders", p.DecodeHeaders(tc.b), tc.headers)
			if !p.Time.Equal(now) {
				t.Errorf("Time changed to %v", p.Time)
			}
			if !bytes.Equal(tc.b, in) {
				t.Errorf("decoding changed its input")
			}
		})
	}
}

// DecodeHeaders on a datagram that ends early gives the bytes present in
// Payload and the claimed length in PayloadLen.
func TestDecodeHeadersSnapped(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 140)
	for _, tc := range []struct {
		name string
		b    []byte
		hdr  int
	}{
		{"v4", segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagACK, Payload: payload, Options: capture.AppendTimestamps(nil, 1, 2)}), 52},
		{"v6", segment(t, capture.Segment{Src: cli6, Dst: srv6, Flags: capture.FlagACK, Payload: payload}), 60},
		{"v6 with extensions", withIPv6Ext(segment(t, capture.Segment{Src: cli6, Dst: srv6, Flags: capture.FlagACK, Payload: payload}),
			60, []byte{6, 0, 1, 4, 0, 0, 0, 0}), 68},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, snap := range []int{tc.hdr, tc.hdr + 1, 96, 128, len(tc.b) - 1, len(tc.b)} {
				var p capture.Packet
				if err := p.DecodeHeaders(tc.b[:snap]); err != nil {
					t.Fatalf("DecodeHeaders(snap %d): %v", snap, err)
				}
				if got := len(p.Payload()); got != snap-tc.hdr {
					t.Errorf("snap %d: len(Payload) = %d, want %d", snap, got, snap-tc.hdr)
				}
				if got := p.PayloadLen(); got != len(payload) {
					t.Errorf("snap %d: PayloadLen = %d, want %d", snap, got, len(payload))
				}
				if got := p.SeqLen(); got != uint32(len(payload)) {
					t.Errorf("snap %d: SeqLen = %d, want %d", snap, got, len(payload))
				}
				if !bytes.Equal(p.Payload(), payload[:snap-tc.hdr]) {
					t.Errorf("snap %d: Payload is not the captured prefix", snap)
				}
				if err := p.Decode(tc.b[:snap]); (err == nil) != (snap == len(tc.b)) {
					t.Errorf("Decode(snap %d of %d) = %v", snap, len(tc.b), err)
				}
			}
		})
	}
}
