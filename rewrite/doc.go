// Package rewrite holds the per-packet stages between capture and the
// session table, TCPCopy's -x, -c, -n, -f and -r, and the re-segmentation
// of oversize packets:
//
//   - Transfer (-x, ParseTransfer) keeps the packets for the online
//     service and points them at the target.
//   - Sampler (-r) keeps a share of connections, decided once per
//     connection by a hash of the client endpoint, optionally ramping up.
//   - ClientPool (-c, ParseClientPool) gives each client a fake address,
//     the same for all its connections.
//   - Copies (-n, -f) makes N copies of each connection with shifted
//     source ports (and optionally pool addresses), laid out so copies and
//     copier instances do not meet, and detects and refuses the collisions
//     that remain rather than merging two connections into one session.
//   - AppendSegments and Segmenter split GRO/TSO super-frames into
//     MSS-sized segments with correct sequence numbers, flags and
//     checksums.
//
// Chain applies Rewriters in order. Every Rewriter keeps the checksums
// right (incrementally, RFC 1624), allocates nothing per packet in steady
// state, is safe for concurrent use, and counts each packet it refuses
// under a named reason in its Stats.
//
// A typical copier, with three copies per connection:
//
//	tr, _ := rewrite.ParseTransfer("80-198.18.1.2:8080")
//	pool, _ := rewrite.ParseClientPool("198.18.200.x", tr.Targets()...)
//	sm, _ := rewrite.NewSampler(&rewrite.SamplerConfig{Percent: 30})
//	cp, _ := rewrite.NewCopies(&rewrite.CopiesConfig{Copies: 3, Pool: pool, AddressPerCopy: true})
//	pick := rewrite.Chain(tr, sm)
//	// per captured packet p: if pick.Rewrite(p), then for i < cp.Copies(),
//	// on a fresh copy q of p: if cp.RewriteCopy(q, i), hand q on.
package rewrite
