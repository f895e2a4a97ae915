package rewrite

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// benchLoader re-creates a pristine client packet for every iteration, as
// a capture loop hands each rewriter a fresh one. BenchmarkReload measures
// that cost alone, to subtract.
type benchLoader struct {
	orig, work []byte
	p          capture.Packet
}

func newLoader(b []byte) *benchLoader {
	return &benchLoader{orig: b, work: make([]byte, len(b))}
}

func (l *benchLoader) load() *capture.Packet {
	l.work = append(l.work[:0], l.orig...)
	_ = l.p.Decode(l.work)
	return &l.p
}

// loadPort is load with another client port (checksum kept right).
func (l *benchLoader) loadPort(port uint16) *capture.Packet {
	p := l.load()
	p.SetSrcPort(port)
	return p
}

// must panics on a setup error in a benchmark.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func benchFamilies(b *testing.B, f func(b *testing.B, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "v4"
		if v6 {
			name = "v6"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			f(b, v6)
		})
	}
}

func benchPacket(b *testing.B, v6 bool, flags uint8) []byte {
	src, dst := cli4, srv4
	if v6 {
		src, dst = cli6, srv6
	}
	return packet(b, src, dst, flags, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n").Data
}

func BenchmarkReload(b *testing.B) {
	benchFamilies(b, func(b *testing.B, v6 bool) {
		l := newLoader(benchPacket(b, v6, capture.FlagACK|capture.FlagPSH))
		for b.Loop() {
			l.load()
		}
	})
}

func BenchmarkTransfer(b *testing.B) {
	tr := must(ParseTransfer("443-198.19.0.2:443,80-198.19.0.2:8080,[fd00:198:18::80]:80-[fd00:198:18:1::2]:8080"))
	benchFamilies(b, func(b *testing.B, v6 bool) {
		l := newLoader(benchPacket(b, v6, capture.FlagACK|capture.FlagPSH))
		for b.Loop() {
			tr.Rewrite(l.load())
		}
	})
}

func BenchmarkClientPool(b *testing.B) {
	// A /24 in TCPCopy's form and a 2^80-address IPv6 prefix (the 128-bit
	// index path).
	pool := must(ParseClientPool("198.18.200.x,fd00:198:18::/48"))
	benchFamilies(b, func(b *testing.B, v6 bool) {
		l := newLoader(benchPacket(b, v6, capture.FlagACK|capture.FlagPSH))
		for b.Loop() {
			pool.Rewrite(l.load())
		}
	})
}

func BenchmarkSampler(b *testing.B) {
	s := must(NewSampler(&SamplerConfig{Percent: 30}))
	clk := new(fakeClock)
	ramp := must(NewSampler(&SamplerConfig{Percent: 100, Ramp: time.Hour, Clock: clk.Now}))
	for _, tc := range []struct {
		name string
		s    *Sampler
	}{{"fixed", s}, {"ramp", ramp}} {
		b.Run(tc.name, func(b *testing.B) {
			benchFamilies(b, func(b *testing.B, v6 bool) {
				l := newLoader(benchPacket(b, v6, capture.FlagACK|capture.FlagPSH))
				for b.Loop() {
					tc.s.Rewrite(l.load())
				}
			})
		})
	}
}

func BenchmarkCopies(b *testing.B) {
	pool := must(ParseClientPool("198.18.200.x,fd00:198:18:100::/64"))
	for _, tc := range []struct {
		name  string
		flags uint8
		alert bool
	}{
		{"ACK", capture.FlagACK | capture.FlagPSH, false},
		{"SYN", capture.FlagSYN, false},
		{"ACK-in-collision-alert", capture.FlagACK | capture.FlagPSH, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchFamilies(b, func(b *testing.B, v6 bool) {
				clk := new(fakeClock)
				c := must(NewCopies(&CopiesConfig{Copies: 3, Pool: pool, AddressPerCopy: true, Clock: clk.Now}))
				if tc.alert {
					c.owners.conflict(0)
				}
				l := newLoader(benchPacket(b, v6, tc.flags))
				i := 0
				for b.Loop() {
					// New ports: SYNs insert claims into the table.
					c.RewriteCopy(l.loadPort(uint16(1024+i%60000)), i%3)
					i++
				}
			})
		})
	}
}

// SYN claims from several goroutines on one Copies: the sharded locks.
func BenchmarkCopiesParallelSYN(b *testing.B) {
	clk := new(fakeClock)
	c := must(NewCopies(&CopiesConfig{Copies: 2, Clock: clk.Now}))
	var next atomic.Int64
	synB := benchPacket(b, false, capture.FlagSYN)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		l := newLoader(synB)
		i := int(next.Add(1)) * 7919 // goroutines on different ports
		for pb.Next() {
			c.RewriteCopy(l.loadPort(uint16(1024+i%60000)), i&1)
			i++
		}
	})
}

func BenchmarkChain(b *testing.B) {
	tr := must(ParseTransfer("80-198.19.0.2:8080,80-[fd00:198:18:1::2]:8080"))
	pool := must(ParseClientPool("198.18.200.x,fd00:198:18:100::/64", tr.Targets()...))
	s := must(NewSampler(&SamplerConfig{Percent: 100}))
	c := Chain(tr, s, pool)
	benchFamilies(b, func(b *testing.B, v6 bool) {
		l := newLoader(benchPacket(b, v6, capture.FlagACK|capture.FlagPSH))
		for b.Loop() {
			c.Rewrite(l.load())
		}
	})
}

// A 64000-byte GRO super-frame into 1448-byte segments (45 of them).
func BenchmarkAppendSegments(b *testing.B) {
	benchFamilies(b, func(b *testing.B, v6 bool) {
		sf := superFrame{v6: v6, payload: 64000, flags: capture.FlagACK | capture.FlagPSH, opts: capture.AppendTimestamps(nil, 1, 2)}
		p := decoded(b, sf.build(b))
		dst := make([]byte, 0, 2*len(p.Data))
		ends := make([]int, 0, 64)
		b.SetBytes(int64(len(p.Data)))
		for b.Loop() {
			dst, ends = AppendSegments(dst[:0], ends[:0], p, 1448)
		}
	})
}
