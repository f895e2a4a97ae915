package rewrite

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Limits of TCPCopy's -n and -f.
const (
	MaxCopies   = 1023 // most copies of each connection
	MaxInstance = 1023 // largest instance number
)

// portRing is the number of source ports copies are spread over: 1 to
// 65535 (port 0 is not a TCP port).
const portRing = 65535

// CopiesConfig configures Copies. The zero value makes one copy that keeps
// the client's endpoint, with collision detection.
type CopiesConfig struct {
	// Copies is how many copies of each connection to make (-n). Zero
	// means 1; at most MaxCopies. Every instance feeding one target must
	// use the same number.
	Copies int
	// Instance is this copier's number among the copiers feeding one
	// target (-f), 0 to MaxInstance; each must have its own.
	Instance int
	// Instances is how many copier instances feed the target. It only
	// sets the guarantee Window reports (the port layout does not depend
	// on it) and must be above Instance. Zero means Instance+1.
	Instances int
	// Pool, if set, gives each copy a fake client address: copy i of a
	// client takes the client's pool address (see ClientPool), or with
	// AddressPerCopy the one i+Instance*Copies places after it. Nil keeps
	// the client's address. Do not also chain the pool before Copies: the
	// address Copies sees must be the real client's.
	Pool *ClientPool
	// AddressPerCopy spreads the copies of a client over pool addresses.
	// With at least Copies*Instances addresses of a family, the copies of
	// one client never share an address, so they cannot collide whatever
	// their ports. Needs Pool.
	AddressPerCopy bool
	// Linger is how long a fake endpoint stays with the connection whose
	// SYN claimed it: a SYN from another connection within it is a
	// collision. The holder's FIN or RST cuts what is left to one second
	// (or Linger, if shorter). Zero means 10 s.
	Linger time.Duration
	// Tracked is how many fake endpoints collision detection remembers
	// (64 bytes each). Zero means 65536; negative turns detection off.
	Tracked int
	// Clock reads the time for collision detection. Nil means time.Now.
	Clock func() time.Time
}

// Copies makes the copies of each connection (TCPCopy's -n) and keeps
// copier instances apart (-f) by shifting the client port, and optionally
// the address, of each copy.
//
// # Port layout
//
// Ports 1 to 65535 form a ring of R = 65535 positions. Copy i of instance
// f shifts every port by the same offset around the ring:
//
//	B = floor(R / Copies)                       a band per copy
//	offset(i, f) = i*B + floor(vdc(f) * B)      vdc: van der Corput, bit-reversed f / 1024
//	port' = 1 + (port - 1 + offset) mod R
//
// Copy 0 of instance 0 has offset 0: it keeps the client's port, as
// TCPCopy's first copy does. Each copy is a bijection of the ring, so
// distinct client ports never meet within one copy. Instances are spread
// within each band by the van der Corput sequence (0, 1/2, 1/4, 3/4, ...),
// so the first F instances are at least B/2^ceil(log2 F) apart however many
// there are, and instances need not know how many others exist. Two copies
// (of any instances) can only meet when a client has two connections
// whose ports differ by exactly the difference of their offsets, so any
// client whose live ports lie within Window consecutive ports never
// collides: Window is 32767 for two copies of one instance, more than
// Linux's whole ephemeral range (32768-60999). Beyond that, ports alone cannot separate
// Copies*Instances copies of a busy client (the ring is too small); use
// AddressPerCopy with enough pool addresses.
//
// # Collisions
//
// Whatever the layout, copies of different clients (sharing a pool
// address) or copies beyond the guarantee can still meet. On every SYN,
// Copies records which connection (client endpoint, server endpoint, copy)
// claimed the fake endpoint; the holder's FIN or RST releases it after a
// second. A SYN for a fake endpoint that another connection holds (used
// less than Linger ago and not released) is refused and counted rather
// than merged into that connection's session. For Linger after such a
// conflict (or after a SYN took over an endpoint whose holder went quiet),
// every packet is checked: the refused connection's data is refused too,
// and the holder's packets keep its claim fresh. Collisions between
// instances (separate processes) cannot be seen here.
//
// Copies is safe for concurrent use.
type Copies struct {
	n      int
	shift  []uint32 // ring offset of each copy
	slot   []uint64 // pool address slot of each copy
	pool   *ClientPool
	window int
	owners *owners
	clock  func() time.Time
	base   time.Time

	packets, collisions, collided, evictions atomic.Uint64
	noAddress, badPort, badCopy              atomic.Uint64
}

