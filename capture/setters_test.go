package capture_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// checkAgainstReference holds the incremental checksums of p to a full
// recompute on a copy: the bytes must be identical, not just equivalent.
func checkAgainstReference(t testing.TB, what string, p *capture.Packet) {
	t.Helper()
	ref := clone(p.Data)
	var r capture.Packet
	if err := r.Decode(ref); err != nil {
		t.Fatalf("%s: the rewritten packet no longer decodes: %v", what, err)
	}
	r.ComputeChecksums()
	if !bytes.Equal(p.Data, ref) {
		t.Fatalf("%s: incremental checksums differ from a full recompute:\n got % x\nwant % x", what, p.Data, ref)
	}
	if !p.ChecksumsValid() {
		t.Fatalf("%s: ChecksumsValid = false", what)
	}
}

// fields is every value a setter can change, to check that a setter changes
// its field and nothing else.
type fields struct {
	src, dst         netip.Addr
	sport, dport     uint16
	seq, ack         capture.Seq
	flags            uint8
	window           uint16
	dataOffset       int
	mss              uint16
	mssOK            bool
	tsval, tsecr     uint32
	tsOK             bool
	ws               uint8
	wsOK, sack       bool
	payload          string
	ipHdr, dataLen   int
	payloadLen       int
	v6               bool
	ttl, proto, tos  uint8
	ipID, ipFragInfo uint16
}

func fieldsOf(p *capture.Packet) fields {
	f := fields{
		src: p.Src(), dst: p.Dst(), sport: p.SrcPort(), dport: p.DstPort(), seq: p.Seq(), ack: p.Ack(),
		flags: p.Flags(), window: p.Window(), dataOffset: p.DataOffset(), sack: p.SACKPermitted(),
		payload: string(p.Payload()), ipHdr: p.IPHeaderLen(), dataLen: len(p.Data), payloadLen: p.PayloadLen(), v6: p.IsIPv6(),
	}
	f.mss, f.mssOK = p.MSS()
	f.tsval, f.tsecr, f.tsOK = p.Timestamps()
	f.ws, f.wsOK = p.WindowScale()
	if !f.v6 {
		f.tos, f.ipID, f.ipFragInfo, f.ttl, f.proto = p.Data[1], uint16(p.Data[4])<<8|uint16(p.Data[5]),
			uint16(p.Data[6])<<8|uint16(p.Data[7]), p.Data[8], p.Data[9]
	} else {
		f.ttl, f.proto = p.Data[7], p.Data[6]
	}
	return f
}

type rewriteBase struct {
	name string
	b    []byte
}

// rewriteBases are packets to rewrite: both families, options at even and
// odd offsets, odd and even payloads, IPv4 options and IPv6 extensions.
func rewriteBases(t testing.TB) []rewriteBase {
	odd := []byte("odd")
	even := bytes.Repeat([]byte{0xff, 0x00, 0x5a}, 500)[:1400]
	return []rewriteBase{
		{"v4 SYN", segment(t, capture.Segment{Src: cli4, Dst: srv4, Seq: 1, Flags: capture.FlagSYN, Window: 64240,
			Options: synOptions(1460, 0xfffffffe, 0, 7)})},
		{"v6 SYN", segment(t, capture.Segment{Src: cli6, Dst: srv6, Seq: 1, Flags: capture.FlagSYN, Window: 64800,
			Options: synOptions(1440, 3, 0, 9)})},
		{"v4 odd timestamps, odd payload", segment(t, capture.Segment{Src: cli4, Dst: srv4, Seq: 77, Ack: 99, Flags: capture.FlagACK | capture.FlagPSH,
			Window: 1, Options: oddTSOptions(0x12345678, 0x9abcdef0), Payload: odd})},
		{"v6 odd timestamps, even payload", segment(t, capture.Segment{Src: cli6, Dst: srv6, Seq: 77, Ack: 99, Flags: capture.FlagACK,
			Options: oddTSOptions(0xffffffff, 0), Payload: even})},
		{"v4 odd MSS, IP options", withIPv4Options(segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagSYN,
			Options: oddMSSOptions(536)}), []byte{1, 1, 1, 1, 1, 1, 1, 0})},
		{"v6 odd MSS, odd payload", segment(t, capture.Segment{Src: cli6, Dst: srv6, Flags: capture.FlagSYN | capture.FlagECE | capture.FlagCWR,
			Options: oddMSSOptions(1220), Payload: []byte{0xff}})},
		{"v6 extension headers", handV6Ext()},
		{"v4 no options, odd payload", segment(t, capture.Segment{Src: alt4, Dst: srv4, Flags: capture.FlagACK, Payload: odd})},
	}
}

