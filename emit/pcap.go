package emit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/shadowcopy/tcpcopy/internal/linklayer"
)

// PcapWriterConfig configures a PcapWriter. The zero value (or nil) writes
// raw IP (LINKTYPE_RAW) records with microsecond timestamps from the
// system clock.
type PcapWriterConfig struct {
	// Ethernet writes Ethernet frames (LINKTYPE_ETHERNET) with SrcMAC,
	// DstMAC and the EtherType of each datagram, for tools that want a
	// link layer; false writes raw IP (LINKTYPE_RAW).
	Ethernet bool
	// SrcMAC and DstMAC are the Ethernet addresses; nil means
	// 02:00:00:00:00:01 and 02:00:00:00:00:02 (locally administered).
	SrcMAC, DstMAC net.HardwareAddr
	// Nanosecond writes nanosecond timestamps (magic a1b23c4d); false
	// writes microseconds, which every tool reads.
	Nanosecond bool
	// SnapLen is the file header's snap length; longer datagrams are cut
	// to it (the record keeps the original length). Zero means 262144.
	SnapLen int
	// Now stamps each datagram given to Emit. Nil means time.Now.
	Now func() time.Time
	// BufferSize is the size of the write buffer; Flush and Close empty
	// it. Zero means 64 KiB; a negative value writes every record through.
	BufferSize int
}

// PcapWriter is an Emitter that writes the datagrams it is given to a pcap
// file instead of a network: for dry runs, tests and debugging. capture's
// File reads what it writes. Each Emit stamps its datagrams with one
// reading of the clock.
//
// Datagrams that are not IPv4 or IPv6 are counted as Invalid and not
// written. A write error is returned by that Emit and every later call (a
// writer that failed once cannot be trusted with record boundaries). Emit
// does not allocate. PcapWriter is safe for concurrent use.
type PcapWriter struct {
	Counters

	mu      sync.Mutex
	w       io.Writer
	bw      *bufio.Writer // nil when writing through
	err     error
	closed  bool
	eth     bool
	nano    bool
	snap    int
	now     func() time.Time
	hdr     [16 + linklayer.EthernetLen]byte
	src     [6]byte
	dst     [6]byte
	written int64
}

var _ Emitter = (*PcapWriter)(nil)

// NewPcapWriter writes the pcap file header to w and returns the writer.
// Close flushes it; w is not closed.
func NewPcapWriter(w io.Writer, cfg *PcapWriterConfig) (*PcapWriter, error) {
	var c PcapWriterConfig
	if cfg != nil {
		c = *cfg
	}
	if c.SnapLen == 0 {
		c.SnapLen = 262144
	}
	if c.SnapLen < 0 {
		return nil, fmt.Errorf("emit: pcap snap length %d is negative", c.SnapLen)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	p := &PcapWriter{w: w, eth: c.Ethernet, nano: c.Nanosecond, snap: c.SnapLen, now: c.Now}
	p.src, p.dst = [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 2}
	for _, m := range []struct {
		in  net.HardwareAddr
		out *[6]byte
	}{{c.SrcMAC, &p.src}, {c.DstMAC, &p.dst}} {
		if m.in == nil {
			continue
		}
		if len(m.in) != 6 {
			return nil, fmt.Errorf("emit: pcap writer: %v is not an Ethernet (EUI-48) address", m.in)
		}
		copy(m.out[:], m.in)
	}
	switch {
	case c.BufferSize == 0:
		p.bw = bufio.NewWriterSize(w, 64<<10)
	case c.BufferSize > 0:
		p.bw = bufio.NewWriterSize(w, c.BufferSize)
	}
	var fh [24]byte
	magic := uint32(0xa1b2c3d4)
	if p.nano {
		magic = 0xa1b23c4d
	}
	lt := linklayer.Raw
	if p.eth {
		lt = linklayer.Ethernet
	}
	le := binary.LittleEndian
	le.PutUint32(fh[0:], magic)
	le.PutUint16(fh[4:], 2)
	le.PutUint16(fh[6:], 4)
	le.PutUint32(fh[16:], uint32(p.snap))
	le.PutUint32(fh[20:], uint32(lt))
	if err := p.write(fh[:]); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *PcapWriter) write(b []byte) error {
	var err error
	if p.bw != nil {
		_, err = p.bw.Write(b)
	} else {
		_, err = p.w.Write(b)
	}
	if err != nil {
		p.err = fmt.Errorf("emit: write pcap record at offset %d: %w", p.written, err)
		return p.err
	}
	p.written += int64(len(b))
	return nil
}

// Emit implements Emitter: it writes each datagram with the current time.
func (p *PcapWriter) Emit(pkts [][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	if len(pkts) == 0 {
		return nil
	}
	t := p.now()
	for _, b := range pkts {
		if err := p.writePacket(t, b); err != nil {
			return err
		}
	}
	return nil
}

// WritePacket writes one IP datagram stamped t, for callers that keep their
// own clock (recording a capture, building test files).
func (p *PcapWriter) WritePacket(t time.Time, ip []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	return p.writePacket(t, ip)
}

func (p *PcapWriter) usable() error {
	if p.closed {
		return ErrClosed
	}
	return p.err
}

func (p *PcapWriter) writePacket(t time.Time, ip []byte) error {
	et := linklayer.EtherTypeOf(ip)
	if et == 0 {
		p.AddDrop(Invalid)
		return nil
	}
	n := len(ip)
	hl := 16
	if p.eth {
		linklayer.PutEthernet(p.hdr[16:], p.dst[:], p.src[:], et)
		hl += linklayer.EthernetLen
		n += linklayer.EthernetLen
	}
	capLen := min(n, p.snap)
	frac := uint32(t.Nanosecond())
	if !p.nano {
		frac /= 1000
	}
	le := binary.LittleEndian
	le.PutUint32(p.hdr[0:], uint32(t.Unix()))
	le.PutUint32(p.hdr[4:], frac)
	le.PutUint32(p.hdr[8:], uint32(capLen))
	le.PutUint32(p.hdr[12:], uint32(n))
	hdr := p.hdr[:min(hl, 16+capLen)]
	if err := p.write(hdr); err != nil {
		return err
	}
	if rest := capLen - (len(hdr) - 16); rest > 0 {
		if err := p.write(ip[:rest]); err != nil {
			return err
		}
	}
	p.AddSent(len(ip))
	return nil
}

// Flush writes buffered records to the underlying writer.
func (p *PcapWriter) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	return p.flush()
}

func (p *PcapWriter) flush() error {
	if p.bw == nil {
		return nil
	}
	if err := p.bw.Flush(); err != nil {
		p.err = fmt.Errorf("emit: flush pcap writer: %w", err)
		return p.err
	}
	return nil
}

// Close flushes the buffer; later Emits return ErrClosed. It does not close
// the underlying writer and is idempotent.
func (p *PcapWriter) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.err != nil {
		if errors.Is(p.err, ErrClosed) {
			return nil
		}
		return p.err
	}
	return p.flush()
}
