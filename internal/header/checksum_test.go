package header_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/shadowcopy/tcpcopy/internal/header"
)

// naiveSum is RFC 1071 by the book: 16-bit words, end-around carry at each
// step, an odd last byte padded with zero on the right. Its result is 0 only
// for all-zero input, as with Fold(Sum(...)).
func naiveSum(start uint16, b []byte) uint16 {
	s := uint32(start)
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// RFC 1071 section 3 works this example: the folded sum is ddf2.
func TestSumRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := header.Fold(header.Sum(0, b)); got != 0xddf2 {
		t.Errorf("sum = %#04x, want 0xddf2", got)
	}
	if got := header.Checksum(b); got != 0x220d {
		t.Errorf("Checksum = %#04x, want 0x220d", got)
	}
}

func TestSumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 300 {
		for range 20 {
			b := randBytes(rng, n)
			if rng.IntN(4) == 0 {
				for i := range b {
					b[i] = 0xff // long runs of carries
				}
			}
			start := uint16(rng.Uint32())
			if start == 0 {
				start = 1
			}
			got := header.Fold(header.Sum(uint64(start), b))
			if want := naiveSum(start, b); got != want {
				t.Fatalf("len %d start %#x: Fold(Sum) = %#04x, naive %#04x", n, start, got, want)
			}
			// Summing in even-length pieces is summing the whole.
			cut := rng.IntN(n+1) &^ 1
			if got2 := header.Fold(header.Sum(header.Sum(uint64(start), b[:cut]), b[cut:])); got2 != got {
				t.Fatalf("len %d cut %d: piecewise sum %#04x, whole %#04x", n, cut, got2, got)
			}
		}
	}
	if got := header.Fold(header.Sum(0, nil)); got != 0 {
		t.Errorf("sum of nothing = %#x", got)
	}
	if got := header.Fold(header.Sum(0, []byte{0xab})); got != 0xab00 {
		t.Errorf("odd byte sum = %#x, want 0xab00 (padded on the right)", got)
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want uint16
	}{
		{0, 0},
		{0xffff, 0xffff},
		{0x10000, 1},
		{0x1ffff, 1},
		{0x2fffd, 0xffff}, // 0xfffd + 2
		{0xffffffffffffffff, 0xffff},
		{0x0001000000000000, 1},
	} {
		if got := header.Fold(tc.in); got != tc.want {
			t.Errorf("Fold(%#x) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// A checksum written into the data makes the whole sum to 0xffff.
func TestChecksumVerifies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 2; n < 200; n += 2 {
		b := randBytes(rng, n)
		at := rng.IntN(n/2) * 2
		b[at], b[at+1] = 0, 0
		binary.BigEndian.PutUint16(b[at:], header.Checksum(b))
		if got := header.Fold(header.Sum(0, b)); got != 0xffff && !allZero(b) {
			t.Fatalf("len %d: sum with checksum = %#x", n, got)
		}
	}
}

func TestPseudoSum(t *testing.T) {
	src4, dst4 := []byte{198, 18, 0, 1}, []byte{198, 19, 255, 254}
	want := naiveSum(0, append(append(append([]byte(nil), src4...), dst4...), 0, 6, 0x05, 0xdc))
	if got := header.Fold(header.PseudoSum(src4, dst4, header.ProtoTCP, 1500)); got != want {
		t.Errorf("v4 pseudo sum %#x, want %#x", got, want)
	}
	src6 := []byte{0xfd, 0, 0x01, 0x98, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	dst6 := []byte{0xfd, 0, 0x01, 0x98, 0, 0x18, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2}
	// RFC 8200 section 8.1: 32-bit length, 24 zero bits, next header.
	b := append(append(append([]byte(nil), src6...), dst6...), 0, 1, 0x00, 0x10, 0, 0, 0, 6)
	if got := header.Fold(header.PseudoSum(src6, dst6, header.ProtoTCP, 0x10010)); got != naiveSum(0, b) {
		t.Errorf("v6 pseudo sum %#x, want %#x", got, naiveSum(0, b))
	}
}

// The incremental updates (RFC 1624) land on the same bytes a full
// recompute gives. The one exception is the one's-complement zero: when the
// data becomes all zeros a recompute gives 0xffff and an update 0x0000 (RFC
// 1624 section 3); real headers are never all zero.
func TestUpdateMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	check := func(what string, b []byte, cs uint16) {
		t.Helper()
		want := header.Checksum(b)
		if allZero(b) {
			if cs != 0 && cs != 0xffff {
				t.Fatalf("%s on all-zero data: %#x is not a zero", what, cs)
			}
			return
		}
		if cs != want {
			t.Fatalf("%s: incremental %#04x, recompute %#04x (data % x)", what, cs, want, b)
		}
	}
	for iter := range 20000 {
		n := 4 + rng.IntN(64)
		b := randBytes(rng, n)
		switch iter % 5 {
		case 0:
			clear(b) // start from (nearly) all zeros
			b[rng.IntN(n)] = byte(rng.Uint32())
		case 1:
			for i := range b {
				b[i] = 0xff
			}
		}
		cs := header.Checksum(b)
		for range 8 {
			switch rng.IntN(3) {
			case 0:
				at := rng.IntN(n/2) * 2
				old := binary.BigEndian.Uint16(b[at:])
				nw := uint16(rng.Uint32())
				if rng.IntN(4) == 0 {
					nw = []uint16{0, 0xffff, old, ^old}[rng.IntN(4)]
				}
				binary.BigEndian.PutUint16(b[at:], nw)
				cs = header.Update16(cs, old, nw)
				check("Update16", b, cs)
			case 1:
				at := rng.IntN((n-2)/2) * 2
				old := binary.BigEndian.Uint32(b[at:])
				nw := rng.Uint32()
				if rng.IntN(4) == 0 {
					nw = []uint32{0, 0xffffffff, old, ^old}[rng.IntN(4)]
				}
				binary.BigEndian.PutUint32(b[at:], nw)
				cs = header.Update32(cs, old, nw)
				check("Update32", b, cs)
			case 2:
				at := rng.IntN(n/2) * 2
				l := (rng.IntN(n-at) + 1) &^ 1
				if l == 0 {
					l = 2
				}
				nw := randBytes(rng, l)
				if rng.IntN(4) == 0 {
					clear(nw)
				}
				old := append([]byte(nil), b[at:at+l]...)
				cs = header.UpdateBytes(cs, old, nw)
				copy(b[at:], nw)
				check("UpdateBytes", b, cs)
			}
		}
	}
}

// RFC 1624 section 4's example: a header checksum of 0xdd2f with a word
// changing from 0x5555 to 0x3285 becomes 0x0000 (eqn. 3), never 0xffff.
func TestUpdate16RFC1624Example(t *testing.T) {
	if got := header.Update16(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Errorf("Update16 = %#04x, want 0x0000", got)
	}
	if got := header.Update32(0xdd2f, 0x00005555, 0x00003285); got != 0x0000 {
		t.Errorf("Update32 = %#04x, want 0x0000", got)
	}
	if got := header.UpdateBytes(0xdd2f, []byte{0x55, 0x55}, []byte{0x32, 0x85}); got != 0x0000 {
		t.Errorf("UpdateBytes = %#04x, want 0x0000", got)
	}
	// No change, no change.
	if got := header.UpdateBytes(0x1234, []byte{1, 2, 3, 4}, []byte{1, 2, 3, 4}); got != 0x1234 {
		t.Errorf("UpdateBytes with equal bytes = %#04x", got)
	}
}

func FuzzSum(f *testing.F) {
	f.Add(uint16(0), []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7})
	f.Add(uint16(0xffff), bytes.Repeat([]byte{0xff}, 33))
	f.Fuzz(func(t *testing.T, start uint16, b []byte) {
		if start == 0 {
			start = 0xffff // one's-complement zero, the non-zero form
		}
		if got, want := header.Fold(header.Sum(uint64(start), b)), naiveSum(start, b); got != want {
			t.Fatalf("Fold(Sum(%#x, % x)) = %#x, naive %#x", start, b, got, want)
		}
	})
}
