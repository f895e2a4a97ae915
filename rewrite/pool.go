package rewrite

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

// ClientPool is the client address pool Rewriter (TCPCopy's -c): it
// replaces each packet's source address with a fake client address from
// the pool, chosen by a stable hash of the real client address, so a
// client keeps one fake address for all its connections (and across
// restarts, and on every copier given the same pool). The port is kept.
//
// An IPv4 client gets an IPv4 pool address and an IPv6 client an IPv6 one;
// a packet whose family the pool lacks is refused and counted. The pool is
// a sorted list of address ranges indexed arithmetically, so an IPv4 /8 or
// an IPv6 /64 costs a few bytes, not a table.
//
// Several clients may share a fake address, so two of their connections
// can meet on one fake endpoint; give the pool to Copies (CopiesConfig.Pool)
// to have such collisions detected. It is safe for concurrent use.
type ClientPool struct {
	fam [2]poolFamily // IPv4, IPv6

	rewritten atomic.Uint64
	noAddress atomic.Uint64
}

type poolFamily struct {
	ranges []addrRange // sorted, disjoint, not adjacent
	ends   []u128      // ends[i]: how many addresses ranges[:i+1] hold
	total  u128        // zero: the pool has no address of this family
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ first, last u128 }

func famIndex(v4 bool) int {
	if v4 {
		return 0
	}
	return 1
}

// Non-unicast space a pool never hands out, even when a prefix covers it:
// "this network" 0/8, multicast 224/4, reserved 240/4 with the limited
// broadcast; IPv6 :: and multicast ff00::/8.
var reserved = [2][]addrRange{
	{
		{u128{lo: 0x00000000}, u128{lo: 0x00ffffff}},
		{u128{lo: 0xe0000000}, u128{lo: 0xffffffff}},
	},
	{
		{u128{}, u128{}},
		{u128{hi: 0xff00 << 48}, u128{^uint64(0), ^uint64(0)}},
	},
}

// ParseClientPool parses a comma-separated list of fake client addresses.
// Each item is one of
//
//	198.18.1.7                  one address (IPv4 or IPv6)
//	198.18.1.x                  TCPCopy's form: 198.18.1.1 to 198.18.1.254
//	198.18.4.0/22               a prefix; host bits must be zero
//	fd00:198:18::/64            an IPv6 prefix, indexed, never expanded
//	198.18.1.10-198.18.1.20     an inclusive range
//
// An IPv4 prefix up to /30 leaves out its network and broadcast
// addresses; an IPv6 prefix up to /126 leaves out its subnet-router
// anycast address (RFC 4291 section 2.6.1); /31, /32, /127 and /128 are
// used whole (RFC 3021, RFC 6164). Non-unicast space (0.0.0.0/8,
// 224.0.0.0/3, ::, ff00::/8) is never used: an item entirely inside it is
// an error, a prefix that covers some of it is trimmed. Overlaps are
// merged, so listing an address twice does not make it likelier.
//
// The exclude addresses (the targets: Transfer.Targets) are taken out of
// the pool; it is an error if nothing is left. Errors quote the bad item.
func ParseClientPool(s string, exclude ...netip.Addr) (*ClientPool, error) {
	if strings.Trim(s, " \t,") == "" {
		return nil, fmt.Errorf("rewrite: empty client pool %q", s)
	}
	var raw [2][]addrRange
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		r, v4, err := parsePoolItem(item)
		if err != nil {
			return nil, fmt.Errorf("rewrite: client pool item %q: %w", item, err)
		}
		f := famIndex(v4)
		if len(subtract([]addrRange{r}, reserved[f])) == 0 {
			return nil, fmt.Errorf("rewrite: client pool item %q: not a unicast address range", item)
		}
		raw[f] = append(raw[f], r)
	}
	var ex [2][]addrRange
	for _, a := range exclude {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap()
		u := u128From(a)
		ex[famIndex(a.Is4())] = append(ex[famIndex(a.Is4())], addrRange{u, u})
	}
	cp := &ClientPool{}
	for f := range cp.fam {
		rs := merge(raw[f])
		rs = subtract(rs, reserved[f])
		rs = subtract(rs, merge(ex[f]))
		fam := poolFamily{ranges: rs}
		for _, r := range rs {
			// Reserved space is out, so no family reaches 2^128; checked
			// all the same.
			n := r.last.sub(r.first).inc()
			var over bool
			fam.total, over = fam.total.add(n)
			if over || n.isZero() {
				return nil, fmt.Errorf("rewrite: client pool %q: more than 2^128-1 addresses", s)
			}
			fam.ends = append(fam.ends, fam.total)
		}
		cp.fam[f] = fam
	}
	if cp.fam[0].total.isZero() && cp.fam[1].total.isZero() {
		return nil, fmt.Errorf("rewrite: client pool %q: no address left once the excluded addresses %v are taken out", s, exclude)
	}
	return cp, nil
}

