package intercept

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/header"
)

// The classic framing, byte-compatible with TCPCopy 1.x (the "combined"
// build of intercept), so either half pairs with the C original. It carries
// IPv4 only and has no authentication, which is why a Server accepts it
// only when ServerConfig.AcceptClassic is set.
//
// copier -> server: 14-byte messages, all fields in network byte order:
//
//	message = client IPv4 (4) | client port (2) | type u16 | target IPv4 (4) | target port (2)
//
//	type 6 (ClassicVersion) the first message on a connection, every other field zero
//	type 1 (ClassicAdd)     the client is about to open a session with the target
//	type 2 (ClassicRemove)  the session ended (accepted; the Client never sends it,
//	                        since the C intercept expires its routes itself)
//
// server -> copier: frames of count u16 then count fixed-size records:
//
//	record (64 bytes)  = the response's first 20 bytes of IPv4 header |
//	                     20 bytes of TCP header | 24 bytes of TCP options
//	record (192 bytes) = the same | 128 more bytes (the payload build)
//
// with count <= 16 (64-byte records) or <= 6 (192-byte records). The TCP
// options and then the payload follow the TCP header contiguously, as in
// the datagram; what the header lengths do not cover is zero. Responses
// with IP options or more than 24 bytes of TCP options are normalised by
// the encoder (IHL 5; whole options up to 24 bytes, the rest cut; data
// offset at most 11 words; the IP total length reduced by what was cut, so
// the payload length it implies stays true) and again by the decoder, which
// also accepts what a C intercept sends unnormalised. The IPv4 header
// checksum is fixed when the encoder changes the header; the TCP checksum is
// left as it was (a report is never sent on).

// Classic framing constants.
const (
	// ClassicMsgLen is the length of a copier -> server message.
	ClassicMsgLen = 14
	// ClassicRecordLen is the record of the default build.
	ClassicRecordLen = 64
	// ClassicPayloadRecordLen is the record of the payload build.
	ClassicPayloadRecordLen = 192
	// ClassicMaxRecords is the most records in a frame of the default build.
	ClassicMaxRecords = 16
	// ClassicMaxPayloadRecords is the most records in a frame of the payload
	// build.
	ClassicMaxPayloadRecords = 6
	// ClassicPayloadLen is the most payload bytes a payload-build record
	// carries.
	ClassicPayloadLen = 128

	classicOptLen = 24
	classicTCPMax = header.TCPMinLen + classicOptLen
)

// ClassicType is the type of a classic copier -> server message. The zero
// value is invalid.
type ClassicType uint16

// Classic message types.
const (
	ClassicAdd     ClassicType = 1
	ClassicRemove  ClassicType = 2
	ClassicVersion ClassicType = 6
)

// String returns the name of t.
func (t ClassicType) String() string {
	switch t {
	case ClassicAdd:
		return "ClientAdd"
	case ClassicRemove:
		return "ClientRemove"
	case ClassicVersion:
		return "Version"
	}
	return fmt.Sprintf("ClassicType(%d)", uint16(t))
}

// ClassicMessage is a decoded copier -> server classic message.
type ClassicMessage struct {
	Type           ClassicType
	Client, Target capture.Endpoint // invalid (zero) in a Version message
}

// AppendClassicVersion appends the version message that starts a classic
// connection.
func AppendClassicVersion(b []byte) []byte {
	var m [ClassicMsgLen]byte
	binary.BigEndian.PutUint16(m[6:], uint16(ClassicVersion))
	return append(b, m[:]...)
}

// AppendClassicMessage appends a ClassicAdd or ClassicRemove message. The
// endpoints must be IPv4; otherwise it reports an error and returns b
// unchanged.
func AppendClassicMessage(b []byte, t ClassicType, client, target capture.Endpoint) ([]byte, error) {
	if t != ClassicAdd && t != ClassicRemove {
		return b, fmt.Errorf("intercept: classic message of type %v", t)
	}
	if !client.IsValid() || !target.IsValid() || !client.Addr().Is4() || !target.Addr().Is4() {
		return b, fmt.Errorf("intercept: classic framing carries IPv4 only (client %v, target %v)", client, target)
	}
	c, tg := client.Addr().As4(), target.Addr().As4()
	b = append(b, c[:]...)
	b = binary.BigEndian.AppendUint16(b, client.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(t))
	b = append(b, tg[:]...)
	return binary.BigEndian.AppendUint16(b, target.Port()), nil
}

