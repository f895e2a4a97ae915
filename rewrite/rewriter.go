package rewrite

import (
	"fmt"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Rewriter changes a captured client packet on its way to the session
// table: destination to the target, source to a fake client, port shifts.
// Rewriters keep no per-connection state on the data path, so one may
// serve all shards; each implementation says whether it is safe for
// concurrent use (all in this package are).
type Rewriter interface {
	// Rewrite changes p in place, keeping its checksums right, and reports
	// whether the packet goes on (false: it is not for this copier, and the
	// Rewriter has counted why). It must not retain p or p.Data. A refused
	// packet may have been changed in part.
	Rewrite(p *capture.Packet) bool
}

var (
	_ Rewriter = (*Transfer)(nil)
	_ Rewriter = (*ClientPool)(nil)
	_ Rewriter = (*Copies)(nil)
	_ Rewriter = (*Sampler)(nil)
	_ Rewriter = chain(nil)
)

// Chain returns a Rewriter that applies rs in order and stops at the first
// that refuses the packet; the packet is refused then, and that Rewriter
// has counted why. Nested chains are flattened. Chain panics on a nil
// Rewriter: a chain is built from code, and a hole in it is a bug.
//
// The usual order is Transfer (pick the packets, point them at the target),
// Sampler (decide on the captured client endpoint), then ClientPool or
// Copies (change the source). The chain is safe for concurrent use when its
// members are.
func Chain(rs ...Rewriter) Rewriter {
	var c chain
	for i, r := range rs {
		switch r := r.(type) {
		case nil:
			panic(fmt.Sprintf("rewrite: Chain: Rewriter %d of %d is nil", i+1, len(rs)))
		case chain:
			c = append(c, r...)
		default:
			c = append(c, r)
		}
	}
	return c
}

type chain []Rewriter

func (c chain) Rewrite(p *capture.Packet) bool {
	for _, r := range c {
		if !r.Rewrite(p) {
			return false
		}
	}
	return true
}