func TestSetters(t *testing.T) {
	type setter struct {
		name  string
		apply func(p *capture.Packet) bool // reports whether the field was there to set
		want  func(f *fields)
	}
	setters := []setter{
		{"SetSrcPort", func(p *capture.Packet) bool { p.SetSrcPort(0xfffe); return true }, func(f *fields) { f.sport = 0xfffe }},
		{"SetSrcPort 0", func(p *capture.Packet) bool { p.SetSrcPort(0); return true }, func(f *fields) { f.sport = 0 }},
		{"SetDstPort", func(p *capture.Packet) bool { p.SetDstPort(8080); return true }, func(f *fields) { f.dport = 8080 }},
		{"SetSeq", func(p *capture.Packet) bool { p.SetSeq(0xdeadbeef); return true }, func(f *fields) { f.seq = 0xdeadbeef }},
		{"SetSeq 0", func(p *capture.Packet) bool { p.SetSeq(0); return true }, func(f *fields) { f.seq = 0 }},
		{"SetAck", func(p *capture.Packet) bool { p.SetAck(0xffffffff); return true }, func(f *fields) { f.ack = 0xffffffff }},
		{"SetFlags", func(p *capture.Packet) bool { p.SetFlags(capture.FlagRST | capture.FlagACK); return true },
			func(f *fields) { f.flags = capture.FlagRST | capture.FlagACK }},
		{"SetFlags all", func(p *capture.Packet) bool { p.SetFlags(0xff); return true }, func(f *fields) { f.flags = 0xff }},
		{"SetWindow", func(p *capture.Packet) bool { p.SetWindow(0); return true }, func(f *fields) { f.window = 0 }},
		{"SetWindow max", func(p *capture.Packet) bool { p.SetWindow(0xffff); return true }, func(f *fields) { f.window = 0xffff }},
		{"SetMSS", func(p *capture.Packet) bool { return p.SetMSS(1200) }, func(f *fields) { f.mss = 1200 }},
		{"SetMSS max", func(p *capture.Packet) bool { return p.SetMSS(0xffff) }, func(f *fields) { f.mss = 0xffff }},
		{"SetTimestamps", func(p *capture.Packet) bool { return p.SetTimestamps(0x01020304, 0xa0b0c0d0) },
			func(f *fields) { f.tsval, f.tsecr = 0x01020304, 0xa0b0c0d0 }},
		{"SetTimestamps zero", func(p *capture.Packet) bool { return p.SetTimestamps(0, 0) }, func(f *fields) { f.tsval, f.tsecr = 0, 0 }},
		{"SetSrc", func(p *capture.Packet) bool {
			a := alt4.Addr()
			if p.IsIPv6() {
				a = alt6.Addr()
			}
			return p.SetSrc(a) == nil
		}, func(f *fields) {
			f.src = alt4.Addr()
			if f.v6 {
				f.src = alt6.Addr()
			}
		}},
		{"SetDst", func(p *capture.Packet) bool {
			a := netip.MustParseAddr("198.19.0.0")
			if p.IsIPv6() {
				a = netip.MustParseAddr("fd00:198:18:ffff:ffff:ffff:ffff:ffff")
			}
			return p.SetDst(a) == nil
		}, func(f *fields) {
			f.dst = netip.MustParseAddr("198.19.0.0")
			if f.v6 {
				f.dst = netip.MustParseAddr("fd00:198:18:ffff:ffff:ffff:ffff:ffff")
			}
		}},
		{"SetDst same", func(p *capture.Packet) bool { return p.SetDst(p.Dst()) == nil }, func(f *fields) {}},
	}
	for _, base := range rewriteBases(t) {
		for _, s := range setters {
			t.Run(base.name+"/"+s.name, func(t *testing.T) {
				b := clone(base.b)
				p := decoded(t, b)
				if !p.ChecksumsValid() {
					t.Fatal("base packet has bad checksums")
				}
				want := fieldsOf(p)
				present := s.apply(p)
				if !present {
					// The option is absent: nothing may change.
					if !bytes.Equal(p.Data, base.b) {
						t.Fatalf("setter reported no option but changed the packet")
					}
					if s.name == "SetMSS" || s.name == "SetMSS max" {
						if _, ok := p.MSS(); ok {
							t.Fatalf("SetMSS reported no option, MSS found one")
						}
					} else if _, _, ok := p.Timestamps(); ok {
						t.Fatalf("%s reported no option, Timestamps found one", s.name)
					}
					return
				}
				s.want(&want)
				if got := fieldsOf(p); got != want {
					t.Errorf("fields after %s:\n got %+v\nwant %+v", s.name, got, want)
				}
				checkAgainstReference(t, s.name, p)
				// The rewritten bytes decode to the same fields.
				if got := fieldsOf(decoded(t, clone(p.Data))); got != want {
					t.Errorf("fields after re-decoding:\n got %+v\nwant %+v", got, want)
				}
			})
		}
	}
}

