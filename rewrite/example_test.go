package rewrite_test

import (
	"fmt"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

// TCPCopy's -x: port 80 on any local address and one IPv6 service, each
// to its target.
func ExampleParseTransfer() {
	tr, err := rewrite.ParseTransfer("80-198.19.0.2:8080, [fd00:198:18::80]:443-[fd00:198:18:1::2]:8443")
	if err != nil {
		panic(err)
	}
	for _, r := range tr.Routes() {
		fmt.Println(r, "any online address:", !r.Online.Addr().IsValid())
	}
	r, ok := tr.Match(netip.MustParseAddr("198.18.0.80"), 80)
	fmt.Println(r.Target, ok)

	_, err = rewrite.ParseTransfer("80-198.19.0.2")
	fmt.Println(err)
	// Output:
	// 80-198.19.0.2:8080 any online address: true
	// [fd00:198:18::80]:443-[fd00:198:18:1::2]:8443 any online address: false
	// 198.19.0.2:8080 true
	// rewrite: transfer item "80-198.19.0.2": target side "198.19.0.2": target port missing: want targetIP:targetPort
}

// TCPCopy's -c: a /24 in its a.b.c.x form plus an IPv6 /64, never the
// targets.
func ExampleParseClientPool() {
	tr, _ := rewrite.ParseTransfer("80-198.18.200.9:80")
	pool, err := rewrite.ParseClientPool("198.18.200.x, fd00:198:18:200::/64", tr.Targets()...)
	if err != nil {
		panic(err)
	}
	fmt.Println(pool)
	client := netip.MustParseAddr("198.18.0.1")
	a, _ := pool.Addr(client)
	b, _ := pool.Addr(client)
	fmt.Println("one client, one address:", a == b, pool.Contains(a))
	fmt.Println("targets excluded:", !pool.Contains(netip.MustParseAddr("198.18.200.9")))

	_, err = rewrite.ParseClientPool("198.18.200.7/24")
	fmt.Println(err)
	// Output:
	// 198.18.200.1-198.18.200.8,198.18.200.10-198.18.200.254,fd00:198:18:200::1-fd00:198:18:200:ffff:ffff:ffff:ffff
	// one client, one address: true true
	// targets excluded: true
	// rewrite: client pool item "198.18.200.7/24": host bits set; did you mean 198.18.200.0/24?
}

// A chain picks the packets for the target, samples connections and
// gives the client a fake address; the first refusal stops it.
func ExampleChain() {
	tr, _ := rewrite.ParseTransfer("80-198.19.0.2:8080")
	pool, _ := rewrite.ParseClientPool("198.18.200.1")
	sampler, _ := rewrite.NewSampler(&rewrite.SamplerConfig{Percent: 100})
	chain := rewrite.Chain(tr, sampler, pool)

	for _, dst := range []string{"198.18.0.80:80", "198.18.0.80:22"} {
		b, _ := capture.AppendSegment(nil, &capture.Segment{
			Src:   netip.MustParseAddrPort("198.18.0.1:40000"),
			Dst:   netip.MustParseAddrPort(dst),
			Flags: capture.FlagSYN,
		})
		var p capture.Packet
		if err := p.Decode(b); err != nil {
			panic(err)
		}
		ok := chain.Rewrite(&p)
		fmt.Println(ok, p.Flow(), p.ChecksumsValid())
	}
	fmt.Printf("%+v\n", tr.Stats())
	// Output:
	// true 198.18.200.1:40000->198.19.0.2:8080 true
	// false 198.18.0.1:40000->198.18.0.80:22 true
	// {Mapped:1 Unmapped:1}
}

// Three copies of each connection: the first keeps the client's port, the
// others are a third of the port space apart.
func ExampleCopies() {
	c, err := rewrite.NewCopies(&rewrite.CopiesConfig{Copies: 3})
	if err != nil {
		panic(err)
	}
	for i := range c.Copies() {
		fmt.Printf("copy %d: port 40000 -> %d\n", i, c.Port(40000, i))
	}
	fmt.Println("collision-free for ports within", c.Window())
	// Output:
	// copy 0: port 40000 -> 40000
	// copy 1: port 40000 -> 61845
	// copy 2: port 40000 -> 18155
	// collision-free for ports within 21845
}

// Split a 4000-byte GRO super-frame for a 1500-byte MTU.
func ExampleAppendSegments() {
	b, _ := capture.AppendSegment(nil, &capture.Segment{
		Src:     netip.MustParseAddrPort("198.18.0.1:40000"),
		Dst:     netip.MustParseAddrPort("198.19.0.2:8080"),
		Seq:     1000,
		Flags:   capture.FlagACK | capture.FlagPSH,
		Payload: make([]byte, 4000),
	})
	var p capture.Packet
	if err := p.Decode(b); err != nil {
		panic(err)
	}
	out, ends := rewrite.AppendSegments(nil, nil, &p, 1460)
	start := 0
	for _, end := range ends {
		var q capture.Packet
		if err := q.Decode(out[start:end]); err != nil {
			panic(err)
		}
		start = end
		fmt.Println(len(q.Data), "bytes, seq", q.Seq(), "payload", q.PayloadLen(), "PSH", q.HasFlags(capture.FlagPSH), q.ChecksumsValid())
	}
	// Output:
	// 1500 bytes, seq 1000 payload 1460 PSH false true
	// 1500 bytes, seq 2460 payload 1460 PSH false true
	// 1120 bytes, seq 3920 payload 1080 PSH true true
}
