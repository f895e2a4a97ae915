package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/linklayer"
)

var fileEpoch = time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC)

// fileDatagrams are IPv4 and IPv6 segments of assorted sizes.
func fileDatagrams(tb testing.TB, n int) [][]byte {
	tb.Helper()
	var out [][]byte
	for i := range n {
		s := capture.Segment{Src: cli4, Dst: srv4, Seq: capture.Seq(1000 * i), Ack: 1,
			Flags: capture.FlagACK | capture.FlagPSH, Window: 100, Payload: bytes.Repeat([]byte{byte(i)}, (i*97)%1500)}
		if i%3 == 1 {
			s.Src, s.Dst = cli6, srv6
		}
		out = append(out, segment(tb, s))
	}
	return out
}

// got is a packet read from a file, copied.
type got struct {
	t    time.Time
	dir  capture.Direction
	data []byte
}

// readAll reads c to the end in batches of size batch, checking that the
// packets of each batch stay intact until the next call.
func readAll(tb testing.TB, c capture.Capturer, batch int) ([]got, error) {
	tb.Helper()
	pkts := make([]capture.Packet, batch)
	var out []got
	for range 1 << 20 {
		n, err := c.ReadPackets(pkts)
		if n > 0 && err != nil {
			tb.Fatalf("ReadPackets returned %d packets and %v", n, err)
		}
		for i := range pkts[:n] {
			out = append(out, got{pkts[i].Time, pkts[i].Dir, bytes.Clone(pkts[i].Data)})
		}
		// Every packet of the batch still decodes to what was copied.
		for i := range pkts[:n] {
			if !bytes.Equal(pkts[i].Data, out[len(out)-n+i].data) {
				tb.Fatalf("packet %d of a batch changed before the next call", i)
			}
		}
		if err != nil {
			return out, err
		}
	}
	tb.Fatal("readAll: no end")
	return nil, nil
}

func openBytes(tb testing.TB, b []byte, bufSize int) *capture.File {
	tb.Helper()
	f, err := capture.NewFileReader(bytes.NewReader(b), "test.pcap", &capture.FileConfig{ReadBuffer: bufSize})
	if err != nil {
		tb.Fatalf("NewFileReader: %v", err)
	}
	return f
}

func checkGot(t *testing.T, gots []got, ips [][]byte, times []time.Time, dirs []capture.Direction) {
	t.Helper()
	if len(gots) != len(ips) {
		t.Fatalf("read %d packets, want %d", len(gots), len(ips))
	}
	for i, g := range gots {
		if !bytes.Equal(g.data, ips[i]) {
			t.Fatalf("packet %d:\n got %x\nwant %x", i, g.data, ips[i])
		}
		if times != nil && !g.t.Equal(times[i]) {
			t.Fatalf("packet %d: time %v, want %v", i, g.t, times[i])
		}
		if dirs != nil && g.dir != dirs[i] {
			t.Fatalf("packet %d: direction %v, want %v", i, g.dir, dirs[i])
		}
	}
}

