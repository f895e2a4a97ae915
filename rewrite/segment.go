package rewrite

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/header"
)

// AppendSegments appends p to dst as TCP segments of at most mss payload
// bytes each, and the end offset in dst of each datagram to ends. It undoes
// GRO/LRO on the capture side and TSO on the sender's: the kernel hands a
// packet socket one "super-frame" of up to 64 KiB for a run of segments.
//
// Each segment carries a copy of p's IP header (IPv4 options, IPv6
// extension headers) and TCP header with its options (timestamps and all),
// and gets its own lengths, sequence number (p's plus the bytes before it,
// plus one after a SYN), IPv4 ID (p's plus its index, as GSO numbers them)
// and flags: SYN and CWR on the first only; FIN, PSH and RST on the last
// only; URG while the urgent pointer is still ahead. Checksums are
// computed afresh for every segment, so a super-frame with a partial
// (offload) checksum yields valid segments.
//
// A packet with at most mss payload bytes, or any packet when mss < 1, is
// appended unchanged, as one datagram. A packet whose payload is cut short
// (decoded with DecodeHeaders from a snapped capture) cannot be split and
// nothing is appended; Segmenter counts those. p.Data must not lie in
// dst's spare capacity. With enough capacity in dst and ends,
// AppendSegments does not allocate.
func AppendSegments(dst []byte, ends []int, p *capture.Packet, mss int) ([]byte, []int) {
	n := p.PayloadLen()
	if len(p.Payload()) < n {
		return dst, ends
	}
	if mss < 1 || n <= mss {
		dst = append(dst, p.Data...)
		return dst, append(ends, len(dst))
	}
	hl := p.IPHeaderLen()
	hdr := p.Data[:hl+p.DataOffset()]
	pay := p.Payload()
	v6 := p.IsIPv6()
	var id uint16
	if !v6 {
		id = header.IPv4(p.Data).ID()
	}
	seq, flags := p.Seq(), p.Flags()
	urgEnd := seq.Add(uint32(header.TCP(p.Data[hl:]).Urgent()))
	dst0, ends0 := len(dst), len(ends)
	for off, k := 0, uint16(0); off < len(pay); k++ {
		m := min(mss, len(pay)-off)
		first, last := off == 0, off+m == len(pay)
		start := len(dst)
		dst = append(dst, hdr...)
		dst = append(dst, pay[off:off+m]...)
		b := dst[start:]
		if v6 {
			header.IPv6(b).SetPayloadLen(len(b) - header.IPv6Len)
		} else {
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			binary.BigEndian.PutUint16(b[4:], id+k)
		}
		t := b[hl:]
		sq := seq.Add(uint32(off))
		f := flags
		if !first {
			if flags&capture.FlagSYN != 0 {
				sq++ // the SYN took one sequence number before the data
			}
			f &^= capture.FlagSYN | capture.FlagCWR
		}
		if !last {
			f &^= capture.FlagFIN | capture.FlagPSH | capture.FlagRST
		}
		if flags&capture.FlagURG != 0 {
			// The urgent pointer is an offset from the segment's seq to
			// the byte after the urgent data (RFC 9293 section 3.8.5).
			up := urgEnd.Sub(sq)
			switch {
			case up <= 0:
				f &^= capture.FlagURG
				up = 0
			case up > 0xffff:
				up = 0xffff
			}
			binary.BigEndian.PutUint16(t[18:], uint16(up))
		}
		binary.BigEndian.PutUint32(t[4:], uint32(sq))
		t[13] = f
		var q capture.Packet
		if q.Decode(b) != nil {
			// Only a header p could not have had; give nothing back
			// rather than half a packet.
			return dst[:dst0], ends[:ends0]
		}
		q.ComputeChecksums()
		ends = append(ends, len(dst))
		off += m
	}
	return dst, ends
}

// SegmenterConfig configures a Segmenter. The zero value splits to a
// 1500-byte MTU.
type SegmenterConfig struct {
	// MTU is the largest datagram to send, headers included (-M). Zero
	// means 1500; at least 68 (RFC 791), at most 65535.
	MTU int
	// MSS caps the payload of each segment below what the MTU allows (the
	// target's MSS). Zero means no cap beyond the MTU.
	MSS int
}

// Segmenter splits packets larger than the MTU or MSS with AppendSegments
// and counts what it did. It is safe for concurrent use.
type Segmenter struct {
	mtu, mss int

	packets, split, segments, snapped, unsplittable atomic.Uint64
}

// NewSegmenter checks cfg (nil means defaults) and returns a Segmenter.
func NewSegmenter(cfg *SegmenterConfig) (*Segmenter, error) {
	if cfg == nil {
		cfg = &SegmenterConfig{}
	}
	s := &Segmenter{mtu: cfg.MTU, mss: cfg.MSS}
	if s.mtu == 0 {
		s.mtu = 1500
	}
	if s.mtu < 68 || s.mtu > 65535 {
		return nil, fmt.Errorf("rewrite: MTU %d: want 68 to 65535", cfg.MTU)
	}
	if s.mss < 0 || s.mss > 65535 {
		return nil, fmt.Errorf("rewrite: MSS %d: want 0 to 65535", cfg.MSS)
	}
	return s, nil
}

// Limit is the payload bytes a segment of p may carry: the MTU less p's
// headers, and at most the MSS. It is below 1 when p's headers alone
// exceed the MTU.
func (s *Segmenter) Limit(p *capture.Packet) int {
	n := s.mtu - p.IPHeaderLen() - p.DataOffset()
	if s.mss > 0 && s.mss < n {
		n = s.mss
	}
	return n
}

// Append is AppendSegments with p's Limit. A packet whose headers alone
// exceed the MTU is appended unchanged and counted.
func (s *Segmenter) Append(dst []byte, ends []int, p *capture.Packet) ([]byte, []int) {
	s.packets.Add(1)
	n := len(ends)
	limit := s.Limit(p)
	switch {
	case len(p.Payload()) < p.PayloadLen():
		s.snapped.Add(1)
		return dst, ends
	case limit < 1:
		s.unsplittable.Add(1)
		limit = 0
	}
	dst, ends = AppendSegments(dst, ends, p, limit)
	if k := len(ends) - n; k > 1 {
		s.split.Add(1)
		s.segments.Add(uint64(k))
	}
	return dst, ends
}

// SegmenterStats counts Append's work.
type SegmenterStats struct {
	Packets      uint64 // packets handed to Append
	Split        uint64 // of those, split in several segments
	Segments     uint64 // segments the split packets became
	Snapped      uint64 // dropped: payload cut short by the capture, cannot be split
	Unsplittable uint64 // sent whole: the headers alone exceed the MTU
}

// Stats returns a snapshot of the counters.
func (s *Segmenter) Stats() SegmenterStats {
	return SegmenterStats{
		Packets:      s.packets.Load(),
		Split:        s.split.Load(),
		Segments:     s.segments.Load(),
		Snapped:      s.snapped.Load(),
		Unsplittable: s.unsplittable.Load(),
	}
}
