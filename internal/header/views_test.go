package header_test

import (
	"bytes"
	"testing"

	"github.com/shadowcopy/tcpcopy/internal/header"
)

func v4Header() header.IPv4 {
	h := header.IPv4{
		0x46, 0x00, 0x00, 0x30, // IHL 6, total length 48
		0xab, 0xcd, 0x40, 0x00, // ID, DF
		0x3f, 0x06, 0x00, 0x00, // TTL 63, TCP, checksum
		198, 18, 0, 1,
		198, 19, 0, 2,
		1, 1, 1, 0, // NOP NOP NOP End
	}
	h.SetChecksum(h.ComputeChecksum())
	return h
}

func TestIPv4View(t *testing.T) {
	h := v4Header()
	if h.IHL() != 24 || h.TotalLen() != 48 || h.ID() != 0xabcd || h.TTL() != 63 || h.Protocol() != header.ProtoTCP {
		t.Errorf("fields: IHL %d, total %d, ID %#x, TTL %d, proto %d", h.IHL(), h.TotalLen(), h.ID(), h.TTL(), h.Protocol())
	}
	if !bytes.Equal(h.Src(), []byte{198, 18, 0, 1}) || !bytes.Equal(h.Dst(), []byte{198, 19, 0, 2}) {
		t.Errorf("addresses %v %v", h.Src(), h.Dst())
	}
	if got := header.Fold(header.Sum(0, h[:h.IHL()])); got != 0xffff {
		t.Errorf("header with ComputeChecksum sums to %#x", got)
	}
	// ComputeChecksum ignores what is in the checksum field.
	cs := h.Checksum()
	h.SetChecksum(0x1234)
	if h.ComputeChecksum() != cs {
		t.Errorf("ComputeChecksum depends on the old checksum")
	}
	h.SetChecksum(cs)

	for _, n := range []int{0, 20, 1500, 0xffff} {
		h.SetTotalLen(n)
		if h.TotalLen() != n || h.Checksum() != h.ComputeChecksum() {
			t.Errorf("SetTotalLen(%d): total %d, checksum %#x, want %#x", n, h.TotalLen(), h.Checksum(), h.ComputeChecksum())
		}
	}
	// Bytes beyond IHL (the TCP header) do not count.
	long := append(append(header.IPv4(nil), h...), 0xff, 0xff)
	if long.ComputeChecksum() != h.ComputeChecksum() {
		t.Errorf("ComputeChecksum read past IHL")
	}
}

func TestIPv4IsFragment(t *testing.T) {
	for _, tc := range []struct {
		flags uint16
		want  bool
	}{
		{0x0000, false},
		{0x4000, false}, // DF
		{0x8000, false}, // reserved bit
		{0x2000, true},  // MF
		{0x0001, true},  // offset 8
		{0x1fff, true},
		{0x6000, true},
	} {
		h := v4Header()
		h[6], h[7] = byte(tc.flags>>8), byte(tc.flags)
		if got := h.IsFragment(); got != tc.want {
			t.Errorf("flags %#04x: IsFragment = %v, want %v", tc.flags, got, tc.want)
		}
	}
}

func TestIPv6View(t *testing.T) {
	h := make(header.IPv6, 40)
	h[0], h[4], h[5], h[6], h[7] = 0x60, 0x01, 0x02, 44, 9
	h[8], h[39] = 0xfd, 0x02
	if h.PayloadLen() != 0x102 || h.NextHeader() != 44 || h.HopLimit() != 9 {
		t.Errorf("fields: payload %d, next %d, hop limit %d", h.PayloadLen(), h.NextHeader(), h.HopLimit())
	}
	if len(h.Src()) != 16 || h.Src()[0] != 0xfd || len(h.Dst()) != 16 || h.Dst()[15] != 2 {
		t.Errorf("addresses % x, % x", h.Src(), h.Dst())
	}
	h.SetPayloadLen(0xfffe)
	if h.PayloadLen() != 0xfffe {
		t.Errorf("SetPayloadLen: %d", h.PayloadLen())
	}
}

func TestTCPView(t *testing.T) {
	b := header.TCP{
		0x9c, 0x40, 0x00, 0x50,
		0x01, 0x02, 0x03, 0x04,
		0xf0, 0x00, 0x00, 0x0f,
		0x60, 0x12, 0x01, 0x00,
		0xbe, 0xef, 0x00, 0x07,
		2, 4, 5, 0xb4,
		'p',
	}
	if b.SrcPort() != 40000 || b.DstPort() != 80 || b.Seq() != 0x01020304 || b.Ack() != 0xf000000f ||
		b.DataOffset() != 24 || b.Flags() != 0x12 || b.Window() != 256 || b.Checksum() != 0xbeef || b.Urgent() != 7 {
		t.Errorf("fields wrong: %d %d %#x %#x %d %#x %d %#x %d", b.SrcPort(), b.DstPort(), b.Seq(), b.Ack(),
			b.DataOffset(), b.Flags(), b.Window(), b.Checksum(), b.Urgent())
	}
	if !bytes.Equal(b.Options(), []byte{2, 4, 5, 0xb4}) {
		t.Errorf("Options = % x", b.Options())
	}
	if old := b.Set16(14, 0xffff); old != 256 || b.Window() != 0xffff {
		t.Errorf("Set16: old %d, now %d", old, b.Window())
	}
	if old := b.Set32(4, 7); old != 0x01020304 || b.Seq() != 7 {
		t.Errorf("Set32: old %#x, now %d", old, b.Seq())
	}
	b.SetChecksum(1)
	if b.Checksum() != 1 || b[12] != 0x60 || b[24] != 'p' {
		t.Errorf("SetChecksum touched other bytes")
	}
}

