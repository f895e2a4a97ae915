package capture

import (
	"bytes"
	"sync/atomic"
)

// Collect reads from c until keep (nil keeps all) has accepted n packets
// and returns copies of them, which stay valid after c reads on. It stops
// early with the error of a failed read; to bound it in time, Close c from
// another goroutine. It serves tests and tools that want a few packets,
// not the per-packet path.
func Collect(c Capturer, n int, keep func(*Packet) bool) ([]Packet, error) {
	pkts := make([]Packet, 16)
	out := make([]Packet, 0, n)
	for len(out) < n {
		m, err := c.ReadPackets(pkts)
		for i := range pkts[:m] {
			if len(out) == n || keep != nil && !keep(&pkts[i]) {
				continue
			}
			p := Packet{Time: pkts[i].Time, Dir: pkts[i].Dir}
			if err := p.Decode(bytes.Clone(pkts[i].Data)); err != nil {
				return out, err
			}
			out = append(out, p)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Count reads from c until a read fails (Close c to end it) and adds to n
// every packet keep accepts: Collect's companion for watching a stream,
// such as counting packets that must not arrive. It returns the error that
// ended it.
func Count(c Capturer, n *atomic.Int64, keep func(*Packet) bool) error {
	pkts := make([]Packet, 16)
	for {
		k, err := c.ReadPackets(pkts)
		for i := range pkts[:k] {
			if keep(&pkts[i]) {
				n.Add(1)
			}
		}
		if err != nil {
			return err
		}
	}
}
