package capture

// Seq is a TCP sequence number. Comparisons are modulo 2^32 (RFC 9293
// section 3.4): a is before b when the signed distance from a to b is
// positive, which holds for numbers less than 2^31 apart.
type Seq uint32

// Add returns s advanced by n bytes.
func (s Seq) Add(n uint32) Seq { return s + Seq(n) }

// Sub returns the signed distance from b to s (s - b).
func (s Seq) Sub(b Seq) int32 { return int32(s - b) }

// LessThan reports whether s comes before b.
func (s Seq) LessThan(b Seq) bool { return int32(s-b) < 0 }

// LessThanEq reports whether s is b or comes before it.
func (s Seq) LessThanEq(b Seq) bool { return int32(s-b) <= 0 }

// InWindow reports whether s lies in [start, start+size).
func (s Seq) InWindow(start Seq, size uint32) bool { return uint32(s-start) < size }

// Max returns the later of s and b.
func (s Seq) Max(b Seq) Seq {
	if s.LessThan(b) {
		return b
	}
	return s
}
