package capture

import "bytes"

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
