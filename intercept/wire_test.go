package intercept

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ep(s string) capture.Endpoint { return capture.EndpointFrom(netip.MustParseAddrPort(s)) }

// Test packets. Their bytes are in the golden frames below; they were
// printed once from these capture.AppendSegment calls.
func synAck4(t testing.TB) []byte {
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: netip.MustParseAddrPort("198.18.0.1:40000"),
		Seq: 1000, Ack: 2001, Flags: capture.FlagSYN | capture.FlagACK, Window: 65535,
		Options: capture.AppendMSS(nil, 1460), ID: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func data6(t testing.TB) []byte {
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("[fd00:198:18::2]:80"), Dst: netip.MustParseAddrPort("[fd00:198:18::1]:40001"),
		Seq: 1001, Ack: 2001, Flags: capture.FlagPSH | capture.FlagACK, Window: 512,
		Payload: []byte("hello world"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	goldenSynAck4 = `4500002c000140004006aea2c6130002c612000100509c40000003e8000007d16012ffff63a40000020405b4`
	goldenData6   = `60000000001f0640 fd000198001800000000000000000002 fd000198001800000000000000000001
		00509c41000003e9000007d1501802007643000068656c6c6f20776f726c64`
)

func decode(t testing.TB, b []byte) *capture.Packet {
	t.Helper()
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestGoldenPackets(t *testing.T) {
	// Guards the golden frames against a change in AppendSegment.
	if got := hex.EncodeToString(synAck4(t)); got != goldenSynAck4 {
		t.Errorf("SYN-ACK bytes changed:\n%s", got)
	}
	if got, want := data6(t), unhex(t, goldenData6); !bytes.Equal(got, want) {
		t.Errorf("data bytes changed:\n%x", got)
	}
}

func TestGoldenHello(t *testing.T) {
	got := AppendHello(nil, Hello{Version: WireVersion})
	want := unhex(t, "54435043 02 00 0000")
	if !bytes.Equal(got, want) {
		t.Fatalf("hello = %x, want %x", got, want)
	}
	h, err := ParseHello(got)
	if err != nil || h != (Hello{Version: 2}) {
		t.Fatalf("ParseHello = %+v, %v", h, err)
	}
	for _, bad := range []string{"GET / HT", "\x00\x00\x00\x00\x00\x06\x00\x00", "TCPC"} {
		if _, err := ParseHello([]byte(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParseHello(%q) = %v, want ErrProtocol", bad, err)
		}
	}
	h, err = ParseHello(unhex(t, "54435043 01 00 0000"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.checkVersion(); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("version 1: %v", err)
	}
}

func TestGoldenClientFrames(t *testing.T) {
	tests := []struct {
		name           string
		typ            FrameType
		client, target string
		want           string
	}{
		{"add4", FrameClientAdd, "198.18.0.1:40000", "198.19.0.2:80",
			"01 00 000e  04 c6120001 9c40  04 c6130002 0050"},
		{"remove6", FrameClientRemove, "[fd00:198:18::1]:40001", "[fd00:198:18::2]:8080",
			`02 00 0026
			 06 fd000198001800000000000000000001 9c41
			 06 fd000198001800000000000000000002 1f90`},
		{"add-mixed", FrameClientAdd, "198.18.0.1:1", "[fd00:198:18::2]:2",
			"01 00 001a  04 c6120001 0001  06 fd000198001800000000000000000002 0002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, tg := ep(tt.client), ep(tt.target)
			var got []byte
			var err error
			if tt.typ == FrameClientAdd {
				got, err = AppendClientAdd([]byte{0xaa}, c, tg)
			} else {
				got, err = AppendClientRemove([]byte{0xaa}, c, tg)
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte{0xaa}, unhex(t, tt.want)...); !bytes.Equal(got, want) {
				t.Fatalf("got  %x\nwant %x", got, want)
			}
			fr := NewFrameReader(bytes.NewReader(got[1:]), FrameClientAdd, FrameClientRemove)
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != tt.typ {
				t.Fatalf("type %v, want %v", f.Type, tt.typ)
			}
			gc, gt, err := ParseClient(f.Body)
			if err != nil || gc != c || gt != tg {
				t.Fatalf("ParseClient = %v %v %v, want %v %v", gc, gt, err, c, tg)
			}
			if _, err := fr.ReadFrame(); err != io.EOF {
				t.Fatalf("after the frame: %v, want io.EOF", err)
			}
		})
	}
	if b, err := AppendClientAdd(nil, capture.Endpoint{}, ep("198.19.0.2:80")); err == nil || b != nil {
		t.Errorf("invalid endpoint: %x, %v", b, err)
	}
}

func TestGoldenResponses(t *testing.T) {
	var e ResponsesEncoder
	if err := e.Add(decode(t, synAck4(t)), 5); err != nil {
		t.Fatal(err)
	}
	if err := e.Add(decode(t, data6(t)), 5); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	want := unhex(t, `03 00 0073  0002
		002c `+goldenSynAck4+`
		0041 60000000001f0640 fd000198001800000000000000000002 fd000198001800000000000000000001
		     00509c41000003e9000007d15018020076430000 68656c6c6f`)
	if !bytes.Equal(e.B, want) {
		t.Fatalf("got  %x\nwant %x", e.B, want)
	}

	fr := NewFrameReader(bytes.NewReader(e.B), FrameResponses)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := DecodeResponses(f.Body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 {
		t.Fatalf("%d packets, want 2", len(pkts))
	}
	if p := pkts[0]; p.Flow() != (capture.Flow{Src: ep("198.19.0.2:80"), Dst: ep("198.18.0.1:40000")}) ||
		p.Seq() != 1000 || p.Flags() != capture.FlagSYN|capture.FlagACK {
		t.Errorf("SYN-ACK decoded as %v seq %d flags %#x", p.Flow(), p.Seq(), p.Flags())
	}
	if mss, ok := pkts[0].MSS(); !ok || mss != 1460 {
		t.Errorf("MSS %d %v", mss, ok)
	}
	if p := pkts[1]; !p.IsIPv6() || p.PayloadLen() != 11 || string(p.Payload()) != "hello" || p.Seq() != 1001 {
		t.Errorf("data decoded as v6 %v payload %q of %d", p.IsIPv6(), p.Payload(), p.PayloadLen())
	}
}

func TestResponsesSplitFrames(t *testing.T) {
	// Records that do not fit one frame start another one.
	big, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: netip.MustParseAddrPort("198.18.0.1:40000"),
		Flags: capture.FlagACK, Payload: make([]byte, 30000),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := decode(t, big)
	var e ResponsesEncoder
	for range 5 {
		if err := e.Add(p, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	e.Flush()
	fr := NewFrameReader(bytes.NewReader(e.B), FrameResponses)
	var total, frames int
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pkts, err := DecodeResponses(f.Body, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pkts {
			if q.PayloadLen() != 30000 || len(q.Payload()) != 30000 {
				t.Fatalf("payload %d of %d", len(q.Payload()), q.PayloadLen())
			}
		}
		total += len(pkts)
		frames++
	}
	if total != 5 || frames != 3 {
		t.Fatalf("%d records in %d frames, want 5 in 3", total, frames)
	}
}

func TestReportLenCapsAtMaxRecord(t *testing.T) {
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: netip.MustParseAddrPort("198.18.0.1:40000"),
		Flags: capture.FlagACK, Payload: make([]byte, 65495),
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ReportLen(decode(t, b), 1<<20)
	if err != nil || n != MaxRecord {
		t.Fatalf("ReportLen = %d, %v; want %d", n, err, MaxRecord)
	}
	var e ResponsesEncoder
	if err := e.Add(decode(t, b), 1<<20); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	if len(e.B) != FrameHeaderLen+MaxFrame {
		t.Fatalf("frame of %d bytes", len(e.B))
	}
	f, err := NewFrameReader(bytes.NewReader(e.B), FrameResponses).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := DecodeResponses(f.Body, nil)
	if err != nil || len(pkts) != 1 || pkts[0].PayloadLen() != 65495 {
		t.Fatalf("decoded %d packets, %v", len(pkts), err)
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		types []FrameType
		want  string // substring of the error
	}{
		{"unknown type", "09 00 0000", nil, "unknown frame type 9"},
		{"type zero", "00 00 0000", nil, "unknown frame type 0"},
		{"wrong direction", "03 00 0002 0000", []FrameType{FrameClientAdd}, "unexpected Responses frame"},
		{"client too long", "01 00 0027" + strings.Repeat("00", 39), []FrameType{FrameClientAdd}, "exceeds 38"},
		{"bad family", "01 00 000e 05 c6120001 9c40 04 c6130002 0050", []FrameType{FrameClientAdd}, "family 5"},
		{"trailing", "02 00 000f 04 c6120001 9c40 04 c6130002 0050 00", []FrameType{FrameClientRemove}, "trailing"},
		{"short endpoint", "01 00 0008 04 c6120001 9c40 06", []FrameType{FrameClientAdd}, "truncated"},
		{"no count", "03 00 0001 00", []FrameType{FrameResponses}, "no count"},
		{"record past end", "03 00 0006 0001 0005 aabb", []FrameType{FrameResponses}, "claims 5 bytes"},
		{"missing record", "03 00 0002 0001", []FrameType{FrameResponses}, "ends before record 0"},
		{"extra bytes", "03 00 0005 0000 aabbcc", []FrameType{FrameResponses}, "3 bytes after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := NewFrameReader(bytes.NewReader(unhex(t, tt.in)), tt.types...)
			_, err := fr.ReadFrame()
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrProtocol with %q", err, tt.want)
			}
		})
	}
	// A truncated stream is an I/O error, not a protocol one.
	for _, in := range []string{"01", "01 00 000e 04 c6"} {
		_, err := NewFrameReader(bytes.NewReader(unhex(t, in)), FrameClientAdd).ReadFrame()
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%q: %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
	// A record that is not a TCP datagram fails in DecodeResponses.
	_, err := DecodeResponses(unhex(t, "0001 0003 450000"), nil)
	if !errors.Is(err, ErrProtocol) {
		t.Errorf("bad record: %v", err)
	}
}

func TestReadFrameDoesNotOverAllocate(t *testing.T) {
	// Headers claiming the largest bodies, followed by little: the reader
	// allocates at most the claimed frame, once, and nothing for a frame it
	// rejects by its header.
	for _, tt := range []struct {
		in    string
		limit uint64
	}{
		// A rejected header must cost far less than the frame it claims
		// (MaxFrame); the margin absorbs the runtime's own allocations,
		// which TotalAlloc counts too.
		{"03 00 ffff 00", MaxFrame + 4096},
		{"01 00 ffff 00", 4096},
		{"07 00 ffff 00", 4096},
	} {
		in := unhex(t, tt.in)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range 100 {
			fr := NewFrameReader(bytes.NewReader(in), FrameClientAdd, FrameResponses)
			if _, err := fr.ReadFrame(); err == nil {
				t.Fatalf("%s: accepted", tt.in)
			}
		}
		runtime.ReadMemStats(&after)
		if got := (after.TotalAlloc - before.TotalAlloc) / 100; got > tt.limit {
			t.Errorf("%s: %d bytes allocated per frame, want <= %d", tt.in, got, tt.limit)
		}
	}
}

func TestWireAllocs(t *testing.T) {
	syn := decode(t, synAck4(t))
	c, tg := ep("198.18.0.1:40000"), ep("198.19.0.2:80")
	buf := make([]byte, 0, 4096)
	var e ResponsesEncoder
	e.B = make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		b, _ := AppendClientAdd(buf[:0], c, tg)
		_, _, _ = ParseClient(b[FrameHeaderLen:])
		e.Reset()
		e.Add(syn, 0)
		e.Add(syn, 0)
		e.Flush()
	}); n != 0 {
		t.Errorf("encoding: %v allocations per run", n)
	}

	stream := bytes.Repeat(e.B, 200)
	r := bytes.NewReader(stream)
	fr := NewFrameReader(r, FrameResponses)
	pkts := make([]capture.Packet, 0, 8)
	fr.ReadFrame() // grow the buffer
	if n := testing.AllocsPerRun(100, func() {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if pkts, err = DecodeResponses(f.Body, pkts[:0]); err != nil || len(pkts) != 2 {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decoding: %v allocations per run", n)
	}
}

func BenchmarkResponsesEncoder(b *testing.B) {
	p := decode(b, data6(b))
	var e ResponsesEncoder
	e.B = make([]byte, 0, 1<<20)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			e.Reset()
		}
		e.Add(p, 64)
	}
}

func BenchmarkReadFrame(b *testing.B) {
	var e ResponsesEncoder
	for range 32 {
		e.Add(decode(b, data6(b)), 64)
	}
	e.Flush()
	r := bytes.NewReader(e.B)
	fr := NewFrameReader(r, FrameResponses)
	pkts := make([]capture.Packet, 0, 32)
	b.ReportAllocs()
	b.SetBytes(int64(len(e.B)))
	for b.Loop() {
		r.Reset(e.B)
		f, err := fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if pkts, err = DecodeResponses(f.Body, pkts[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzReadFrame feeds arbitrary streams to the frame reader and the body
// decoders: they must not panic, must report violations as ErrProtocol or
// I/O errors, and what they accept must encode back to the same bytes.
func FuzzReadFrame(f *testing.F) {
	add, _ := AppendClientAdd(nil, ep("198.18.0.1:40000"), ep("198.19.0.2:80"))
	rm, _ := AppendClientRemove(nil, ep("[fd00:198:18::1]:1"), ep("[fd00:198:18::2]:80"))
	var e ResponsesEncoder
	e.Add(decode(f, synAck4(f)), 0)
	e.Add(decode(f, data6(f)), 5)
	e.Flush()
	f.Add(add)
	f.Add(append(append([]byte{}, add...), rm...))
	f.Add(e.B)
	f.Add([]byte{3, 0, 0xff, 0xff})
	f.Add([]byte{3, 0, 0, 2, 0, 0})
	f.Add([]byte{9, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in), FrameClientAdd, FrameClientRemove, FrameResponses)
		off := 0
		for {
			fm, err := fr.ReadFrame()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			raw := in[off : off+FrameHeaderLen+len(fm.Body)]
			off += len(raw)
			if len(fm.Body) > fm.Type.maxBody() {
				t.Fatalf("%v body of %d bytes", fm.Type, len(fm.Body))
			}
			switch fm.Type {
			case FrameClientAdd, FrameClientRemove:
				c, tg, err := ParseClient(fm.Body)
				if err != nil {
					t.Fatalf("ReadFrame accepted a body ParseClient rejects: %v", err)
				}
				re, err := appendClientFrame(nil, fm.Type, c, tg)
				if err != nil {
					t.Fatal(err)
				}
				re[1] = raw[1] // reserved: ignored on receive
				if !bytes.Equal(re, raw) {
					t.Fatalf("re-encoded %x, read %x", re, raw)
				}
			case FrameResponses:
				pkts, err := DecodeResponses(fm.Body, nil)
				if err != nil {
					if !errors.Is(err, ErrProtocol) {
						t.Fatalf("DecodeResponses: %v", err)
					}
					continue
				}
				var e ResponsesEncoder
				for i := range pkts {
					if err := e.AddRecord(pkts[i].Data); err != nil {
						t.Fatal(err)
					}
					_ = pkts[i].PayloadLen()
					_ = pkts[i].Flow()
				}
				e.Flush()
				if len(pkts) == 0 {
					e.B = append(e.B, byte(FrameResponses), 0, 0, 2, 0, 0)
				}
				e.B[1] = raw[1]
				if !bytes.Equal(e.B, raw) {
					t.Fatalf("re-encoded %x, read %x", e.B, raw)
				}
			}
		}
	})
}
