package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/internal/linklayer"
)

// ErrFormat is matched (errors.Is) by every error File reports for a file
// that is not a valid pcap or pcapng file, or that is corrupt.
var ErrFormat = errors.New("capture: not a valid pcap or pcapng file")

// FileConfig configures a File. The zero value (or nil) is ready.
type FileConfig struct {
	// ReadBuffer is the size of the read buffer in bytes. Zero means
	// 256 KiB. The buffer grows for a record that does not fit.
	ReadBuffer int
}

const (
	defaultFileBuffer = 256 << 10
	// maxRecord bounds a packet record (pcap) or packet block (pcapng) so
	// a corrupt length cannot make the reader allocate without limit;
	// libpcap refuses captured lengths above 256 KiB too.
	maxCaplen   = 256 << 10
	maxPktBlock = maxCaplen + 64<<10 // room for options
)

// File is a Capturer that reads a pcap or pcapng file: pcap with
// microsecond or nanosecond timestamps in either byte order, and pcapng
// with any number of sections and interfaces, each with its own link type,
// timestamp resolution (if_tsresol) and offset (if_tsoffset).
//
// Link types: Ethernet (with up to four 802.1Q/802.1ad tags), Linux
// cooked capture SLL and SLL2, raw IP (LINKTYPE_RAW 101, and DLT_RAW's
// values 12 and 14 found in old files), IPv4 and IPv6 (228, 229), and
// BSD loopback NULL and LOOP (family in either byte order). A pcap file of
// another link type is refused when opened; packets of such an interface
// in a pcapng file are counted as NotTCP.
//
// Packet.Time is the capture timestamp (pcapng simple packet blocks, which
// carry none, get the previous packet's). Packet.Dir is set from the
// packet type of Linux cooked headers and from pcapng's epb_flags, else
// DirUnknown. A record cut short by the snap length is counted as
// Truncated and skipped, unless only link-layer bytes after the datagram
// were cut. Drop counts of pcapng interface statistics blocks (isb_ifdrop,
// isb_osdrop) are reported as KernelDrops.
//
// At the end of the file ReadPackets returns io.EOF. A corrupt or unknown
// file gives an error matching ErrFormat that names the file and the byte
// offset of the bad record; a file cut off inside a record gives one that
// also matches io.ErrUnexpectedEOF. Errors are sticky. ReadPackets does
// not allocate in steady state; one goroutine may call it at a time, Stats
// and Close are safe from any goroutine.
type File struct {
	Counters

	name   string
	r      io.Reader
	closer io.Closer // the *os.File of OpenFile; nil for NewFileReader
	closed atomic.Bool
	err    error // sticky

	buf    []byte
	rd, wr int   // unread bytes are buf[rd:wr]
	off    int64 // file offset of buf[rd]
	rEOF   bool  // r reported io.EOF

	ng    bool
	order binary.ByteOrder

	// pcap
	nano bool
	link linklayer.Type

	// pcapng: the interfaces of the current section
	ifaces []ngIface
	last   time.Time // time of the last packet, for simple packet blocks
}

type ngIface struct {
	link      linklayer.Type
	supported bool
	snap      uint32
	units     uint64 // timestamp units per second (10^n), or 0 for 2^-shift
	shift     uint
	offset    int64 // if_tsoffset, seconds
	drops     uint64
}

var _ Capturer = (*File)(nil)

// OpenFile opens the pcap or pcapng file at path and reads its header.
// Close closes the file.
func OpenFile(path string, cfg *FileConfig) (*File, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: open %w", err)
	}
	f, err := newFile(osf, path, cfg)
	if err != nil {
		osf.Close()
		return nil, err
	}
	f.closer = osf
	return f, nil
}

// NewFileReader reads a pcap or pcapng stream from r (a pipe, a network
// stream, memory) and reads its header; name is used in errors. Close does
// not close r, and cannot interrupt a Read blocked in r.
func NewFileReader(r io.Reader, name string, cfg *FileConfig) (*File, error) {
	return newFile(r, name, cfg)
}

func newFile(r io.Reader, name string, cfg *FileConfig) (*File, error) {
	size := defaultFileBuffer
	if cfg != nil && cfg.ReadBuffer != 0 {
		if cfg.ReadBuffer < 0 {
			return nil, fmt.Errorf("capture: file %s: read buffer %d is negative", name, cfg.ReadBuffer)
		}
		size = max(cfg.ReadBuffer, 64)
	}
	f := &File{name: name, r: r, buf: make([]byte, size)}
	if err := f.readHeader(); err != nil {
		return nil, err
	}
	return f, nil
}

