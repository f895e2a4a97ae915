package mysql

import (
	"bytes"
	"testing"
)

// BenchmarkCommands is the steady state: commands (queries, and executes
// whose statement ids are mapped) through an authenticated session.
func BenchmarkCommands(b *testing.B) {
	p, err := New(&Config{Users: map[string]string{"app": "app-pw"}})
	if err != nil {
		b.Fatal(err)
	}
	c := p.Open(clientEP, targetEP, false).(*conn)
	c.Response(nil, greetingPkt(targetScramble), len(greetingPkt(targetScramble)))
	c.Client(nil, loginPkt(testLogin("app", "app", pluginNative), "app-pw"))
	c.Response(nil, okPkt(2), len(okPkt(2)))
	c.Client(nil, preparePkt("SELECT ?"))
	c.Response(nil, prepareOKPkt(9), len(prepareOKPkt(9)))
	seg := bytes.Join([][]byte{queryPkt("SELECT * FROM t WHERE k = 'some key'"), stmtPkt(comStmtExecute, 1, 0, 1, 0, 0, 0)}, nil)
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(seg)))
	for b.Loop() {
		dst = c.Client(dst[:0], seg)
	}
	if !c.ready() || len(dst) != len(seg) {
		b.Fatalf("session not in the command phase: %v", c.phase)
	}
}