// TestPcapLinkTypes writes pcap files in every supported link type, both
// byte orders and both resolutions, and reads them back in several batch
// and buffer sizes.
func TestPcapLinkTypes(t *testing.T) {
	ips := fileDatagrams(t, 40)
	for _, lt := range []linklayer.Type{linklayer.Ethernet, linklayer.LinuxSLL, linklayer.LinuxSLL2,
		linklayer.Raw, linklayer.RawDLT12, linklayer.RawDLT14, linklayer.Null, linklayer.Loop, linklayer.IPv4, linklayer.IPv6} {
		for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, nano := range []bool{false, true} {
				name := fmt.Sprintf("%v/%v/nano=%v", lt, order, nano)
				t.Run(name, func(t *testing.T) {
					var recs []rec
					var want [][]byte
					var times []time.Time
					var dirs []capture.Direction
					for i, ip := range ips {
						if (lt == linklayer.IPv4 && ip[0]>>4 != 4) || (lt == linklayer.IPv6 && ip[0]>>4 != 6) {
							continue
						}
						ts := fileEpoch.Add(time.Duration(i) * 1234567 * time.Nanosecond)
						if !nano {
							ts = ts.Truncate(time.Microsecond)
						}
						pt := uint8([]int{0, 4, 3, 1}[i%4])
						recs = append(recs, rec{t: ts, frame: frameFor(lt, ip, pt, order)})
						want, times = append(want, ip), append(times, ts)
						d := capture.DirUnknown
						if lt == linklayer.LinuxSLL || lt == linklayer.LinuxSLL2 {
							d = []capture.Direction{capture.DirIn, capture.DirOut, capture.DirIn, capture.DirIn}[i%4]
						}
						dirs = append(dirs, d)
					}
					file := pcapBytes(order, nano, uint32(lt), recs)
					for _, bs := range []struct{ buf, batch int }{{0, 64}, {64, 1}, {100, 3}, {4096, 7}} {
						f := openBytes(t, file, bs.buf)
						gots, err := readAll(t, f, bs.batch)
						if err != io.EOF {
							t.Fatalf("buffer %d batch %d: end with %v, want io.EOF", bs.buf, bs.batch, err)
						}
						checkGot(t, gots, want, times, dirs)
						if s := f.Stats(); s.Packets != uint64(len(want)) || s.Truncated+s.Malformed+s.NotTCP != 0 {
							t.Fatalf("stats %+v", s)
						}
						if _, err := f.ReadPackets(make([]capture.Packet, 2)); err != io.EOF {
							t.Fatalf("ReadPackets after the end = %v, want io.EOF again", err)
						}
					}
				})
			}
		}
	}
}

// TestPcapVLAN reads Ethernet frames with 802.1Q, 802.1ad and stacked tags.
func TestPcapVLAN(t *testing.T) {
	ips := fileDatagrams(t, 4)
	recs := []rec{
		{t: fileEpoch, frame: vlanFrame(ips[0], 0x8100)},
		{t: fileEpoch, frame: vlanFrame(ips[1], 0x88a8, 0x8100)},
		{t: fileEpoch, frame: vlanFrame(ips[2], 0x9100, 0x8100)},
		{t: fileEpoch, frame: vlanFrame(ips[3], 0x88a8, 0x8100, 0x8100, 0x8100)},
		{t: fileEpoch, frame: vlanFrame(ips[0], 0x8100, 0x8100, 0x8100, 0x8100, 0x8100)}, // too many
	}
	f := openBytes(t, pcapBytes(binary.LittleEndian, false, 1, recs), 0)
	gots, err := readAll(t, f, 8)
	if err != io.EOF {
		t.Fatal(err)
	}
	checkGot(t, gots, ips, nil, nil)
	if s := f.Stats(); s.NotTCP != 1 {
		t.Fatalf("stats %+v, want the five-tag frame counted as NotTCP", s)
	}
}

// TestPcapSkips counts what is not a whole TCP datagram and goes on.
func TestPcapSkips(t *testing.T) {
	ips := fileDatagrams(t, 3)
	v4 := ips[0]
	arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06}, make([]byte, 28)...)
	padded := append(frameFor(linklayer.Ethernet, ips[2], 0, nil), 0, 0, 0, 0)
	udp := clone(v4)
	udp[9] = 17
	frag := clone(v4)
	frag[6] = 0x20 // more fragments
	recs := []rec{
		{t: fileEpoch, frame: frameFor(linklayer.Ethernet, v4, 0, nil)[:40], origLen: 14 + len(v4)}, // snapped
		{t: fileEpoch, frame: arp},
		{t: fileEpoch, frame: frameFor(linklayer.Ethernet, ips[1], 0, nil)},
		{t: fileEpoch, frame: padded[:len(padded)-2], origLen: len(padded)}, // only padding cut: kept
		{t: fileEpoch, frame: []byte{1, 2, 3}},                              // shorter than Ethernet
		{t: fileEpoch, frame: frameFor(linklayer.Ethernet, udp, 0, nil)},
		{t: fileEpoch, frame: frameFor(linklayer.Ethernet, frag, 0, nil)},
		{t: fileEpoch, frame: frameFor(linklayer.Ethernet, v4, 0, nil)[:30]}, // caplen == len, but the IP header lies
	}
	f := openBytes(t, pcapBytes(binary.LittleEndian, false, 1, recs), 0)
	gots, err := readAll(t, f, 8)
	if err != io.EOF {
		t.Fatal(err)
	}
	checkGot(t, gots, [][]byte{ips[1], ips[2]}, nil, nil)
	want := capture.Stats{Packets: 2, Bytes: uint64(len(ips[1]) + len(ips[2])), Truncated: 3, NotTCP: 2, Fragments: 1}
	if s := f.Stats(); s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
}