// Name returns the file name given to OpenFile or NewFileReader.
func (f *File) Name() string { return f.name }

func (f *File) errorf(off int64, format string, args ...any) error {
	return fmt.Errorf("capture: %s: offset %d: %s: %w", f.name, off, fmt.Sprintf(format, args...), ErrFormat)
}

// errCutOff is the error for a file that ends inside a record.
func (f *File) errCutOff(off int64, what string) error {
	return fmt.Errorf("capture: %s: offset %d: file ends inside %s: %w", f.name, off, what,
		errors.Join(ErrFormat, io.ErrUnexpectedEOF))
}

// errKeep stops a batch: reading on would move the buffer that the
// packets already returned by this ReadPackets alias.
var errKeep = errors.New("capture: internal: buffer in use")

// fill makes n unread bytes available in buf[rd:]. With keep set it
// returns errKeep rather than move the unread bytes; at the end of the
// input it returns io.EOF. have is how many unread bytes there are.
func (f *File) fill(n int, keep bool) (have int, err error) {
	for f.wr-f.rd < n {
		if f.rEOF {
			return f.wr - f.rd, io.EOF
		}
		if f.rd+n > len(f.buf) {
			if keep {
				return f.wr - f.rd, errKeep
			}
			if n > len(f.buf) {
				nb := make([]byte, max(n, 2*len(f.buf)))
				copy(nb, f.buf[f.rd:f.wr])
				f.buf = nb
			} else {
				copy(f.buf, f.buf[f.rd:f.wr])
			}
			f.wr -= f.rd
			f.rd = 0
		}
		m, err := f.r.Read(f.buf[f.wr:])
		f.wr += m
		switch {
		case err == io.EOF:
			f.rEOF = true
		case err != nil:
			return f.wr - f.rd, fmt.Errorf("capture: read %s: %w", f.name, err)
		case m == 0:
			// A Reader returning 0, nil repeatedly would spin; io.Reader
			// discourages it, so treat it like a short read and retry.
		}
	}
	return f.wr - f.rd, nil
}

// consume drops n unread bytes.
func (f *File) consume(n int) {
	f.rd += n
	f.off += int64(n)
}

// skip discards n bytes, which may exceed the buffer.
func (f *File) skip(n int64, what string) error {
	start := f.off
	for n > 0 {
		if f.wr == f.rd {
			if _, err := f.fill(1, false); err != nil {
				if err == io.EOF {
					return f.errCutOff(start, what)
				}
				return err
			}
		}
		k := min(int64(f.wr-f.rd), n)
		f.consume(int(k))
		n -= k
	}
	return nil
}

const (
	pcapMagicMicro = 0xa1b2c3d4
	pcapMagicNano  = 0xa1b23c4d
	ngSHB          = 0x0a0d0d0a
	ngBOM          = 0x1a2b3c4d
)

func (f *File) readHeader() error {
	have, err := f.fill(24, false)
	if err != nil && err != io.EOF {
		return err
	}
	if have < 4 {
		if have == 0 {
			return fmt.Errorf("capture: %s: empty file: %w", f.name, ErrFormat)
		}
		return f.errCutOff(0, "the file header")
	}
	b := f.buf[f.rd:f.wr]
	magicLE := binary.LittleEndian.Uint32(b)
	magicBE := binary.BigEndian.Uint32(b)
	switch {
	case magicLE == ngSHB:
		f.ng = true
		return f.readSHB(0, false)
	case magicLE == pcapMagicMicro || magicLE == pcapMagicNano:
		f.order, f.nano = binary.LittleEndian, magicLE == pcapMagicNano
	case magicBE == pcapMagicMicro || magicBE == pcapMagicNano:
		f.order, f.nano = binary.BigEndian, magicBE == pcapMagicNano
	default:
		return f.errorf(0, "unknown magic number %#08x", magicBE)
	}
	if have < 24 {
		return f.errCutOff(0, "the pcap file header")
	}
	if major := f.order.Uint16(b[4:]); major != 2 {
		return f.errorf(4, "pcap version %d.%d, want 2.x", major, f.order.Uint16(b[6:]))
	}
	// The link type word keeps FCS information in its upper bits.
	lt := f.order.Uint32(b[20:])
	f.link = linklayer.Type(lt & 0xffff)
	if !linklayer.Supported(f.link) {
		return f.errorf(20, "unsupported link type %v", f.link)
	}
	f.consume(24)
	return nil
}

