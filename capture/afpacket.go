package capture

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/net/bpf"
)

// AFPacketConfig configures an AFPacket capturer. The zero value (or nil)
// captures every TCP packet, both directions, on every interface of the
// network namespace, with the defaults below.
type AFPacketConfig struct {
	// Interfaces are the interfaces to capture on, by name. Empty means
	// every interface of the namespace, lo included (like tcpdump -i any).
	// With one name the socket is bound to that interface; with several
	// it is bound to all and the kernel filter keeps the packets of these
	// (by interface index), so one ring and one reader serve them all.
	Interfaces []string
	// Filter selects the TCP packets to keep, in the kernel. Nil keeps
	// every TCP packet (IPv4 and IPv6).
	Filter *Filter
	// RawFilter is a classic BPF program to use instead of Filter, for
	// users who bring their own. It runs on the frame as the interface
	// has it, link header included: what "tcpdump -i IFACE -dd EXPR"
	// prints for that interface (not for "-i any", whose programs libpcap
	// rewrites for its cooked socket). Its return value is the number of
	// frame bytes kept. The Direction and interface tests run before it.
	RawFilter []bpf.RawInstruction
	// Direction keeps only packets received (DirIn) or sent (DirOut) by
	// the host. Zero (DirUnknown) keeps both. Note that on lo every packet
	// is seen twice, once in each direction.
	Direction Direction
	// FanoutGroup, when nonzero, joins the PACKET_FANOUT group of that id:
	// the kernel then splits the packets among the group's sockets (in
	// this network namespace) by FanoutMode, so several AFPacket readers,
	// one per core, share the load. All members need the same mode.
	FanoutGroup uint16
	// FanoutMode is how the group splits packets. Zero means FanoutHash.
	FanoutMode FanoutMode
	// SnapLen is the largest IP datagram kept whole, in bytes; longer ones
	// are counted as Truncated. Zero means 65575, the largest IPv6
	// datagram without a jumbo payload, which also holds GRO-merged and
	// TSO-sized segments of either family.
	SnapLen int
	// BlockSize is the size of one block of the TPACKET_V3 receive ring, a
	// multiple of the page size large enough for one SnapLen datagram.
	// The kernel hands a block over when it is full or BlockTimeout has
	// passed, so under a moderate load each block holds BlockTimeout of
	// traffic however large it is: the ring then buffers blocks ×
	// BlockTimeout, and many small blocks ride out a reader's pause that
	// a few large ones would not. Zero means 128 KiB, or what one
	// SnapLen datagram needs when that is more.
	BlockSize int
	// RingSize is the size of the receive ring in bytes, at least two
	// blocks; it plays the part of a socket receive buffer. Zero means
	// 32 MiB.
	RingSize int
	// BlockTimeout is how long the kernel waits for a block to fill
	// before it hands over what it has: the most a packet waits when
	// traffic is light. Zero means 2 ms; the kernel counts milliseconds.
	BlockTimeout time.Duration
	// Promiscuous puts the named interfaces in promiscuous mode for the
	// life of the socket, to see frames for other hosts (a mirror port,
	// the assistant deployment). It needs Interfaces.
	Promiscuous bool
}

// FanoutMode is how a PACKET_FANOUT group splits packets among its sockets.
type FanoutMode uint8

// Fanout modes (packet(7)).
const (
	// FanoutHash sends all packets of a flow, both directions, to one
	// socket (the kernel's symmetric flow hash).
	FanoutHash FanoutMode = iota + 1
	// FanoutCPU sends packets to the socket of the receiving CPU.
	FanoutCPU
	// FanoutLB spreads packets round-robin, splitting flows.
	FanoutLB
	// FanoutQueue sends packets by the device's receive queue.
	FanoutQueue
)

var fanoutNames = [...]string{"invalid", "hash", "cpu", "lb", "queue"}

func (m FanoutMode) String() string {
	if int(m) < len(fanoutNames) {
		return fanoutNames[m]
	}
	return "FanoutMode(" + strconv.Itoa(int(m)) + ")"
}

