package capture_test

import (
	"fmt"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Build a SYN, decode it, read its options.
func ExampleAppendSegment() {
	opts := capture.AppendMSS(nil, 1460)
	opts = capture.AppendSACKPermitted(opts)
	opts = capture.AppendTimestamps(opts, 12345, 0)
	opts = capture.AppendWindowScale(opts, 7)
	b, err := capture.AppendSegment(nil, &capture.Segment{
		Src:     netip.MustParseAddrPort("198.18.0.1:40000"),
		Dst:     netip.MustParseAddrPort("198.19.0.80:80"),
		Seq:     1000,
		Flags:   capture.FlagSYN,
		Window:  64240,
		Options: opts,
	})
	if err != nil {
		panic(err)
	}
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		panic(err)
	}
	mss, _ := p.MSS()
	ws, _ := p.WindowScale()
	tsval, _, _ := p.Timestamps()
	fmt.Println(len(b), "bytes:", p.Flow())
	fmt.Println("seq", p.Seq(), "next", p.EndSeq(), "mss", mss, "ws", ws, "sack", p.SACKPermitted(), "tsval", tsval)
	fmt.Println("checksums valid:", p.ChecksumsValid())
	// Output:
	// 64 bytes: 198.18.0.1:40000->198.19.0.80:80
	// seq 1000 next 1001 mss 1460 ws 7 sack true tsval 12345
	// checksums valid: true
}

// Point a captured packet at another server, as the copier does; the
// checksums follow the rewrite without a full recompute.
func ExamplePacket_SetDst() {
	b, _ := capture.AppendSegment(nil, &capture.Segment{
		Src:     netip.MustParseAddrPort("[fd00:198:18::1]:40000"),
		Dst:     netip.MustParseAddrPort("[fd00:198:18::80]:80"),
		Flags:   capture.FlagACK | capture.FlagPSH,
		Payload: []byte("GET / HTTP/1.1\r\n\r\n"),
	})
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		panic(err)
	}
	if err := p.SetDst(netip.MustParseAddr("fd00:198:18::8080")); err != nil {
		panic(err)
	}
	p.SetDstPort(8080)
	fmt.Println(p.Flow(), p.ChecksumsValid())

	// An IPv4 address does not fit an IPv6 packet.
	err := p.SetDst(netip.MustParseAddr("198.18.0.80"))
	fmt.Println(err)
	// Output:
	// [fd00:198:18::1]:40000->[fd00:198:18::8080]:8080 true
	// capture: address family does not match the packet
}

// Sequence numbers compare across the wrap.
func ExampleSeq() {
	a := capture.Seq(0xfffffff0)
	b := a.Add(0x20)
	fmt.Println(uint32(b), a.LessThan(b), b.Sub(a), a.Max(b) == b)
	// Output:
	// 16 true 32 true
}
