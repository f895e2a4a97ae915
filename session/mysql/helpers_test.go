package mysql

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

var (
	clientEP = capture.EndpointFrom(netip.MustParseAddrPort("198.18.0.1:40000"))
	targetEP = capture.EndpointFrom(netip.MustParseAddrPort("198.18.1.2:3306"))
	// The online server's scramble (the captured login hashes over it)
	// and the target's.
	onlineScramble = []byte("ONLINE-scramble-1234")
	targetScramble = []byte("target-SCRAMBLE-5678")
)

const testCaps = clientLongFlags | clientConnectWithDB | clientProtocol41 | clientTransactions |
	clientSecureConn | clientMultiResults | clientPSMultiResults | clientPluginAuth |
	clientConnectAttrs | clientPluginAuthLenec

func pkt(seq uint8, payload ...[]byte) []byte {
	b := bytes.Join(payload, nil)
	return append(appendHeader(nil, len(b), seq), b...)
}

// greetingPkt is a MariaDB-like greeting offering scramble.
func greetingPkt(scramble []byte) []byte {
	var p []byte
	p = append(p, 10)
	p = append(append(p, "5.5.5-10.11.19-MariaDB-0+deb12u1"...), 0)
	p = binary.LittleEndian.AppendUint32(p, 42)
	p = append(p, scramble[:8]...)
	p = append(p, 0)
	caps := testCaps | clientSSL | clientCompress
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, 45)
	p = binary.LittleEndian.AppendUint16(p, 2)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(p, byte(len(scramble)+1))
	p = append(p, make([]byte, 10)...)
	p = append(append(p, scramble[8:]...), 0)
	p = append(append(p, pluginNative...), 0)
	return pkt(0, p)
}

func testLogin(user, db, plugin string) *login {
	return &login{
		caps: testCaps, maxPacket: 1 << 24, charset: 45, user: user, db: db, plugin: plugin,
		attrs: []byte("\x0c_client_name\x04test"), hasAttrs: true,
	}
}

// loginPkt is the client's login, hashed over the online scramble.
func loginPkt(l *login, password string) []byte {
	auth, ok := scrambleFor(l.plugin, onlineScramble, password)
	if !ok {
		auth = []byte("some other plugin's data")
	}
	return appendLogin(nil, l, 1, auth, l.plugin)
}

func okPkt(seq uint8) []byte { return pkt(seq, []byte{0, 0, 0, 2, 0, 0, 0}) }

func errPkt(seq uint8, code uint16, msg string) []byte {
	p := binary.LittleEndian.AppendUint16([]byte{0xff}, code)
	return pkt(seq, append(append(p, "#28000"...), msg...))
}

func switchPkt(seq uint8, plugin string, data []byte) []byte {
	p := append(append([]byte{0xfe}, plugin...), 0)
	return pkt(seq, append(append(p, data...), 0))
}

func queryPkt(q string) []byte { return pkt(0, []byte{0x03}, []byte(q)) }

func preparePkt(q string) []byte { return pkt(0, []byte{comStmtPrepare}, []byte(q)) }

func stmtPkt(cmd byte, id uint32, rest ...byte) []byte {
	return pkt(0, binary.LittleEndian.AppendUint32([]byte{cmd}, id), rest)
}

func prepareOKPkt(id uint32) []byte {
	p := binary.LittleEndian.AppendUint32([]byte{0}, id)
	return pkt(1, append(p, 0, 0, 0, 0, 0, 0, 0))
}

// newTestProtocol returns a Protocol with users app and app2.
func newTestProtocol(t *testing.T, cfg Config) *Protocol {
	t.Helper()
	if cfg.Users == nil && !cfg.SkipGrantTables {
		cfg.Users = map[string]string{"app": "app-pw", "app2": "second pw"}
	}
	p, err := New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tsession drives one Conn as the session table would, checking Ready.
type tsession struct {
	t *testing.T
	c *conn
}

func open(t *testing.T, p *Protocol, resumed bool) *tsession {
	return &tsession{t: t, c: p.Open(clientEP, targetEP, resumed).(*conn)}
}

// client hands the table's view of captured payload to the module.
func (s *tsession) client(payload []byte) []byte {
	s.t.Helper()
	return s.c.Client(nil, payload)
}

// response hands a whole target segment to the module.
func (s *tsession) response(payload []byte) []byte {
	s.t.Helper()
	return s.c.Response(nil, payload, len(payload))
}

func (s *tsession) expectReady(want bool) {
	s.t.Helper()
	if got := s.c.Ready() && !s.c.Skip(); got != want {
		s.t.Fatalf("Ready %v, want %v (phase %v, skip %v)", got, want, s.c.phase, s.c.skip)
	}
}

// loginAs runs the login of a fresh session up to the command phase.
func (s *tsession) loginAs(user, password string) {
	s.t.Helper()
	s.response(greetingPkt(targetScramble))
	s.client(loginPkt(testLogin(user, "app", pluginNative), password))
	s.response(okPkt(2))
	s.expectReady(true)
}

// parseLoginPkt parses a login packet the module sent.
func parseLoginPkt(t *testing.T, b []byte) (*login, uint8) {
	t.Helper()
	n, seq := header(b)
	if n != len(b)-headerLen {
		t.Fatalf("login packet length %d, header says %d", len(b)-headerLen, n)
	}
	l, err := parseLogin(b[headerLen:])
	if err != nil {
		t.Fatal(err)
	}
	return l, seq
}