func parsePoolItem(item string) (addrRange, bool, error) {
	switch {
	case item == "":
		return addrRange{}, false, errors.New("empty item")
	case strings.HasSuffix(item, "*"):
		return addrRange{}, false, errors.New("use x, not *, for the last octet (a.b.c.x)")
	case strings.HasSuffix(item, "x"):
		a, err := netip.ParseAddr(item[:len(item)-1] + "0")
		if err != nil || !a.Is4() || !strings.HasSuffix(item, ".x") {
			return addrRange{}, false, errors.New("the x form is IPv4 only: a.b.c.x")
		}
		u := u128From(a)
		return addrRange{u128{lo: u.lo + 1}, u128{lo: u.lo + 254}}, true, nil
	case strings.Contains(item, "/"):
		return parsePoolPrefix(item)
	case strings.Contains(item, "-"):
		lo, hi, _ := strings.Cut(item, "-")
		a, err := parsePoolAddr(strings.TrimSpace(lo))
		if err != nil {
			return addrRange{}, false, err
		}
		b, err := parsePoolAddr(strings.TrimSpace(hi))
		if err != nil {
			return addrRange{}, false, err
		}
		if a.Is4() != b.Is4() {
			return addrRange{}, false, errors.New("range ends are of different address families")
		}
		if b.Less(a) {
			return addrRange{}, false, errors.New("range ends are in the wrong order")
		}
		return addrRange{u128From(a), u128From(b)}, a.Is4(), nil
	}
	a, err := parsePoolAddr(item)
	if err != nil {
		return addrRange{}, false, err
	}
	u := u128From(a)
	return addrRange{u, u}, a.Is4(), nil
}

func parsePoolAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone; zones are not supported", s)
	}
	return a.Unmap(), nil
}

func parsePoolPrefix(item string) (addrRange, bool, error) {
	p, err := netip.ParsePrefix(item)
	if err != nil {
		return addrRange{}, false, errors.New("not an address prefix (want address/length)")
	}
	a := p.Addr()
	if a.Is4In6() {
		return addrRange{}, false, errors.New("IPv4-mapped prefix; write the IPv4 prefix")
	}
	if m := p.Masked(); m != p {
		return addrRange{}, false, fmt.Errorf("host bits set; did you mean %s?", m)
	}
	width := 128
	if a.Is4() {
		width = 32
	}
	first := u128From(a)
	host := width - p.Bits()
	var mask u128
	switch {
	case host >= 64:
		mask = u128{hi: 1<<(host-64) - 1, lo: ^uint64(0)}
		if host == 128 {
			mask.hi = ^uint64(0)
		}
	default:
		mask = u128{lo: 1<<host - 1}
	}
	last := u128{first.hi | mask.hi, first.lo | mask.lo}
	switch {
	case a.Is4() && host >= 2: // network and broadcast addresses
		first, last = first.inc(), last.dec()
	case !a.Is4() && host >= 2: // subnet-router anycast
		first = first.inc()
	}
	return addrRange{first, last}, a.Is4(), nil
}

