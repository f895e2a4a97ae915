package rewrite

import (
	"math/big"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

func TestParseClientPool(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		in      string
		exclude []netip.Addr
		want    string // String()
	}{
		{in: "198.18.1.7", want: "198.18.1.7"},
		{in: "198.18.1.x", want: "198.18.1.1-198.18.1.254"},
		{in: "198.18.1.0/24", want: "198.18.1.1-198.18.1.254"},
		{in: "198.18.1.0/30", want: "198.18.1.1-198.18.1.2"},
		{in: "198.18.1.0/31", want: "198.18.1.0-198.18.1.1"}, // RFC 3021: both usable
		{in: "198.18.1.9/32", want: "198.18.1.9"},
		{in: "198.18.0.0/15", want: "198.18.0.1-198.19.255.254"},
		{in: "198.18.1.10-198.18.1.20", want: "198.18.1.10-198.18.1.20"},
		{in: "198.18.1.10 - 198.18.1.20", want: "198.18.1.10-198.18.1.20"},
		{in: "fd00:198:18::5", want: "fd00:198:18::5"},
		{in: "fd00:198:18::/64", want: "fd00:198:18::1-fd00:198:18:0:ffff:ffff:ffff:ffff"},
		{in: "fd00:198:18::/48", want: "fd00:198:18::1-fd00:198:18:ffff:ffff:ffff:ffff:ffff"},
		{in: "fd00:198:18::/127", want: "fd00:198:18::-fd00:198:18::1"},
		{in: "::ffff:198.18.1.7", want: "198.18.1.7"},
		// Overlaps and repeats merge; order does not matter; IPv4 first.
		{in: "fd00:198:18::1, 198.18.1.2,198.18.1.1,198.18.1.2, 198.18.1.0/30", want: "198.18.1.1-198.18.1.2,fd00:198:18::1"},
		{in: "198.18.1.3,198.18.1.1,198.18.1.2", want: "198.18.1.1-198.18.1.3"},
		// Targets are taken out, splitting ranges around them.
		{in: "198.18.1.0/29", exclude: []netip.Addr{a("198.18.1.3"), a("fd00:198:18::1"), {}},
			want: "198.18.1.1-198.18.1.2,198.18.1.4-198.18.1.6"},
		{in: "198.18.1.1,198.18.1.2", exclude: []netip.Addr{a("::ffff:198.18.1.1")}, want: "198.18.1.2"},
		{in: "198.18.1.1,fd00:198:18::1", exclude: []netip.Addr{a("198.18.1.1")}, want: "fd00:198:18::1"},
	} {
		cp, err := ParseClientPool(tc.in, tc.exclude...)
		if err != nil {
			t.Errorf("ParseClientPool(%q, %v): %v", tc.in, tc.exclude, err)
			continue
		}
		if got := cp.String(); got != tc.want {
			t.Errorf("ParseClientPool(%q, %v) = %q, want %q", tc.in, tc.exclude, got, tc.want)
		}
		// The canonical form reads back as the same pool.
		if again, err := ParseClientPool(cp.String()); err != nil || again.String() != cp.String() {
			t.Errorf("ParseClientPool(%q) = %v, %v; want it to read back", cp.String(), again, err)
		}
	}
}

func TestParseClientPoolErrors(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		in      string
		exclude []netip.Addr
		err     string
	}{
		{in: "", err: `empty client pool ""`},
		{in: ",", err: `empty client pool`},
		{in: "198.18.1.1,", err: `item "": empty item`},
		{in: "198.18.1.*", err: `item "198.18.1.*": use x, not *`},
		{in: "fd00:198:18::x", err: `item "fd00:198:18::x": the x form is IPv4 only`},
		{in: "198.18.x", err: `the x form is IPv4 only`},
		{in: "198.18.1.5/24", err: `item "198.18.1.5/24": host bits set; did you mean 198.18.1.0/24?`},
		{in: "198.18.1.0/33", err: `item "198.18.1.0/33": not an address prefix`},
		{in: "::ffff:198.18.1.0/120", err: `IPv4-mapped prefix`},
		{in: "bogus", err: `item "bogus": "bogus" is not an IP address`},
		{in: "198.18.1.1,198.18.300.1", err: `item "198.18.300.1"`},
		{in: "fe80::1%eth0", err: `has a zone`},
		{in: "198.18.1.9-198.18.1.1", err: `item "198.18.1.9-198.18.1.1": range ends are in the wrong order`},
		{in: "198.18.1.1-fd00:198:18::1", err: `different address families`},
		{in: "198.18.1.1-", err: `"" is not an IP address`},
		{in: "0.0.0.0", err: `item "0.0.0.0": not a unicast address range`},
		{in: "224.0.0.1", err: `not a unicast address range`},
		{in: "ff02::1/128", err: `not a unicast address range`},
		{in: "::", err: `not a unicast address range`},
		{in: "198.18.1.1", exclude: []netip.Addr{a("198.18.1.1")}, err: `no address left`},
		{in: "198.18.1.0/31", exclude: []netip.Addr{a("198.18.1.0"), a("198.18.1.1")}, err: `no address left`},
	} {
		cp, err := ParseClientPool(tc.in, tc.exclude...)
		if err == nil {
			t.Errorf("ParseClientPool(%q) = %v, want an error containing %q", tc.in, cp, tc.err)
			continue
		}
		if !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "rewrite: ") {
			t.Errorf("ParseClientPool(%q) error %q, want it to contain %q", tc.in, err, tc.err)
		}
	}
}

