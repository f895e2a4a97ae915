package mysql_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/session"
	"github.com/shadowcopy/tcpcopy/session/mysql"
)

// These tests run the module inside a real session.Table against a
// simulated MySQL target that checks every login's auth response against
// its own scramble and records the commands it runs: the TCP sequence
// numbers shifted by the module's rewrites must line up, or the target
// would see a gap and record nothing.

var (
	clientAP = netip.MustParseAddrPort("198.18.0.1:40000")
	targetAP = netip.MustParseAddrPort("198.18.1.2:3306")
	t0       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

const (
	synF = capture.FlagSYN
	ackF = capture.FlagACK
	pshF = capture.FlagPSH | capture.FlagACK
	rstF = capture.FlagRST
)

var users = map[string]string{"app": "app-pw", "app2": "second pw"}

// fakeMySQL is the target: a TCP endpoint per client port, each running a
// MySQL server that numbers prepared statements from stmtBase+1.
type fakeMySQL struct {
	t        *testing.T
	conns    map[uint16]*fakeConn
	out      []capture.Packet // responses for the table
	log      []string
	stmtBase uint32
	nconn    int
}

type fakeConn struct {
	client   netip.AddrPort
	rcvNxt   capture.Seq
	sndNxt   capture.Seq
	buf      []byte // client bytes not yet a whole packet
	scramble []byte
	authed   bool
	switched bool // an auth switch was sent; its answer is awaited
	user     string
	nstmt    uint32
}

func (f *fakeMySQL) Emit(pkts [][]byte) error {
	for _, b := range pkts {
		var p capture.Packet
		if err := p.Decode(b); err != nil {
			f.t.Fatalf("table emitted a bad packet: %v", err)
		}
		f.segment(&p)
	}
	return nil
}

func (f *fakeMySQL) send(c *fakeConn, flags uint8, payload []byte) {
	b, err := capture.AppendSegment(nil, &capture.Segment{Src: targetAP, Dst: c.client, Seq: c.sndNxt,
		Ack: c.rcvNxt, Flags: flags, Window: 65535, Payload: payload})
	if err != nil {
		f.t.Fatal(err)
	}
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		f.t.Fatal(err)
	}
	f.out = append(f.out, p)
	c.sndNxt = c.sndNxt.Add(uint32(len(payload)))
	if flags&capture.FlagSYN != 0 {
		c.sndNxt = c.sndNxt.Add(1)
	}
}

func (f *fakeMySQL) segment(p *capture.Packet) {
	port := p.SrcPort()
	c := f.conns[port]
	switch {
	case p.Flags()&capture.FlagSYN != 0:
		f.nconn++
		c = &fakeConn{client: p.SrcEndpoint().AddrPort(), rcvNxt: p.Seq().Add(1), sndNxt: 5000,
			scramble: []byte(fmt.Sprintf("target-scramble-%04d", f.nconn))}
		f.conns[port] = c
		f.send(c, capture.FlagSYN|capture.FlagACK, nil)
		f.send(c, pshF, greeting(c.scramble))
		return
	case c == nil:
		return
	case p.Flags()&capture.FlagRST != 0:
		delete(f.conns, port)
		return
	}
	if p.PayloadLen() == 0 {
		return
	}
	if p.Seq() != c.rcvNxt {
		f.log = append(f.log, fmt.Sprintf("gap: seq %d, want %d", p.Seq(), c.rcvNxt))
		f.send(c, ackF, nil)
		return
	}
	c.rcvNxt = c.rcvNxt.Add(uint32(p.PayloadLen()))
	c.buf = append(c.buf, p.Payload()...)
	var resp []byte
	for len(c.buf) >= 4 {
		n := int(c.buf[0]) | int(c.buf[1])<<8 | int(c.buf[2])<<16
		if len(c.buf) < 4+n {
			break
		}
		resp = append(resp, f.packet(c, c.buf[3], c.buf[4:4+n])...)
		c.buf = c.buf[4+n:]
	}
	if len(resp) > 0 {
		f.send(c, pshF, resp)
	} else {
		f.send(c, ackF, nil)
	}
}

func mpkt(seq uint8, b []byte) []byte {
	return append([]byte{byte(len(b)), byte(len(b) >> 8), byte(len(b) >> 16), seq}, b...)
}

var okBody = []byte{0, 0, 0, 2, 0, 0, 0}

