package emit

import (
	"fmt"
	"net"
	"time"
)

// AFPacketConfig configures an AFPacket emitter. Interface is required.
type AFPacketConfig struct {
	// Interface is the interface to send on; it must be Ethernet.
	Interface string
	// SrcMAC is the source address of the frames. Nil means the
	// interface's own address.
	SrcMAC net.HardwareAddr
	// DstMAC is the next hop's address for every frame. Nil means: per
	// destination, ask the kernel for the route's next hop on Interface
	// (the gateway, or the destination itself when it is on the link)
	// and take its address from the neighbour table, asking the kernel to
	// resolve it (ARP, neighbour discovery) when it is missing.
	DstMAC net.HardwareAddr
	// NeighbourTTL is how long a looked-up next-hop address is reused
	// before it is looked up again; a failed lookup is retried after
	// NeighbourTTL/50 (at least 10 ms). Zero means 5 s.
	NeighbourTTL time.Duration
	// Batch is how many frames one sendmmsg call may carry. Zero means 64.
	Batch int
	// SendBuffer is the socket send buffer in bytes. Zero means 4 MiB.
	// A full buffer drops frames (NoBuffers) rather than blocking Emit.
	SendBuffer int
	// QdiscBypass sends straight to the device driver, skipping the
	// interface's queueing discipline (PACKET_QDISC_BYPASS): faster, but
	// traffic shaping and the qdisc's buffer do not apply and a busy
	// device drops frames (NoBuffers).
	QdiscBypass bool
	// Now is the clock for the neighbour cache. Nil means time.Now.
	Now func() time.Time
}

const defaultNeighbourTTL = 5 * time.Second

func (cfg *AFPacketConfig) withDefaults() (AFPacketConfig, error) {
	var c AFPacketConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Batch == 0 {
		c.Batch = defaultRawBatch
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = defaultRawSendBuffer
	}
	if c.NeighbourTTL == 0 {
		c.NeighbourTTL = defaultNeighbourTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.Interface == "":
		return c, fmt.Errorf("emit: AF_PACKET emitter needs an interface")
	case c.Batch < 0 || c.Batch > maxRawBatch:
		return c, fmt.Errorf("emit: AF_PACKET batch %d is outside 1..%d", c.Batch, maxRawBatch)
	case c.SendBuffer < 0:
		return c, fmt.Errorf("emit: AF_PACKET send buffer %d is negative", c.SendBuffer)
	case c.NeighbourTTL < 0:
		return c, fmt.Errorf("emit: neighbour TTL %v is negative", c.NeighbourTTL)
	case c.SrcMAC != nil && len(c.SrcMAC) != 6, c.DstMAC != nil && len(c.DstMAC) != 6:
		return c, fmt.Errorf("emit: AF_PACKET addresses %v and %v must be Ethernet (EUI-48) addresses", c.SrcMAC, c.DstMAC)
	}
	return c, nil
}
