package replay

import (
	"fmt"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

// Round returns the round under way, from 1: the round of the packets the
// last ReadPackets returned, when called from the goroutine that reads.
func (p *Pacer) Round() int { return int(p.round.Load()) }

// RoundCopies gives every round of a repeated replay (-T) connections of
// its own. Each round replays the same client ports and sequence numbers:
// without it a round meets the sessions of the round before, still closing
// in the session table (a SYN with a known sequence number is taken for a
// retransmission) and in TIME-WAIT on the target for the connections the
// target closed first, and most of it is lost. RoundCopies shifts the
// client port (and address, with a pool) of round r, copy i, as
// rewrite.Copies' copy (r-1)*n+i, where n copies of each connection are
// made per round (TCPCopy's -n; 1 without it).
//
// It is a CopyRewriter for tcpcopy.Config.Copies (n copies) and, for n = 1,
// a rewrite.Rewriter to chain after the transfer map. It must be called by
// the goroutine that reads the Pacer, after the read that returned the
// packet (the Copier's capture loop does so), and is then safe for
// concurrent use as Copies is.
type RoundCopies struct {
	pacer  *Pacer
	copies *rewrite.Copies
	n      int
}

var _ rewrite.Rewriter = (*RoundCopies)(nil)

// NewRoundCopies checks that copies has n copies for each of p's rounds
// (rewrite.CopiesConfig.Copies = n * Repeat) and returns the RoundCopies.
// Give copies the Pacer's clock (rewrite.CopiesConfig.Clock = p.Now) for
// its collision detection.
func NewRoundCopies(p *Pacer, copies *rewrite.Copies, n int) (*RoundCopies, error) {
	if p == nil || copies == nil {
		return nil, fmt.Errorf("replay: RoundCopies needs a Pacer and a rewrite.Copies")
	}
	if n < 1 || copies.Copies() != n*p.cfg.Repeat {
		return nil, fmt.Errorf("replay: %d copies per round over %d rounds need %d copies, rewrite.Copies has %d",
			n, p.cfg.Repeat, n*p.cfg.Repeat, copies.Copies())
	}
	return &RoundCopies{pacer: p, copies: copies, n: n}, nil
}

// Copies is the number of copies per round.
func (r *RoundCopies) Copies() int { return r.n }

// RewriteCopy makes copy i of the current round (see rewrite.Copies).
func (r *RoundCopies) RewriteCopy(pkt *capture.Packet, i int) bool {
	if uint(i) >= uint(r.n) {
		return r.copies.RewriteCopy(pkt, -1) // out of range: counted as BadCopy
	}
	return r.copies.RewriteCopy(pkt, (r.pacer.Round()-1)*r.n+i)
}

// Rewrite implements rewrite.Rewriter as RewriteCopy(pkt, 0).
func (r *RoundCopies) Rewrite(pkt *capture.Packet) bool { return r.RewriteCopy(pkt, 0) }