// kernel returns the PACKET_FANOUT_* value.
func (m FanoutMode) kernel() int {
	switch m {
	case FanoutCPU:
		return 2 // PACKET_FANOUT_CPU
	case FanoutLB:
		return 1 // PACKET_FANOUT_LB
	case FanoutQueue:
		return 5 // PACKET_FANOUT_QM
	}
	return 0 // PACKET_FANOUT_HASH
}

const (
	defaultAFSnapLen    = 65575
	maxAFSnapLen        = 65575
	defaultAFBlockSize  = 128 << 10
	defaultAFRingSize   = 32 << 20
	defaultBlockTimeout = 2 * time.Millisecond
	afMaxRingSize       = 1 << 30
	afBlockOverhead     = 256 // block descriptor, tpacket3_hdr, sockaddr_ll, alignment
	afLinkAllowance     = 128 // link-layer bytes kept beyond SnapLen: Ethernet, tags, tunnel headers
)

// withDefaults returns a copy of cfg with zero fields filled and the fields
// checked.
func (cfg *AFPacketConfig) withDefaults() (AFPacketConfig, error) {
	var c AFPacketConfig
	if cfg != nil {
		c = *cfg
	}
	if c.SnapLen == 0 {
		c.SnapLen = defaultAFSnapLen
	}
	if c.BlockSize == 0 {
		c.BlockSize = max(defaultAFBlockSize, c.SnapLen+afLinkAllowance+afBlockOverhead)
	}
	if c.RingSize == 0 {
		c.RingSize = max(defaultAFRingSize, 2*c.BlockSize)
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = defaultBlockTimeout
	}
	if c.FanoutMode == 0 {
		c.FanoutMode = FanoutHash
	}
	page := os.Getpagesize()
	switch {
	case c.SnapLen < 60 || c.SnapLen > maxAFSnapLen:
		return c, fmt.Errorf("capture: AF_PACKET snap length %d is outside 60..%d", c.SnapLen, maxAFSnapLen)
	case c.BlockSize <= 0 || c.BlockSize%page != 0:
		return c, fmt.Errorf("capture: AF_PACKET block size %d is not a multiple of the page size %d", c.BlockSize, page)
	case c.BlockSize < c.SnapLen+afLinkAllowance+afBlockOverhead:
		return c, fmt.Errorf("capture: AF_PACKET block size %d cannot hold a datagram of the snap length %d", c.BlockSize, c.SnapLen)
	case c.RingSize < 2*c.BlockSize || c.RingSize > afMaxRingSize:
		return c, fmt.Errorf("capture: AF_PACKET ring size %d is outside two blocks (%d) .. %d", c.RingSize, 2*c.BlockSize, afMaxRingSize)
	case c.BlockTimeout < time.Millisecond || c.BlockTimeout > time.Minute:
		return c, fmt.Errorf("capture: AF_PACKET block timeout %v is outside 1ms..1m", c.BlockTimeout)
	case c.Direction > DirOut:
		return c, fmt.Errorf("capture: AF_PACKET direction %v is invalid", c.Direction)
	case c.FanoutMode > FanoutQueue:
		return c, fmt.Errorf("capture: AF_PACKET fanout mode %v is invalid", c.FanoutMode)
	case c.Promiscuous && len(c.Interfaces) == 0:
		return c, fmt.Errorf("capture: AF_PACKET promiscuous mode needs named interfaces")
	case c.Filter != nil && c.RawFilter != nil:
		return c, fmt.Errorf("capture: AF_PACKET: set Filter or RawFilter, not both")
	}
	seen := map[string]bool{}
	for _, name := range c.Interfaces {
		if name == "" || seen[name] {
			return c, fmt.Errorf("capture: AF_PACKET interface list %q has an empty or repeated name", c.Interfaces)
		}
		seen[name] = true
	}
	if c.Filter != nil {
		if err := c.Filter.check(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Reasons AFPacket passes a frame over before decoding it.
var (
	errAFShort   = &decodeError{ErrTruncated, "capture: frame ends inside its link-layer header"}
	errAFNotIP   = &decodeError{ErrNotTCP, "capture: frame carries neither IPv4 nor IPv6"}
	errAFBadRing = &decodeError{ErrMalformed, "capture: ring frame descriptor out of bounds"}
)