// TestPcapng reads a two-section pcapng file with interfaces of different
// link types and timestamp resolutions, every packet block type,
// direction flags, statistics and blocks the reader skips.
func TestPcapng(t *testing.T) {
	ips := fileDatagrams(t, 12)
	for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		t.Run(order.String(), func(t *testing.T) {
			w := &ngBuf{o: order}
			w.shb(ngOpt{4, []byte("test shb_userappl")})
			w.idb(linklayer.Ethernet, 0)                                                    // 0: µs
			w.idb(linklayer.LinuxSLL2, 65535, ngOpt{9, []byte{9}}, ngOpt{2, []byte("any")}) // 1: ns, if_name
			w.idb(linklayer.Raw, 0, ngOpt{9, []byte{0x80 | 20}}, ngOpt{14, w.u64(100)})     // 2: 2^-20 s, +100 s
			w.idb(147, 0)                                                                   // 3: DLT_USER0, unsupported
			w.block(4, append(w.u32(0), 0, 0, 0, 0))                                        // name resolution block (empty)
			w.block(0x00000bad, []byte("custom block, copiable"))

			base := uint64(fileEpoch.Unix())
			var want [][]byte
			var times []time.Time
			var dirs []capture.Direction
			add := func(ip []byte, ts time.Time, d capture.Direction) {
				want, times, dirs = append(want, ip), append(times, ts), append(dirs, d)
			}
			w.epb(0, base*1e6+123456, frameFor(linklayer.Ethernet, ips[0], 0, nil), 0)
			add(ips[0], time.Unix(int64(base), 123456000), capture.DirUnknown)
			w.epb(0, base*1e6+123457, frameFor(linklayer.Ethernet, ips[1], 0, nil), 0, ngOpt{2, w.u32(1)})
			add(ips[1], time.Unix(int64(base), 123457000), capture.DirIn)
			w.epb(1, base*1e9+999999999, frameFor(linklayer.LinuxSLL2, ips[2], 4, nil), 0, ngOpt{1, []byte("comment")})
			add(ips[2], time.Unix(int64(base), 999999999), capture.DirOut)
			w.epb(2, base<<20|1<<19, frameFor(linklayer.Raw, ips[3], 0, nil), 0, ngOpt{2, w.u32(2)})
			add(ips[3], time.Unix(int64(base)+100, 5e8), capture.DirOut)
			w.epb(3, 0, []byte("not for us"), 0)
			w.pb(0, base*1e6+7, frameFor(linklayer.Ethernet, ips[4], 0, nil))
			add(ips[4], time.Unix(int64(base), 7000), capture.DirUnknown)
			w.spb(frameFor(linklayer.Ethernet, ips[5], 0, nil))
			add(ips[5], time.Unix(int64(base), 7000), capture.DirUnknown) // no timestamp: the previous one
			w.isb(0, 5, 2)
			w.isb(1, 1, 0)
			w.isb(0, 9, 2) // totals: 4 more on interface 0

			// A second section in the other byte order: interfaces restart.
			o2 := byteOrder(binary.BigEndian)
			if order == binary.BigEndian {
				o2 = binary.LittleEndian
			}
			w2 := &ngBuf{o: o2}
			w2.shb()
			w2.idb(linklayer.Null, 0, ngOpt{9, []byte{3}}) // ms
			w2.epb(0, base*1000+5, frameFor(linklayer.Null, ips[6], 0, o2), 0)
			add(ips[6], time.Unix(int64(base), 5e6), capture.DirUnknown)
			file := append(w.b, w2.b...)

			for _, bs := range []struct{ buf, batch int }{{0, 64}, {64, 1}, {200, 2}, {333, 5}} {
				f := openBytes(t, file, bs.buf)
				gots, err := readAll(t, f, bs.batch)
				if err != io.EOF {
					t.Fatalf("buffer %d batch %d: %v", bs.buf, bs.batch, err)
				}
				checkGot(t, gots, want, times, dirs)
				if s := f.Stats(); s.Packets != uint64(len(want)) || s.NotTCP != 1 || s.KernelDrops != 12 {
					t.Fatalf("stats %+v, want %d packets, 1 NotTCP (unsupported link), 12 kernel drops", s, len(want))
				}
			}
		})
	}
}