// A prefix that covers non-unicast space is trimmed to its unicast part.
func TestPoolTrimsReserved(t *testing.T) {
	r, v4, err := parsePoolPrefix("192.0.0.0/2") // 192.0.0.0 to 255.255.255.255
	if err != nil || !v4 {
		t.Fatal(err)
	}
	got := subtract([]addrRange{r}, reserved[0])
	want := []addrRange{{u128{lo: 0xc0000001}, u128{lo: 0xdfffffff}}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("trimmed to %v, want %v", got, want)
	}
}

func TestPoolContains(t *testing.T) {
	cp, err := ParseClientPool("198.18.1.0/29,fd00:198:18::/64", netip.MustParseAddr("198.18.1.3"))
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{
		"198.18.1.0": false, "198.18.1.1": true, "198.18.1.3": false, "198.18.1.6": true, "198.18.1.7": false,
		"198.18.2.1": false, "::ffff:198.18.1.1": true,
		"fd00:198:18::": false, "fd00:198:18::1": true, "fd00:198:18::ffff:ffff:ffff:ffff": true, "fd00:198:18:1::1": false,
	} {
		if got := cp.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
	if cp.Contains(netip.Addr{}) {
		t.Error("Contains(invalid address)")
	}
}

// One client keeps one fake address for all its connections; Rewrite
// agrees with Addr; the port and destination are kept.
func TestPoolOneAddressPerClient(t *testing.T) {
	cp, err := ParseClientPool("198.18.200.x,fd00:198:18:200::/64")
	if err != nil {
		t.Fatal(err)
	}
	for c := range 200 {
		for _, v6 := range []bool{false, true} {
			client, dst := addr4(c), tgt4
			if v6 {
				client, dst = addr6(c), tgt6
			}
			want, ok := cp.Addr(client)
			if !ok || !cp.Contains(want) {
				t.Fatalf("Addr(%s) = %s, %v", client, want, ok)
			}
			for port := uint16(1); port < 65000; port += 4999 {
				p := packet(t, netip.AddrPortFrom(client, port), dst, capture.FlagACK, "GET /")
				if !cp.Rewrite(p) {
					t.Fatalf("Rewrite refused %s", p.Flow())
				}
				if p.Src() != want || p.SrcPort() != port || p.DstEndpoint().AddrPort() != dst {
					t.Fatalf("client %s:%d became %s, want %s:%d to %s", client, port, p.Flow(), want, port, dst)
				}
				if !p.ChecksumsValid() {
					t.Fatalf("checksums wrong after Rewrite")
				}
			}
		}
	}
}

// Property: whatever the pool and exclusions, no client ever gets an
// excluded address, and every address handed out is in the pool.
func TestPoolNeverExcluded(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		base := 1 + rng.IntN(200)
		n := 1 + rng.IntN(6)
		items := []string{}
		var exclude []netip.Addr
		for j := range n {
			switch rng.IntN(3) {
			case 0:
				items = append(items, addr4(base+j*3).String())
			case 1:
				items = append(items, addr4(base+j).String()+"-"+addr4(base+j+rng.IntN(8)).String())
			default:
				items = append(items, addr6(base+j).String())
			}
		}
		for range rng.IntN(8) {
			exclude = append(exclude, addr4(base+rng.IntN(20)))
		}
		exclude = append(exclude, addr6(base))
		cp, err := ParseClientPool(strings.Join(items, ","), exclude...)
		if err != nil {
			if strings.Contains(err.Error(), "no address left") {
				continue
			}
			t.Fatal(err)
		}
		for c := range 500 {
			for _, client := range []netip.Addr{addr4(c * 7), addr6(c * 7)} {
				got, ok := cp.Addr(client)
				if !ok {
					continue
				}
				for _, e := range exclude {
					if got == e {
						t.Fatalf("pool %s excluding %v gave %s the excluded %s", cp, exclude, client, got)
					}
				}
				if !cp.Contains(got) {
					t.Fatalf("pool %s gave %s, not in it", cp, got)
				}
			}
		}
	}
}

