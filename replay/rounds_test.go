package replay_test

import (
	"io"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

func TestRoundCopies(t *testing.T) {
	const rounds = 3
	for _, n := range []int{1, 2} {
		clock := replay.NewFakeClock(start)
		p, err := replay.New(&replay.Config{
			Open: memoryOpener([]time.Duration{0, time.Millisecond}, nil), Repeat: rounds, Clock: clock,
		})
		if err != nil {
			t.Fatal(err)
		}
		copies, err := rewrite.NewCopies(&rewrite.CopiesConfig{Copies: n * rounds, Clock: p.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := replay.NewRoundCopies(p, copies, n+1); err == nil {
			t.Errorf("n=%d: a wrong copy count was taken", n)
		}
		rc, err := replay.NewRoundCopies(p, copies, n)
		if err != nil {
			t.Fatal(err)
		}
		if rc.Copies() != n {
			t.Errorf("Copies() = %d, want %d", rc.Copies(), n)
		}
		pkts := make([]capture.Packet, 1)
		seen := map[uint16]int{} // port -> round
		for range 100 {
			k, err := p.ReadPackets(pkts)
			if err == io.EOF {
				break
			}
			if err != nil || k != 1 {
				t.Fatal(k, err)
			}
			round := p.Round()
			orig := pkts[0].Data
			for i := range n {
				var cp capture.Packet
				if err := cp.Decode(append([]byte(nil), orig...)); err != nil {
					t.Fatal(err)
				}
				if !rc.RewriteCopy(&cp, i) {
					t.Fatalf("round %d copy %d refused: %+v", round, i, copies.Stats())
				}
				port := cp.SrcPort()
				if want := copies.Port(40000, (round-1)*n+i); port != want {
					t.Errorf("round %d copy %d: port %d, want %d", round, i, port, want)
				}
				if r, ok := seen[port]; ok && r != round {
					t.Errorf("port %d in rounds %d and %d", port, r, round)
				}
				seen[port] = round
			}
			if round == 1 && n == 1 {
				var cp capture.Packet
				cp.Decode(append([]byte(nil), orig...))
				if !rc.Rewrite(&cp) || cp.SrcPort() != 40000 {
					t.Errorf("round 1 changed the port to %d", cp.SrcPort())
				}
			}
		}
		if len(seen) != n*rounds {
			t.Errorf("n=%d: %d distinct ports, want %d", n, len(seen), n*rounds)
		}
		var cp capture.Packet
		cp.Decode(segment(0))
		if rc.RewriteCopy(&cp, n) || copies.Stats().BadCopy != 1 {
			t.Errorf("copy out of range taken: %+v", copies.Stats())
		}
		p.Close()
	}
}
