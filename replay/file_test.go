package replay_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
)

func TestFileOpener(t *testing.T) {
	path, offs := writePcap(t, 20)
	size := int64(offs[len(offs)-1])
	clock := replay.NewFakeClock(start)
	p, err := replay.New(&replay.Config{
		Open:  replay.FileOpener(path, &capture.FileConfig{ReadBuffer: 256}),
		Clock: clock, Repeat: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st := p.Stats()
	if st.Size != size {
		t.Errorf("size %d, want %d", st.Size, size)
	}
	// Only the header has been read, through a 256-byte buffer.
	if f, ok := st.Progress(); !ok || st.Read > 256 || f != float64(st.Read)/float64(2*size) {
		t.Errorf("progress at the start: %v, %v (%+v)", f, ok, st)
	}
	pkts := make([]capture.Packet, 1)
	var last float64
	for i := range 40 {
		n, err := p.ReadPackets(pkts)
		if n != 1 || err != nil {
			t.Fatalf("read %d: %d, %v", i, n, err)
		}
		if id := idOf(&pkts[0]); id != i%20 {
			t.Fatalf("read %d: packet %d", i, id)
		}
		f, _ := p.Stats().Progress()
		if f < last {
			t.Errorf("progress went back from %v to %v", last, f)
		}
		last = f
	}
	if _, err := p.ReadPackets(pkts); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	st = p.Stats()
	if f, ok := st.Progress(); !ok || f != 1 {
		t.Errorf("progress at the end: %v, %v (%+v)", f, ok, st)
	}
	if st.Read != size || st.Source.Packets != 40 {
		t.Errorf("read %d of %d, source packets %d", st.Read, size, st.Source.Packets)
	}
	if _, err := replay.New(&replay.Config{Open: replay.FileOpener(filepath.Join(t.TempDir(), "none.pcap"), nil)}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// replayIDs replays path (Repeat 2) and returns the packet ids in order,
// the error that ended it, or an error from New.
func replayIDs(t *testing.T, path string, fast bool) ([]int, error) {
	t.Helper()
	clock := replay.NewFakeClock(start)
	p, err := replay.New(&replay.Config{
		Open: replay.FileOpener(path, &capture.FileConfig{ReadBuffer: 64}), Repeat: 2, Fast: fast,
		Clock: clock, MaxIdle: 5 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	out, err := readAll(t, p, clock, 3)
	ids := make([]int, len(out))
	for i, g := range out {
		ids[i] = g.id
	}
	return ids, err
}

// TestTruncatedFiles cuts a capture at every byte: a cut inside a record
// gives a clear error after the records before it, each replayed once;
// a cut between records is a shorter valid file, replayed twice (Repeat 2).
func TestTruncatedFiles(t *testing.T) {
	path, offs := writePcap(t, 12)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for cut := 0; cut < len(full); cut++ {
		name := filepath.Join(dir, "cut.pcap")
		if err := os.WriteFile(name, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, fast := range []bool{true, false} {
			ids, err := replayIDs(t, name, fast)
			complete := 0 // records wholly before the cut
			for complete < 12 && offs[complete+1] <= cut {
				complete++
			}
			boundary := false
			for _, o := range offs {
				boundary = boundary || o == cut
			}
			switch {
			case cut < offs[0]: // inside the file header: New refuses it
				if ids != nil || !errors.Is(err, capture.ErrFormat) {
					t.Fatalf("cut %d: %v, %v; want ErrFormat from New", cut, ids, err)
				}
			case boundary:
				if err != io.EOF || !equalIDs(ids, complete, 2) {
					t.Fatalf("cut %d at a record boundary: %v, %v; want ids 0..%d twice", cut, ids, err, complete-1)
				}
			default:
				if !errors.Is(err, capture.ErrFormat) || !errors.Is(err, io.ErrUnexpectedEOF) ||
					!strings.Contains(err.Error(), "cut.pcap") {
					t.Fatalf("cut %d: error %v, want a cut-off file error naming it", cut, err)
				}
				if !equalIDs(ids, complete, 1) {
					t.Fatalf("cut %d: replayed %v, want ids 0..%d once", cut, ids, complete-1)
				}
			}
		}
	}
}

func equalIDs(ids []int, n, rounds int) bool {
	if len(ids) != n*rounds {
		return false
	}
	for i, id := range ids {
		if id != i%n {
			return false
		}
	}
	return true
}

// TestCorruptFiles damages a capture byte by byte: never a panic, never a
// packet twice in a round, and any error a clear file error.
func TestCorruptFiles(t *testing.T) {
	path, offs := writePcap(t, 8)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "bad.pcap")
	for i := range full {
		for _, v := range []byte{0xff, 0x00, full[i] ^ 0x80} {
			b := append([]byte(nil), full...)
			b[i] = v
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
			ids, err := replayIDs(t, name, true)
			if err != nil && err != io.EOF && !errors.Is(err, capture.ErrFormat) {
				t.Fatalf("byte %d = %#x: error %v is not a file format error", i, v, err)
			}
			if len(ids) > 16 {
				t.Fatalf("byte %d = %#x: %d packets from 8 records in 2 rounds", i, v, len(ids))
			}
			if err != nil && err != io.EOF {
				// Failed: one round only, nothing twice.
				seen := map[int]bool{}
				for _, id := range ids {
					if id >= 0 && seen[id] {
						t.Fatalf("byte %d = %#x: packet %d replayed twice before %v", i, v, id, err)
					}
					seen[id] = true
				}
			}
		}
	}
	// A record length over the limit: a clear error naming the offset.
	b := append([]byte(nil), full...)
	rec := offs[3]
	b[rec+8], b[rec+9], b[rec+10], b[rec+11] = 0xff, 0xff, 0xff, 0x7f
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := replayIDs(t, name, false)
	if !errors.Is(err, capture.ErrFormat) || !strings.Contains(err.Error(), "offset") || !equalIDs(ids, 3, 1) {
		t.Errorf("bad record length: %v, %v; want ids 0..2 and an error with the offset", ids, err)
	}
	t.Logf("bad record length: %v", err)
	// Not a capture at all.
	if err := os.WriteFile(name, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := replayIDs(t, name, false); !errors.Is(err, capture.ErrFormat) {
		t.Errorf("not a capture: %v", err)
	}
}
