package rewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/header"
)

// superFrame describes a GRO super-frame to build.
type superFrame struct {
	v6      bool
	seq     capture.Seq
	flags   uint8
	urgent  uint16
	payload int
	opts    []byte
	ipOpts  bool // IPv4 options or an IPv6 destination options header
	id      uint16
}

// build makes the datagram: AppendSegment, then IP options or an extension
// header spliced in by hand, then checksums made right.
func (sf superFrame) build(tb testing.TB) []byte {
	tb.Helper()
	pay := make([]byte, sf.payload)
	for i := range pay {
		pay[i] = byte(i*7 + i>>8)
	}
	s := capture.Segment{Src: cli4, Dst: tgt4, Seq: sf.seq, Ack: 77, Flags: sf.flags, Window: 1234,
		Options: sf.opts, ID: sf.id, Payload: pay}
	if sf.v6 {
		s.Src, s.Dst = cli6, tgt6
	}
	b := segment(tb, s)
	if sf.ipOpts {
		if sf.v6 {
			// Destination options (next header TCP, length 0, PadN 4).
			ext := []byte{header.ProtoTCP, 0, 1, 4, 0, 0, 0, 0}
			b = append(b[:40:40], append(ext, b[40:]...)...)
			b[6] = 60
			binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		} else {
			// NOP NOP NOP EOL.
			b = append(b[:20:20], append([]byte{1, 1, 1, 0}, b[20:]...)...)
			b[0] = 0x46
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		}
	}
	p := decoded(tb, b)
	if sf.urgent != 0 {
		binary.BigEndian.PutUint16(p.Data[p.IPHeaderLen()+18:], sf.urgent)
	}
	p.ComputeChecksums()
	return b
}

// checkSegments holds the output of AppendSegments on p to everything a
// receiver relies on.
func checkSegments(tb testing.TB, p *capture.Packet, mss int, out []byte, ends []int) {
	tb.Helper()
	if len(ends) == 0 {
		tb.Fatalf("no segments")
	}
	var payload []byte
	next := p.Seq()
	start := 0
	v6 := p.IsIPv6()
	var id uint16
	if !v6 {
		id = header.IPv4(p.Data).ID()
	}
	for k, end := range ends {
		b := out[start:end]
		start = end
		var q capture.Packet
		if err := q.Decode(b); err != nil {
			tb.Fatalf("segment %d of %d does not decode: %v", k, len(ends), err)
		}
		if !q.ChecksumsValid() {
			tb.Fatalf("segment %d: checksums invalid", k)
		}
		first, last := k == 0, k == len(ends)-1
		if q.PayloadLen() > mss && len(ends) > 1 {
			tb.Fatalf("segment %d: %d payload bytes, mss %d", k, q.PayloadLen(), mss)
		}
		if q.Seq() != next {
			tb.Fatalf("segment %d: seq %d, want %d", k, q.Seq(), next)
		}
		next = q.EndSeq()
		payload = append(payload, q.Payload()...)
		if q.Flow() != p.Flow() || q.Ack() != p.Ack() || q.Window() != p.Window() || q.IsIPv6() != v6 {
			tb.Fatalf("segment %d: %s ack %d win %d, want %s ack %d win %d", k, q.Flow(), q.Ack(), q.Window(), p.Flow(), p.Ack(), p.Window())
		}
		if !bytes.Equal(q.Options(), p.Options()) {
			tb.Fatalf("segment %d: options % x, want % x", k, q.Options(), p.Options())
		}
		if !bytes.Equal(q.Data[:q.IPHeaderLen()][8:], p.Data[:p.IPHeaderLen()][8:]) && v6 {
			tb.Fatalf("segment %d: IPv6 addresses or extension headers changed", k)
		}
		if !v6 {
			if got := header.IPv4(q.Data).ID(); got != id+uint16(k) {
				tb.Fatalf("segment %d: IP ID %d, want %d", k, got, id+uint16(k))
			}
			if !bytes.Equal(q.Data[20:q.IPHeaderLen()], p.Data[20:p.IPHeaderLen()]) {
				tb.Fatalf("segment %d: IPv4 options changed", k)
			}
		}
		f, pf := q.Flags(), p.Flags()
		want := pf
		if !first {
			want &^= capture.FlagSYN | capture.FlagCWR
		}
		if !last {
			want &^= capture.FlagFIN | capture.FlagPSH | capture.FlagRST
		}
		if f&^capture.FlagURG != want&^capture.FlagURG {
			tb.Fatalf("segment %d of %d: flags %#x, want %#x (original %#x)", k, len(ends), f, want, pf)
		}
	}
	if next != p.EndSeq() {
		tb.Fatalf("segments end at %d, the original at %d", next, p.EndSeq())
	}
	if !bytes.Equal(payload, p.Payload()) {
		tb.Fatalf("payloads differ: %d bytes, want %d", len(payload), len(p.Payload()))
	}
	if start != len(out) {
		tb.Fatalf("%d bytes after the last end", len(out)-start)
	}
}

