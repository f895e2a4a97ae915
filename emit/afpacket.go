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
	// Batch is how many frames one sendmmsg call, or one flush of the TX
	// ring, may carry. Zero means 64.
	Batch int
	// SendBuffer is the socket send buffer in bytes. Zero means 4 MiB.
	// A full buffer drops frames (NoBuffers) rather than blocking Emit.
	SendBuffer int
	// QdiscBypass sends straight to the device driver, skipping the
	// interface's queueing discipline (PACKET_QDISC_BYPASS): faster, but
	// traffic shaping and the qdisc's buffer do not apply and a busy
	// device drops frames (NoBuffers).
	QdiscBypass bool
	// TXRing is the number of frames of a PACKET_TX_RING (packet(7),
	// TPACKET_V2) that Emit copies frames into and hands to the kernel
	// with one send call per batch, instead of sendmmsg: the kernel then
	// copies no message headers, no iovecs and nothing from user memory,
	// which makes a packet cheaper to send. It is rounded up to fill whole
	// blocks of the ring, whose memory is the kernel's and stays allocated
	// while the emitter is open (about TXRing x TXFrameSize bytes: 1.6 MiB
	// by default for an MTU of 1500). Datagrams too large for a frame or
	// over the interface MTU go with sendmmsg. The MTU is read once, by
	// NewAFPacket: the kernel does not check ring frames against it. Zero
	// means 1024, or no ring if the kernel cannot set one up; negative
	// means no ring: every frame goes with sendmmsg.
	TXRing int
	// TXFrameSize is the size of one ring frame in bytes, a multiple of 16
	// that includes its 32-byte TPACKET_V2 header and 10-byte virtio-net
	// header, so it carries datagrams of up to TXFrameSize-56 bytes. Zero
	// means room for the interface's MTU.
	TXFrameSize int
	// Now is the clock for the neighbour cache. Nil means time.Now.
	Now func() time.Time
}

const (
	defaultNeighbourTTL = 5 * time.Second
	defaultTXRing       = 1024
	maxTXRing           = 1 << 16
	// A TX ring frame's data starts after its struct tpacket2_hdr:
	// TPACKET2_HDRLEN - sizeof(struct sockaddr_ll) (tpacket_parse_header).
	txFrameHdr   = 32
	minTXFrame   = 128
	maxTXFrame   = 1 << 20
	txFrameAlign = 16 // TPACKET_ALIGNMENT
)

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
	if c.TXRing == 0 {
		c.TXRing = defaultTXRing
	}
	switch {
	case c.Interface == "":
		return c, fmt.Errorf("emit: AF_PACKET emitter needs an interface")
	case c.Batch < 0 || c.Batch > maxRawBatch:
		return c, fmt.Errorf("emit: AF_PACKET batch %d is outside 1..%d", c.Batch, maxRawBatch)
	case c.SendBuffer < 0:
		return c, fmt.Errorf("emit: AF_PACKET send buffer %d is negative", c.SendBuffer)
	case c.TXRing > maxTXRing:
		return c, fmt.Errorf("emit: AF_PACKET TX ring of %d frames is over %d", c.TXRing, maxTXRing)
	case c.TXFrameSize != 0 && (c.TXFrameSize < minTXFrame || c.TXFrameSize > maxTXFrame || c.TXFrameSize%txFrameAlign != 0):
		return c, fmt.Errorf("emit: AF_PACKET TX frame size %d is not a multiple of %d in %d..%d", c.TXFrameSize, txFrameAlign, minTXFrame, maxTXFrame)
	case c.NeighbourTTL < 0:
		return c, fmt.Errorf("emit: neighbour TTL %v is negative", c.NeighbourTTL)
	case c.SrcMAC != nil && len(c.SrcMAC) != 6, c.DstMAC != nil && len(c.DstMAC) != 6:
		return c, fmt.Errorf("emit: AF_PACKET addresses %v and %v must be Ethernet (EUI-48) addresses", c.SrcMAC, c.DstMAC)
	}
	return c, nil
}
