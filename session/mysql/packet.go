package mysql

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Capability flags (MySQL client/server protocol, "Capabilities Flags").
const (
	clientLongFlags       uint32 = 1 << 2
	clientConnectWithDB   uint32 = 1 << 3
	clientCompress        uint32 = 1 << 5
	clientProtocol41      uint32 = 1 << 9
	clientSSL             uint32 = 1 << 11
	clientTransactions    uint32 = 1 << 13
	clientSecureConn      uint32 = 1 << 15
	clientMultiResults    uint32 = 1 << 17
	clientPSMultiResults  uint32 = 1 << 18
	clientPluginAuth      uint32 = 1 << 19
	clientConnectAttrs    uint32 = 1 << 20
	clientPluginAuthLenec uint32 = 1 << 21
)

// Commands the module looks at.
const (
	comQuit             = 0x01
	comInitDB           = 0x02
	comChangeUser       = 0x11
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtReset        = 0x1a
	comStmtFetch        = 0x1c
	comResetConnection  = 0x1f
	comStmtBulkExecute  = 0xfa // MariaDB
)

// Authentication plugins.
const (
	pluginNative      = "mysql_native_password"
	pluginCachingSHA2 = "caching_sha2_password"
	// pluginResume is the client plugin an injected login claims: no
	// server has it, so the target answers with an auth-switch request
	// that carries a fresh scramble (the injected login goes out before
	// the greeting, so it cannot carry a valid auth response itself).
	pluginResume = "tcpcopy_resume"
)

const (
	headerLen = 4
	// maxPayload is the largest payload of one MySQL packet; a packet
	// this long is continued by the next one.
	maxPayload = 1<<24 - 1
	// maxAuthPacket bounds the logins and COM_CHANGE_USER packets the
	// module buffers to rewrite; real ones are a few hundred bytes.
	maxAuthPacket = 64 << 10
	scrambleLen   = 20
)

var errShort = errors.New("mysql: packet too short")

// header decodes a packet header: payload length and sequence id.
func header(b []byte) (n int, seq uint8) {
	return int(b[0]) | int(b[1])<<8 | int(b[2])<<16, b[3]
}

// appendHeader appends a header for a payload of n bytes.
func appendHeader(dst []byte, n int, seq uint8) []byte {
	return append(dst, byte(n), byte(n>>8), byte(n>>16), seq)
}

// putLength writes the length of the packet that starts at pkt[0].
func putLength(pkt []byte) {
	n := len(pkt) - headerLen
	pkt[0], pkt[1], pkt[2] = byte(n), byte(n>>8), byte(n>>16)
}

// reader reads the fields of a packet payload; a field that runs past
// the end sets err and reads as empty.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() { r.err, r.b = errShort, nil }

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte1() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) uint16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) uint32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// cstring reads a NUL-terminated string; a missing NUL at the end of the
// packet takes the rest (servers accept that too).
func (r *reader) cstring() []byte {
	if i := bytes.IndexByte(r.b, 0); i >= 0 {
		v := r.b[:i]
		r.b = r.b[i+1:]
		return v
	}
	v := r.b
	r.b = nil
	return v
}

// lenenc reads a length-encoded integer.
func (r *reader) lenenc() uint64 {
	switch c := r.byte1(); {
	case r.err != nil:
		return 0
	case c < 0xfb:
		return uint64(c)
	case c == 0xfc:
		return uint64(r.uint16())
	case c == 0xfd:
		b := r.bytes(3)
		if b == nil {
			return 0
		}
		return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16
	case c == 0xfe:
		b := r.bytes(8)
		if b == nil {
			return 0
		}
		return binary.LittleEndian.Uint64(b)
	default: // 0xfb (NULL) and 0xff are not lengths
		r.fail()
		return 0
	}
}

func (r *reader) lenencBytes() []byte {
	n := r.lenenc()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	return r.bytes(int(n))
}

func appendLenenc(dst []byte, n uint64) []byte {
	switch {
	case n < 0xfb:
		return append(dst, byte(n))
	case n <= 0xffff:
		return append(dst, 0xfc, byte(n), byte(n>>8))
	case n <= 0xffffff:
		return append(dst, 0xfd, byte(n), byte(n>>8), byte(n>>16))
	}
	return binary.LittleEndian.AppendUint64(append(dst, 0xfe), n)
}

// greeting is what the module needs from the server's initial handshake
// packet (protocol version 10).
type greeting struct {
	caps     uint32
	scramble []byte // aliases the payload
	plugin   []byte
}

