package mysql

import (
	"bytes"
	"testing"
)

// FuzzParsers feeds garbage to every packet parser: no panic, and a login
// that parses survives re-encoding.
func FuzzParsers(f *testing.F) {
	f.Add(greetingPkt(targetScramble)[headerLen:], uint32(testCaps))
	f.Add(loginPkt(testLogin("app", "app", pluginNative), "pw")[headerLen:], uint32(testCaps))
	f.Add(switchPkt(2, pluginNative, targetScramble)[headerLen:], uint32(0))
	f.Add(errPkt(2, 1045, "denied")[headerLen:], uint32(0))
	cu := &changeUser{user: "u", db: "d", charset: []byte{45, 0}, plugin: pluginNative, hasPlug: true}
	f.Add(appendChangeUser(nil, cu, 0, testCaps, []byte("12345678901234567890"), pluginNative)[headerLen:], uint32(testCaps))
	f.Fuzz(func(t *testing.T, b []byte, caps uint32) {
		parseGreeting(b)
		parseAuthSwitch(b)
		parseErr(b)
		parseChangeUser(b, caps)
		if l, err := parseLogin(b); err == nil && l.caps&clientSSL == 0 {
			out := appendLogin(nil, l, 1, l.auth, l.plugin)
			l2, err := parseLogin(out[headerLen:])
			if err != nil {
				t.Fatalf("re-encoded login does not parse: %v", err)
			}
			if l2.user != l.user || !bytes.Equal(l2.auth, l.auth) || l2.db != l.db && l.db != "" {
				t.Fatalf("login changed on re-encoding: %+v -> %+v", l, l2)
			}
		}
	})
}

// FuzzConn drives Conns with garbage from both sides, cut at arbitrary
// points: no panic, and output stays bounded.
func FuzzConn(f *testing.F) {
	login := loginPkt(testLogin("app", "app", pluginNative), "app-pw")
	f.Add(greetingPkt(targetScramble), login, okPkt(2), []byte{3, 9}, false, false)
	f.Add(greetingPkt(targetScramble), append(login, queryPkt("SELECT 1")...), switchPkt(2, pluginNative, targetScramble), []byte{1}, true, false)
	f.Add(greetingPkt(targetScramble), append(preparePkt("SELECT ?"), stmtPkt(comStmtExecute, 3)...), append(okPkt(4), prepareOKPkt(9)...), []byte{}, true, true)
	f.Fuzz(func(t *testing.T, server, client, server2, cuts []byte, resumed, skipGrant bool) {
		p, err := New(&Config{Users: map[string]string{"app": "app-pw"}, SkipGrantTables: skipGrant,
			DefaultUser: "app", MaxStoredBytes: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		// A first session stores a login and prepares for the second.
		for _, res := range []bool{false, resumed} {
			c := p.Open(clientEP, targetEP, res)
			c.Inject(nil)
			out := 0
			feed := func(b []byte, fromClient bool) {
				for i := 0; len(b) > 0; i++ {
					n := len(b)
					if i < len(cuts) && int(cuts[i]) > 0 {
						n = min(n, int(cuts[i]))
					}
					if fromClient {
						if c.Ready() {
							out += len(c.Client(nil, b[:n]))
						}
					} else {
						// intercept may report less than the segment
						rep := min(n, 64+int(n%7))
						out += len(c.Response(nil, b[:rep], n))
					}
					b = b[n:]
				}
			}
			feed(server, false)
			feed(client, true)
			feed(server2, false)
			feed(client, true)
			if limit := 2*len(client) + len(server2)*2 + 1<<16; out > limit {
				t.Fatalf("%d bytes out for %d in", out, len(client))
			}
			c.Skip()
		}
	})
}
