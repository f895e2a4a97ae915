package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/capture"
)

// The native wire protocol (version 2) between a copier (Client) and an
// intercept (Server), over one TCP connection (optionally inside TLS). All
// integers are big endian.
//
// Handshake: a mutual challenge and response over a shared secret, which
// never crosses the wire. Every message starts with the same 8-byte prefix:
//
//	prefix       = magic "TCPC" (4) | version u8 (2) | flags u8 (0) | reserved u16 (0)
//	client hello = prefix | copier id (8) | client nonce (16)                     32 bytes
//	server hello = prefix | server nonce (16) | server proof (32)                 56 bytes
//	client proof = HMAC-SHA256(secret, "tcpcopy v2 client" | client hello |
//	               server hello[:24] | binding)                                  32 bytes
//	server proof = HMAC-SHA256(secret, "tcpcopy v2 server" | client hello |
//	               server nonce | binding)
//	welcome      = a frame of type 4 with an empty body                           4 bytes
//
// The copier sends its hello; the server answers with its nonce and a proof
// that it knows the secret; the copier checks that proof (a server that fails
// it is left at once, so a copier never feeds an impostor) and sends its own
// proof; the server checks it and sends the welcome, after which frames flow.
// The nonces are 16 random bytes per connection, so no proof can be
// replayed, and the two proofs carry different labels, so neither can be
// reflected. binding is empty on plain TCP; under TLS it is 32 bytes of
// keying material exported from the TLS session (RFC 5705, label
// "EXPORTER-tcpcopy-v2"), which ties the proofs to that TLS session. The
// copier id is random per Client: the server uses it to tell which
// connections belong to one copier (a ClientRemove may arrive over another
// connection of the same copier than its ClientAdd).
//
// A server that gets a bad magic closes the connection. One that gets another
// version answers with its own 8-byte prefix (so the peer can say which
// version it should speak) and closes; version 1 had no authentication and
// an 8-byte hello. A wrong proof closes the connection on either side
// (ErrAuth). No flags are defined: senders set flags and reserved to zero,
// receivers ignore them. The classic TCPCopy framing (classic.go) starts
// with zero bytes, so the magic also tells the two framings apart.
//
// Frames. After the handshake each side sends frames:
//
//	frame    = type u8 | reserved u8 (0) | length u16 | body (length bytes)
//	endpoint = family u8 (4 or 6) | address (4 or 16) | port u16
//
//	type 1 ClientAdd     copier -> server  body = client endpoint | target endpoint
//	type 2 ClientRemove  copier -> server  body = client endpoint | target endpoint
//	type 3 Responses     server -> copier  body = count u16 | count x record
//	type 4 Welcome       server -> copier  body empty; the handshake's last message
//	record   = length u16 | the response datagram's first length bytes
//
// ClientAdd tells the server that responses sent to the client endpoint
// belong to this copier (the route key is the client address and port; the
// target endpoint is the response's source). ClientRemove ends that route. A
// Responses record holds the IP header, the TCP header with its options, and
// up to the server's payload limit of TCP payload; the IP length field is
// left as the target sent it, so capture.Packet.DecodeHeaders on the
// receiver gives the true PayloadLen while Payload holds the bytes carried.
// Records must fill the body exactly.
//
// A receiver rejects an unknown type, a frame sent in the wrong direction, a
// body longer than its type allows (ClientAdd and ClientRemove at most 38
// bytes, Welcome 0, Responses at most MaxFrame) and a body that does not
// parse, with an error matching ErrProtocol; the connection is then closed.
// The reader never allocates more than the length of the frame in hand.

// Wire protocol constants.
const (
	// WireVersion is the native protocol version this package speaks.
	WireVersion = 2
	// HelloLen is the length of the prefix every handshake message starts
	// with: magic, version, flags, reserved.
	HelloLen = 8
	// ClientHelloLen is the length of a copier's hello.
	ClientHelloLen = HelloLen + 8 + NonceLen
	// ServerHelloLen is the length of a server's hello.
	ServerHelloLen = HelloLen + NonceLen + ProofLen
	// NonceLen is the length of a handshake nonce.
	NonceLen = 16
	// ProofLen is the length of a handshake proof (HMAC-SHA256).
	ProofLen = 32
	// FrameHeaderLen is the length of a frame header.
	FrameHeaderLen = 4
	// MaxFrame is the largest frame body: the cap of the u16 length field.
	MaxFrame = 0xffff
	// MaxRecord is the largest Responses record (the cut datagram) that
	// fits in one frame next to the count and its own length.
	MaxRecord = MaxFrame - 4
	// maxClientBody is the longest ClientAdd/ClientRemove body (two IPv6
	// endpoints).
	maxClientBody = 2 * (1 + 16 + 2)
)