func TestAppendSegments(t *testing.T) {
	ts := capture.AppendTimestamps(nil, 0xdeadbeef, 0x01020304)
	sack := append(append([]byte{1, 1, 5, 10}, make([]byte, 8)...), ts...)
	for _, v6 := range []bool{false, true} {
		for _, sf := range []superFrame{
			{payload: 0, flags: capture.FlagACK},
			{payload: 1, flags: capture.FlagACK | capture.FlagPSH},
			{payload: 1448, flags: capture.FlagACK | capture.FlagPSH},
			{payload: 1449, flags: capture.FlagACK | capture.FlagPSH, opts: ts},
			{payload: 3*1448 + 7, flags: capture.FlagACK | capture.FlagPSH | capture.FlagFIN, opts: ts, id: 0xfffe},
			{payload: 64000, flags: capture.FlagACK | capture.FlagPSH, opts: ts, seq: 0xffff_f000}, // seq wraps
			{payload: 5000, flags: capture.FlagACK | capture.FlagECE | capture.FlagCWR, opts: sack},
			{payload: 5000, flags: capture.FlagSYN, opts: capture.AppendMSS(nil, 1448), seq: 0xffff_ffff},
			{payload: 5000, flags: capture.FlagACK | capture.FlagRST},
			{payload: 5000, flags: capture.FlagACK | capture.FlagPSH, ipOpts: true, opts: ts},
		} {
			sf.v6 = v6
			t.Run(fmt.Sprintf("v6=%v/%d/%#x/opts%d/ipopts=%v", v6, sf.payload, sf.flags, len(sf.opts), sf.ipOpts), func(t *testing.T) {
				b := sf.build(t)
				p := decoded(t, b)
				orig := append([]byte(nil), b...)
				out, ends := AppendSegments([]byte("prefix"), []int{6}, p, 1448)
				if !bytes.Equal(b, orig) {
					t.Fatal("AppendSegments changed its input")
				}
				if string(out[:6]) != "prefix" || ends[0] != 6 {
					t.Fatal("AppendSegments lost what dst and ends held")
				}
				want := max(1, (sf.payload+1447)/1448)
				if len(ends)-1 != want {
					t.Fatalf("%d segments, want %d", len(ends)-1, want)
				}
				checkSegments(t, p, 1448, out[6:], shift(ends[1:], -6))
			})
		}
	}
}

func shift(ends []int, by int) []int {
	out := make([]int, len(ends))
	for i, e := range ends {
		out[i] = e + by
	}
	return out
}

// A super-frame from a sender's TSO often carries a partial (pseudo-header
// only) checksum; the segments get full ones.
func TestAppendSegmentsPartialChecksum(t *testing.T) {
	b := superFrame{payload: 4000, flags: capture.FlagACK}.build(t)
	p := decoded(t, b)
	binary.BigEndian.PutUint16(b[p.IPHeaderLen()+16:], 0x1234)
	if p.ChecksumsValid() {
		t.Fatal("test broke the checksum and it is still valid")
	}
	out, ends := AppendSegments(nil, nil, p, 1000)
	checkSegments(t, p, 1000, out, ends)
}