// ParseClassicMessage parses one 14-byte message. A Version message must
// have every other field zero; the other known types need nothing else.
func ParseClassicMessage(b []byte) (ClassicMessage, error) {
	if len(b) != ClassicMsgLen {
		return ClassicMessage{}, protoErrorf("classic message of %d bytes, want %d", len(b), ClassicMsgLen)
	}
	t := ClassicType(binary.BigEndian.Uint16(b[6:]))
	switch t {
	case ClassicVersion:
		for i, c := range b {
			if c != 0 && i != 6 && i != 7 {
				return ClassicMessage{}, protoErrorf("classic version message with non-zero byte %d", i)
			}
		}
		return ClassicMessage{Type: t}, nil
	case ClassicAdd, ClassicRemove:
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[0:4])), binary.BigEndian.Uint16(b[4:]))
		target := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[8:12])), binary.BigEndian.Uint16(b[12:]))
		return ClassicMessage{Type: t, Client: capture.EndpointFrom(client), Target: capture.EndpointFrom(target)}, nil
	}
	return ClassicMessage{}, protoErrorf("classic message of unknown type %d", uint16(t))
}

// classicLayout returns the record length and the most records per frame.
func classicLayout(payload bool) (recLen, maxRecs int) {
	if payload {
		return ClassicPayloadRecordLen, ClassicMaxPayloadRecords
	}
	return ClassicRecordLen, ClassicMaxRecords
}

// AppendClassicRecord appends the classic record reporting p (IPv4 only):
// 64 bytes, or 192 with payload (up to ClassicPayloadLen bytes of it).
func AppendClassicRecord(b []byte, p *capture.Packet, payload bool) ([]byte, error) {
	if p.IsIPv6() || len(p.Data) < header.IPv4MinLen {
		return b, fmt.Errorf("intercept: classic framing carries IPv4 only (response %v)", p.Flow())
	}
	recLen, _ := classicLayout(payload)
	start := len(b)
	b = append(b, make([]byte, recLen)...)
	rec := b[start:]
	copy(rec, p.Data[:header.IPv4MinLen])
	tcp := p.Data[p.IPHeaderLen():]
	copy(rec[header.IPv4MinLen:], tcp[:header.TCPMinLen])
	opts := cutOptions(p.Options(), classicOptLen)
	copy(rec[header.IPv4MinLen+header.TCPMinLen:], opts)
	off := header.TCPMinLen + (len(opts)+3)&^3
	rec[header.IPv4MinLen+12] = byte(off/4)<<4 | tcp[12]&0x0f
	if payload {
		copy(rec[header.IPv4MinLen+off:], p.Payload()[:min(len(p.Payload()), ClassicPayloadLen)])
	}
	ip := header.IPv4(rec)
	if p.IPHeaderLen() != header.IPv4MinLen || off != p.DataOffset() {
		rec[0] = 0x45
		ip.SetTotalLen(header.IPv4MinLen + off + p.PayloadLen())
		ip.SetChecksum(0)
		ip.SetChecksum(ip.ComputeChecksum())
	}
	return b, nil
}

// cutOptions returns the longest prefix of opts that holds whole options
// and fits limit bytes (opts from a decoded Packet are valid).
func cutOptions(opts []byte, limit int) []byte {
	if len(opts) <= limit {
		return opts
	}
	i := 0
	for i < limit {
		switch opts[i] {
		case header.OptEnd:
			return opts[:i]
		case header.OptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return opts[:i]
		}
		l := int(opts[i+1])
		if l < 2 || i+l > limit {
			return opts[:i]
		}
		i += l
	}
	return opts[:i]
}

// DecodeClassicRecord decodes one classic record into p, which then aliases
// rec. It normalises rec in place first (see the framing notes: IHL 5, data
// offset at most 11 words, options cut at the last whole one) so that what a
// C intercept sends decodes too, and cuts the datagram to the bytes the
// record really carries: the headers, and with payload (a 192-byte record)
// up to ClassicPayloadLen payload bytes. Errors match ErrProtocol.
func DecodeClassicRecord(rec []byte, p *capture.Packet) error {
	if len(rec) != ClassicRecordLen && len(rec) != ClassicPayloadRecordLen {
		return protoErrorf("classic record of %d bytes, want %d or %d", len(rec), ClassicRecordLen, ClassicPayloadRecordLen)
	}
	if rec[0]>>4 != 4 {
		return protoErrorf("classic record is not IPv4 (version %d)", rec[0]>>4)
	}
	ip := header.IPv4(rec)
	ihl := ip.IHL()
	total := ip.TotalLen()
	tcp := header.TCP(rec[header.IPv4MinLen:])
	off := tcp.DataOffset()
	if ihl < header.IPv4MinLen || off < header.TCPMinLen || total < ihl+off {
		return protoErrorf("classic record with IHL %d, data offset %d, total length %d", ihl, off, total)
	}
	payloadLen := total - ihl - off
	newOff := min(off, classicTCPMax)
	opts := rec[header.IPv4MinLen+header.TCPMinLen : header.IPv4MinLen+newOff]
	keep := validPrefix(opts)
	clear(opts[keep:])
	if ihl != header.IPv4MinLen || newOff != off {
		rec[0] = 0x45
		rec[header.IPv4MinLen+12] = byte(newOff/4)<<4 | rec[header.IPv4MinLen+12]&0x0f
		if header.IPv4MinLen+newOff+payloadLen > 0xffff {
			return protoErrorf("classic record claims %d payload bytes", payloadLen)
		}
		ip.SetTotalLen(header.IPv4MinLen + newOff + payloadLen)
	}
	n := header.IPv4MinLen + newOff
	if len(rec) == ClassicPayloadRecordLen {
		n += min(payloadLen, ClassicPayloadLen, len(rec)-n)
	}
	if err := p.DecodeHeaders(rec[:n]); err != nil {
		return protoErrorf("classic record: %v", err)
	}
	return nil
}