func TestSetAddrFamilyMismatch(t *testing.T) {
	v4 := segment(t, capture.Segment{Src: cli4, Dst: srv4, Flags: capture.FlagACK, Payload: []byte("x")})
	v6 := segment(t, capture.Segment{Src: cli6, Dst: srv6, Flags: capture.FlagACK, Payload: []byte("x")})
	mapped := netip.MustParseAddr("::ffff:198.18.0.9")
	for _, tc := range []struct {
		name string
		b    []byte
		a    netip.Addr
	}{
		{"v6 address into v4 packet", v4, alt6.Addr()},
		{"v4 address into v6 packet", v6, alt4.Addr()},
		// A v4-mapped address is IPv6 to netip, but SetSrc/SetDst refuse it
		// for both families: it is not an IPv4 address, and RFC 4291
		// section 2.5.5.2 mapped addresses do not belong on the wire.
		{"v4-mapped address into v4 packet", v4, mapped},
		{"v4-mapped address into v6 packet", v6, mapped},
		{"invalid address into v4 packet", v4, netip.Addr{}},
		{"invalid address into v6 packet", v6, netip.Addr{}},
	} {
		for _, dst := range []bool{false, true} {
			p := decoded(t, clone(tc.b))
			var err error
			if dst {
				err = p.SetDst(tc.a)
			} else {
				err = p.SetSrc(tc.a)
			}
			if !errors.Is(err, capture.ErrFamily) {
				t.Errorf("%s (dst %v): err = %v, want ErrFamily", tc.name, dst, err)
			}
			if !bytes.Equal(p.Data, tc.b) {
				t.Errorf("%s (dst %v): packet changed on error", tc.name, dst)
			}
		}
	}

	// A zone is dropped: the wire has no room for it.
	p := decoded(t, clone(v6))
	if err := p.SetDst(netip.MustParseAddr("fd00:198:18::9%eth0")); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Dst(), netip.MustParseAddr("fd00:198:18::9"); got != want {
		t.Errorf("Dst = %v, want %v", got, want)
	}
	checkAgainstReference(t, "SetDst with zone", p)
}