func TestAppendSegmentsUrgent(t *testing.T) {
	// Urgent data ends 2500 bytes in: segments starting before keep URG
	// with the pointer adjusted; later ones lose it.
	b := superFrame{payload: 4000, flags: capture.FlagACK | capture.FlagURG, seq: 0xffff_fc00, urgent: 2500}.build(t)
	p := decoded(t, b)
	out, ends := AppendSegments(nil, nil, p, 1000)
	checkSegments(t, p, 1000, out, ends)
	start := 0
	for k, end := range ends {
		q := decoded(t, out[start:end])
		start = end
		up := binary.BigEndian.Uint16(q.Data[q.IPHeaderLen()+18:])
		wantURG := 2500-1000*k > 0
		if q.HasFlags(capture.FlagURG) != wantURG {
			t.Errorf("segment %d: URG %v, want %v", k, !wantURG, wantURG)
		}
		if wantURG && int(up) != 2500-1000*k || !wantURG && up != 0 {
			t.Errorf("segment %d: urgent pointer %d", k, up)
		}
	}
}

func TestAppendSegmentsWhole(t *testing.T) {
	b := superFrame{payload: 3000, flags: capture.FlagACK}.build(t)
	p := decoded(t, b)
	for _, mss := range []int{0, -1, 3000, 70000} {
		out, ends := AppendSegments(nil, nil, p, mss)
		if !bytes.Equal(out, b) || len(ends) != 1 || ends[0] != len(b) {
			t.Errorf("mss %d: not appended whole", mss)
		}
	}
	// A snapped packet cannot be split: nothing is appended.
	var h capture.Packet
	if err := h.DecodeHeaders(b[:200]); err != nil {
		t.Fatal(err)
	}
	out, ends := AppendSegments([]byte{1}, []int{1}, &h, 1000)
	if len(out) != 1 || len(ends) != 1 {
		t.Errorf("snapped packet: appended %d bytes, %d ends", len(out)-1, len(ends)-1)
	}
}

func TestSegmenter(t *testing.T) {
	if _, err := NewSegmenter(&SegmenterConfig{MTU: 67}); err == nil {
		t.Error("MTU 67 accepted")
	}
	if _, err := NewSegmenter(&SegmenterConfig{MSS: -1}); err == nil {
		t.Error("MSS -1 accepted")
	}
	s, err := NewSegmenter(nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := capture.AppendTimestamps(nil, 1, 2)
	p4 := decoded(t, superFrame{payload: 10000, flags: capture.FlagACK, opts: ts}.build(t))
	p6 := decoded(t, superFrame{v6: true, payload: 10000, flags: capture.FlagACK, opts: ts}.build(t))
	if got := s.Limit(p4); got != 1500-20-32 {
		t.Errorf("Limit(IPv4 with timestamps) = %d, want 1448", got)
	}
	if got := s.Limit(p6); got != 1500-40-32 {
		t.Errorf("Limit(IPv6 with timestamps) = %d, want 1428", got)
	}
	out, ends := s.Append(nil, nil, p4)
	checkSegments(t, p4, 1448, out, ends)
	for i, end := range ends {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		if end-start > 1500 {
			t.Errorf("segment %d is %d bytes, MTU 1500", i, end-start)
		}
	}
	small := decoded(t, superFrame{payload: 100, flags: capture.FlagACK}.build(t))
	out, ends = s.Append(out[:0], ends[:0], small)
	if len(ends) != 1 || !bytes.Equal(out, small.Data) {
		t.Error("small packet not appended whole")
	}
	var h capture.Packet
	if err := h.DecodeHeaders(p4.Data[:300]); err != nil {
		t.Fatal(err)
	}
	s.Append(nil, nil, &h)

	m, _ := NewSegmenter(&SegmenterConfig{MTU: 9000, MSS: 536})
	if got := m.Limit(p4); got != 536 {
		t.Errorf("Limit with MSS 536 = %d", got)
	}
	tiny, _ := NewSegmenter(&SegmenterConfig{MTU: 68})
	withOpts := decoded(t, superFrame{payload: 100, flags: capture.FlagACK, opts: make([]byte, 40)}.build(t))
	out, ends = tiny.Append(nil, nil, withOpts)
	if len(ends) != 1 || !bytes.Equal(out, withOpts.Data) {
		t.Error("packet whose headers exceed the MTU not sent whole")
	}
	want := SegmenterStats{Packets: 3, Split: 1, Segments: 7, Snapped: 1}
	if st := s.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if st := tiny.Stats(); st.Unsplittable != 1 {
		t.Errorf("tiny stats %+v", st)
	}
}