// validPrefix returns the length of the longest prefix of opts made of
// whole options (an end-of-list option ends it).
func validPrefix(opts []byte) int {
	i := 0
	for i < len(opts) {
		switch opts[i] {
		case header.OptEnd:
			return i
		case header.OptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return i
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return i
		}
		i += l
	}
	return i
}

// ClassicEncoder appends classic response frames to B, starting a new frame
// when the open one holds its most records. B holds complete frames only
// after Flush. The zero value encodes 64-byte records; set Payload for
// 192-byte ones before the first Add. A ClassicEncoder is not safe for
// concurrent use.
type ClassicEncoder struct {
	// B is the encoded frames.
	B []byte
	// Payload selects the payload build's 192-byte records.
	Payload bool

	open  int
	count int
}

// Add appends a record reporting p; it reports an error for IPv6.
func (e *ClassicEncoder) Add(p *capture.Packet) error {
	_, maxRecs := classicLayout(e.Payload)
	if e.count == maxRecs {
		e.Flush()
	}
	if p.IsIPv6() {
		return fmt.Errorf("intercept: classic framing carries IPv4 only (response %v)", p.Flow())
	}
	if e.count == 0 {
		e.open = len(e.B)
		e.B = append(e.B, 0, 0)
	}
	var err error
	e.B, err = AppendClassicRecord(e.B, p, e.Payload)
	if err != nil {
		return err
	}
	e.count++
	return nil
}

// Flush completes the open frame, if any.
func (e *ClassicEncoder) Flush() {
	if e.count == 0 {
		return
	}
	binary.BigEndian.PutUint16(e.B[e.open:], uint16(e.count))
	e.count = 0
}

// Reset empties B, keeping its storage.
func (e *ClassicEncoder) Reset() {
	e.B = e.B[:0]
	e.count = 0
}

// ClassicReader reads classic response frames from a stream into one
// buffer of the largest frame (1 KiB or 1154 bytes). A count above the
// build's maximum is a protocol error; a frame of zero records is accepted
// and yields none. A ClassicReader is not safe for concurrent use.
type ClassicReader struct {
	r       io.Reader
	payload bool
	buf     []byte
}

// NewClassicReader returns a reader of frames with 64-byte records, or
// 192-byte ones when payload is set.
func NewClassicReader(r io.Reader, payload bool) *ClassicReader {
	recLen, maxRecs := classicLayout(payload)
	return &ClassicReader{r: r, payload: payload, buf: make([]byte, 2+recLen*maxRecs)}
}

// ReadResponses reads the next frame and appends its decoded responses to
// pkts. They alias the reader's buffer until the next call. Stream errors
// are returned as they are (io.EOF at a frame boundary, io.ErrUnexpectedEOF
// inside one); protocol violations match ErrProtocol.
func (cr *ClassicReader) ReadResponses(pkts []capture.Packet) ([]capture.Packet, error) {
	if _, err := io.ReadFull(cr.r, cr.buf[:2]); err != nil {
		return pkts, err
	}
	n := int(binary.BigEndian.Uint16(cr.buf))
	recLen, maxRecs := classicLayout(cr.payload)
	if n > maxRecs {
		return pkts, protoErrorf("classic frame of %d records exceeds %d (does the intercept build carry payload? set ClassicPayload to match)", n, maxRecs)
	}
	body := cr.buf[2 : 2+n*recLen]
	if _, err := io.ReadFull(cr.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return pkts, err
	}
	for i := range n {
		var p capture.Packet
		if err := DecodeClassicRecord(body[i*recLen:(i+1)*recLen], &p); err != nil {
			return pkts, protoErrorf("record %d of %d: %v", i, n, err)
		}
		pkts = append(pkts, p)
	}
	return pkts, nil
}

// ClassicMessageReader reads classic copier -> server messages. The zero
// value is not usable; use NewClassicMessageReader.
type ClassicMessageReader struct {
	r   io.Reader
	buf [ClassicMsgLen]byte
}

// NewClassicMessageReader returns a reader of 14-byte messages from r.
func NewClassicMessageReader(r io.Reader) *ClassicMessageReader {
	return &ClassicMessageReader{r: r}
}

// ReadMessage reads and parses the next message. Stream errors are returned
// as they are (io.ErrUnexpectedEOF inside a message); protocol violations
// match ErrProtocol.
func (mr *ClassicMessageReader) ReadMessage() (ClassicMessage, error) {
	if _, err := io.ReadFull(mr.r, mr.buf[:]); err != nil {
		return ClassicMessage{}, err
	}
	return ParseClassicMessage(mr.buf[:])
}
