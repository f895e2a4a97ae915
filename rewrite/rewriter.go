package rewrite

import "github.com/shadowcopy/tcpcopy/capture"

// Rewriter changes a captured client packet on its way to the session
// table: destination to the target, source to a fake client, port shifts.
// Rewriters are stateless per packet, so one may serve all shards.
type Rewriter interface {
	// Rewrite changes p in place, keeping its checksums right, and reports
	// whether the packet goes on (false: it is not for this copier, and the
	// Rewriter has counted why). It must not retain p or p.Data.
	Rewrite(p *capture.Packet) bool
}
