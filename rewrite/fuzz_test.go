package rewrite

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// FuzzParseTransfer: no input panics; errors are package-prefixed; a map
// that parses prints in a form that parses to the same routes, every one
// of them usable.
func FuzzParseTransfer(f *testing.F) {
	for _, s := range []string{
		"80-198.18.1.2:8080",
		"198.18.0.2:80-198.18.1.2:80, 3306-198.18.1.3:3306",
		"[fd00:198:18::2]:80-[fd00:198:18:1::2]:80",
		"0.0.0.0:80-198.18.1.2:80,[::]:80-[fd00:198:18:1::2]:80",
		"80@02:00:5e:10:00:01-198.18.1.2:80@02-00-5e-10-00-01",
		"198.18.0.2:80@02-00-5E-10-00-01-198.18.1.2:80",
		"80-198.18.1.2", "80-fd00:198:18::2:80", "[fd00::1%eth0]:80-[fd00::2]:80", "80-,", "-", "@-@", "[", "]:-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, err := ParseTransfer(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "rewrite: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		routes := tr.Routes()
		if len(routes) == 0 || len(tr.Targets()) == 0 {
			t.Fatalf("ParseTransfer(%q) succeeded with no routes", s)
		}
		again, err := ParseTransfer(tr.String())
		if err != nil {
			t.Fatalf("ParseTransfer(%q).String() = %q does not parse: %v", s, tr.String(), err)
		}
		if !slices.Equal(again.Routes(), routes) {
			t.Fatalf("%q: round trip gave %v, want %v", s, again.Routes(), routes)
		}
		for _, r := range routes {
			if err := r.check(); err != nil {
				t.Fatalf("%q: route %v: %v", s, r, err)
			}
			if _, ok := tr.Match(r.Target.Addr(), r.Online.Port()); !ok && !r.Online.Addr().IsValid() {
				t.Fatalf("%q: any-address route %v does not match", s, r)
			}
		}
	})
}

// FuzzParseClientPool: no input panics; a pool that parses prints in a
// form that parses to the same pool; it never hands out an excluded
// address, nor one outside itself.
func FuzzParseClientPool(f *testing.F) {
	for _, s := range []string{
		"198.18.1.x", "198.18.1.0/24,fd00:198:18::/64", "198.18.1.10-198.18.1.20, 198.18.1.15",
		"fd00:198:18::/48", "198.18.1.0/31", "fd00:198:18::/127", "198.18.1.*", "198.18.1.5/24",
		"::ffff:198.18.1.7", "198.18.1.1-fd00:198:18::1", ",", "x", "-", "/",
	} {
		f.Add(s, []byte{198, 18, 1, 3}, []byte{})
	}
	f.Add("198.18.1.0/30", []byte{198, 18, 1, 1}, []byte{198, 18, 1, 2})
	f.Add("fd00:198:18::1-fd00:198:18::3", netip.MustParseAddr("fd00:198:18::2").AsSlice(), []byte{})
	f.Fuzz(func(t *testing.T, s string, x1, x2 []byte) {
		var exclude []netip.Addr
		for _, x := range [][]byte{x1, x2} {
			if a, ok := netip.AddrFromSlice(x); ok {
				exclude = append(exclude, a)
			}
		}
		cp, err := ParseClientPool(s, exclude...)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "rewrite: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		again, err := ParseClientPool(cp.String())
		if err != nil || again.String() != cp.String() {
			t.Fatalf("%q: String %q reads back as %v, %v", s, cp.String(), again, err)
		}
		for _, e := range exclude {
			if cp.Contains(e) {
				t.Fatalf("%q: excluded %s in the pool %s", s, e, cp)
			}
		}
		for c := range 64 {
			for _, client := range []netip.Addr{addr4(c * 2053), addr6(c * 2053)} {
				a, ok := cp.Addr(client)
				if !ok {
					if cp.fam[famIndex(client.Is4())].total.isZero() {
						continue
					}
					t.Fatalf("%q: no address for %s", s, client)
				}
				if !cp.Contains(a) || a.Is4() != client.Is4() || slices.Contains(exclude, a) {
					t.Fatalf("%q: %s got %s", s, client, a)
				}
				h := clientHash(capture.EndpointFrom(netip.AddrPortFrom(client, 0)))
				for slot := range uint64(4) {
					if b, _ := cp.pick(h, client.Is4(), slot*1021); !cp.Contains(b) || slices.Contains(exclude, b) {
						t.Fatalf("%q: %s slot %d got %s", s, client, slot, b)
					}
				}
			}
		}
	})
}

// FuzzAppendSegments: any datagram that decodes splits into segments that
// decode, carry valid checksums, continue each other's sequence numbers,
// keep the headers and options, and add up to the original payload.
func FuzzAppendSegments(f *testing.F) {
	ts := capture.AppendTimestamps(nil, 1, 2)
	// Small seeds: the fuzzer minimises every new input, which is slow on
	// big ones; splitting 300 bytes by 1 to 100 covers the same code.
	for _, sf := range []superFrame{
		{payload: 300, flags: capture.FlagACK | capture.FlagPSH, opts: ts},
		{v6: true, payload: 300, flags: capture.FlagACK | capture.FlagPSH | capture.FlagFIN, opts: ts, seq: 0xffff_ff00},
		{payload: 200, flags: capture.FlagSYN | capture.FlagCWR | capture.FlagURG, urgent: 90, opts: capture.AppendMSS(nil, 500)},
		{payload: 150, flags: capture.FlagACK | capture.FlagRST, ipOpts: true},
		{v6: true, payload: 150, flags: capture.FlagACK, ipOpts: true, opts: ts},
	} {
		b := sf.build(f)
		f.Add(b, uint16(100))
		f.Add(b, uint16(1))
		f.Add(b, uint16(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, mss uint16) {
		var p capture.Packet
		if p.Decode(b) != nil {
			return
		}
		in := slices.Clone(p.Data)
		m := int(mss)
		out, ends := AppendSegments(nil, nil, &p, m)
		if !slices.Equal(p.Data, in) {
			t.Fatal("AppendSegments changed its input")
		}
		if m < 1 || p.PayloadLen() <= m {
			if len(ends) != 1 || !slices.Equal(out, in) {
				t.Fatalf("mss %d, payload %d: not appended whole", m, p.PayloadLen())
			}
			return
		}
		checkSegments(t, &p, m, out, ends)
	})
}
