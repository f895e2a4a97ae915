package replay_test

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/replay"
)

// t0 is the capture time of the first packet of the test captures; start
// is where fake clocks begin (a different day: the replay is not the
// capture).
var (
	t0    = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	start = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
)

// segment returns a client packet whose payload names it: "pkt <id>". It
// panics if the builder fails, which only a broken builder would.
func segment(id int) []byte {
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src:     netip.MustParseAddrPort("198.18.0.1:40000"),
		Dst:     netip.MustParseAddrPort("198.18.0.2:80"),
		Seq:     capture.Seq(1000 + 100*id),
		Ack:     1,
		Flags:   capture.FlagACK | capture.FlagPSH,
		Window:  512,
		Payload: []byte("pkt " + strconv.Itoa(id)),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// idOf returns the id segment gave a packet, or -1.
func idOf(p *capture.Packet) int {
	s, ok := bytes.CutPrefix(p.Payload(), []byte("pkt "))
	if !ok {
		return -1
	}
	id, err := strconv.Atoi(string(s))
	if err != nil {
		return -1
	}
	return id
}

// memoryOpener returns an Open func that serves packets id 0.. at t0 plus
// the offsets, from a fresh capture.Memory each time, and counts the
// calls.
func memoryOpener(offsets []time.Duration, opened *int) func() (capture.Capturer, error) {
	return func() (capture.Capturer, error) {
		m := capture.NewMemory()
		for i, off := range offsets {
			m.Push(t0.Add(off), segment(i))
		}
		m.CloseWrite()
		if opened != nil {
			*opened++
		}
		return m, nil
	}
}

// got is a packet as a Pacer handed it out.
type got struct {
	id   int
	time time.Time // Packet.Time
	at   time.Time // the clock when ReadPackets returned
	call int       // which ReadPackets call returned it
}

// readAll reads p until an error (returned) with batches of size batch,
// bounded by max calls.
func readAll(t testing.TB, p *replay.Pacer, clock replay.Clock, batch int) ([]got, error) {
	t.Helper()
	pkts := make([]capture.Packet, batch)
	var out []got
	for call := range 100000 {
		n, err := p.ReadPackets(pkts)
		now := clock.Now()
		for i := range pkts[:n] {
			out = append(out, got{idOf(&pkts[i]), pkts[i].Time, now, call})
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			t.Fatalf("ReadPackets returned no packet and no error")
		}
	}
	t.Fatal("replay did not end within 100000 reads")
	return nil, nil
}

// scripted is a Capturer that returns fixed batches, then err.
type scripted struct {
	mu      sync.Mutex
	batches [][]int // ids per read
	err     error   // after the batches; nil means io.EOF
	withErr bool    // return err together with the last batch
	closed  bool
	reads   int
	empty   int // reads that return nothing (0, nil) before the batches, breaking the contract
}

func (s *scripted) ReadPackets(pkts []capture.Packet) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, capture.ErrClosed
	}
	s.reads++
	if s.empty > 0 {
		s.empty--
		return 0, nil
	}
	err := s.err
	if err == nil {
		err = io.EOF
	}
	if len(s.batches) == 0 {
		return 0, err
	}
	ids := s.batches[0]
	s.batches = s.batches[1:]
	if len(ids) > len(pkts) {
		panic("scripted: batch larger than the caller's slice")
	}
	for i, id := range ids {
		pkts[i].Time = t0.Add(time.Duration(id) * time.Millisecond)
		if e := pkts[i].Decode(segment(id)); e != nil {
			panic(e)
		}
	}
	if s.withErr && len(s.batches) == 0 {
		return len(ids), err
	}
	return len(ids), nil
}

func (s *scripted) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// writePcap writes packets id 0..n-1, 10 ms apart from t0, to a pcap file
// with the library's writer and returns its path and the record offsets
// (where each record starts, and the file size last).
func writePcap(t testing.TB, n int) (string, []int) {
	t.Helper()
	var buf bytes.Buffer
	w, err := emit.NewPcapWriter(&buf, &emit.PcapWriterConfig{BufferSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	offs := []int{}
	for i := range n {
		offs = append(offs, buf.Len())
		if err := w.WritePacket(t0.Add(time.Duration(i)*10*time.Millisecond), segment(i)); err != nil {
			t.Fatal(err)
		}
	}
	offs = append(offs, buf.Len())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, offs
}

var errBoom = errors.New("boom: the disk is gone")
