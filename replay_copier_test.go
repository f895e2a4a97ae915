package tcpcopy_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

// timeTable is a SessionTable that records the client packets it is
// handed: their source ports and times.
type timeTable struct {
	mu    sync.Mutex
	ports []uint16
	times []time.Time
}

func (t *timeTable) HandleClient(p *capture.Packet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ports = append(t.ports, p.SrcPort())
	t.times = append(t.times, p.Time)
}

func (t *timeTable) HandleResponse(*capture.Packet) {}
func (t *timeTable) Tick(time.Time)                 {}

// TestReplayIntoCopier wires a Pacer into a Copier (no privileges: a
// memory capture and a recording table): the transfer map keeps the client
// packets and counts the server's as filtered, the table gets the client
// packets stamped with their due times on the Pacer's clock (speed 4), and
// RoundCopies gives the second round other client ports.
func TestReplayIntoCopier(t *testing.T) {
	client := netip.MustParseAddrPort("198.18.0.1:40000")
	server := netip.MustParseAddrPort("198.18.0.2:80")
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	type pkt struct {
		at       time.Duration
		toServer bool
		flags    uint8
		payload  string
	}
	conv := []pkt{
		{0, true, capture.FlagSYN, ""},
		{time.Millisecond, false, capture.FlagSYN | capture.FlagACK, ""},
		{2 * time.Millisecond, true, capture.FlagACK, ""},
		{3 * time.Millisecond, true, capture.FlagACK | capture.FlagPSH, "GET / HTTP/1.1\r\n\r\n"},
		{8 * time.Millisecond, false, capture.FlagACK | capture.FlagPSH, "HTTP/1.1 200 OK\r\n\r\n"},
		{400 * time.Millisecond, true, capture.FlagACK | capture.FlagFIN, ""},
	}
	open := func() (capture.Capturer, error) {
		m := capture.NewMemory()
		for _, c := range conv {
			s := &capture.Segment{Src: client, Dst: server, Flags: c.flags, Payload: []byte(c.payload), Window: 512}
			if !c.toServer {
				s.Src, s.Dst = server, client
			}
			b, err := capture.AppendSegment(nil, s)
			if err != nil {
				return nil, err
			}
			m.Push(t0.Add(c.at), b)
		}
		m.CloseWrite()
		return m, nil
	}
	clock := replay.NewFakeClock(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	begin := clock.Now()
	p, err := replay.New(&replay.Config{Open: open, Speed: 4, Repeat: 2, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	transfer, err := rewrite.ParseTransfer("198.18.0.2:80-198.18.1.2:8080")
	if err != nil {
		t.Fatal(err)
	}
	copies, err := rewrite.NewCopies(&rewrite.CopiesConfig{Copies: 2, Clock: p.Now})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := replay.NewRoundCopies(p, copies, 1)
	if err != nil {
		t.Fatal(err)
	}
	table := &timeTable{}
	c, err := tcpcopy.NewCopier(&tcpcopy.Config{
		Capturer: p, Rewriter: rewrite.Chain(transfer, rc), Clock: p.Now, Shards: 1,
		NewTable: func(int) tcpcopy.SessionTable { return table },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var want []time.Duration // due offsets of the client packets, both rounds
	for round := range 2 {
		for _, k := range conv {
			if k.toServer {
				want = append(want, time.Duration(round)*conv[len(conv)-1].at/4+k.at/4)
			}
		}
	}
	table.mu.Lock()
	defer table.mu.Unlock()
	if len(table.times) != len(want) {
		t.Fatalf("table got %d client packets, want %d", len(table.times), len(want))
	}
	for i, at := range table.times {
		if got := at.Sub(begin); got != want[i] {
			t.Errorf("client packet %d stamped +%v, want +%v", i, got, want[i])
		}
		wantPort := client.Port()
		if i >= len(want)/2 {
			wantPort = copies.Port(client.Port(), 1)
		}
		if table.ports[i] != wantPort {
			t.Errorf("client packet %d from port %d, want %d", i, table.ports[i], wantPort)
		}
	}
	st := c.Stats()
	if st.Captured != 12 || st.Filtered != 4 || st.Dispatched != 8 {
		t.Errorf("copier stats %+v: want 12 captured, 4 filtered, 8 dispatched", st)
	}
	r := replay.Summarize(p.Stats(), replay.CopierCounts{Captured: st.Captured, Filtered: st.Filtered, Dispatched: st.Dispatched})
	if r.Packets != 12 || r.Filtered != 4 || r.Rounds != 2 || r.Speed != 4 {
		t.Errorf("report %+v", r)
	}
	t.Logf("report:\n%s", r)
}
