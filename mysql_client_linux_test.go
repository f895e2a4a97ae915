package tcpcopy_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/session/mysql"
)

// rawMySQL is a minimal MySQL client written for the lab, so a test can
// choose how packets meet TCP segments: a login larger than one segment
// (big connection attributes), several commands in one write, a command
// split over two writes, and COM_CHANGE_USER, which neither the mariadb
// client nor the Go driver sends. It speaks mysql_native_password only.
type rawMySQL struct {
	t        *testing.T
	c        net.Conn
	scramble []byte
}

// Capabilities the raw client announces.
const rawCaps = 1<<2 | 1<<3 | 1<<9 | 1<<13 | 1<<15 | 1<<17 | 1<<19 | 1<<20 | 1<<21

// rawConnect connects from the client namespace to the online server and
// logs in; attrPad pads the connection attributes to make the login that
// much larger.
func (l *mysqlLab) rawConnect(user, pass, db string, attrPad int) *rawMySQL {
	l.t.Helper()
	c := l.client.Dial("tcp4", l.onlineDB.addr.String())
	l.t.Cleanup(func() { c.Close() })
	c.(*net.TCPConn).SetNoDelay(true)
	r := &rawMySQL{t: l.t, c: c}
	_, g := r.read()
	r.scramble = greetingScramble(l.t, g)
	var attrs []byte
	for _, kv := range [][2]string{{"_client_name", "tcpcopy-lab"}, {"pad", strings.Repeat("p", attrPad)}} {
		attrs = lenencStr(lenencStr(attrs, kv[0]), kv[1])
	}
	var p []byte
	p = binary.LittleEndian.AppendUint32(p, rawCaps)
	p = binary.LittleEndian.AppendUint32(p, 1<<24)
	p = append(p, 45)
	p = append(p, make([]byte, 23)...)
	p = append(append(p, user...), 0)
	auth := mysql.NativePassword(r.scramble, pass)
	p = append(append(p, byte(len(auth))), auth...)
	p = append(append(p, db...), 0)
	p = append(append(p, "mysql_native_password"...), 0)
	p = lenencStr(p, string(attrs))
	r.write(1, p)
	r.authResult(pass)
	return r
}

func lenencStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n < 0xfb:
		dst = append(dst, byte(n))
	default:
		dst = append(dst, 0xfc, byte(n), byte(n>>8))
	}
	return append(dst, s...)
}

func greetingScramble(t *testing.T, g []byte) []byte {
	i := bytes.IndexByte(g[1:], 0) + 1
	part1 := g[i+1+4 : i+1+4+8]
	rest := g[i+1+4+8+1+2+1+2+2+1+10:]
	return append(append([]byte(nil), part1...), rest[:12]...)
}

func (r *rawMySQL) packet(seq uint8, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func (r *rawMySQL) write(seq uint8, payload []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.c.Write(r.packet(seq, payload)); err != nil {
		r.t.Fatalf("raw client write: %v", err)
	}
}

func (r *rawMySQL) read() (uint8, []byte) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var h [4]byte
	if _, err := io.ReadFull(r.c, h[:]); err != nil {
		r.t.Fatalf("raw client read: %v", err)
	}
	b := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
	if _, err := io.ReadFull(r.c, b); err != nil {
		r.t.Fatalf("raw client read: %v", err)
	}
	return h[3], b
}

// authResult reads the server's answer to a login or COM_CHANGE_USER,
// answering an auth switch to mysql_native_password.
func (r *rawMySQL) authResult(pass string) {
	r.t.Helper()
	for range 3 {
		seq, b := r.read()
		switch {
		case len(b) > 0 && b[0] == 0x00:
			return
		case len(b) > 0 && b[0] == 0xfe:
			i := bytes.IndexByte(b[1:], 0) + 1
			r.scramble = bytes.TrimSuffix(b[i+1:], []byte{0})
			r.write(seq+1, mysql.NativePassword(r.scramble, pass))
		default:
			r.t.Fatalf("raw client: login refused: %q", b)
		}
	}
	r.t.Fatal("raw client: too many auth round trips")
}

// result reads a command's answer: OK, ERR (fatal) or a text result set,
// whose first column of the first row it returns.
func (r *rawMySQL) result() string {
	r.t.Helper()
	_, b := r.read()
	switch {
	case b[0] == 0x00:
		return ""
	case b[0] == 0xff:
		r.t.Fatalf("raw client: server error: %q", b)
	}
	first, rows := "", 0
	eofs := 0
	for eofs < 2 {
		_, b := r.read()
		switch {
		case b[0] == 0xfe && len(b) < 9:
			eofs++
		case b[0] == 0xff:
			r.t.Fatalf("raw client: server error: %q", b)
		case eofs == 1:
			if rows == 0 && b[0] < 0xfb {
				first = string(b[1 : 1+int(b[0])])
			}
			rows++
		}
	}
	return first
}

func (r *rawMySQL) query(q string) string {
	r.t.Helper()
	r.write(0, append([]byte{0x03}, q...))
	return r.result()
}

// pipelined sends the queries in one write (one TCP segment), then reads
// their answers.
func (r *rawMySQL) pipelined(qs ...string) {
	r.t.Helper()
	var b []byte
	for _, q := range qs {
		b = append(b, r.packet(0, append([]byte{0x03}, q...))...)
	}
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
	for range qs {
		r.result()
	}
}

// split sends a query in two writes: the header and part of the payload,
// then (after a pause that makes them two segments) the rest.
func (r *rawMySQL) split(q string) string {
	r.t.Helper()
	b := r.packet(0, append([]byte{0x03}, q...))
	cut := 2 + len(b)/2 // inside the payload; 2 would cut the header
	for _, part := range [][]byte{b[:2], b[2:cut], b[cut:]} {
		if _, err := r.c.Write(part); err != nil {
			r.t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	return r.result()
}

// changeUser sends COM_CHANGE_USER scrambled over the connection's current
// scramble.
func (r *rawMySQL) changeUser(user, pass, db string) {
	r.t.Helper()
	p := append([]byte{0x11}, user...)
	p = append(p, 0)
	auth := mysql.NativePassword(r.scramble, pass)
	p = append(append(p, byte(len(auth))), auth...)
	p = append(append(p, db...), 0)
	p = append(p, 45, 0)
	p = append(append(p, "mysql_native_password"...), 0)
	p = lenencStr(p, string(lenencStr(lenencStr(nil, "_client_name"), "tcpcopy-lab")))
	r.write(0, p)
	r.authResult(pass)
}

func (r *rawMySQL) close() {
	r.write(0, []byte{0x01})
	r.c.Close()
}

func (r *rawMySQL) String() string { return fmt.Sprint(r.c.LocalAddr()) }
