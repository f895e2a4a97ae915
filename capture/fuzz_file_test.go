package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/linklayer"
)

// fuzzFile reads b as a capture file with a small buffer and odd batch
// sizes: it must end with io.EOF or an error matching ErrFormat, never
// panic, and every packet it returns must decode and stay within b's size.
func fuzzFile(t *testing.T, b []byte, bufSize, batch int) {
	f, err := capture.NewFileReader(bytes.NewReader(b), "fuzz", &capture.FileConfig{ReadBuffer: bufSize})
	if err != nil {
		if !errors.Is(err, capture.ErrFormat) {
			t.Fatalf("open: %v does not match ErrFormat", err)
		}
		return
	}
	pkts := make([]capture.Packet, batch)
	total := 0
	for {
		n, err := f.ReadPackets(pkts)
		for i := range pkts[:n] {
			var q capture.Packet
			if derr := q.Decode(pkts[i].Data); derr != nil {
				t.Fatalf("returned packet does not decode: %v", derr)
			}
			total += len(pkts[i].Data)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, capture.ErrFormat) {
				t.Fatalf("%v does not match ErrFormat", err)
			}
			break
		}
		if n == 0 {
			t.Fatal("ReadPackets returned nothing and no error")
		}
	}
	if total > len(b) {
		t.Fatalf("returned %d datagram bytes from a %d-byte file", total, len(b))
	}
	if s := f.Stats(); s.Packets > uint64(len(b)) {
		t.Fatalf("stats %+v for %d bytes", s, len(b))
	}
}

func FuzzPcapFile(f *testing.F) {
	ips := fileDatagrams(f, 4)
	for _, lt := range []linklayer.Type{linklayer.Ethernet, linklayer.LinuxSLL, linklayer.LinuxSLL2, linklayer.Raw, linklayer.Null, linklayer.Loop} {
		for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
			var recs []rec
			for i, ip := range ips {
				recs = append(recs, rec{t: fileEpoch, frame: frameFor(lt, ip, uint8(i), order)})
			}
			recs = append(recs, rec{t: fileEpoch, frame: frameFor(lt, ips[0], 0, order)[:30], origLen: 100})
			f.Add(pcapBytes(order, lt == linklayer.Raw, uint32(lt), recs), uint8(17), uint8(3))
		}
	}
	f.Add(pcapBytes(binary.LittleEndian, false, 1, []rec{{t: fileEpoch, frame: vlanFrame(ips[1], 0x88a8, 0x8100)}}), uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, buf, batch uint8) {
		fuzzFile(t, b, 64+int(buf)*8, 1+int(batch%9))
	})
}

func FuzzPcapngFile(f *testing.F) {
	ips := fileDatagrams(f, 4)
	for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		w := &ngBuf{o: order}
		w.shb(ngOpt{4, []byte("fuzz")})
		w.idb(linklayer.Ethernet, 0)
		w.idb(linklayer.LinuxSLL2, 0, ngOpt{9, []byte{9}})
		w.idb(linklayer.Raw, 0, ngOpt{9, []byte{0x80 | 10}}, ngOpt{14, w.u64(3)})
		w.block(4, append(w.u32(0), 0, 0, 0, 0))
		w.epb(0, 1, frameFor(linklayer.Ethernet, ips[0], 0, nil), 0, ngOpt{2, w.u32(1)})
		w.epb(1, 2, frameFor(linklayer.LinuxSLL2, ips[1], 4, nil), 0)
		w.epb(2, 3, ips[2], 0)
		w.pb(0, 4, frameFor(linklayer.Ethernet, ips[3], 0, nil))
		w.spb(frameFor(linklayer.Ethernet, ips[0], 0, nil))
		w.isb(0, 3, 4)
		w.shb()
		w.idb(linklayer.Loop, 0)
		w.epb(0, 5, frameFor(linklayer.Loop, ips[1], 0, binary.BigEndian), 0)
		f.Add(w.b, uint8(5), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, buf, batch uint8) {
		fuzzFile(t, b, 64+int(buf)*8, 1+int(batch%9))
	})
}
