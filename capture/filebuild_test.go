package capture_test

import (
	"encoding/binary"
	"time"

	"github.com/shadowcopy/tcpcopy/internal/linklayer"
)

// byteOrder reads and appends.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// Test-side writers of pcap and pcapng files, in every link type the reader
// supports. They are independent of the reader (and of emit.PcapWriter) so
// the two check each other.

// frameFor wraps an IP datagram in the link header of lt. pktType is the
// Linux packet type for the cooked headers.
func frameFor(lt linklayer.Type, ip []byte, pktType uint8, nullOrder byteOrder) []byte {
	v := ip[0] >> 4
	et := uint16(0x0800)
	if v == 6 {
		et = 0x86dd
	}
	var h []byte
	switch lt {
	case linklayer.Ethernet:
		h = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, byte(et >> 8), byte(et)}
	case linklayer.LinuxSLL:
		h = make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:], uint16(pktType))
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:], []byte{2, 0, 0, 0, 0, 1})
		binary.BigEndian.PutUint16(h[14:], et)
	case linklayer.LinuxSLL2:
		h = make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], et)
		binary.BigEndian.PutUint32(h[4:], 7) // ifindex
		binary.BigEndian.PutUint16(h[8:], 1)
		h[10], h[11] = pktType, 6
		copy(h[12:], []byte{2, 0, 0, 0, 0, 1})
	case linklayer.Null, linklayer.Loop:
		h = make([]byte, 4)
		fam := uint32(2)
		if v == 6 {
			fam = []uint32{10, 24, 28, 30}[len(ip)%4] // every system's AF_INET6
		}
		nullOrder.PutUint32(h, fam)
	}
	return append(h, ip...)
}

// vlanFrame is an Ethernet frame with the given stack of tag protocol IDs.
func vlanFrame(ip []byte, tpids ...uint16) []byte {
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	b := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	for i, tp := range tpids {
		b = binary.BigEndian.AppendUint16(b, tp)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI: VLAN id
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, ip...)
}

type rec struct {
	t       time.Time
	frame   []byte
	origLen int // 0: len(frame)
}

// pcapBytes writes a pcap file.
func pcapBytes(order byteOrder, nano bool, lt uint32, recs []rec) []byte {
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	b := order.AppendUint32(nil, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 262144)
	b = order.AppendUint32(b, lt)
	for _, r := range recs {
		frac := uint32(r.t.Nanosecond())
		if !nano {
			frac /= 1000
		}
		ol := r.origLen
		if ol == 0 {
			ol = len(r.frame)
		}
		b = order.AppendUint32(b, uint32(r.t.Unix()))
		b = order.AppendUint32(b, frac)
		b = order.AppendUint32(b, uint32(len(r.frame)))
		b = order.AppendUint32(b, uint32(ol))
		b = append(b, r.frame...)
	}
	return b
}

// ngBuf builds a pcapng file block by block.
type ngBuf struct {
	o byteOrder
	b []byte
}

type ngOpt struct {
	code uint16
	val  []byte
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (w *ngBuf) opts(opts []ngOpt) []byte {
	if len(opts) == 0 {
		return nil
	}
	var b []byte
	for _, o := range opts {
		b = w.o.AppendUint16(b, o.code)
		b = w.o.AppendUint16(b, uint16(len(o.val)))
		b = pad4(append(b, o.val...))
	}
	return append(b, 0, 0, 0, 0) // opt_endofopt
}

func (w *ngBuf) block(typ uint32, body []byte) {
	body = pad4(body)
	l := uint32(12 + len(body))
	w.b = w.o.AppendUint32(w.b, typ)
	w.b = w.o.AppendUint32(w.b, l)
	w.b = append(w.b, body...)
	w.b = w.o.AppendUint32(w.b, l)
}

func (w *ngBuf) shb(opts ...ngOpt) {
	body := w.o.AppendUint32(nil, 0x1a2b3c4d)
	body = w.o.AppendUint16(body, 1)
	body = w.o.AppendUint16(body, 0)
	body = w.o.AppendUint64(body, ^uint64(0)) // section length unknown
	w.block(0x0a0d0d0a, append(body, w.opts(opts)...))
}

func (w *ngBuf) idb(lt linklayer.Type, snap uint32, opts ...ngOpt) {
	body := w.o.AppendUint16(nil, uint16(lt))
	body = w.o.AppendUint16(body, 0)
	body = w.o.AppendUint32(body, snap)
	w.block(1, append(body, w.opts(opts)...))
}

// epb writes an enhanced packet block; ts is in the interface's units.
func (w *ngBuf) epb(ifid uint32, ts uint64, frame []byte, origLen int, opts ...ngOpt) {
	if origLen == 0 {
		origLen = len(frame)
	}
	body := w.o.AppendUint32(nil, ifid)
	body = w.o.AppendUint32(body, uint32(ts>>32))
	body = w.o.AppendUint32(body, uint32(ts))
	body = w.o.AppendUint32(body, uint32(len(frame)))
	body = w.o.AppendUint32(body, uint32(origLen))
	body = pad4(append(body, frame...))
	w.block(6, append(body, w.opts(opts)...))
}

// pb writes an obsolete packet block.
func (w *ngBuf) pb(ifid uint16, ts uint64, frame []byte) {
	body := w.o.AppendUint16(nil, ifid)
	body = w.o.AppendUint16(body, 0) // drops count
	body = w.o.AppendUint32(body, uint32(ts>>32))
	body = w.o.AppendUint32(body, uint32(ts))
	body = w.o.AppendUint32(body, uint32(len(frame)))
	body = w.o.AppendUint32(body, uint32(len(frame)))
	w.block(2, append(body, frame...))
}

func (w *ngBuf) spb(frame []byte) {
	body := w.o.AppendUint32(nil, uint32(len(frame)))
	w.block(3, append(body, frame...))
}

func (w *ngBuf) isb(ifid uint32, ifdrop, osdrop uint64) {
	body := w.o.AppendUint32(nil, ifid)
	body = w.o.AppendUint64(body, 0)
	var opts []ngOpt
	if ifdrop != 0 {
		opts = append(opts, ngOpt{5, w.o.AppendUint64(nil, ifdrop)})
	}
	if osdrop != 0 {
		opts = append(opts, ngOpt{7, w.o.AppendUint64(nil, osdrop)})
	}
	w.block(5, append(body, w.opts(opts)...))
}

func (w *ngBuf) u32(v uint32) []byte { return w.o.AppendUint32(nil, v) }
func (w *ngBuf) u64(v uint64) []byte { return w.o.AppendUint64(nil, v) }
