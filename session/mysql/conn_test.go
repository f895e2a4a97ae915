package mysql

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestLoginRewrittenAcrossSegments(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.expectReady(false) // server-first: wait for the greeting
	if out := s.response(greetingPkt(targetScramble)); len(out) != 0 {
		t.Fatalf("greeting answered with %q", out)
	}
	s.expectReady(true)

	l := testLogin("app", "app", pluginNative)
	l.attrs = bytes.Repeat([]byte{3, 'k', 'e', 'y', 3, 'v', 'a', 'l'}, 400) // 3.2 KB: three segments
	in := loginPkt(l, "app-pw")
	var out []byte
	for _, cut := range [][2]int{{0, 2}, {2, 1400}, {1400, 2800}, {2800, len(in)}} {
		got := s.client(in[cut[0]:cut[1]])
		if cut[1] < len(in) && len(got) > 0 {
			t.Fatalf("login sent before it was whole: %d bytes after %d", len(got), cut[1])
		}
		out = append(out, got...)
	}
	got, seq := parseLoginPkt(t, out)
	if seq != 1 || got.user != "app" || got.db != "app" || got.plugin != pluginNative ||
		!bytes.Equal(got.attrs, l.attrs) || got.caps != l.caps || got.charset != 45 {
		t.Errorf("rewritten login %+v seq %d", got, seq)
	}
	if want := NativePassword(targetScramble, "app-pw"); !bytes.Equal(got.auth, want) {
		t.Errorf("auth response %x, want %x (over the target's scramble)", got.auth, want)
	}
	s.expectReady(false) // the target authenticates
	if out := s.client(queryPkt("SELECT 1")); len(out) != 0 {
		t.Fatalf("command sent during authentication: %q", out)
	}
	if out := s.response(okPkt(2)); !bytes.Equal(out, queryPkt("SELECT 1")) {
		t.Fatalf("held command not released with the OK: %q", out)
	}
	if st := p.Stats(); st.Logins != 1 || st.AuthOK != 1 || st.StoredConns != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSeveralPacketsPerSegmentAndSplitHeaders(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.loginAs("app", "app-pw")
	seg := bytes.Join([][]byte{queryPkt("SELECT 1"), preparePkt("SELECT ?"), queryPkt("SELECT 2"), pkt(0)}, nil)
	if out := s.client(seg); !bytes.Equal(out, seg) {
		t.Fatalf("several packets in one segment changed:\n%q\n%q", out, seg)
	}
	// One packet over three segments, the header cut after two bytes.
	q := queryPkt("SELECT 'split'")
	var out []byte
	for _, part := range [][]byte{q[:2], q[2:7], q[7:]} {
		out = append(out, s.client(part)...)
	}
	if !bytes.Equal(out, q) {
		t.Fatalf("split packet came out as %q", out)
	}
	_, prepares, _, _ := p.store.lookup(clientEP)
	if len(prepares) != 1 || !bytes.Equal(prepares[0], preparePkt("SELECT ?")) {
		t.Errorf("stored prepares %q", prepares)
	}
}

func TestAuthSwitchAnsweredAndExtraRoundTripsDropped(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.response(greetingPkt(targetScramble))
	s.client(loginPkt(testLogin("app", "app", pluginNative), "app-pw"))
	fresh := []byte("fresh-scramble-abcde")
	out := s.response(switchPkt(2, pluginNative, fresh))
	if want := pkt(3, NativePassword(fresh, "app-pw")); !bytes.Equal(out, want) {
		t.Fatalf("auth switch answered %x, want %x", out, want)
	}
	s.expectReady(false)
	s.response(okPkt(4))
	// The online server took a round trip the target did not: the
	// client's answers (sequence ids 3 and 5) are dropped, a command goes.
	seg := bytes.Join([][]byte{pkt(3, []byte("online switch answer")), pkt(5, []byte("more")), queryPkt("SELECT 1")}, nil)
	if out := s.client(seg); !bytes.Equal(out, queryPkt("SELECT 1")) {
		t.Fatalf("got %q", out)
	}
	// After a command, sequence ids above 0 are a command's own packets.
	data := pkt(2, []byte("LOAD DATA contents"))
	if out := s.client(data); !bytes.Equal(out, data) {
		t.Fatalf("got %q", out)
	}
	if st := p.Stats(); st.AuthSwitches != 1 || st.DroppedAuth != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestCachingSHA2(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.response(greetingPkt(targetScramble))
	out := s.client(loginPkt(testLogin("app", "", pluginCachingSHA2), "app-pw"))
	got, _ := parseLoginPkt(t, out)
	if want := CachingSHA2Password(targetScramble, "app-pw"); got.plugin != pluginCachingSHA2 || !bytes.Equal(got.auth, want) {
		t.Fatalf("login %+v, want auth %x", got, want)
	}
	if out := s.response(pkt(2, []byte{0x01, 0x03})); len(out) != 0 { // fast auth success
		t.Fatalf("got %q", out)
	}
	s.expectReady(false)
	s.response(okPkt(3))
	s.expectReady(true)

	// Full authentication needs TLS or RSA: skipped.
	s = open(t, p, false)
	s.response(greetingPkt(targetScramble))
	s.client(loginPkt(testLogin("app", "", pluginCachingSHA2), "app-pw"))
	s.response(pkt(2, []byte{0x01, 0x04}))
	if !s.c.Skip() || p.Stats().UnsupportedAuth != 1 {
		t.Errorf("full authentication not skipped: %+v", p.Stats())
	}
}

func TestOtherClientPluginOffersNative(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.response(greetingPkt(targetScramble))
	got, _ := parseLoginPkt(t, s.client(loginPkt(testLogin("app", "app", "client_ed25519"), "app-pw")))
	if got.plugin != pluginNative || !bytes.Equal(got.auth, NativePassword(targetScramble, "app-pw")) {
		t.Errorf("login %+v", got)
	}
}

func TestSkippedSessions(t *testing.T) {
	cases := []struct {
		name  string
		run   func(s *tsession)
		count func(Stats) uint64
	}{
		{"unknown user", func(s *tsession) {
			s.response(greetingPkt(targetScramble))
			s.client(loginPkt(testLogin("stranger", "app", pluginNative), "x"))
		}, func(st Stats) uint64 { return st.UnknownUser }},
		{"TLS", func(s *tsession) {
			s.response(greetingPkt(targetScramble))
			var p []byte
			p = binary.LittleEndian.AppendUint32(p, testCaps|clientSSL)
			p = binary.LittleEndian.AppendUint32(p, 1<<24)
			p = append(append(p, 45), make([]byte, 23)...)
			s.client(pkt(1, p))
		}, func(st Stats) uint64 { return st.TLS }},
		{"ed25519 on the target", func(s *tsession) {
			s.loginAs("app", "app-pw")
			s.c.phase = phaseAuth
			s.response(switchPkt(2, "client_ed25519", bytes.Repeat([]byte{1}, 32)))
		}, func(st Stats) uint64 { return st.UnsupportedAuth }},
		{"login refused", func(s *tsession) {
			s.response(greetingPkt(targetScramble))
			s.client(loginPkt(testLogin("app", "app", pluginNative), "app-pw"))
			s.response(errPkt(2, 1045, "Access denied for user 'app'"))
		}, func(st Stats) uint64 { return st.AuthFailed }},
		{"greeting cut short", func(s *tsession) {
			g := greetingPkt(targetScramble)
			s.c.Response(nil, g[:40], len(g)) // intercept reported 40 bytes
		}, func(st Stats) uint64 { return st.BadGreeting }},
		{"greeting refused", func(s *tsession) {
			s.response(errPkt(0, 1040, "Too many connections"))
		}, func(st Stats) uint64 { return st.BadGreeting }},
		{"mid-stream without login", func(s *tsession) {
			s.c.resumed = true
			s.response(greetingPkt(targetScramble))
			s.client(queryPkt("SELECT 1"))
		}, func(st Stats) uint64 { return st.NoLogin }},
		{"pre-4.1 login", func(s *tsession) {
			s.response(greetingPkt(targetScramble))
			s.client(pkt(1, []byte{0x05, 0x00, 0, 0, 0, 'a', 0}))
		}, func(st Stats) uint64 { return st.Malformed }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProtocol(t, Config{})
			s := open(t, p, false)
			tc.run(s)
			if !s.c.Skip() || tc.count(p.Stats()) != 1 {
				t.Fatalf("not skipped and counted: skip %v, %+v", s.c.Skip(), p.Stats())
			}
			// The table frees the session; the client's next packets make
			// a mid-stream session, skipped at once.
			again := open(t, p, true)
			if !again.c.Skip() || len(again.c.Inject(nil)) != 0 || p.Stats().SkippedAgain != 1 {
				t.Errorf("later packets of a skipped session not skipped: %+v", p.Stats())
			}
			// A new connection on the port is copied.
			if open(t, p, false).c.Skip() {
				t.Error("a new connection on the port of a skipped one is skipped")
			}
		})
	}
}

func TestChangeUserRescrambled(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.loginAs("app", "app-pw")
	cu := &changeUser{user: "app2", auth: NativePassword(onlineScramble, "second pw"), db: "other",
		charset: []byte{45, 0}, plugin: pluginNative, hasPlug: true, attrs: []byte{0}}
	in := appendChangeUser(nil, cu, 0, testCaps, cu.auth, cu.plugin)
	var out []byte
	out = append(out, s.client(in[:10])...)
	out = append(out, s.client(in[10:])...)
	got, err := parseChangeUser(out[headerLen:], testCaps)
	if err != nil {
		t.Fatal(err)
	}
	if got.user != "app2" || got.db != "other" || got.plugin != pluginNative ||
		!bytes.Equal(got.auth, NativePassword(targetScramble, "second pw")) {
		t.Errorf("COM_CHANGE_USER sent as %+v", got)
	}
	s.expectReady(false)
	s.response(okPkt(1))
	s.expectReady(true)
	l, _, _, _ := p.store.lookup(clientEP)
	if l.user != "app2" || l.db != "other" {
		t.Errorf("stored login %+v", l)
	}
}

func TestInitDBUpdatesStoredLogin(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.loginAs("app", "app-pw")
	s.client(pkt(0, []byte{comInitDB}, []byte("reports")))
	if l, _, _, _ := p.store.lookup(clientEP); l.db != "reports" {
		t.Errorf("stored database %q", l.db)
	}
}

// TestResumedSessionRebuilt: a session reset by the target is rebuilt
// with its stored login and prepared statements; the target numbers them
// from 10, the online server did from 4.
func TestResumedSessionRebuilt(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.loginAs("app", "app-pw")
	s.client(preparePkt("INSERT INTO t VALUES (?)"))
	s.response(prepareOKPkt(21))
	s.client(stmtPkt(comStmtExecute, 5, 0, 1, 0, 0, 0)) // the online server's id 5 = its base 4 + 1
	s.client(preparePkt("SELECT ?"))
	s.client(stmtPkt(comStmtClose, 5)) // the first is closed
	s.client(preparePkt("SELECT 2"))

	r := open(t, p, true)
	inj := r.c.Inject(nil)
	l, seq := parseLoginPkt(t, inj)
	if seq != 1 || l.user != "app" || l.db != "app" || l.plugin != pluginResume || len(l.auth) != 0 {
		t.Fatalf("injected login %+v", l)
	}
	r.expectReady(false)
	r.response(greetingPkt(targetScramble))
	fresh := []byte("fresh-scramble-abcde")
	if out := r.response(switchPkt(2, pluginNative, fresh)); !bytes.Equal(out, pkt(3, NativePassword(fresh, "app-pw"))) {
		t.Fatalf("switch answered %q", out)
	}
	// Commands wait until the target's statement numbering is known.
	exec := stmtPkt(comStmtExecute, 6, 0, 1, 0, 0, 0)
	if out := r.client(exec); len(out) != 0 {
		t.Fatalf("command sent during authentication: %q", out)
	}
	out := r.response(okPkt(4))
	want := bytes.Join([][]byte{appendPlaceholder(nil), preparePkt("SELECT ?"), preparePkt("SELECT 2")}, nil)
	if !bytes.Equal(out, want) {
		t.Fatalf("replayed %q\nwant     %q", out, want)
	}
	r.expectReady(false)
	out = r.response(prepareOKPkt(11)) // the placeholder got 11: the target's base is 10
	want = bytes.Join([][]byte{stmtPkt(comStmtClose, 11), stmtPkt(comStmtExecute, 12, 0, 1, 0, 0, 0)}, nil)
	if !bytes.Equal(out, want) {
		t.Fatalf("after the first PREPARE_OK sent %q\nwant %q", out, want)
	}
	r.expectReady(true)
	if out := r.client(stmtPkt(comStmtExecute, 0xffffffff)); !bytes.Equal(out, stmtPkt(comStmtExecute, 0xffffffff)) {
		t.Errorf("MariaDB's last-statement id changed: %q", out)
	}
	if st := p.Stats(); st.Injected != 1 || st.InjectedPrepares != 3 || st.AuthSwitches != 1 || st.StmtIDsMapped != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestStatementIDsMapped(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.loginAs("app", "app-pw")
	s.client(preparePkt("SELECT ?"))
	s.response(prepareOKPkt(1)) // target base 0
	s.client(preparePkt("SELECT ?, ?"))
	// The client runs the second first: online ids 8 and 9 (base 7).
	if out := s.client(stmtPkt(comStmtExecute, 9)); !bytes.Equal(out, stmtPkt(comStmtExecute, 2)) {
		t.Errorf("got %q", out)
	}
	if out := s.client(stmtPkt(comStmtReset, 8)); !bytes.Equal(out, stmtPkt(comStmtReset, 1)) {
		t.Errorf("got %q", out)
	}
	// A header and the id split across segments.
	in := stmtPkt(comStmtSendLongData, 8, 0, 0, 'x')
	out := s.client(in[:6])
	out = append(out, s.client(in[6:])...)
	if !bytes.Equal(out, stmtPkt(comStmtSendLongData, 1, 0, 0, 'x')) {
		t.Errorf("got %q", out)
	}
}

func TestMidStreamFallbacks(t *testing.T) {
	p := newTestProtocol(t, Config{DefaultUser: "app2", DefaultDatabase: "dflt"})
	// Nothing from the address yet: the default user.
	s := open(t, p, true)
	l, _ := parseLoginPkt(t, s.c.Inject(nil))
	if l.user != "app2" || l.db != "dflt" || l.plugin != pluginResume {
		t.Errorf("default login %+v", l)
	}
	// Another connection from the address logs in; a mid-stream session
	// on a third port gets its login, no prepares.
	other := &tsession{t: t, c: p.Open(clientEP.WithPort(40001), targetEP, false).(*conn)}
	other.loginAs("app", "app-pw")
	other.client(preparePkt("SELECT 1"))
	third := &tsession{t: t, c: p.Open(clientEP.WithPort(40002), targetEP, true).(*conn)}
	l, _ = parseLoginPkt(t, third.c.Inject(nil))
	if l.user != "app" || l.db != "app" || len(third.c.replay) != 0 {
		t.Errorf("address login %+v, replay %q", l, third.c.replay)
	}
	if st := p.Stats(); st.Injected != 2 || st.InjectedDefault != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSkipGrantTables(t *testing.T) {
	p := newTestProtocol(t, Config{SkipGrantTables: true})
	s := open(t, p, false)
	s.response(greetingPkt(targetScramble))
	in := loginPkt(testLogin("anyone", "app", pluginNative), "whatever")
	if out := s.client(in); !bytes.Equal(out, in) {
		t.Fatal("login changed in skip-grant-tables mode")
	}
	s.response(okPkt(2))
	if out := s.client(append(pkt(3, []byte("switch answer")), queryPkt("SELECT 1")...)); !bytes.Equal(out, queryPkt("SELECT 1")) {
		t.Fatalf("got %q", out)
	}
	// A target that asks for a password is not in skip-grant-tables mode.
	s = open(t, p, false)
	s.response(greetingPkt(targetScramble))
	s.client(in)
	s.response(switchPkt(2, pluginNative, targetScramble))
	if !s.c.Skip() {
		t.Error("auth switch in skip-grant-tables mode not skipped")
	}
}

func TestCompressedSessionPassesThrough(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.response(greetingPkt(targetScramble))
	l := testLogin("app", "app", pluginNative)
	l.caps |= clientCompress
	s.client(loginPkt(l, "app-pw"))
	s.response(okPkt(2))
	garbage := []byte{7, 0, 0, 0, 0, 0, 0, 0x78, 0x9c, 1, 2, 3}
	if out := s.client(garbage); !bytes.Equal(out, garbage) {
		t.Errorf("compressed bytes changed: %q", out)
	}
}

func TestStoreBounds(t *testing.T) {
	p := newTestProtocol(t, Config{MaxStoredConns: 10, MaxStoredBytes: 4096, MaxPrepares: 3})
	for port := range uint16(50) {
		s := &tsession{t: t, c: p.Open(clientEP.WithPort(41000+port), targetEP, false).(*conn)}
		s.loginAs("app", "app-pw")
		for range 5 {
			s.client(preparePkt("SELECT 'a statement of some length to fill the store'"))
		}
	}
	st := p.Stats()
	if st.StoredConns > 10 || st.StoredBytes > 4096 || st.Evicted == 0 || st.PreparesNotStored == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestHeldBytesBounded(t *testing.T) {
	p := newTestProtocol(t, Config{})
	s := open(t, p, false)
	s.response(greetingPkt(targetScramble))
	s.client(loginPkt(testLogin("app", "app", pluginNative), "app-pw"))
	chunk := make([]byte, 1<<20)
	for range 5 {
		s.client(chunk)
	}
	if !s.c.Skip() || p.Stats().Overflow != 1 {
		t.Errorf("stats %+v", p.Stats())
	}
}
