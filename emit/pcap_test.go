package emit_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
)

// pcapSegments are IPv4 and IPv6 datagrams of assorted sizes from the lab
// ranges.
func pcapSegments(t testing.TB, n int) [][]byte {
	var out [][]byte
	for i := range n {
		s := capture.Segment{
			Src: netip.MustParseAddrPort("198.18.0.1:40000"), Dst: netip.MustParseAddrPort("198.18.0.2:80"),
			Seq: capture.Seq(i * 1000), Flags: capture.FlagACK | capture.FlagPSH, Payload: bytes.Repeat([]byte{byte(i)}, (i*131)%1400),
		}
		if i%2 == 1 {
			s.Src, s.Dst = netip.MustParseAddrPort("[fd00:198:18::1]:40000"), netip.MustParseAddrPort("[fd00:198:18::2]:80")
		}
		b, err := capture.AppendSegment(nil, &s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// stepClock returns a clock that starts at t0 and moves by step per call.
func stepClock(t0 time.Time, step time.Duration) func() time.Time {
	t := t0
	return func() time.Time {
		now := t
		t = t.Add(step)
		return now
	}
}

// TestPcapWriterRoundTrip writes with PcapWriter in both link types and
// resolutions and reads the file back with capture.File: same datagrams,
// same timestamps (to the resolution), in order.
func TestPcapWriterRoundTrip(t *testing.T) {
	dgrams := pcapSegments(t, 50)
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	for _, eth := range []bool{false, true} {
		for _, nano := range []bool{false, true} {
			t.Run(fmt.Sprintf("ethernet=%v/nano=%v", eth, nano), func(t *testing.T) {
				var buf bytes.Buffer
				w, err := emit.NewPcapWriter(&buf, &emit.PcapWriterConfig{Ethernet: eth, Nanosecond: nano,
					Now: stepClock(t0, 1001*time.Nanosecond), SrcMAC: net.HardwareAddr{2, 1, 2, 3, 4, 5}})
				if err != nil {
					t.Fatal(err)
				}
				// Three Emits, one timestamp each, plus WritePacket.
				if err := w.Emit(dgrams[:20]); err != nil {
					t.Fatal(err)
				}
				if err := w.Emit(append([][]byte{{0x10, 0x20}}, dgrams[20:40]...)); err != nil {
					t.Fatal(err)
				}
				for _, d := range dgrams[40:] {
					if err := w.WritePacket(t0.Add(time.Hour), d); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if s := w.Stats(); s.Sent != 50 || s.Invalid != 1 {
					t.Fatalf("writer stats %+v", s)
				}
				f, err := capture.NewFileReader(&buf, "written.pcap", nil)
				if err != nil {
					t.Fatal(err)
				}
				res := time.Microsecond
				if nano {
					res = 1
				}
				pkts := make([]capture.Packet, 7)
				i := 0
				for {
					n, err := f.ReadPackets(pkts)
					for _, p := range pkts[:n] {
						if !bytes.Equal(p.Data, dgrams[i]) {
							t.Fatalf("packet %d differs", i)
						}
						want := t0
						switch {
						case i >= 40:
							want = t0.Add(time.Hour)
						case i >= 20:
							want = t0.Add(1001 * time.Nanosecond)
						}
						if !p.Time.Equal(want.Truncate(res)) {
							t.Fatalf("packet %d: time %v, want %v", i, p.Time, want.Truncate(res))
						}
						i++
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if i != len(dgrams) {
					t.Fatalf("read %d packets, want %d", i, len(dgrams))
				}
			})
		}
	}
}

// TestPcapWriterSnapLen: a datagram longer than the snap length is written
// cut (caplen < len), which the reader counts as truncated.
func TestPcapWriterSnapLen(t *testing.T) {
	dgrams := pcapSegments(t, 4)
	var buf bytes.Buffer
	w, err := emit.NewPcapWriter(&buf, &emit.PcapWriterConfig{SnapLen: 200, Ethernet: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Emit(dgrams); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := capture.NewFileReader(&buf, "snapped.pcap", nil)
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]capture.Packet, 8)
	n, _ := f.ReadPackets(pkts)
	long := 0
	for _, d := range dgrams {
		if len(d)+14 > 200 {
			long++
		}
	}
	if s := f.Stats(); n != len(dgrams)-long || s.Truncated != uint64(long) {
		t.Fatalf("read %d, stats %+v; want %d truncated", n, s, long)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(b []byte) (int, error) {
	if f.after -= len(b); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(b), nil
}

// TestPcapWriterErrors: a write error is returned and sticks.
func TestPcapWriterErrors(t *testing.T) {
	if _, err := emit.NewPcapWriter(&failWriter{}, &emit.PcapWriterConfig{BufferSize: -1}); err == nil {
		t.Fatal("header write error not reported")
	}
	for _, cfg := range []*emit.PcapWriterConfig{{SnapLen: -1}, {SrcMAC: net.HardwareAddr{1}}} {
		if _, err := emit.NewPcapWriter(io.Discard, cfg); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
	w, err := emit.NewPcapWriter(&failWriter{after: 100}, &emit.PcapWriterConfig{BufferSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	d := pcapSegments(t, 3)
	err1 := w.Emit(d)
	err2 := w.Emit(d)
	if err1 == nil || err2 == nil || !strings.Contains(err1.Error(), "disk full") {
		t.Fatalf("Emit errors %v, %v", err1, err2)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a write error reported none")
	}
	if err := w.Emit(d); !errors.Is(err, emit.ErrClosed) {
		t.Fatalf("Emit after Close = %v", err)
	}
}

func TestPcapWriterAllocs(t *testing.T) {
	w, err := emit.NewPcapWriter(io.Discard, &emit.PcapWriterConfig{Ethernet: true})
	if err != nil {
		t.Fatal(err)
	}
	batch := pcapSegments(t, 16)
	if n := testing.AllocsPerRun(100, func() {
		if err := w.Emit(batch); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Emit allocates %v times per call", n)
	}
}

// TestPcapWriterTcpdump has tcpdump (an independent reader) read what
// PcapWriter writes.
func TestPcapWriterTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("skipping: tcpdump is not installed (Debian package tcpdump)")
	}
	dgrams := pcapSegments(t, 10)
	for _, eth := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "w.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := emit.NewPcapWriter(f, &emit.PcapWriterConfig{Ethernet: eth, Nanosecond: eth})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Emit(dgrams); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out, err := exec.Command(tcpdump, "-n", "-r", path).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpdump -r: %v\n%s", err, out)
		}
		lines := 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "198.18.0.1.40000 > 198.18.0.2.80") || strings.Contains(l, "fd00:198:18::1.40000 > fd00:198:18::2.80") {
				lines++
			}
		}
		if lines != len(dgrams) {
			t.Fatalf("ethernet=%v: tcpdump shows %d of %d packets:\n%s", eth, lines, len(dgrams), out)
		}
	}
}

func BenchmarkPcapWriter(b *testing.B) {
	w, err := emit.NewPcapWriter(io.Discard, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := pcapSegments(b, 64)
	size := 0
	for _, d := range batch {
		size += len(d)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		if err := w.Emit(batch); err != nil {
			b.Fatal(err)
		}
	}
}