// parseGreeting parses a greeting payload. The payload may be cut short
// by intercept's PayloadLimit: what matters is that the scramble is whole.
func parseGreeting(p []byte) (greeting, error) {
	var g greeting
	r := reader{b: p}
	if v := r.byte1(); r.err == nil && v != 10 {
		return g, fmt.Errorf("mysql: greeting of protocol version %d, want 10", v)
	}
	r.cstring() // server version
	r.bytes(4)  // connection id
	part1 := r.bytes(8)
	r.byte1() // filler
	g.caps = uint32(r.uint16())
	if r.err != nil {
		return g, errors.New("mysql: greeting cut short before the scramble")
	}
	if len(r.b) == 0 {
		return g, errors.New("mysql: pre-4.1 greeting without the second scramble part")
	}
	r.byte1()  // character set
	r.uint16() // status
	g.caps |= uint32(r.uint16()) << 16
	authLen := int(r.byte1())
	r.bytes(10) // reserved (MariaDB: extended capabilities in the last 4)
	if r.err != nil || g.caps&clientSecureConn == 0 {
		return g, errors.New("mysql: greeting cut short, or without a 4.1 scramble")
	}
	n := max(13, authLen-8)
	part2 := r.bytes(min(n, len(r.b)))
	// The scramble is authLen-1 bytes (20 for every plugin in use) and
	// NUL-terminated.
	want := scrambleLen
	if authLen > 8 {
		want = authLen - 1
	}
	if len(part2) < want-8 {
		return g, fmt.Errorf("mysql: greeting cut short inside the scramble (%d of %d bytes)", 8+len(part2), want)
	}
	g.scramble = make([]byte, 0, want)
	g.scramble = append(append(g.scramble, part1...), part2[:want-8]...)
	if len(part2) == n && g.caps&clientPluginAuth != 0 {
		g.plugin = r.cstring()
	}
	return g, nil
}

// login is a parsed HandshakeResponse41, kept to rebuild a connection.
type login struct {
	caps      uint32
	maxPacket uint32
	charset   byte
	ext       [4]byte // MariaDB extended capabilities (the filler's end)
	user      string
	auth      []byte
	db        string
	plugin    string
	attrs     []byte // the connection attributes, length prefix excluded
	hasAttrs  bool
}

func (l *login) size() int {
	return 64 + len(l.user) + len(l.auth) + len(l.db) + len(l.plugin) + len(l.attrs)
}

// parseLogin parses the payload of a client's handshake response (or of
// an SSL request, which is cut off after the filler).
func parseLogin(p []byte) (*login, error) {
	r := reader{b: p}
	l := &login{caps: uint32(r.uint16())}
	if r.err != nil {
		return nil, errShort
	}
	if l.caps&clientProtocol41 == 0 {
		return l, errors.New("mysql: pre-4.1 login (HandshakeResponse320) is not supported")
	}
	r = reader{b: p}
	l.caps = r.uint32()
	l.maxPacket = r.uint32()
	l.charset = r.byte1()
	filler := r.bytes(23)
	if r.err != nil {
		return l, errShort
	}
	copy(l.ext[:], filler[19:])
	if l.caps&clientSSL != 0 && len(r.b) == 0 {
		return l, nil // an SSL request
	}
	l.user = string(r.cstring())
	switch {
	case l.caps&clientPluginAuthLenec != 0:
		l.auth = bytes.Clone(r.lenencBytes())
	case l.caps&clientSecureConn != 0:
		l.auth = bytes.Clone(r.bytes(int(r.byte1())))
	default:
		l.auth = bytes.Clone(r.cstring())
	}
	if r.err != nil {
		return l, fmt.Errorf("mysql: login of user %q cut short in its auth response", l.user)
	}
	if l.caps&clientConnectWithDB != 0 && len(r.b) > 0 {
		l.db = string(r.cstring())
	}
	if l.caps&clientPluginAuth != 0 && len(r.b) > 0 {
		l.plugin = string(r.cstring())
	}
	if l.caps&clientConnectAttrs != 0 && len(r.b) > 0 {
		l.attrs = bytes.Clone(r.lenencBytes())
		l.hasAttrs = true
		if r.err != nil {
			return l, fmt.Errorf("mysql: login of user %q has malformed connection attributes", l.user)
		}
	}
	return l, nil
}

