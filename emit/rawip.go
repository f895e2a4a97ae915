package emit

import "fmt"

// RawIPConfig configures a RawIP emitter. The zero value (or nil) is ready.
type RawIPConfig struct {
	// Batch is how many datagrams one sendmmsg call may carry. Zero means
	// 64.
	Batch int
	// SendBuffer is the send buffer of each socket in bytes. Zero means
	// 4 MiB. It is set with SO_SNDBUFFORCE (CAP_NET_ADMIN), falling back to
	// SO_SNDBUF, which the kernel caps at net.core.wmem_max. A full buffer
	// drops datagrams (NoBuffers) rather than blocking Emit.
	SendBuffer int
}

const (
	defaultRawBatch      = 64
	defaultRawSendBuffer = 4 << 20
	maxRawBatch          = 1024 // UIO_MAXIOV, the kernel's cap per sendmmsg
)

func (cfg *RawIPConfig) withDefaults() (RawIPConfig, error) {
	var c RawIPConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Batch == 0 {
		c.Batch = defaultRawBatch
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = defaultRawSendBuffer
	}
	switch {
	case c.Batch < 0 || c.Batch > maxRawBatch:
		return c, fmt.Errorf("emit: raw IP batch %d is outside 1..%d", c.Batch, maxRawBatch)
	case c.SendBuffer < 0:
		return c, fmt.Errorf("emit: raw IP send buffer %d is negative", c.SendBuffer)
	}
	return c, nil
}