// Clients spread evenly over the pool, even with the index arithmetic on
// several ranges.
func TestPoolSpread(t *testing.T) {
	cp, err := ParseClientPool("198.18.1.1-198.18.1.10,198.18.2.0/29,198.18.3.1", netip.MustParseAddr("198.18.2.4"))
	if err != nil {
		t.Fatal(err)
	}
	count := map[netip.Addr]int{}
	const clients = 17000
	for c := range clients {
		a, _ := cp.Addr(addr4(c))
		count[a]++
	}
	if len(count) != 16 { // 10 + (6 - 1) + 1
		t.Errorf("pool %s: clients used %d addresses, want all 16", cp, len(count))
	}
	mean := float64(clients) / float64(len(count))
	for a, n := range count {
		if float64(n) < 0.7*mean || float64(n) > 1.3*mean {
			t.Errorf("%s got %d of %d clients, mean %.0f", a, n, clients, mean)
		}
	}
}

// Family: an IPv6 client needs an IPv6 pool address.
func TestPoolFamilyMismatch(t *testing.T) {
	cp, err := ParseClientPool("198.18.200.1")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Rewrite(packet(t, cli6, tgt6, capture.FlagSYN, "")) {
		t.Error("IPv6 packet rewritten by an IPv4-only pool")
	}
	if !cp.Rewrite(packet(t, cli4, tgt4, capture.FlagSYN, "")) {
		t.Error("IPv4 packet refused")
	}
	if st := cp.Stats(); st != (PoolStats{Rewritten: 1, NoAddress: 1}) {
		t.Errorf("stats %+v", st)
	}
	if _, ok := cp.Addr(cli6.Addr()); ok {
		t.Error("Addr gave an IPv6 client an address")
	}
}

// A pool of 2^80 addresses is indexed with 128-bit arithmetic and spreads
// clients over its whole width.
func TestPoolHugePrefix(t *testing.T) {
	cp, err := ParseClientPool("fd00:198:18::/48")
	if err != nil {
		t.Fatal(err)
	}
	if cp.fam[1].total.hi == 0 {
		t.Fatalf("total %v: want more than 2^64", cp.fam[1].total)
	}
	subnets := map[uint16]bool{}
	for c := range 1000 {
		a, ok := cp.Addr(addr6(c))
		if !ok || !cp.Contains(a) {
			t.Fatalf("Addr = %s, %v", a, ok)
		}
		b := a.As16()
		subnets[uint16(b[6])<<8|uint16(b[7])] = true
	}
	if len(subnets) < 900 {
		t.Errorf("1000 clients landed in only %d of 65536 /64s", len(subnets))
	}
}

// Per-copy slots give one client distinct addresses while the pool has
// room, in both index paths.
func TestPoolSlots(t *testing.T) {
	for _, s := range []string{"198.18.200.x", "fd00:198:18::/48"} {
		cp, err := ParseClientPool(s)
		if err != nil {
			t.Fatal(err)
		}
		v4 := !strings.Contains(s, ":")
		for c := range 50 {
			client := addr4(c)
			if !v4 {
				client = addr6(c)
			}
			h := clientHash(capture.EndpointFrom(netip.AddrPortFrom(client, 0)))
			seen := map[netip.Addr]bool{}
			for slot := range uint64(254) {
				a, ok := cp.pick(h, v4, slot)
				if !ok || !cp.Contains(a) || seen[a] {
					t.Fatalf("%s: slot %d gave %s (ok %v, seen %v)", s, slot, a, ok, seen[a])
				}
				seen[a] = true
			}
		}
	}
}

func TestMulHi(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	toBig := func(u u128) *big.Int {
		b := new(big.Int).SetUint64(u.hi)
		return b.Lsh(b, 64).Or(b, new(big.Int).SetUint64(u.lo))
	}
	for i := range 10000 {
		h := u128{rng.Uint64(), rng.Uint64()}
		n := u128{rng.Uint64() >> (i % 64), rng.Uint64()}
		if i%3 == 0 {
			n.hi = 0
		}
		want := new(big.Int).Mul(toBig(h), toBig(n))
		want.Rsh(want, 128)
		if got := mulHi(h, n); toBig(got).Cmp(want) != 0 {
			t.Fatalf("mulHi(%v, %v) = %v, want %v", h, n, got, want)
		}
	}
}
