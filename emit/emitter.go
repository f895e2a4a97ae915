package emit

import "errors"

// Emitter sends rewritten client datagrams toward the target. It is
// consumed by the session table, which hands it batches.
type Emitter interface {
	// Emit sends each IP datagram in pkts (IPv4 or IPv6, checksums right).
	// It does not retain pkts or their bytes after it returns. Failures of
	// single packets (EMSGSIZE, EPERM from a full conntrack table, ENOBUFS)
	// are counted by the Emitter under their reason and not returned; a
	// returned error means the Emitter can no longer send at all.
	Emit(pkts [][]byte) error
}

// Sentinel errors.
var (
	ErrClosed       = errors.New("emit: closed")
	ErrNotSupported = errors.New("emit: not supported on this platform")
)