// packet runs one client packet and returns the answer.
func (f *fakeMySQL) packet(c *fakeConn, seq uint8, b []byte) []byte {
	switch {
	case !c.authed && c.switched:
		c.switched = false
		if !bytes.Equal(b, mysql.NativePassword(c.scramble, users[c.user])) {
			f.log = append(f.log, "denied after switch: "+c.user)
			return mpkt(seq+1, []byte{0xff, 0x15, 0x04})
		}
		c.authed = true
		f.log = append(f.log, "login "+c.user)
		return mpkt(seq+1, okBody)
	case !c.authed:
		user, auth, plugin := parseLogin(b)
		c.user = user
		if plugin != "mysql_native_password" {
			c.scramble = []byte(fmt.Sprintf("switch-scramble-%04d", f.nconn))
			c.switched = true
			return mpkt(seq+1, append(append([]byte{0xfe}, "mysql_native_password\x00"...), append(c.scramble, 0)...))
		}
		if !bytes.Equal(auth, mysql.NativePassword(c.scramble, users[user])) {
			f.log = append(f.log, "denied: "+user)
			return mpkt(seq+1, []byte{0xff, 0x15, 0x04})
		}
		c.authed = true
		f.log = append(f.log, "login "+user)
		return mpkt(seq+1, okBody)
	}
	switch b[0] {
	case 0x03:
		f.log = append(f.log, "query "+string(b[1:]))
	case 0x16:
		c.nstmt++
		f.log = append(f.log, fmt.Sprintf("prepare %d %s", f.stmtBase+c.nstmt, b[1:]))
		return mpkt(1, append(binary.LittleEndian.AppendUint32([]byte{0}, f.stmtBase+c.nstmt), 0, 0, 0, 0, 0, 0, 0))
	case 0x17:
		f.log = append(f.log, fmt.Sprintf("execute %d", binary.LittleEndian.Uint32(b[1:])))
	case 0x19:
		f.log = append(f.log, fmt.Sprintf("close %d", binary.LittleEndian.Uint32(b[1:])))
		return nil
	default:
		f.log = append(f.log, fmt.Sprintf("command %#x", b[0]))
	}
	return mpkt(1, okBody)
}

// parseLogin reads user, auth response and plugin of a HandshakeResponse41
// sent with 1-byte auth lengths.
func parseLogin(b []byte) (user string, auth []byte, plugin string) {
	caps := binary.LittleEndian.Uint32(b)
	r := b[32:]
	i := bytes.IndexByte(r, 0)
	user, r = string(r[:i]), r[i+1:]
	auth, r = r[1:1+int(r[0])], r[1+int(r[0]):]
	if caps&(1<<3) != 0 {
		r = r[bytes.IndexByte(r, 0)+1:]
	}
	if i := bytes.IndexByte(r, 0); i >= 0 {
		plugin = string(r[:i])
	}
	return user, auth, plugin
}

func greeting(scramble []byte) []byte {
	var p []byte
	p = append(append(p, 10), "10.11.19-fake\x00"...)
	p = binary.LittleEndian.AppendUint32(p, 7)
	p = append(append(p, scramble[:8]...), 0)
	caps := uint32(1<<2 | 1<<3 | 1<<9 | 1<<13 | 1<<15 | 1<<17 | 1<<19)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, 45, 2, 0)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(append(p, 21), make([]byte, 10)...)
	p = append(append(p, scramble[8:]...), 0)
	return mpkt(0, append(p, "mysql_native_password\x00"...))
}

// rig is a session.Table with the module, fed with captured client
// segments and the fake target's answers.
type rig struct {
	t   *testing.T
	tab *session.Table
	mod *mysql.Protocol
	srv *fakeMySQL
	now time.Time
}

func newRig(t *testing.T, cfg mysql.Config) *rig {
	mod, err := mysql.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &fakeMySQL{t: t, conns: map[uint16]*fakeConn{}, stmtBase: 100}
	r := &rig{t: t, mod: mod, srv: srv, now: t0}
	r.tab = session.New(&session.Config{Emitter: srv, Protocol: mod, NoWait: true})
	return r
}

// run lets the table and the target talk until they are quiet.
func (r *rig) run() {
	for range 50 {
		r.now = r.now.Add(time.Millisecond)
		r.tab.Tick(r.now)
		if len(r.srv.out) == 0 {
			return
		}
		out := r.srv.out
		r.srv.out = nil
		for i := range out {
			out[i].Time = r.now
			r.tab.HandleResponse(&out[i])
		}
	}
	r.t.Fatal("the table and the target never went quiet")
}

// client hands the table a captured client segment.
func (r *rig) client(ap netip.AddrPort, seq uint32, flags uint8, payload []byte) {
	b, err := capture.AppendSegment(nil, &capture.Segment{Src: ap, Dst: targetAP, Seq: capture.Seq(seq),
		Ack: 7001, Flags: flags, Window: 65535, Payload: payload})
	if err != nil {
		r.t.Fatal(err)
	}
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		r.t.Fatal(err)
	}
	r.now = r.now.Add(time.Millisecond)
	p.Time = r.now
	r.tab.HandleClient(&p)
	r.run()
}

