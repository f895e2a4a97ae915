package capture

import "fmt"

// RawIPConfig configures a RawIP capturer. The zero value (or nil) captures
// IPv4 with the defaults below.
type RawIPConfig struct {
	// Network is "ip4" (zero value) or "ip6".
	Network string
	// RecvBuffer is the socket receive buffer in bytes. Zero means 8 MiB.
	// It is set with SO_RCVBUFFORCE (CAP_NET_ADMIN), falling back to
	// SO_RCVBUF, which the kernel caps at net.core.rmem_max.
	RecvBuffer int
	// Batch is how many datagrams one recvmmsg call may return. Zero
	// means 64.
	Batch int
	// SnapLen is the largest datagram kept whole, in bytes; longer ones are
	// counted as Truncated. Zero means 65535, which also holds GRO-merged
	// segments. The RawIP keeps Batch buffers of SnapLen (+40) bytes.
	SnapLen int
}

const (
	defaultRawRecvBuffer = 8 << 20
	defaultRawBatch      = 64
	defaultRawSnapLen    = 65535
	// maxRawBatch bounds the memory a misconfigured Batch can pin; the
	// kernel itself caps one recvmmsg at UIO_MAXIOV (1024) messages.
	maxRawBatch = 1024
)

// withDefaults returns a copy of cfg with zero fields filled and the
// fields checked.
func (cfg *RawIPConfig) withDefaults() (RawIPConfig, error) {
	var c RawIPConfig
	if cfg != nil {
		c = *cfg
	}
	switch c.Network {
	case "":
		c.Network = "ip4"
	case "ip4", "ip6":
	default:
		return c, fmt.Errorf("capture: raw IP network %q is neither ip4 nor ip6", c.Network)
	}
	if c.RecvBuffer == 0 {
		c.RecvBuffer = defaultRawRecvBuffer
	}
	if c.Batch == 0 {
		c.Batch = defaultRawBatch
	}
	if c.SnapLen == 0 {
		c.SnapLen = defaultRawSnapLen
	}
	switch {
	case c.RecvBuffer < 0:
		return c, fmt.Errorf("capture: raw IP receive buffer %d is negative", c.RecvBuffer)
	case c.Batch < 0 || c.Batch > maxRawBatch:
		return c, fmt.Errorf("capture: raw IP batch %d is outside 1..%d", c.Batch, maxRawBatch)
	case c.SnapLen < 60 || c.SnapLen > 65535:
		// 60 bytes hold the largest IPv4 header; 65535 is the largest
		// datagram an IP length field can describe.
		return c, fmt.Errorf("capture: raw IP snap length %d is outside 60..65535", c.SnapLen)
	}
	return c, nil
}

// Reasons a RawIP passes a datagram over before decoding it.
var (
	errSnapped   = &decodeError{ErrTruncated, "capture: datagram longer than the snap length"}
	errNoPktinfo = &decodeError{ErrMalformed, "capture: raw IPv6 datagram without an IPV6_PKTINFO destination"}
)
