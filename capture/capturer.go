package capture

// Capturer is a source of client packets: a live socket, a file, or memory.
// It is consumed by the copier and by replay.
type Capturer interface {
	// ReadPackets fills pkts with up to len(pkts) decoded TCP packets and
	// returns how many it filled, blocking until at least one is ready.
	// pkts[i].Data aliases buffers the Capturer owns; they stay valid until
	// the next ReadPackets or Close. Packets that do not decode are counted
	// by the Capturer (see its Stats) and not returned. At the end of a
	// file it returns io.EOF; after Close it returns ErrClosed.
	ReadPackets(pkts []Packet) (int, error)
	// Close releases the Capturer and unblocks a pending ReadPackets.
	Close() error
}