// TestFileCorrupt feeds broken files: each gives an error naming the file
// and the offset, matching ErrFormat, never a panic.
func TestFileCorrupt(t *testing.T) {
	ips := fileDatagrams(t, 2)
	good := pcapBytes(binary.LittleEndian, false, 1, []rec{{t: fileEpoch, frame: frameFor(linklayer.Ethernet, ips[0], 0, nil)}})
	ng := &ngBuf{o: binary.LittleEndian}
	ng.shb()
	ng.idb(linklayer.Raw, 0)
	ng.epb(0, 1, ips[1], 0)
	goodNG := ng.b

	set := func(b []byte, off int, v uint32) []byte {
		b = clone(b)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name     string
		file     []byte
		atOpen   bool
		offset   string
		cutShort bool
	}{
		{"empty", nil, true, "", false},
		{"unknown magic", []byte("GIF89a-not-a-capture-file"), true, "offset 0", false},
		{"short header", good[:10], true, "offset 0", true},
		{"pcap version", set(good, 4, 3), true, "offset 4", false},
		{"pcap link type", set(good, 20, 147), true, "offset 20", false},
		{"huge caplen", set(good, 24+8, 1<<30), false, "offset 24", false},
		{"origlen below caplen", set(good, 24+12, 10), false, "offset 24", false},
		{"cut record header", good[:30], false, "offset 24", true},
		{"cut record", good[:len(good)-1], false, "offset 24", true},
		{"pcapng bad BOM", set(goodNG, 8, 0x01020304), true, "offset 0", false},
		{"pcapng version", set(goodNG, 12, 2), true, "offset 0", false},
		{"pcapng SHB length", set(goodNG, 4, 13), true, "offset 0", false},
		{"pcapng cut SHB", goodNG[:20], true, "offset 0", true},
		{"pcapng block length", set(goodNG, 28+4, 7), false, "offset 28", false},
		{"pcapng trailing length", set(goodNG, 28+20-4, 99), false, "offset 28", false},
		{"pcapng huge block", set(goodNG, 48+4, 1<<30), false, "offset 48", false},
		{"pcapng interface id", set(goodNG, 48+8, 1), false, "offset 48", false},
		{"pcapng caplen past block", set(goodNG, 48+20, 4000), false, "offset 48", false},
		{"pcapng cut block", goodNG[:len(goodNG)-3], false, "offset 48", true},
		{"pcapng tsresol", func() []byte {
			w := &ngBuf{o: binary.LittleEndian}
			w.shb()
			w.idb(linklayer.Raw, 0, ngOpt{9, []byte{0x80 | 64}})
			return w.b
		}(), false, "offset 28", false},
		{"pcapng option past block", func() []byte {
			w := &ngBuf{o: binary.LittleEndian}
			w.shb()
			w.block(1, []byte{101, 0, 0, 0, 0, 0, 0, 0, 9, 0, 40, 0})
			return w.b
		}(), false, "offset 28", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := capture.NewFileReader(bytes.NewReader(tc.file), "bad.pcap", nil)
			if err == nil {
				if tc.atOpen {
					t.Fatal("opened")
				}
				_, err = readAll(t, f, 4)
			} else if !tc.atOpen {
				t.Fatalf("open: %v", err)
			}
			if err == nil || err == io.EOF {
				t.Fatalf("read to the end with %v, want an error", err)
			}
			if !errors.Is(err, capture.ErrFormat) {
				t.Fatalf("%v does not match ErrFormat", err)
			}
			if !strings.Contains(err.Error(), "bad.pcap") || !strings.Contains(err.Error(), tc.offset) {
				t.Fatalf("%q does not name the file and %q", err, tc.offset)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.cutShort {
				t.Fatalf("%v: matches io.ErrUnexpectedEOF = %v, want %v", err, !tc.cutShort, tc.cutShort)
			}
			if f != nil {
				if _, err2 := f.ReadPackets(make([]capture.Packet, 1)); err2 != err && err2.Error() != err.Error() {
					t.Fatalf("error not sticky: %v then %v", err, err2)
				}
			}
		})
	}
}