func TestOption(t *testing.T) {
	ts := []byte{8, 10, 1, 2, 3, 4, 5, 6, 7, 8}
	syn := append([]byte{2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 1}, ts...)
	syn = append(syn, 1, 3, 3, 7)
	for _, tc := range []struct {
		name  string
		opts  []byte
		kind  uint8
		want  []byte
		found bool
		valid bool
	}{
		{"empty", nil, header.OptMSS, nil, false, true},
		{"MSS in SYN", syn, header.OptMSS, []byte{5, 0xb4}, true, true},
		{"SACK permitted", syn, header.OptSACKPermitted, []byte{}, true, true},
		{"timestamps", syn, header.OptTimestamps, ts[2:], true, true},
		{"window scale", syn, header.OptWindowScale, []byte{7}, true, true},
		{"absent", syn, header.OptSACK, nil, false, true},
		{"NOPs only", []byte{1, 1, 1, 1}, header.OptMSS, nil, false, true},
		{"after End", []byte{0, 2, 4, 5, 0xb4}, header.OptMSS, nil, false, true},
		{"End stops a malformed tail", []byte{1, 0, 2, 0}, header.OptMSS, nil, false, true},
		{"searching NOP finds nothing", []byte{1, 1}, header.OptNOP, nil, false, true},
		{"length 0", []byte{2, 0, 5, 0xb4}, header.OptMSS, nil, false, false},
		{"length 1", []byte{2, 1, 5, 0xb4}, header.OptMSS, nil, false, false},
		{"past end", []byte{1, 8, 10, 0, 0, 0}, header.OptTimestamps, nil, false, false},
		{"no length byte", []byte{1, 1, 1, 8}, header.OptTimestamps, nil, false, false},
		{"found before the malformed part", []byte{2, 4, 5, 0xb4, 8, 99}, header.OptMSS, []byte{5, 0xb4}, true, false},
		{"not found past the malformed part", []byte{3, 1, 2, 4, 5, 0xb4}, header.OptMSS, nil, false, false},
		{"unknown kind skipped", []byte{99, 3, 0, 2, 4, 1, 2}, header.OptMSS, []byte{1, 2}, true, true},
		{"first of two", []byte{2, 4, 0, 1, 2, 4, 0, 2}, header.OptMSS, []byte{0, 1}, true, true},
	} {
		got, found := header.Option(tc.opts, tc.kind)
		if found != tc.found || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: Option(% x, %d) = % x, %v; want % x, %v", tc.name, tc.opts, tc.kind, got, found, tc.want, tc.found)
		}
		if v := header.ValidOptions(tc.opts); v != tc.valid {
			t.Errorf("%s: ValidOptions(% x) = %v, want %v", tc.name, tc.opts, v, tc.valid)
		}
	}
}

// FuzzOptions: the option walkers never panic, a found value lies inside
// the options, and in a valid list every option of a kind is found.
func FuzzOptions(f *testing.F) {
	f.Add([]byte{2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 3, 7})
	f.Add([]byte{1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 0})
	f.Add([]byte{0, 0xff})
	f.Fuzz(func(t *testing.T, opts []byte) {
		valid := header.ValidOptions(opts)
		for kind := range 256 {
			v, ok := header.Option(opts, uint8(kind))
			if !ok {
				if v != nil {
					t.Fatalf("kind %d: not found but value % x", kind, v)
				}
				continue
			}
			if kind == header.OptEnd || kind == header.OptNOP {
				t.Fatalf("kind %d found as a TLV option", kind)
			}
			// The value sits in opts, right after its kind and length bytes.
			start := cap(opts) - cap(v)
			if start < 2 || start+len(v) > len(opts) || opts[start-2] != uint8(kind) || int(opts[start-1]) != len(v)+2 {
				t.Fatalf("kind %d: value % x at %d is not where the options put it", kind, v, start)
			}
		}
		if valid {
			// Every TLV up to End is findable unless an earlier one of the
			// same kind shadows it.
			seen := map[uint8]bool{}
			for i := 0; i < len(opts) && opts[i] != header.OptEnd; {
				if opts[i] == header.OptNOP {
					i++
					continue
				}
				k, l := opts[i], int(opts[i+1])
				if !seen[k] {
					v, ok := header.Option(opts, k)
					if !ok || !bytes.Equal(v, opts[i+2:i+l]) {
						t.Fatalf("valid list: option %d at %d not found", k, i)
					}
				}
				seen[k] = true
				i += l
			}
		}
	})
}
