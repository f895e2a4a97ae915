package intercept

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// The golden bytes below are written from the layout facts of DESIGN.md
// section 5 (TCPCopy 1.x: 14-byte messages, version type 6, add type 1;
// frames of a u16 count and 64- or 192-byte records of 20 bytes of IPv4
// header, 20 of TCP header, 24 of options, 128 of payload), not printed
// from the encoder.

func TestGoldenClassicMessages(t *testing.T) {
	if got, want := AppendClassicVersion(nil), unhex(t, "00000000 0000 0006 00000000 0000"); !bytes.Equal(got, want) {
		t.Errorf("version message %x, want %x", got, want)
	}
	add, err := AppendClassicMessage([]byte{0xaa}, ClassicAdd, ep("198.18.0.1:40000"), ep("198.19.0.2:80"))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "aa c6120001 9c40 0001 c6130002 0050"); !bytes.Equal(add, want) {
		t.Errorf("add %x, want %x", add, want)
	}
	rm, err := AppendClassicMessage(nil, ClassicRemove, ep("198.18.0.1:1"), ep("198.19.0.2:8080"))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "c6120001 0001 0002 c6130002 1f90"); !bytes.Equal(rm, want) {
		t.Errorf("remove %x, want %x", rm, want)
	}

	mr := NewClassicMessageReader(bytes.NewReader(append(AppendClassicVersion(nil), add[1:]...)))
	m, err := mr.ReadMessage()
	if err != nil || m.Type != ClassicVersion || m.Client.IsValid() {
		t.Fatalf("version: %+v, %v", m, err)
	}
	m, err = mr.ReadMessage()
	if err != nil || m != (ClassicMessage{Type: ClassicAdd, Client: ep("198.18.0.1:40000"), Target: ep("198.19.0.2:80")}) {
		t.Fatalf("add: %+v, %v", m, err)
	}
	if _, err := mr.ReadMessage(); err != io.EOF {
		t.Fatalf("after the messages: %v", err)
	}

	for _, tt := range []struct{ name, in, want string }{
		{"unknown type", "c6120001 0001 0009 c6130002 1f90", "unknown type 9"},
		{"type zero", "00000000 0000 0000 00000000 0000", "unknown type 0"},
		{"version with data", "00000001 0000 0006 00000000 0000", "non-zero byte 3"},
	} {
		if _, err := ParseClassicMessage(unhex(t, tt.in)); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrProtocol with %q", tt.name, err, tt.want)
		}
	}
	if _, err := AppendClassicMessage(nil, ClassicAdd, ep("[fd00:198:18::1]:1"), ep("198.19.0.2:80")); err == nil {
		t.Error("IPv6 client accepted")
	}
	if _, err := AppendClassicMessage(nil, ClassicVersion, ep("198.18.0.1:1"), ep("198.19.0.2:80")); err == nil {
		t.Error("version with endpoints accepted")
	}
	if _, err := NewClassicMessageReader(bytes.NewReader(make([]byte, 5))).ReadMessage(); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated message: %v", err)
	}
}