// TestFileReaderErrors: a failing reader's error is reported, wrapped.
func TestFileReaderErrors(t *testing.T) {
	ips := fileDatagrams(t, 1)
	file := pcapBytes(binary.LittleEndian, false, 101, []rec{{t: fileEpoch, frame: ips[0]}})
	boom := errors.New("boom")
	f, err := capture.NewFileReader(io.MultiReader(bytes.NewReader(file[:30]), iotest.ErrReader(boom)), "pipe", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, f, 1); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	// One byte at a time is still a whole file.
	f, err = capture.NewFileReader(iotest.OneByteReader(bytes.NewReader(file)), "slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	if gots, err := readAll(t, f, 4); err != io.EOF || len(gots) != 1 {
		t.Fatalf("read %d packets, %v", len(gots), err)
	}
}

func TestOpenFile(t *testing.T) {
	ips := fileDatagrams(t, 3)
	var recs []rec
	for _, ip := range ips {
		recs = append(recs, rec{t: fileEpoch, frame: ip})
	}
	path := filepath.Join(t.TempDir(), "x.pcap")
	if err := os.WriteFile(path, pcapBytes(binary.BigEndian, true, 101, recs), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := capture.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != path {
		t.Fatalf("Name = %q", f.Name())
	}
	pkts := make([]capture.Packet, 1)
	if n, err := f.ReadPackets(pkts); n != 1 || err != nil {
		t.Fatalf("ReadPackets = %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.ReadPackets(pkts); !errors.Is(err, capture.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := capture.OpenFile(filepath.Join(t.TempDir(), "missing.pcap"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := capture.NewFileReader(bytes.NewReader(nil), "x", &capture.FileConfig{ReadBuffer: -1}); err == nil {
		t.Fatal("negative buffer accepted")
	}
}

// TestFileZeroAllocs: reading a file allocates nothing per packet.
func TestFileZeroAllocs(t *testing.T) {
	ips := fileDatagrams(t, 30)
	for _, kind := range []string{"pcap", "pcapng"} {
		var file []byte
		if kind == "pcap" {
			var recs []rec
			for i := range 3000 {
				recs = append(recs, rec{t: fileEpoch, frame: frameFor(linklayer.Ethernet, ips[i%len(ips)], 0, nil)})
			}
			file = pcapBytes(binary.LittleEndian, false, 1, recs)
		} else {
			w := &ngBuf{o: binary.LittleEndian}
			w.shb()
			w.idb(linklayer.LinuxSLL, 0, ngOpt{9, []byte{9}})
			for i := range 3000 {
				w.epb(0, uint64(i), frameFor(linklayer.LinuxSLL, ips[i%len(ips)], 0, nil), 0, ngOpt{2, w.u32(1)})
			}
			file = w.b
		}
		f := openBytes(t, file, 0)
		pkts := make([]capture.Packet, 16)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := f.ReadPackets(pkts); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: ReadPackets allocates %.1f times per call", kind, allocs)
		}
	}
}

func BenchmarkFileRead(b *testing.B) {
	ips := fileDatagrams(b, 30)
	var recs []rec
	var size int
	for i := range 10000 {
		fr := frameFor(linklayer.Ethernet, ips[i%len(ips)], 0, nil)
		recs = append(recs, rec{t: fileEpoch, frame: fr})
		size += len(fr)
	}
	file := pcapBytes(binary.LittleEndian, false, 1, recs)
	b.ReportAllocs()
	b.SetBytes(int64(size / len(recs)))
	pkts := make([]capture.Packet, 64)
	rd := bytes.NewReader(file)
	f, err := capture.NewFileReader(rd, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_, err := f.ReadPackets(pkts[:1])
		if err == io.EOF {
			b.StopTimer()
			rd.Reset(file)
			if f, err = capture.NewFileReader(rd, "bench", nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
