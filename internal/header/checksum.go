package header

import "encoding/binary"

// Sum adds b to the running one's-complement sum acc (RFC 1071) and returns
// the new, unfolded accumulator. An odd trailing byte is padded with zero, so
// only the last chunk of a datagram may have odd length.
func Sum(acc uint64, b []byte) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// Fold folds a Sum accumulator to 16 bits (not complemented).
func Fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = (acc & 0xffff) + acc>>16
	}
	return uint16(acc)
}

// Checksum is the Internet checksum of b: the complement of its folded sum.
func Checksum(b []byte) uint16 { return ^Fold(Sum(0, b)) }

// PseudoSum is the sum of the TCP/UDP pseudo-header (RFC 793 3.1, RFC 8200
// 8.1) for the given addresses (4 or 16 bytes each), protocol and upper-layer
// length.
func PseudoSum(src, dst []byte, proto uint8, length int) uint64 {
	acc := Sum(0, src)
	acc = Sum(acc, dst)
	return acc + uint64(proto) + uint64(length)
}

// Update16 returns checksum cs adjusted for one 16-bit word changing from old
// to new, following RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
func Update16(cs, old, new uint16) uint16 {
	acc := uint64(^cs) + uint64(^old) + uint64(new)
	return ^Fold(acc)
}

// Update32 is Update16 for a 32-bit field.
func Update32(cs uint16, old, new uint32) uint16 {
	acc := uint64(^cs) + uint64(^uint16(old>>16)) + uint64(^uint16(old)) +
		uint64(uint16(new>>16)) + uint64(uint16(new))
	return ^Fold(acc)
}

// UpdateBytes adjusts checksum cs for the bytes old becoming new; both have
// the same even length and start at an even offset of the summed data.
func UpdateBytes(cs uint16, old, new []byte) uint16 {
	acc := uint64(^cs)
	for i := 0; i+1 < len(old); i += 2 {
		acc += uint64(^binary.BigEndian.Uint16(old[i:])) + uint64(binary.BigEndian.Uint16(new[i:]))
	}
	return ^Fold(acc)
}