// appendLogin appends l as a packet with sequence id seq, with auth as
// its auth response and plugin as its client plugin.
func appendLogin(dst []byte, l *login, seq uint8, auth []byte, plugin string) []byte {
	start := len(dst)
	dst = appendHeader(dst, 0, seq)
	caps := loginCaps(l, plugin, len(auth))
	if l.db != "" {
		caps |= clientConnectWithDB
	}
	if !l.hasAttrs {
		caps &^= clientConnectAttrs
	}
	dst = binary.LittleEndian.AppendUint32(dst, caps)
	dst = binary.LittleEndian.AppendUint32(dst, l.maxPacket)
	dst = append(dst, l.charset)
	dst = append(dst, make([]byte, 19)...)
	dst = append(dst, l.ext[:]...)
	dst = append(append(dst, l.user...), 0)
	if caps&clientPluginAuthLenec != 0 {
		dst = appendLenenc(dst, uint64(len(auth)))
	} else {
		dst = append(dst, byte(len(auth)))
	}
	dst = append(dst, auth...)
	if caps&clientConnectWithDB != 0 {
		dst = append(append(dst, l.db...), 0)
	}
	if caps&clientPluginAuth != 0 {
		dst = append(append(dst, plugin...), 0)
	}
	if caps&clientConnectAttrs != 0 {
		dst = appendLenenc(dst, uint64(len(l.attrs)))
		dst = append(dst, l.attrs...)
	}
	putLength(dst[start:])
	return dst
}

// loginCaps returns the capabilities appendLogin announces for l with an
// auth response of authLen bytes and the given client plugin.
func loginCaps(l *login, plugin string, authLen int) uint32 {
	caps := l.caps &^ clientSSL
	switch {
	case caps&clientPluginAuthLenec != 0:
	case authLen > 255:
		caps |= clientPluginAuthLenec
	default:
		caps |= clientSecureConn // a 1-byte length: the hash may hold NULs
	}
	if plugin != "" {
		caps |= clientPluginAuth
	}
	return caps
}

// changeUser is a parsed COM_CHANGE_USER.
type changeUser struct {
	user    string
	auth    []byte
	db      string
	charset []byte // 2 bytes, or none
	plugin  string
	hasPlug bool
	attrs   []byte // with its length prefix, or none
}

// parseChangeUser parses a COM_CHANGE_USER payload (command byte
// included) sent on a connection with capabilities caps.
func parseChangeUser(p []byte, caps uint32) (*changeUser, error) {
	r := reader{b: p}
	if r.byte1() != comChangeUser {
		return nil, errors.New("mysql: not a COM_CHANGE_USER")
	}
	c := &changeUser{user: string(r.cstring())}
	if caps&clientSecureConn != 0 {
		c.auth = bytes.Clone(r.bytes(int(r.byte1())))
	} else {
		c.auth = bytes.Clone(r.cstring())
	}
	if r.err != nil {
		return nil, fmt.Errorf("mysql: COM_CHANGE_USER of user %q cut short", c.user)
	}
	c.db = string(r.cstring())
	if len(r.b) >= 2 {
		c.charset = bytes.Clone(r.bytes(2))
		if caps&clientPluginAuth != 0 && len(r.b) > 0 {
			c.plugin, c.hasPlug = string(r.cstring()), true
		}
		if caps&clientConnectAttrs != 0 && len(r.b) > 0 {
			c.attrs = bytes.Clone(r.b)
		}
	}
	return c, nil
}

func appendChangeUser(dst []byte, c *changeUser, seq uint8, caps uint32, auth []byte, plugin string) []byte {
	start := len(dst)
	dst = appendHeader(dst, 0, seq)
	dst = append(dst, comChangeUser)
	dst = append(append(dst, c.user...), 0)
	if caps&clientSecureConn != 0 {
		dst = append(dst, byte(len(auth)))
		dst = append(dst, auth...)
	} else {
		dst = append(append(dst, auth...), 0)
	}
	dst = append(append(dst, c.db...), 0)
	if c.charset != nil {
		dst = append(dst, c.charset...)
		if c.hasPlug {
			dst = append(append(dst, plugin...), 0)
		}
		dst = append(dst, c.attrs...)
	}
	putLength(dst[start:])
	return dst
}

// authSwitch is a parsed auth-switch request (0xfe, plugin, data).
type authSwitch struct {
	plugin string
	data   []byte
}

func parseAuthSwitch(p []byte) (authSwitch, error) {
	if len(p) < 2 || p[0] != 0xfe {
		// A lone 0xfe is the pre-4.1 "use the old password" request.
		return authSwitch{}, errors.New("mysql: old-style auth-switch request (mysql_old_password)")
	}
	r := reader{b: p[1:]}
	s := authSwitch{plugin: string(r.cstring())}
	s.data = bytes.TrimSuffix(r.b, []byte{0})
	return s, nil
}

// parseErr returns the code and message of an ERR packet payload.
func parseErr(p []byte) (uint16, string) {
	r := reader{b: p}
	r.byte1()
	code := r.uint16()
	msg := r.b
	if len(msg) >= 6 && msg[0] == '#' {
		msg = msg[6:]
	}
	return code, string(msg)
}