// NewCopies checks cfg (nil means defaults) and returns a Copies.
func NewCopies(cfg *CopiesConfig) (*Copies, error) {
	if cfg == nil {
		cfg = &CopiesConfig{}
	}
	n, f, nf := cfg.Copies, cfg.Instance, cfg.Instances
	if n == 0 {
		n = 1
	}
	if nf == 0 {
		nf = f + 1
	}
	switch {
	case n < 1 || n > MaxCopies:
		return nil, fmt.Errorf("rewrite: %d copies: want 1 to %d", cfg.Copies, MaxCopies)
	case f < 0 || f > MaxInstance:
		return nil, fmt.Errorf("rewrite: instance %d: want 0 to %d", f, MaxInstance)
	case nf <= f || nf > MaxInstance+1:
		return nil, fmt.Errorf("rewrite: %d instances: want %d (instance+1) to %d", cfg.Instances, f+1, MaxInstance+1)
	case cfg.AddressPerCopy && cfg.Pool == nil:
		return nil, errors.New("rewrite: AddressPerCopy needs a Pool")
	case cfg.Linger < 0:
		return nil, fmt.Errorf("rewrite: negative linger %v", cfg.Linger)
	}
	band := portRing / n
	k := bits.Len(uint(nf - 1)) // 2^k >= instances
	window := band >> k
	if window < 1 {
		return nil, fmt.Errorf("rewrite: %d copies x %d instances do not fit in the port space (at most 65535 copy-instances, instance counts rounded up to a power of two)", n, nf)
	}
	c := &Copies{
		n:      n,
		shift:  make([]uint32, n),
		slot:   make([]uint64, n),
		pool:   cfg.Pool,
		window: window,
		clock:  cfg.Clock,
	}
	vdc := uint32(bits.Reverse16(uint16(f)) >> 6) // f < 1024: 10 bits, reversed
	inst := vdc * uint32(band) >> 10
	for i := range n {
		c.shift[i] = uint32(i*band) + inst
		if cfg.AddressPerCopy {
			c.slot[i] = uint64(f*n + i)
		}
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	c.base = c.clock()
	if cfg.Tracked >= 0 {
		tracked, linger := cfg.Tracked, cfg.Linger
		if tracked == 0 {
			tracked = 1 << 16
		}
		if linger == 0 {
			linger = 10 * time.Second
		}
		c.owners = newOwners(tracked, int64(linger))
	}
	return c, nil
}

// Copies is the number of copies of each connection.
func (c *Copies) Copies() int { return c.n }

// Window is the guarantee of the port layout: copies of a client whose
// live ports all lie within Window consecutive ports (cyclically, 65535
// after 1) never collide, across all copies and all Instances.
func (c *Copies) Window() int { return c.window }

// Port returns the source port copy i gives a client's port (0 for port 0
// or a copy out of range).
func (c *Copies) Port(port uint16, i int) uint16 {
	if port == 0 || uint(i) >= uint(c.n) {
		return 0
	}
	return shiftPort(port, c.shift[i])
}

func shiftPort(port uint16, off uint32) uint16 {
	pos := uint32(port) - 1 + off
	if pos >= portRing {
		pos -= portRing
	}
	return uint16(pos + 1)
}

func (c *Copies) now() int64 { return int64(c.clock().Sub(c.base)) }

// Rewrite implements Rewriter as RewriteCopy(p, 0): with one copy, Copies
// can sit in a Chain.
func (c *Copies) Rewrite(p *capture.Packet) bool { return c.RewriteCopy(p, 0) }

// RewriteCopy turns p into copy i (0 to Copies()-1): source address from
// the pool (if any), source port shifted. p must carry the client's own
// source endpoint, so each copy is made from a fresh copy of the captured
// packet. It reports false, and counts why, for a packet it refuses: a
// collision, no pool address of the packet's family, source port 0, or i
// out of range.
func (c *Copies) RewriteCopy(p *capture.Packet, i int) bool {
	if uint(i) >= uint(c.n) {
		c.badCopy.Add(1)
		return false
	}
	orig := p.SrcEndpoint()
	if orig.Port() == 0 {
		c.badPort.Add(1)
		return false
	}
	if c.pool != nil {
		a, ok := c.pool.pick(clientHash(orig), !p.IsIPv6(), c.slot[i])
		if !ok || p.SetSrc(a) != nil {
			c.noAddress.Add(1)
			return false
		}
	}
	if off := c.shift[i]; off != 0 {
		p.SetSrcPort(shiftPort(orig.Port(), off))
	}
	if o := c.owners; o != nil && !c.track(o, p, orig, uint16(i)) {
		return false
	}
	c.packets.Add(1)
	return true
}

// track does collision detection for copy i of a packet from orig, now at
// its fake endpoint: SYNs claim, FINs and RSTs release, and while a
// conflict is recent every packet is checked.
func (c *Copies) track(o *owners, p *capture.Packet, orig capture.Endpoint, i uint16) bool {
	flags := p.Flags()
	if flags&(capture.FlagSYN|capture.FlagACK) == capture.FlagSYN {
		ok, evicted := o.claim(p.SrcEndpoint(), orig, p.DstEndpoint().Hash(), i, c.now())
		if evicted {
			c.evictions.Add(1)
		}
		if !ok {
			c.collisions.Add(1)
		}
		return ok
	}
	closing := flags&(capture.FlagFIN|capture.FlagRST) != 0
	if !closing && o.lastConflict.Load() == 0 {
		return true // the common case: no lock, no clock
	}
	now, fake, server := c.now(), p.SrcEndpoint(), p.DstEndpoint().Hash()
	if o.alert(now) && !o.check(fake, orig, server, i, now) {
		c.collided.Add(1)
		return false
	}
	if closing {
		o.release(fake, orig, server, i, now)
	}
	return true
}

// CopiesStats counts RewriteCopy's decisions.
type CopiesStats struct {
	Packets         uint64 // copies made
	Collisions      uint64 // SYNs refused: their fake endpoint belonged to another live connection
	CollidedPackets uint64 // later packets of such connections refused
	Evictions       uint64 // live claims dropped from a full tracking table (detection weakened; raise Tracked)
	NoAddress       uint64 // refused: the pool has no address of the packet's family
	BadPort         uint64 // refused: source port 0
	BadCopy         uint64 // refused: copy index out of range (a caller bug)
}

// Stats returns a snapshot of the counters.
func (c *Copies) Stats() CopiesStats {
	return CopiesStats{
		Packets:         c.packets.Load(),
		Collisions:      c.collisions.Load(),
		CollidedPackets: c.collided.Load(),
		Evictions:       c.evictions.Load(),
		NoAddress:       c.noAddress.Load(),
		BadPort:         c.badPort.Load(),
		BadCopy:         c.badCopy.Load(),
	}
}