// merge sorts rs and joins overlapping and adjacent ranges.
func merge(rs []addrRange) []addrRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b addrRange) int {
		switch {
		case a.first.less(b.first):
			return -1
		case b.first.less(a.first):
			return 1
		}
		return 0
	})
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			if cur.last == (u128{^uint64(0), ^uint64(0)}) || r.first.lessEq(cur.last.inc()) {
				if cur.last.less(r.last) {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// subtract returns rs without the addresses in cut; both are sorted and
// merged.
func subtract(rs, cut []addrRange) []addrRange {
	for _, c := range cut {
		var out []addrRange
		for _, r := range rs {
			if r.last.less(c.first) || c.last.less(r.first) {
				out = append(out, r)
				continue
			}
			if r.first.less(c.first) {
				out = append(out, addrRange{r.first, c.first.dec()})
			}
			if c.last.less(r.last) {
				out = append(out, addrRange{c.last.inc(), r.last})
			}
		}
		rs = out
	}
	return rs
}

// String formats the pool as ParseClientPool reads it: its ranges after
// merging and exclusion, IPv4 first.
func (cp *ClientPool) String() string {
	var items []string
	for f, fam := range cp.fam {
		for _, r := range fam.ranges {
			s := r.first.addr(f == 0).String()
			if r.first != r.last {
				s += "-" + r.last.addr(f == 0).String()
			}
			items = append(items, s)
		}
	}
	return strings.Join(items, ",")
}

// Contains reports whether the pool may hand out a.
func (cp *ClientPool) Contains(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	rs := cp.fam[famIndex(a.Is4())].ranges
	u := u128From(a)
	i, _ := slices.BinarySearchFunc(rs, u, func(r addrRange, u u128) int {
		switch {
		case r.last.less(u):
			return -1
		case u.less(r.first):
			return 1
		}
		return 0
	})
	return i < len(rs) && rs[i].first.lessEq(u) && u.lessEq(rs[i].last)
}

// Addr returns the fake address the pool gives client, and false when the
// pool has no address of client's family.
func (cp *ClientPool) Addr(client netip.Addr) (netip.Addr, bool) {
	client = client.Unmap()
	if !client.IsValid() {
		return netip.Addr{}, false
	}
	return cp.pick(clientHash(capture.EndpointFrom(netip.AddrPortFrom(client, 0))), client.Is4(), 0)
}

// clientHash hashes a client's address (the port is ignored): the one
// input to the choice of its fake address.
func clientHash(e capture.Endpoint) uint64 { return e.WithPort(0).Hash() }

// pick maps a client hash to a pool address, moved on by slot addresses
// (modulo the family's size) for copies that want their own address.
func (cp *ClientPool) pick(h uint64, v4 bool, slot uint64) (netip.Addr, bool) {
	f := &cp.fam[famIndex(v4)]
	n := f.total
	if n.isZero() {
		return netip.Addr{}, false
	}
	var idx u128
	if n.hi == 0 {
		i, _ := bits.Mul64(h, n.lo)
		if slot != 0 {
			s, c := bits.Add64(i, slot%n.lo, 0)
			if c != 0 || s >= n.lo {
				s -= n.lo
			}
			i = s
		}
		idx = u128{lo: i}
	} else {
		// More than 2^64 addresses: a 128-bit fraction, from the hash and
		// a second mix of it. slot < 2^64 <= n, so one wrap suffices.
		idx = mulHi(u128{h, mix64(h ^ 0x9e3779b97f4a7c15)}, n)
		if slot != 0 {
			var c bool
			idx, c = idx.add(u128{lo: slot})
			if c || !idx.less(n) {
				idx = idx.sub(n)
			}
		}
	}
	lo, hi := 0, len(f.ends)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if idx.less(f.ends[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	var start u128
	if lo > 0 {
		start = f.ends[lo-1]
	}
	a, _ := f.ranges[lo].first.add(idx.sub(start))
	return a.addr(v4), true
}

// Rewrite implements Rewriter: source address to the client's fake one.
func (cp *ClientPool) Rewrite(p *capture.Packet) bool {
	a, ok := cp.pick(clientHash(p.SrcEndpoint()), !p.IsIPv6(), 0)
	if !ok || p.SetSrc(a) != nil {
		cp.noAddress.Add(1)
		return false
	}
	cp.rewritten.Add(1)
	return true
}

// PoolStats counts ClientPool.Rewrite's decisions.
type PoolStats struct {
	Rewritten uint64 // source set to a pool address
	NoAddress uint64 // refused: the pool has no address of the packet's family
}

// Stats returns a snapshot of the counters.
func (cp *ClientPool) Stats() PoolStats {
	return PoolStats{Rewritten: cp.rewritten.Load(), NoAddress: cp.noAddress.Load()}
}