// record is one packet read from the file.
type record struct {
	frame []byte
	t     time.Time
	dir   Direction
	link  linklayer.Type
	ok    bool // the link type is supported
}

// ReadPackets implements Capturer.
func (f *File) ReadPackets(pkts []Packet) (int, error) {
	if f.closed.Load() {
		return 0, ErrClosed
	}
	if f.err != nil {
		return 0, f.err
	}
	n := 0
	for n < len(pkts) {
		var rec record
		got, err := f.next(&rec, n > 0)
		if err == errKeep {
			break
		}
		if err != nil {
			f.err = err
			break
		}
		if !got {
			continue
		}
		if !rec.ok {
			f.Reject(errUnsupportedLink)
			continue
		}
		ip, pt, res := linklayer.Strip(rec.link, rec.frame)
		switch res {
		case linklayer.Short:
			f.Reject(errShortLink)
			continue
		case linklayer.NotIP:
			f.Reject(errNotIP)
			continue
		}
		p := &pkts[n]
		p.Time, p.Dir = rec.t, rec.dir
		if pt != linklayer.PacketUnknown {
			p.Dir = dirOfPktType(pt)
		}
		if err := p.Decode(ip); err != nil {
			f.Reject(err)
			continue
		}
		f.Accept(p)
		n++
	}
	if n > 0 {
		return n, nil
	}
	if f.closed.Load() {
		return 0, ErrClosed
	}
	return 0, f.err
}

// Reasons File passes a record over before decoding it.
var (
	errShortLink       = &decodeError{ErrTruncated, "capture: frame ends inside its link-layer header"}
	errNotIP           = &decodeError{ErrNotTCP, "capture: frame carries neither IPv4 nor IPv6"}
	errUnsupportedLink = &decodeError{ErrNotTCP, "capture: interface of an unsupported link type"}
)

// next reads the next record into rec; got is false for a block that holds
// no packet. keep forbids moving the buffer (errKeep when it would have
// to).
func (f *File) next(rec *record, keep bool) (got bool, err error) {
	if f.ng {
		return f.nextBlock(rec, keep)
	}
	start := f.off
	have, err := f.fill(16, keep)
	if err != nil {
		if err == io.EOF {
			if have == 0 {
				return false, io.EOF
			}
			return false, f.errCutOff(start, "a record header")
		}
		return false, err
	}
	h := f.buf[f.rd:]
	sec, frac := f.order.Uint32(h), f.order.Uint32(h[4:])
	caplen, origlen := f.order.Uint32(h[8:]), f.order.Uint32(h[12:])
	if caplen > maxCaplen {
		return false, f.errorf(start, "record length %d exceeds %d", caplen, maxCaplen)
	}
	if _, err := f.fill(16+int(caplen), keep); err != nil {
		if err == io.EOF {
			return false, f.errCutOff(start, "a packet record")
		}
		return false, err
	}
	nsec := int64(frac)
	if !f.nano {
		nsec *= 1000
	}
	rec.frame = f.buf[f.rd+16 : f.rd+16+int(caplen)]
	rec.t = time.Unix(int64(sec), nsec)
	rec.link, rec.ok = f.link, true
	if origlen < caplen {
		return false, f.errorf(start, "original length %d below captured length %d", origlen, caplen)
	}
	f.consume(16 + int(caplen))
	return true, nil
}

// pcapng block types (draft-ietf-opsawg-pcapng).
const (
	ngIDB = 1
	ngPB  = 2 // obsolete packet block
	ngSPB = 3
	ngISB = 5
	ngEPB = 6
)

