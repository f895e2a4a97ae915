package rewrite

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// u128 is an address (IPv4 in the low 32 bits) or a count of addresses,
// so a pool can index an IPv6 prefix arithmetically instead of listing it.
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(v4 bool) netip.Addr {
	if v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) isZero() bool       { return u == u128{} }
func (u u128) less(v u128) bool   { return u.hi < v.hi || u.hi == v.hi && u.lo < v.lo }
func (u u128) lessEq(v u128) bool { return !v.less(u) }

// add returns u+v and whether it overflowed.
func (u u128) add(v u128) (u128, bool) {
	lo, c := bits.Add64(u.lo, v.lo, 0)
	hi, c := bits.Add64(u.hi, v.hi, c)
	return u128{hi, lo}, c != 0
}

// sub returns u-v modulo 2^128.
func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

func (u u128) inc() u128 { r, _ := u.add(u128{lo: 1}); return r }
func (u u128) dec() u128 { return u.sub(u128{lo: 1}) }

// mulHi returns floor(h * n / 2^128): h taken as a fraction of 2^128
// scaled to [0, n). This is Lemire's multiply-shift range reduction, exact
// and without division.
func mulHi(h, n u128) u128 {
	p00, _ := bits.Mul64(h.lo, n.lo)
	p01h, p01l := bits.Mul64(h.lo, n.hi)
	p10h, p10l := bits.Mul64(h.hi, n.lo)
	p11h, p11l := bits.Mul64(h.hi, n.hi)
	mid, c1 := bits.Add64(p00, p01l, 0)
	_, c2 := bits.Add64(mid, p10l, 0)
	w2, c3 := bits.Add64(p11l, p01h, 0)
	w2, c4 := bits.Add64(w2, p10h, 0)
	w2, c5 := bits.Add64(w2, c1+c2, 0)
	return u128{p11h + c3 + c4 + c5, w2}
}

// mix64 is the splitmix64 finaliser: a bijection that spreads every input
// bit over the output.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
