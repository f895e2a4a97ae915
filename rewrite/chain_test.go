package rewrite

import (
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// stage is a Rewriter that records its calls and says yes or no.
type stage struct {
	name  string
	ok    bool
	trace *[]string
}

func (s stage) Rewrite(*capture.Packet) bool {
	*s.trace = append(*s.trace, s.name)
	return s.ok
}

func TestChain(t *testing.T) {
	var trace []string
	st := func(name string, ok bool) Rewriter { return stage{name, ok, &trace} }
	for _, tc := range []struct {
		chain Rewriter
		ok    bool
		calls string
	}{
		{Chain(), true, ""},
		{Chain(st("a", true)), true, "a"},
		{Chain(st("a", true), st("b", true), st("c", true)), true, "a b c"},
		{Chain(st("a", true), st("b", false), st("c", true)), false, "a b"},
		{Chain(st("a", false), st("b", true)), false, "a"},
		{Chain(Chain(st("a", true), st("b", true)), Chain(), st("c", true)), true, "a b c"},
	} {
		trace = nil
		if got := tc.chain.Rewrite(new(capture.Packet)); got != tc.ok {
			t.Errorf("%v: Rewrite = %v, want %v", tc.chain, got, tc.ok)
		}
		if got := strings.Join(trace, " "); got != tc.calls {
			t.Errorf("%v: called %q, want %q", tc.chain, got, tc.calls)
		}
	}
	// Nested chains are flattened.
	if c := Chain(Chain(st("a", true), st("b", true)), st("c", true)).(chain); len(c) != 3 {
		t.Errorf("nested chain has %d stages, want 3", len(c))
	}
}

func TestChainNil(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "Rewriter 2 of 3 is nil") {
			t.Errorf("Chain with a nil Rewriter: recovered %v", r)
		}
	}()
	tr, _ := ParseTransfer("80-198.18.1.2:80")
	Chain(tr, nil, tr)
}

// A real chain: the transfer map filters and points at the target, the
// sampler decides, the pool changes the source; a refusal stops it.
func TestChainStages(t *testing.T) {
	tr, _ := ParseTransfer("80-198.19.0.2:8080")
	pool, _ := ParseClientPool("198.18.200.x", tr.Targets()...)
	sm := newSampler(t, SamplerConfig{Percent: 50})
	c := Chain(tr, sm, pool)
	var kept, out int
	for port := uint16(30000); port < 30400; port++ {
		p := packet(t, netip4(port), srv4, capture.FlagSYN, "")
		want := sm.Keeps(p.SrcEndpoint())
		if got := c.Rewrite(p); got != want {
			t.Fatalf("port %d: Rewrite %v, sampler says %v", port, got, want)
		}
		if !want {
			out++
			continue
		}
		kept++
		if p.DstEndpoint().AddrPort() != tgt4 || !pool.Contains(p.Src()) || !p.ChecksumsValid() {
			t.Fatalf("port %d: %s", port, p.Flow())
		}
	}
	if c.Rewrite(packet(t, cli4, tgt4, capture.FlagSYN, "")) {
		t.Error("packet to an unmapped port went through")
	}
	if st := pool.Stats(); st.Rewritten != uint64(kept) {
		t.Errorf("pool rewrote %d, sampler kept %d", st.Rewritten, kept)
	}
	if st := tr.Stats(); st.Mapped != 400 || st.Unmapped != 1 {
		t.Errorf("transfer stats %+v", st)
	}
}
