package rewrite

import (
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Every per-packet path allocates nothing in steady state (house style:
// zero allocations per packet is a test). Each packet is re-decoded from a
// pristine copy, as a capture loop would, so the rewrite is the same every
// run.
func TestZeroAllocs(t *testing.T) {
	tr, _ := ParseTransfer("80-198.19.0.2:8080,80-[fd00:198:18:1::2]:8080")
	pool, _ := ParseClientPool("198.18.200.x,fd00:198:18::/48", tr.Targets()...)
	sm := newSampler(t, SamplerConfig{Percent: 50})
	clk := new(fakeClock)
	ramp := newSampler(t, SamplerConfig{Percent: 50, Ramp: time.Hour, Clock: clk.Now})
	cp := newCopies(t, CopiesConfig{Copies: 3, Pool: pool, AddressPerCopy: true, Clock: clk.Now, Tracked: 1024})
	alert := newCopies(t, CopiesConfig{Copies: 2, Clock: clk.Now, Tracked: 1024})
	alert.owners.conflict(0) // collision alert on: packets other than SYNs are checked
	seg, _ := NewSegmenter(nil)
	chain := Chain(tr, sm, pool)

	for _, v6 := range []bool{false, true} {
		src, dst := cli4, srv4
		if v6 {
			src, dst = cli6, srv6
		}
		synB := syn(t, src, dst).Data
		ackB := packet(t, src, dst, capture.FlagACK|capture.FlagPSH, "GET / HTTP/1.1\r\n\r\n").Data
		finB := packet(t, src, dst, capture.FlagACK|capture.FlagFIN, "").Data
		bigB := superFrame{v6: v6, payload: 64000, flags: capture.FlagACK | capture.FlagPSH, opts: capture.AppendTimestamps(nil, 1, 2)}.build(t)
		work := make([]byte, len(bigB))
		var p capture.Packet
		load := func(b []byte) *capture.Packet {
			work = append(work[:0], b...)
			if err := p.Decode(work); err != nil {
				t.Fatal(err)
			}
			return &p
		}
		dstBuf := make([]byte, 0, 2*len(bigB))
		ends := make([]int, 0, 64)
		for _, tc := range []struct {
			name string
			f    func()
		}{
			{"Transfer", func() { tr.Rewrite(load(ackB)) }},
			{"ClientPool", func() { pool.Rewrite(load(ackB)) }},
			{"Sampler", func() { sm.Rewrite(load(ackB)) }},
			{"Sampler ramp", func() { ramp.Rewrite(load(ackB)) }},
			{"Copies SYN", func() { cp.RewriteCopy(load(synB), 1) }},
			{"Copies ACK", func() { cp.RewriteCopy(load(ackB), 2) }},
			{"Copies FIN", func() { cp.RewriteCopy(load(finB), 0) }},
			{"Copies ACK in collision alert", func() { alert.RewriteCopy(load(ackB), 1) }},
			{"Chain", func() { chain.Rewrite(load(synB)) }},
			{"AppendSegments", func() { dstBuf, ends = AppendSegments(dstBuf[:0], ends[:0], load(bigB), 1448) }},
			{"Segmenter", func() { dstBuf, ends = seg.Append(dstBuf[:0], ends[:0], load(bigB)) }},
		} {
			tc.f() // warm up: first claims, buffers
			if n := testing.AllocsPerRun(200, tc.f); n != 0 {
				t.Errorf("v6=%v %s: %v allocations per packet", v6, tc.name, n)
			}
		}
	}
}