func data4(t testing.TB, payload string, opts []byte) []byte {
	t.Helper()
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: netip.MustParseAddrPort("198.18.0.1:40000"),
		Seq: 1001, Ack: 2001, Flags: capture.FlagPSH | capture.FlagACK, Window: 512, ID: 2,
		Options: opts, Payload: []byte(payload),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenClassicResponses(t *testing.T) {
	// Default build: 64-byte records; the SYN-ACK's 4 option bytes, then
	// zeros to the 24-byte options area's end.
	var e ClassicEncoder
	if err := e.Add(decode(t, synAck4(t))); err != nil {
		t.Fatal(err)
	}
	if err := e.Add(decode(t, data4(t, "hello world", nil))); err != nil {
		t.Fatal(err)
	}
	if err := e.Add(decode(t, data6(t))); err == nil {
		t.Error("IPv6 response accepted")
	}
	e.Flush()
	data := data4(t, "hello world", nil)
	want := unhex(t, "0002"+
		goldenSynAck4+strings.Repeat("00", 20)+
		hexs(data[:40])+strings.Repeat("00", 24))
	if !bytes.Equal(e.B, want) {
		t.Fatalf("got  %x\nwant %x", e.B, want)
	}
	pkts, err := NewClassicReader(bytes.NewReader(e.B), false).ReadResponses(nil)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("decoded %d, %v", len(pkts), err)
	}
	if p := pkts[0]; p.Seq() != 1000 || p.Flags() != capture.FlagSYN|capture.FlagACK || p.Flow() != (capture.Flow{Src: ep("198.19.0.2:80"), Dst: ep("198.18.0.1:40000")}) {
		t.Errorf("SYN-ACK decoded as %v seq %d", p.Flow(), p.Seq())
	}
	if mss, ok := pkts[0].MSS(); !ok || mss != 1460 {
		t.Errorf("MSS %d %v", mss, ok)
	}
	if p := pkts[1]; p.PayloadLen() != 11 || len(p.Payload()) != 0 || p.Seq() != 1001 {
		t.Errorf("data: payload %q of %d", p.Payload(), p.PayloadLen())
	}

	// Payload build: 192-byte records with the payload after the options.
	e = ClassicEncoder{Payload: true}
	long := strings.Repeat("0123456789", 20) // 200 bytes: 128 are carried
	opts := capture.AppendTimestamps(nil, 7, 9)
	for _, d := range [][]byte{data4(t, "hello world", nil), data4(t, long, opts)} {
		if err := e.Add(decode(t, d)); err != nil {
			t.Fatal(err)
		}
	}
	e.Flush()
	longPkt := data4(t, long, opts)
	want = unhex(t, "0002"+
		hexs(data)+strings.Repeat("00", 192-len(data))+
		hexs(longPkt[:52])+hexs([]byte(long[:128]))+strings.Repeat("00", 192-52-128))
	if !bytes.Equal(e.B, want) {
		t.Fatalf("payload build:\ngot  %x\nwant %x", e.B, want)
	}
	pkts, err = NewClassicReader(bytes.NewReader(e.B), true).ReadResponses(nil)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("decoded %d, %v", len(pkts), err)
	}
	if p := pkts[0]; string(p.Payload()) != "hello world" || p.PayloadLen() != 11 {
		t.Errorf("payload %q of %d", p.Payload(), p.PayloadLen())
	}
	if p := pkts[1]; string(p.Payload()) != long[:128] || p.PayloadLen() != 200 {
		t.Errorf("long payload %q of %d", p.Payload(), p.PayloadLen())
	}
	if v, ecr, ok := pkts[1].Timestamps(); !ok || v != 7 || ecr != 9 {
		t.Errorf("timestamps %d %d %v", v, ecr, ok)
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}

func TestClassicFrameLimits(t *testing.T) {
	// 17 records: a full frame of 16 and one of 1 (6 and 1 with payload).
	for _, tt := range []struct {
		payload     bool
		first, last int
	}{{false, 16, 1}, {true, 6, 1}} {
		e := ClassicEncoder{Payload: tt.payload}
		n := tt.first + tt.last
		for range n {
			if err := e.Add(decode(t, synAck4(t))); err != nil {
				t.Fatal(err)
			}
		}
		e.Flush()
		recLen, _ := classicLayout(tt.payload)
		if len(e.B) != 4+n*recLen || binary.BigEndian.Uint16(e.B) != uint16(tt.first) ||
			binary.BigEndian.Uint16(e.B[2+tt.first*recLen:]) != uint16(tt.last) {
			t.Errorf("payload %v: %d bytes, counts %x", tt.payload, len(e.B), e.B[:2])
		}
	}
	// Too many records for the build, and a truncated frame.
	in := append([]byte{0, 17}, make([]byte, 17*64)...)
	if _, err := NewClassicReader(bytes.NewReader(in), false).ReadResponses(nil); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "exceeds 16") {
		t.Errorf("17 records: %v", err)
	}
	if _, err := NewClassicReader(bytes.NewReader([]byte{0, 7}), true).ReadResponses(nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("7 payload records: %v", err)
	}
	if _, err := NewClassicReader(bytes.NewReader([]byte{0, 1, 0x45}), false).ReadResponses(nil); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated: %v", err)
	}
	if _, err := NewClassicReader(bytes.NewReader(append([]byte{0, 1}, make([]byte, 64)...)), false).ReadResponses(nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("zero record: %v", err)
	}
}