// Every window and flags value, and so every checksum the setters can land
// on, including the ones where the one's-complement result is zero.
func TestSettersExhaustive(t *testing.T) {
	for _, base := range rewriteBases(t)[:4] {
		t.Run(base.name, func(t *testing.T) {
			p := decoded(t, clone(base.b))
			ref := make([]byte, len(p.Data))
			var r capture.Packet
			for w := range 1 << 16 {
				p.SetWindow(uint16(w))
				copy(ref, p.Data)
				if err := r.Decode(ref); err != nil {
					t.Fatal(err)
				}
				r.ComputeChecksums()
				if !bytes.Equal(p.Data, ref) {
					t.Fatalf("SetWindow(%#x): got % x, want % x", w, p.Data, ref)
				}
			}
			for f := range 1 << 8 {
				p.SetFlags(uint8(f))
				if p.Flags() != uint8(f) || p.DataOffset() != len(p.TCP()) {
					t.Fatalf("SetFlags(%#x) = %#x, data offset %d", f, p.Flags(), p.DataOffset())
				}
				checkAgainstReference(t, "SetFlags", p)
			}
		})
	}
}

// A long random chain of rewrites never drifts from the full recompute.
func TestSettersRandomChain(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, base := range rewriteBases(t) {
		t.Run(base.name, func(t *testing.T) {
			p := decoded(t, clone(base.b))
			for i := range 2000 {
				applyRandomSetter(p, rng.Uint32(), rng.Uint64())
				checkAgainstReference(t, "step "+strconv.Itoa(i), p)
			}
		})
	}
}

// applyRandomSetter applies the setter op&0xff picks, with values from v,
// keeping addresses inside the test ranges; op&0x100 asks for an address of
// the wrong family.
func applyRandomSetter(p *capture.Packet, op uint32, v uint64) {
	switch op & 0xff % 10 {
	case 0:
		p.SetSrcPort(uint16(v))
	case 1:
		p.SetDstPort(uint16(v))
	case 2:
		p.SetSeq(capture.Seq(v))
	case 3:
		p.SetAck(capture.Seq(v))
	case 4:
		p.SetFlags(uint8(v))
	case 5:
		p.SetWindow(uint16(v))
	case 6:
		p.SetMSS(uint16(v))
	case 7:
		p.SetTimestamps(uint32(v), uint32(v>>32))
	case 8:
		p.SetSrc(testAddr(p.IsIPv6() != (op&0x100 != 0), v))
	case 9:
		p.SetDst(testAddr(p.IsIPv6() != (op&0x100 != 0), v))
	}
}

// testAddr makes an address from bits in 198.18.0.0/15 or fd00:198:18::/48.
func testAddr(v6 bool, bits uint64) netip.Addr {
	if !v6 {
		x := uint32(bits) & (1<<17 - 1)
		return netip.AddrFrom4([4]byte{198, 18 | byte(x>>16), byte(x >> 8), byte(x)})
	}
	a := [16]byte{0xfd, 0x00, 0x01, 0x98, 0x00, 0x18}
	for i := 6; i < 16; i++ {
		a[i] = byte(bits >> (8 * (i % 8)))
	}
	a[15] ^= byte(bits >> 56)
	return netip.AddrFrom16(a)
}

func TestComputeChecksumsRepairs(t *testing.T) {
	for _, base := range rewriteBases(t) {
		t.Run(base.name, func(t *testing.T) {
			p := decoded(t, clone(base.b))
			corrupt := []int{len(p.Data) - 1, p.IPHeaderLen() + 16, p.IPHeaderLen() + 4, 9 + 3*btoi(p.IsIPv6())}
			if !p.IsIPv6() {
				corrupt = append(corrupt, 10, 1)
			}
			for _, off := range corrupt {
				p.Data[off] ^= 0x40
				if p.ChecksumsValid() {
					t.Errorf("ChecksumsValid after flipping a bit of byte %d", off)
				}
				p.Data[off] ^= 0x40
			}
			if !p.ChecksumsValid() || !bytes.Equal(p.Data, base.b) {
				t.Fatal("restoring the bytes did not restore the packet")
			}
			// Zero both checksums and recompute.
			p.Data[p.IPHeaderLen()+16], p.Data[p.IPHeaderLen()+17] = 0, 0
			if !p.IsIPv6() {
				p.Data[10], p.Data[11] = 0, 0
			}
			p.ComputeChecksums()
			if !bytes.Equal(p.Data, base.b) {
				t.Errorf("ComputeChecksums:\n got % x\nwant % x", p.Data, base.b)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