// capturedLogin is the client's login as captured: hashed over the online
// server's scramble, with connection attributes that make it longer than
// one segment.
func capturedLogin(user, db string) []byte {
	var p []byte
	p = binary.LittleEndian.AppendUint32(p, 1<<2|1<<3|1<<9|1<<13|1<<15|1<<17|1<<19|1<<20)
	p = binary.LittleEndian.AppendUint32(p, 1<<24)
	p = append(append(p, 45), make([]byte, 23)...)
	p = append(append(p, user...), 0)
	auth := mysql.NativePassword([]byte("online-scramble-0001"), users[user])
	p = append(append(p, byte(len(auth))), auth...)
	p = append(append(p, db...), 0)
	p = append(p, "mysql_native_password\x00"...)
	attrs := bytes.Repeat([]byte("\x03key\x05value"), 200)
	p = append(append(p, 0xfc, byte(len(attrs)), byte(len(attrs)>>8)), attrs...)
	return mpkt(1, p)
}

func query(q string) []byte    { return mpkt(0, append([]byte{0x03}, q...)) }
func prepare(q string) []byte  { return mpkt(0, append([]byte{0x16}, q...)) }
func execute(id uint32) []byte { return mpkt(0, binary.LittleEndian.AppendUint32([]byte{0x17}, id)) }
func (r *rig) expectLog(want ...string) {
	r.t.Helper()
	if !slices.Equal(r.srv.log, want) {
		r.t.Fatalf("the target ran\n %q\nwant\n %q", r.srv.log, want)
	}
	r.srv.log = nil
}

func TestTableFullSessionResetAndMidStream(t *testing.T) {
	r := newRig(t, mysql.Config{Users: users})
	// A full session: the login over three segments, two queries in one,
	// a prepare and an execute of the online server's statement 1.
	r.client(clientAP, 1000, synF, nil)
	seq := uint32(1001)
	login := capturedLogin("app", "app")
	for off := 0; off < len(login); off += 1000 {
		part := login[off:min(off+1000, len(login))]
		r.client(clientAP, seq, pshF, part)
		seq += uint32(len(part))
	}
	for _, b := range [][]byte{append(query("SELECT 1"), query("SELECT 2")...), prepare("SELECT ?"), execute(1)} {
		r.client(clientAP, seq, pshF, b)
		seq += uint32(len(b))
	}
	r.expectLog("login app", "query SELECT 1", "query SELECT 2", "prepare 101 SELECT ?", "execute 101")

	// The target resets the connection; the client's next commands come
	// on a rebuilt one: the stored login, then the prepare replayed.
	c := r.srv.conns[clientAP.Port()]
	r.srv.stmtBase = 200
	r.srv.send(c, rstF, nil)
	delete(r.srv.conns, clientAP.Port())
	r.run()
	for _, b := range [][]byte{execute(1), query("SELECT 3")} {
		r.client(clientAP, seq, pshF, b)
		seq += uint32(len(b))
	}
	r.expectLog("login app", "prepare 201 SELECT ?", "execute 201", "query SELECT 3")

	// A connection captured mid-stream from the same address: rebuilt
	// with the address's latest login.
	other := netip.MustParseAddrPort("198.18.0.1:40001")
	r.client(other, 90000, pshF, query("SELECT 4"))
	r.client(other, 90000+uint32(len(query("SELECT 4"))), pshF, query("SELECT 5"))
	r.expectLog("login app", "query SELECT 4", "query SELECT 5")

	if st := r.tab.Stats(); st.Resumed != 1 || st.Forged != 1 || st.SkippedByProtocol != 0 {
		t.Errorf("table stats %+v", st)
	}
	if st := r.mod.Stats(); st.Injected != 2 || st.AuthSwitches != 2 || st.StmtIDsMapped != 2 {
		t.Errorf("module stats %+v", st)
	}
}

func TestTableUnknownUserSkipped(t *testing.T) {
	r := newRig(t, mysql.Config{Users: map[string]string{"app2": "second pw"}})
	r.client(clientAP, 1000, synF, nil)
	login := capturedLogin("app", "app")
	r.client(clientAP, 1001, pshF, login)
	r.client(clientAP, 1001+uint32(len(login)), pshF, query("SELECT 1"))
	if len(r.srv.log) != 0 || r.mod.Stats().UnknownUser != 1 || r.tab.Stats().SkippedByProtocol < 1 {
		t.Errorf("log %q, module %+v, table %+v", r.srv.log, r.mod.Stats(), r.tab.Stats())
	}
}