func (f *File) nextBlock(rec *record, keep bool) (bool, error) {
	start := f.off
	have, err := f.fill(12, keep)
	if err != nil {
		if err == io.EOF {
			if have == 0 {
				return false, io.EOF
			}
			return false, f.errCutOff(start, "a block header")
		}
		return false, err
	}
	h := f.buf[f.rd:]
	if binary.LittleEndian.Uint32(h) == ngSHB {
		return false, f.readSHB(start, keep)
	}
	typ, blen := f.order.Uint32(h), f.order.Uint32(h[4:])
	if blen < 12 || blen%4 != 0 {
		return false, f.errorf(start, "block of type %#x has length %d", typ, blen)
	}
	switch typ {
	case ngEPB, ngSPB, ngPB, ngIDB, ngISB:
	default:
		// Name resolution, decryption secrets, custom and unknown blocks.
		if keep && int(blen) > f.wr-f.rd {
			return false, errKeep // skipping would reuse the buffer
		}
		return false, f.skip(int64(blen), "a block")
	}
	if blen > maxPktBlock {
		return false, f.errorf(start, "block of type %#x has length %d, over %d", typ, blen, maxPktBlock)
	}
	if _, err := f.fill(int(blen), keep); err != nil {
		if err == io.EOF {
			return false, f.errCutOff(start, "a block")
		}
		return false, err
	}
	blk := f.buf[f.rd : f.rd+int(blen)]
	if trail := f.order.Uint32(blk[blen-4:]); trail != blen {
		return false, f.errorf(start, "block length %d, trailing length %d", blen, trail)
	}
	body := blk[8 : blen-4]
	var got bool
	switch typ {
	case ngIDB:
		err = f.readIDB(start, body)
	case ngISB:
		err = f.readISB(start, body)
	case ngEPB, ngPB:
		got, err = f.readEPB(start, typ, body, rec)
	case ngSPB:
		got, err = f.readSPB(start, body, rec)
	}
	if err != nil {
		return false, err
	}
	f.consume(int(blen))
	return got, nil
}

func (f *File) readSHB(start int64, keep bool) error {
	if _, err := f.fill(16, keep); err != nil {
		if err == io.EOF {
			return f.errCutOff(start, "a section header block")
		}
		return err
	}
	h := f.buf[f.rd:]
	switch {
	case binary.LittleEndian.Uint32(h[8:]) == ngBOM:
		f.order = binary.LittleEndian
	case binary.BigEndian.Uint32(h[8:]) == ngBOM:
		f.order = binary.BigEndian
	default:
		return f.errorf(start, "section header with byte-order magic %#08x", binary.BigEndian.Uint32(h[8:]))
	}
	blen := f.order.Uint32(h[4:])
	if blen < 28 || blen%4 != 0 {
		return f.errorf(start, "section header block length %d", blen)
	}
	if major := f.order.Uint16(h[12:]); major != 1 {
		return f.errorf(start, "pcapng version %d.%d, want 1.x", major, f.order.Uint16(h[14:]))
	}
	if blen > maxPktBlock && keep {
		return errKeep
	}
	if blen <= maxPktBlock {
		if _, err := f.fill(int(blen), keep); err != nil {
			if err == io.EOF {
				return f.errCutOff(start, "a section header block")
			}
			return err
		}
		if trail := f.order.Uint32(f.buf[f.rd+int(blen)-4:]); trail != blen {
			return f.errorf(start, "section header block length %d, trailing length %d", blen, trail)
		}
	}
	// A new section starts with no interfaces.
	f.ifaces = f.ifaces[:0]
	return f.skip(int64(blen), "a section header block")
}

// options walks pcapng options (code, length, value padded to 4 bytes)
// and calls fn for each until opt_endofopt.
func (f *File) options(start int64, b []byte, fn func(code uint16, v []byte) error) error {
	for len(b) >= 4 {
		code, l := f.order.Uint16(b), int(f.order.Uint16(b[2:]))
		if code == 0 {
			return nil
		}
		padded := (l + 3) &^ 3
		if 4+padded > len(b) {
			return f.errorf(start, "option %d of length %d runs past its block", code, l)
		}
		if err := fn(code, b[4:4+l]); err != nil {
			return err
		}
		b = b[4+padded:]
	}
	return nil
}