var helloMagic = [4]byte{'T', 'C', 'P', 'C'}

// ErrProtocol is matched (errors.Is) by every error that reports a peer
// breaking the wire protocol: bad hello, unknown frame type, bad length,
// unparsable body.
var ErrProtocol = errors.New("intercept: wire protocol violation")

// protoError is a protocol violation with detail that still matches
// ErrProtocol.
type protoError struct{ msg string }

func (e *protoError) Error() string        { return "intercept: " + e.msg }
func (e *protoError) Is(target error) bool { return target == ErrProtocol }

func protoErrorf(format string, args ...any) error {
	return &protoError{msg: fmt.Sprintf(format, args...)}
}

// FrameType is the type of a wire frame. The zero value is invalid.
type FrameType uint8

// Frame types.
const (
	FrameClientAdd    FrameType = 1
	FrameClientRemove FrameType = 2
	FrameResponses    FrameType = 3
	FrameWelcome      FrameType = 4
)

// String returns the name of t.
func (t FrameType) String() string {
	switch t {
	case FrameClientAdd:
		return "ClientAdd"
	case FrameClientRemove:
		return "ClientRemove"
	case FrameResponses:
		return "Responses"
	case FrameWelcome:
		return "Welcome"
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// maxBody is the longest body a frame of type t may carry; -1 for unknown
// types.
func (t FrameType) maxBody() int {
	switch t {
	case FrameClientAdd, FrameClientRemove:
		return maxClientBody
	case FrameResponses:
		return MaxFrame
	case FrameWelcome:
		return 0
	}
	return -1
}

// Hello is the prefix of every handshake message, from each side.
type Hello struct {
	Version uint8
	Flags   uint8
}

// AppendHello appends the encoded prefix h to b.
func AppendHello(b []byte, h Hello) []byte {
	b = append(b, helloMagic[:]...)
	return append(b, h.Version, h.Flags, 0, 0)
}

// ParseHello parses a handshake prefix. It checks the magic but not the
// version: the caller decides what to do with another version.
func ParseHello(b []byte) (Hello, error) {
	if len(b) < HelloLen {
		return Hello{}, protoErrorf("short hello: %d bytes, want %d", len(b), HelloLen)
	}
	if [4]byte(b[:4]) != helloMagic {
		return Hello{}, protoErrorf("bad hello: magic %q is not %q (not a native tcpcopy peer)", b[:4], helloMagic[:])
	}
	return Hello{Version: b[4], Flags: b[5]}, nil
}

// checkVersion reports a hello of another version.
func (h Hello) checkVersion() error {
	if h.Version != WireVersion {
		return protoErrorf("peer speaks wire version %d, this side speaks %d", h.Version, WireVersion)
	}
	return nil
}

func appendFrameHeader(b []byte, t FrameType, n int) []byte {
	return append(b, byte(t), 0, byte(n>>8), byte(n))
}

func appendEndpoint(b []byte, e capture.Endpoint) []byte {
	a := e.Addr()
	if a.Is4() {
		a4 := a.As4()
		b = append(b, 4)
		b = append(b, a4[:]...)
	} else {
		a16 := a.As16()
		b = append(b, 6)
		b = append(b, a16[:]...)
	}
	return binary.BigEndian.AppendUint16(b, e.Port())
}

func endpointLen(e capture.Endpoint) int {
	if e.Addr().Is4() {
		return 1 + 4 + 2
	}
	return 1 + 16 + 2
}

// parseEndpoint parses one endpoint from the front of b and returns the rest.
func parseEndpoint(b []byte) (capture.Endpoint, []byte, error) {
	if len(b) < 1 {
		return capture.Endpoint{}, nil, protoErrorf("endpoint missing")
	}
	var a netip.Addr
	n := 0
	switch b[0] {
	case 4:
		n = 4
	case 6:
		n = 16
	default:
		return capture.Endpoint{}, nil, protoErrorf("endpoint family %d is neither 4 nor 6", b[0])
	}
	if len(b) < 1+n+2 {
		return capture.Endpoint{}, nil, protoErrorf("endpoint of family %d truncated at %d bytes", b[0], len(b))
	}
	if n == 4 {
		a = netip.AddrFrom4([4]byte(b[1:5]))
	} else {
		a = netip.AddrFrom16([16]byte(b[1:17]))
	}
	port := binary.BigEndian.Uint16(b[1+n:])
	return capture.EndpointFrom(netip.AddrPortFrom(a, port)), b[1+n+2:], nil
}

func appendClientFrame(b []byte, t FrameType, client, target capture.Endpoint) ([]byte, error) {
	if !client.IsValid() || !target.IsValid() {
		return b, fmt.Errorf("intercept: %v with an invalid endpoint (client %v, target %v)", t, client, target)
	}
	b = appendFrameHeader(b, t, endpointLen(client)+endpointLen(target))
	b = appendEndpoint(b, client)
	return appendEndpoint(b, target), nil
}

// AppendClientAdd appends a ClientAdd frame announcing client (the address
// and port the target answers to) and target to b. It reports an error for
// an invalid endpoint and then returns b unchanged.
func AppendClientAdd(b []byte, client, target capture.Endpoint) ([]byte, error) {
	return appendClientFrame(b, FrameClientAdd, client, target)
}

// AppendClientRemove appends a ClientRemove frame to b, like AppendClientAdd.
func AppendClientRemove(b []byte, client, target capture.Endpoint) ([]byte, error) {
	return appendClientFrame(b, FrameClientRemove, client, target)
}

// ParseClient parses the body of a ClientAdd or ClientRemove frame.
func ParseClient(body []byte) (client, target capture.Endpoint, err error) {
	client, rest, err := parseEndpoint(body)
	if err != nil {
		return client, target, err
	}
	target, rest, err = parseEndpoint(rest)
	if err != nil {
		return client, target, err
	}
	if len(rest) != 0 {
		return client, target, protoErrorf("client frame has %d trailing bytes", len(rest))
	}
	return client, target, nil
}

// ReportLen is the length of the record that reports p with up to
// payloadLimit payload bytes: the IP and TCP headers and the payload cut to
// payloadLimit, capped at MaxRecord. It reports an error when the headers
// alone do not fit a record (IPv6 extension headers can be that long).
func ReportLen(p *capture.Packet, payloadLimit int) (int, error) {
	hdr := p.IPHeaderLen() + p.DataOffset()
	if hdr > MaxRecord {
		return 0, fmt.Errorf("intercept: response headers of %d bytes exceed a record (%d)", hdr, MaxRecord)
	}
	n := min(len(p.Payload()), max(payloadLimit, 0))
	return min(hdr+n, MaxRecord), nil
}

// ResponsesEncoder appends Responses frames to B, one record at a time,
// starting a new frame when the open one is full. B holds complete frames
// only after Flush. Given a B with enough capacity it does not allocate.
// The zero value is ready. A ResponsesEncoder is not safe for concurrent
// use.
type ResponsesEncoder struct {
	// B is the encoded frames.
	B []byte

	open  int // offset of the open frame's header in B
	count int // records in the open frame; 0 when none is open
}

// Add appends a record reporting p (as ReportLen cuts it).
func (e *ResponsesEncoder) Add(p *capture.Packet, payloadLimit int) error {
	n, err := ReportLen(p, payloadLimit)
	if err != nil {
		return err
	}
	e.addRecord(p.Data[:n])
	return nil
}

// AddRecord appends a record holding rec, an already cut datagram (as a
// receiver got it). It reports an error when rec is longer than MaxRecord.
func (e *ResponsesEncoder) AddRecord(rec []byte) error {
	if len(rec) > MaxRecord {
		return fmt.Errorf("intercept: record of %d bytes exceeds %d", len(rec), MaxRecord)
	}
	e.addRecord(rec)
	return nil
}

func (e *ResponsesEncoder) addRecord(rec []byte) {
	if e.count > 0 && (len(e.B)-e.open-FrameHeaderLen+2+len(rec) > MaxFrame || e.count == 0xffff) {
		e.Flush()
	}
	if e.count == 0 {
		e.open = len(e.B)
		e.B = appendFrameHeader(e.B, FrameResponses, 0)
		e.B = append(e.B, 0, 0)
	}
	e.B = binary.BigEndian.AppendUint16(e.B, uint16(len(rec)))
	e.B = append(e.B, rec...)
	e.count++
}

// Flush completes the open frame, if any.
func (e *ResponsesEncoder) Flush() {
	if e.count == 0 {
		return
	}
	f := e.B[e.open:]
	binary.BigEndian.PutUint16(f[2:], uint16(len(f)-FrameHeaderLen))
	binary.BigEndian.PutUint16(f[4:], uint16(e.count))
	e.count = 0
}

// Reset empties B, keeping its storage.
func (e *ResponsesEncoder) Reset() {
	e.B = e.B[:0]
	e.count = 0
}

// DecodeResponses decodes the records of a Responses body with
// capture.Packet.DecodeHeaders and appends them to pkts. The packets alias
// body. A record that does not decode is an error.
func DecodeResponses(body []byte, pkts []capture.Packet) ([]capture.Packet, error) {
	n, err := checkResponses(body)
	if err != nil {
		return pkts, err
	}
	b := body[2:]
	for i := range n {
		l := int(binary.BigEndian.Uint16(b))
		var p capture.Packet
		if err := p.DecodeHeaders(b[2 : 2+l]); err != nil {
			return pkts, protoErrorf("response record %d of %d: %v", i, n, err)
		}
		if len(p.Data) != l {
			return pkts, protoErrorf("response record %d of %d has %d bytes past its IP length", i, n, l-len(p.Data))
		}
		pkts = append(pkts, p)
		b = b[2+l:]
	}
	return pkts, nil
}

// checkResponses checks that the records of a Responses body fill it
// exactly and returns their count.
func checkResponses(body []byte) (int, error) {
	if len(body) < 2 {
		return 0, protoErrorf("Responses body of %d bytes has no count", len(body))
	}
	n := int(binary.BigEndian.Uint16(body))
	b := body[2:]
	for i := range n {
		if len(b) < 2 {
			return 0, protoErrorf("Responses body ends before record %d of %d", i, n)
		}
		l := int(binary.BigEndian.Uint16(b))
		if l > len(b)-2 {
			return 0, protoErrorf("Responses record %d of %d claims %d bytes, %d left", i, n, l, len(b)-2)
		}
		b = b[2+l:]
	}
	if len(b) != 0 {
		return 0, protoErrorf("Responses body has %d bytes after its %d records", len(b), n)
	}
	return n, nil
}

// Frame is one frame read by a FrameReader.
type Frame struct {
	Type FrameType
	// Body is the frame body; it aliases the reader's buffer and is valid
	// until the next ReadFrame.
	Body []byte
}

// FrameReader reads frames from a stream, reusing one buffer that grows to
// the longest frame seen. It checks type and length before reading a body
// and the body's structure after. A FrameReader is not safe for concurrent
// use.
type FrameReader struct {
	r     io.Reader
	allow [5]bool // allowed frame types, by value
	hdr   [FrameHeaderLen]byte
	buf   []byte
}

// NewFrameReader returns a reader of frames from r that accepts only the
// given types (the ones that may travel in its direction).
func NewFrameReader(r io.Reader, types ...FrameType) *FrameReader {
	fr := &FrameReader{r: r}
	for _, t := range types {
		if int(t) < len(fr.allow) {
			fr.allow[t] = true
		}
	}
	return fr
}

// ReadFrame reads the next frame. Errors from the stream are returned as
// they are (io.EOF at a frame boundary, io.ErrUnexpectedEOF inside one);
// protocol violations match ErrProtocol and leave the stream unusable.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Frame{}, err
	}
	t := FrameType(fr.hdr[0])
	n := int(binary.BigEndian.Uint16(fr.hdr[2:]))
	limit := t.maxBody()
	if limit < 0 {
		return Frame{}, protoErrorf("unknown frame type %d", uint8(t))
	}
	if !fr.allow[t] {
		return Frame{}, protoErrorf("unexpected %v frame in this direction", t)
	}
	if n > limit {
		return Frame{}, protoErrorf("%v frame of %d bytes exceeds %d", t, n, limit)
	}
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	body := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	var err error
	switch t {
	case FrameClientAdd, FrameClientRemove:
		_, _, err = ParseClient(body)
	case FrameResponses:
		_, err = checkResponses(body)
	}
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: t, Body: body}, nil
}