func TestClassicNormalises(t *testing.T) {
	// 36 bytes of options (MSS, timestamps, two SACK blocks): the record
	// keeps the whole options that fit 24 bytes and shortens the lengths.
	opts := capture.AppendMSS(nil, 1400)
	opts = capture.AppendTimestamps(opts, 11, 22)
	opts = append(opts, 1, 1, 5, 18)
	opts = append(opts, make([]byte, 16)...)
	p := decode(t, data4(t, "abcdef", opts))
	if p.DataOffset() != 56 {
		t.Fatalf("data offset %d", p.DataOffset())
	}
	rec, err := AppendClassicRecord(nil, p, true)
	if err != nil {
		t.Fatal(err)
	}
	var q capture.Packet
	if err := DecodeClassicRecord(rec, &q); err != nil {
		t.Fatal(err)
	}
	if q.DataOffset() != 40 || q.PayloadLen() != 6 || string(q.Payload()) != "abcdef" {
		t.Errorf("offset %d payload %q of %d", q.DataOffset(), q.Payload(), q.PayloadLen())
	}
	if mss, ok := q.MSS(); ok || mss != 0 {
		// MSS is only read on SYNs; check the bytes instead.
		t.Logf("MSS %d", mss)
	}
	if v, ecr, ok := q.Timestamps(); !ok || v != 11 || ecr != 22 {
		t.Errorf("timestamps %d %d %v", v, ecr, ok)
	}
	if !bytes.Equal(rec[:2], []byte{0x45, 0}) || binary.BigEndian.Uint16(rec[2:]) != 20+40+6 {
		t.Errorf("IP header %x", rec[:20])
	}

	// What a C intercept sends for a response with 4 bytes of IP options:
	// the 20 copied bytes still say IHL 6 and count the options in the
	// total length. The decoder normalises.
	c := decode(t, data4(t, "xyz", nil))
	rec, err = AppendClassicRecord(nil, c, true)
	if err != nil {
		t.Fatal(err)
	}
	rec[0] = 0x46
	binary.BigEndian.PutUint16(rec[2:], uint16(len(c.Data)+4))
	if err := DecodeClassicRecord(rec, &q); err != nil {
		t.Fatal(err)
	}
	if q.IPHeaderLen() != 20 || q.PayloadLen() != 3 || string(q.Payload()) != "xyz" || q.Seq() != 1001 {
		t.Errorf("IHL 6: header %d payload %q of %d", q.IPHeaderLen(), q.Payload(), q.PayloadLen())
	}
	// A data offset of 15 words from a C intercept: options cut to the
	// record's 24 bytes at the last whole option.
	rec, _ = AppendClassicRecord(nil, decode(t, data4(t, "", capture.AppendTimestamps(nil, 1, 2))), false)
	rec[32] = 15<<4 | rec[32]&15
	binary.BigEndian.PutUint16(rec[2:], 20+60)
	if err := DecodeClassicRecord(rec, &q); err != nil {
		t.Fatal(err)
	}
	if q.DataOffset() != 44 || q.PayloadLen() != 0 {
		t.Errorf("offset 15: %d, payload %d", q.DataOffset(), q.PayloadLen())
	}
}

// FuzzClassic feeds arbitrary streams to both classic decoders (messages
// and response frames of both builds): no panic, violations reported as
// ErrProtocol or stream errors, and what decodes re-encodes to a record
// that decodes to the same packet.
func FuzzClassic(f *testing.F) {
	add, _ := AppendClassicMessage(AppendClassicVersion(nil), ClassicAdd, ep("198.18.0.1:40000"), ep("198.19.0.2:80"))
	f.Add(add)
	var e ClassicEncoder
	e.Add(decode(f, synAck4(f)))
	e.Add(decode(f, data4(f, "hello", capture.AppendTimestamps(nil, 1, 2))))
	e.Flush()
	f.Add(e.B)
	e = ClassicEncoder{Payload: true}
	e.Add(decode(f, data4(f, strings.Repeat("z", 150), nil)))
	e.Flush()
	f.Add(e.B)
	f.Add([]byte{0, 17})
	f.Fuzz(func(t *testing.T, in []byte) {
		mr := NewClassicMessageReader(bytes.NewReader(in))
		for {
			m, err := mr.ReadMessage()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("message: %v", err)
				}
				break
			}
			if m.Type != ClassicVersion {
				b, err := AppendClassicMessage(nil, m.Type, m.Client, m.Target)
				if err != nil {
					t.Fatal(err)
				}
				if m2, err := ParseClassicMessage(b); err != nil || m2 != m {
					t.Fatalf("re-encoded %+v as %+v, %v", m, m2, err)
				}
			}
		}
		for _, payload := range []bool{false, true} {
			cr := NewClassicReader(bytes.NewReader(bytes.Clone(in)), payload)
			for {
				pkts, err := cr.ReadResponses(nil)
				if err != nil {
					if !errors.Is(err, ErrProtocol) && err != io.EOF && err != io.ErrUnexpectedEOF {
						t.Fatalf("responses: %v", err)
					}
					break
				}
				for i := range pkts {
					p := &pkts[i]
					rec, err := AppendClassicRecord(nil, p, payload)
					if err != nil {
						t.Fatal(err)
					}
					var q capture.Packet
					if err := DecodeClassicRecord(rec, &q); err != nil {
						t.Fatalf("re-encoded record does not decode: %v", err)
					}
					if q.Flow() != p.Flow() || q.Seq() != p.Seq() || q.Ack() != p.Ack() || q.Flags() != p.Flags() ||
						q.PayloadLen() != p.PayloadLen() || !bytes.Equal(q.Payload(), p.Payload()) || !bytes.Equal(q.Options(), p.Options()) {
						t.Fatalf("round trip changed the packet")
					}
				}
			}
		}
	})
}