func (f *File) readIDB(start int64, body []byte) error {
	if len(body) < 8 {
		return f.errorf(start, "interface description block too short")
	}
	if len(f.ifaces) >= 1<<16 {
		return f.errorf(start, "more than %d interfaces", 1<<16)
	}
	lt := linklayer.Type(f.order.Uint16(body))
	ifc := ngIface{link: lt, supported: linklayer.Supported(lt), snap: f.order.Uint32(body[4:]), units: 1e6}
	err := f.options(start, body[8:], func(code uint16, v []byte) error {
		switch code {
		case 9: // if_tsresol
			if len(v) != 1 {
				return f.errorf(start, "if_tsresol of length %d", len(v))
			}
			if v[0]&0x80 != 0 {
				ifc.units, ifc.shift = 0, uint(v[0]&0x7f)
				if ifc.shift > 63 {
					return f.errorf(start, "if_tsresol 2^-%d is finer than supported", ifc.shift)
				}
			} else {
				if v[0] > 19 {
					return f.errorf(start, "if_tsresol 10^-%d is finer than supported", v[0])
				}
				ifc.units = 1
				for range v[0] {
					ifc.units *= 10
				}
			}
		case 14: // if_tsoffset
			if len(v) != 8 {
				return f.errorf(start, "if_tsoffset of length %d", len(v))
			}
			ifc.offset = int64(f.order.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return err
	}
	f.ifaces = append(f.ifaces, ifc)
	return nil
}

func (f *File) readISB(start int64, body []byte) error {
	if len(body) < 12 {
		return f.errorf(start, "interface statistics block too short")
	}
	id := f.order.Uint32(body)
	if int(id) >= len(f.ifaces) {
		return f.errorf(start, "statistics for interface %d of %d", id, len(f.ifaces))
	}
	var drops uint64
	err := f.options(start, body[12:], func(code uint16, v []byte) error {
		if (code == 5 || code == 7) && len(v) == 8 { // isb_ifdrop, isb_osdrop
			drops += f.order.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The counts are totals since capture start: report what is new.
	ifc := &f.ifaces[id]
	if drops > ifc.drops {
		f.AddKernelDrops(drops - ifc.drops)
		ifc.drops = drops
	}
	return nil
}

func (f *File) iface(start int64, id uint32) (*ngIface, error) {
	if int(id) >= len(f.ifaces) {
		return nil, f.errorf(start, "packet of interface %d, but the section describes %d", id, len(f.ifaces))
	}
	return &f.ifaces[id], nil
}

func (f *File) readEPB(start int64, typ uint32, body []byte, rec *record) (bool, error) {
	if len(body) < 20 {
		return false, f.errorf(start, "packet block too short")
	}
	var id uint32
	if typ == ngPB {
		id = uint32(f.order.Uint16(body))
	} else {
		id = f.order.Uint32(body)
	}
	ifc, err := f.iface(start, id)
	if err != nil {
		return false, err
	}
	ts := uint64(f.order.Uint32(body[4:]))<<32 | uint64(f.order.Uint32(body[8:]))
	caplen, origlen := f.order.Uint32(body[12:]), f.order.Uint32(body[16:])
	padded := (uint64(caplen) + 3) &^ 3
	if 20+padded > uint64(len(body)) {
		return false, f.errorf(start, "captured length %d runs past its block", caplen)
	}
	if origlen < caplen {
		return false, f.errorf(start, "original length %d below captured length %d", origlen, caplen)
	}
	rec.frame = body[20 : 20+caplen]
	rec.t = ifc.time(ts)
	rec.link, rec.ok = ifc.link, ifc.supported
	rec.dir = DirUnknown
	err = f.options(start, body[20+padded:], func(code uint16, v []byte) error {
		if code == 2 && len(v) == 4 { // epb_flags: bits 0-1 are the direction
			switch f.order.Uint32(v) & 3 {
			case 1:
				rec.dir = DirIn
			case 2:
				rec.dir = DirOut
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	f.last = rec.t
	return true, nil
}

func (f *File) readSPB(start int64, body []byte, rec *record) (bool, error) {
	if len(body) < 4 {
		return false, f.errorf(start, "simple packet block too short")
	}
	ifc, err := f.iface(start, 0)
	if err != nil {
		return false, err
	}
	origlen := f.order.Uint32(body)
	caplen := min(origlen, uint32(len(body)-4))
	if ifc.snap != 0 {
		caplen = min(caplen, ifc.snap)
	}
	rec.frame = body[4 : 4+caplen]
	rec.t, rec.dir = f.last, DirUnknown
	rec.link, rec.ok = ifc.link, ifc.supported
	return true, nil
}

// time converts a pcapng timestamp in the interface's units.
func (i *ngIface) time(ts uint64) time.Time {
	var sec, nsec uint64
	if i.units != 0 {
		sec, nsec = ts/i.units, ts%i.units
		switch {
		case i.units <= 1e9:
			nsec *= 1e9 / i.units
		default:
			nsec /= i.units / 1e9
		}
	} else {
		sec = ts >> i.shift
		frac := ts & (1<<i.shift - 1)
		hi, lo := bits.Mul64(frac, 1e9)
		if i.shift > 0 {
			nsec = hi<<(64-i.shift) | lo>>i.shift
		}
	}
	return time.Unix(int64(sec)+i.offset, int64(nsec))
}

// Close implements Capturer: later calls return ErrClosed. It closes the
// file of OpenFile (not the reader of NewFileReader) and is idempotent.
func (f *File) Close() error {
	if !f.closed.CompareAndSwap(false, true) {
		return nil
	}
	if f.closer != nil {
		if err := f.closer.Close(); err != nil {
			return fmt.Errorf("capture: close %s: %w", f.name, err)
		}
	}
	return nil
}
