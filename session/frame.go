package session

import (
	"encoding/binary"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/header"
)

// The table recycles packet buffers in two sizes: small ones for the
// common short request or ACK-sized datagram, so a backlog of buffered
// requests does not cost an MTU each, and MTU-sized ones. Larger datagrams
// (GRO super-frames) are allocated.
const (
	smallBufSize = 256
	bufSize      = 2048
)

// maxFree bounds the recycled buffers of each size a table keeps.
const maxFree = 4096

func (t *Table) buf(n int) []byte {
	spare := &t.spare
	size := bufSize
	if n <= smallBufSize {
		spare, size = &t.spareSmall, smallBufSize
	}
	if n <= size && len(*spare) > 0 {
		b := (*spare)[len(*spare)-1]
		*spare = (*spare)[:len(*spare)-1]
		return b[:0]
	}
	return make([]byte, 0, max(n, size))
}

// release returns a buffer. It is reused only after the next flush, since
// a sent segment's buffer may still be in the batch waiting for Emit.
func (t *Table) release(b []byte) {
	t.memory -= int64(cap(b))
	if c := cap(b); c == bufSize || c == smallBufSize {
		t.released = append(t.released, b[:0])
	}
}

// keep copies a captured datagram into a table buffer, counted against
// MaxMemory.
func (t *Table) keep(data []byte) []byte {
	b := append(t.buf(len(data)), data...)
	t.memory += int64(cap(b))
	return b
}

// reframe appends to dst the datagram tmpl with its payload replaced by
// payload, its sequence number by seq and its flags by flags. Lengths are
// fixed; checksums are left for transmit.
func reframe(dst []byte, tmpl *capture.Packet, payload []byte, seq capture.Seq, flags uint8) []byte {
	ipLen := tmpl.IPHeaderLen()
	start := len(dst)
	dst = append(dst, tmpl.Data[:ipLen+tmpl.DataOffset()]...)
	dst = append(dst, payload...)
	b := dst[start:]
	if tmpl.IsIPv6() {
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-header.IPv6Len))
	} else {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	}
	binary.BigEndian.PutUint32(b[ipLen+4:], uint32(seq))
	b[ipLen+13] = flags
	return dst
}
