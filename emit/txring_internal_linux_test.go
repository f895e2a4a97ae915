package emit

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

func TestTXGeometry(t *testing.T) {
	for _, c := range []struct {
		frames, frameSize, page     int
		blockSize, blocks, perBlock int
	}{
		{256, 1568, 4096, 8192, 52, 5},    // MTU 1500: 5% of a block left over
		{16, 2048, 4096, 4096, 8, 2},      // exact
		{17, 2048, 4096, 4096, 9, 2},      // rounded up to whole blocks
		{64, 9056, 4096, 65536, 10, 7},    // MTU 9000
		{1, 1 << 20, 4096, 1 << 20, 1, 1}, // larger than the 128 KiB cap
		{100, 128, 65536, 65536, 1, 512},  // 64 KiB pages
	} {
		bs, n, per := txGeometry(c.frames, c.frameSize, c.page)
		if bs != c.blockSize || n != c.blocks || per != c.perBlock {
			t.Errorf("txGeometry(%d, %d, %d) = %d, %d, %d; want %d, %d, %d", c.frames, c.frameSize, c.page,
				bs, n, per, c.blockSize, c.blocks, c.perBlock)
		}
		if bs%c.page != 0 || bs&(bs-1) != 0 || per*n < c.frames {
			t.Errorf("txGeometry(%d, %d, %d): blocks of %d bytes hold %d x %d frames", c.frames, c.frameSize, c.page, bs, n, per)
		}
	}
}

// TestTXRingMalformed: a frame the kernel refuses (here a virtio-net
// header that claims more than the frame: EINVAL) is counted under its
// error; the kernel never sends past it, so the frames queued behind it go
// with sendmmsg, and so does everything after.
func TestTXRingMalformed(t *testing.T) {
	l := netlab.NewPair(t)
	a := netlab.Open(t, l.A, func() (*AFPacket, error) {
		return NewAFPacket(&AFPacketConfig{Interface: l.AIf, DstMAC: l.BMAC, TXRing: 16})
	})
	c := netlab.Open(t, l.B, func() (*capture.RawIP, error) { return capture.NewRawIP(&capture.RawIPConfig{Network: "ip4"}) })
	var dgs [][]byte
	for i := range 5 {
		b, err := capture.AppendSegment(nil, &capture.Segment{
			Src:   netip.MustParseAddrPort(netlab.PairA4 + ":1234"),
			Dst:   netip.MustParseAddrPort(netlab.PairB4 + ":9000"),
			Seq:   capture.Seq(i),
			Flags: capture.FlagACK,
		})
		if err != nil {
			t.Fatal(err)
		}
		dgs = append(dgs, b)
	}

	a.mu.Lock()
	r := a.ring
	for i := range 4 {
		bad := r.head
		r.put(dgs[i], &a.dst, &a.src)
		if i == 1 {
			f := r.mem[r.offs[bad]:]
			binary.NativeEndian.PutUint16(f[vnetHdrLen:], binary.NativeEndian.Uint16(f[vnetHdrLen:])+1)
		}
	}
	a.flushRing()
	broken := r.broken
	a.mu.Unlock()
	if !broken {
		t.Fatal("the ring was not given up")
	}
	if err := a.Emit(dgs[4:]); err != nil {
		t.Fatal(err)
	}
	got := netlab.Collect(t, c, 4, nil)
	for i, want := range [][]byte{dgs[0], dgs[2], dgs[3], dgs[4]} {
		if !bytes.Equal(got[i].Data, want) {
			t.Fatalf("packet %d:\n got %x\nwant %x", i, got[i].Data, want)
		}
	}
	if s := a.Stats(); s.Sent != 4 || s.Invalid != 1 || s.Dropped() != 1 {
		t.Fatalf("stats %+v, want 4 sent and 1 Invalid (EINVAL)", s)
	}
}
