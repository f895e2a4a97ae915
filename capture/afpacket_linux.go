package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"github.com/shadowcopy/tcpcopy/internal/linklayer"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// AFPacket is a Capturer over an AF_PACKET socket (github.com/mdlayher/packet)
// with a TPACKET_V3 receive ring: it sees every packet an interface
// receives or sends (ETH_P_ALL), before netfilter, whoever it is for. This
// is how to capture on a host where the packets are not for the local
// stack (the assistant, a mirror port) and how to see outgoing packets.
//
// The socket is SOCK_RAW: Ethernet and loopback frames are parsed as they
// are, walking up to four 802.1Q/802.1ad tags in the frame (a tag the
// device took out of the frame, VLAN acceleration, is simply not there);
// on devices of other kinds (tunnels, WireGuard, PPP) the datagram starts
// at the network header the kernel reports. So one socket serves
// interfaces of any kind. The frame, not the kernel's metadata, is what
// counts: for QinQ traffic the kernel's idea of the network header and
// protocol differs between receive and send. The kernel filter (Filter or
// RawFilter, after the Direction and interface tests) runs before a packet
// is queued. Packet.Dir is set from the kernel's packet type.
//
// The kernel writes packets into blocks of a ring shared with the process
// and hands a block over when it is full or BlockTimeout has passed, so a
// busy capturer reads thousands of packets per wakeup with no system call
// at all. ReadPackets copies each datagram out of the ring into a buffer
// the AFPacket owns (valid until the next ReadPackets) and returns the
// block to the kernel at once, so a slow consumer never holds ring space.
// Outgoing packets whose checksum the kernel left to the device
// (TP_STATUS_CSUMNOTREADY, checksum offload) get their IP and TCP
// checksums computed, so every packet returned carries right checksums.
//
// When the ring is full the kernel drops packets and counts them; Stats
// reports them as KernelDrops (PACKET_STATISTICS, read on each Stats call
// and at Close).
//
// ReadPackets does not allocate in steady state. One goroutine may call it
// at a time; Stats and Close are safe from any goroutine.
type AFPacket struct {
	Counters

	conn   *packet.Conn
	rc     syscall.RawConn
	name   string // for errors: the interfaces or "any"
	closed atomic.Bool

	mu        sync.Mutex // held by ReadPackets; Close takes it to unmap the ring
	ring      []byte
	blockSize int
	nblocks   int
	snap      int
	arena     []byte

	// Reader state.
	cur     int // current block
	left    int // packets left in the current block; 0: not opened
	pkt     int // offset in the ring of the next packet of the current block
	readyFn func(fd uintptr) bool
}

var _ Capturer = (*AFPacket)(nil)

// Offsets in the TPACKET_V3 ring (linux/if_packet.h).
const (
	blkStatus      = 8  // tpacket_block_desc.hdr.bh1.block_status
	blkNumPkts     = 12 // num_pkts
	blkFirstPkt    = 16 // offset_to_first_pkt
	tp3NextOffset  = 0
	tp3Sec         = 4
	tp3Nsec        = 8
	tp3Snaplen     = 12
	tp3Status      = 20
	tp3Mac         = 24
	tp3Net         = 26
	tp3HdrLen      = 48 // sizeof(struct tpacket3_hdr), TPACKET_ALIGN'ed
	sllProtocol    = tp3HdrLen + 2
	sllHatype      = tp3HdrLen + 8
	sllPktType     = tp3HdrLen + 10
	tp3MinFrameLen = tp3HdrLen + 20 // with the sockaddr_ll
)

// NewAFPacket opens an AF_PACKET socket as cfg says and maps its ring. It
// needs CAP_NET_RAW (and CAP_NET_ADMIN for Promiscuous). The socket sees
// nothing until its filter and ring are in place, so no packet is queued
// where ReadPackets would not find it.
func NewAFPacket(cfg *AFPacketConfig) (*AFPacket, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	name := "any"
	if len(c.Interfaces) > 0 {
		name = strings.Join(c.Interfaces, ",")
	}
	var ifindexes []int
	for _, n := range c.Interfaces {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			return nil, fmt.Errorf("capture: AF_PACKET on %s: %w", n, err)
		}
		ifindexes = append(ifindexes, ifi.Index)
	}
	// The program: interface and direction tests, then the filter.
	snapRet := uint32(c.SnapLen + afLinkAllowance)
	main := c.RawFilter
	if main == nil {
		if main, err = compileFilter(c.Filter, snapRet, frameFromKernel); err != nil {
			return nil, err
		}
	}
	var bindIf []int
	if len(ifindexes) > 1 {
		bindIf = ifindexes // bound to all: test the interface in the filter
	}
	pro, err := prologue(c.Direction, bindIf)
	if err != nil {
		return nil, err
	}
	prog := append(pro, main...)
	if len(prog) > 4096 {
		return nil, fmt.Errorf("capture: AF_PACKET filter of %d instructions is over the kernel's 4096", len(prog))
	}

	bind := &net.Interface{Name: name} // index 0: every interface
	if len(ifindexes) == 1 {
		bind.Index = ifindexes[0]
	}
	dropAll, _ := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	conn, err := packet.Listen(bind, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: dropAll})
	if err != nil {
		return nil, fmt.Errorf("capture: open AF_PACKET socket on %s: %w", name, err)
	}
	r := &AFPacket{conn: conn, name: name, snap: c.SnapLen, blockSize: c.BlockSize, nblocks: c.RingSize / c.BlockSize}
	if err := r.setup(&c, ifindexes, prog); err != nil {
		conn.Close()
		if r.ring != nil {
			unix.Munmap(r.ring)
		}
		return nil, err
	}
	r.arena = make([]byte, r.blockSize)
	r.readyFn = r.ready
	return r, nil
}

func (r *AFPacket) setup(c *AFPacketConfig, ifindexes []int, prog []bpf.RawInstruction) error {
	var err error
	if r.rc, err = r.conn.SyscallConn(); err != nil {
		return fmt.Errorf("capture: AF_PACKET socket on %s: %w", r.name, err)
	}
	var serr error
	cerr := r.rc.Control(func(fd uintptr) {
		s := int(fd)
		if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
			serr = fmt.Errorf("capture: AF_PACKET on %s: select TPACKET_V3: %w", r.name, err)
			return
		}
		req := unix.TpacketReq3{
			Block_size:     uint32(r.blockSize),
			Block_nr:       uint32(r.nblocks),
			Frame_size:     unix.TPACKET_ALIGNMENT << 7, // 2048: checked, not used, by V3
			Retire_blk_tov: uint32(c.BlockTimeout.Milliseconds()),
		}
		req.Frame_nr = req.Block_size / req.Frame_size * req.Block_nr
		if err := unix.SetsockoptTpacketReq3(s, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			serr = fmt.Errorf("capture: AF_PACKET on %s: set up a %d-byte ring of %d-byte blocks: %w",
				r.name, r.nblocks*r.blockSize, r.blockSize, err)
			return
		}
		ring, err := unix.Mmap(s, 0, r.nblocks*r.blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			serr = fmt.Errorf("capture: AF_PACKET on %s: map the ring: %w", r.name, err)
			return
		}
		r.ring = ring
		if c.Direction == DirIn {
			// Not even cloned for us (Linux 4.20+); the filter tests
			// the direction anyway.
			_ = unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		}
		if c.Promiscuous {
			for _, i := range ifindexes {
				mreq := unix.PacketMreq{Ifindex: int32(i), Type: unix.PACKET_MR_PROMISC}
				if err := unix.SetsockoptPacketMreq(s, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
					serr = fmt.Errorf("capture: AF_PACKET on %s: promiscuous mode: %w", r.name, err)
					return
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("capture: AF_PACKET socket on %s: %w", r.name, cerr)
	}
	if serr != nil {
		return serr
	}
	if err := r.conn.SetBPF(prog); err != nil {
		return fmt.Errorf("capture: AF_PACKET on %s: attach filter: %w", r.name, err)
	}
	if c.FanoutGroup != 0 {
		// Joined after the filter is in place: a member with the drop-all
		// filter would lose its share of the group's packets.
		arg := int(c.FanoutGroup) | c.FanoutMode.kernel()<<16
		cerr = r.rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_FANOUT, arg)
		})
		if err := firstErr(cerr, serr); err != nil {
			return fmt.Errorf("capture: AF_PACKET on %s: join fanout group %d (%v): %w", r.name, c.FanoutGroup, c.FanoutMode, err)
		}
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// status returns a pointer to the status word of block b, which the kernel
// and the reader hand back and forth (the ring's only synchronisation:
// sequentially consistent atomics give the barriers the kernel's
// documentation asks for).
func (r *AFPacket) status(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.ring[b*r.blockSize+blkStatus]))
}

// ready is the RawConn callback: true once the current block is ours.
func (r *AFPacket) ready(fd uintptr) bool {
	return atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER != 0
}

// release hands the current block back to the kernel and moves on.
func (r *AFPacket) release() {
	atomic.StoreUint32(r.status(r.cur), unix.TP_STATUS_KERNEL)
	r.cur = (r.cur + 1) % r.nblocks
	r.left = 0
}

// open makes the current block the one to read, if the kernel has handed
// it over; empty blocks are returned at once.
func (r *AFPacket) open() bool {
	for {
		if atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER == 0 {
			return false
		}
		base := r.cur * r.blockSize
		blk := r.ring[base : base+r.blockSize]
		num := int(binary.NativeEndian.Uint32(blk[blkNumPkts:]))
		first := int(binary.NativeEndian.Uint32(blk[blkFirstPkt:]))
		if num == 0 || first+tp3MinFrameLen > r.blockSize {
			if num != 0 {
				r.Reject(errAFBadRing)
			}
			r.release()
			continue
		}
		r.left, r.pkt = num, base+first
		return true
	}
}

// ReadPackets implements Capturer. It blocks until at least one TCP
// datagram decodes; what does not is counted and skipped.
func (r *AFPacket) ReadPackets(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		if r.closed.Load() {
			return 0, ErrClosed
		}
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n, used := 0, 0
	for n < len(pkts) {
		if r.closed.Load() {
			return 0, ErrClosed
		}
		if r.left == 0 && !r.open() {
			if n > 0 {
				break
			}
			err := r.rc.Read(r.readyFn)
			if r.closed.Load() {
				return 0, ErrClosed
			}
			if err != nil {
				return 0, fmt.Errorf("capture: read AF_PACKET socket on %s: %w", r.name, err)
			}
			continue
		}
		var ok bool
		if used, ok = r.frame(&pkts[n], used); !ok {
			break // the arena is full: this frame waits for the next call
		}
		if pkts[n].Data != nil {
			n++
		}
	}
	return n, nil
}

// frame decodes the next frame of the current block into p (p.Data nil
// when it was counted and skipped), copying its datagram to arena[used:].
// It reports false, consuming nothing, when the arena cannot take it.
func (r *AFPacket) frame(p *Packet, used int) (int, bool) {
	end := (r.cur + 1) * r.blockSize
	h := r.ring[r.pkt:end]
	p.Data = nil
	if len(h) < tp3MinFrameLen {
		r.Reject(errAFBadRing)
		r.release()
		return used, true
	}
	ne := binary.NativeEndian
	next := int(ne.Uint32(h[tp3NextOffset:]))
	snap := int(ne.Uint32(h[tp3Snaplen:]))
	mac := int(ne.Uint16(h[tp3Mac:]))
	if mac+snap > len(h) {
		r.Reject(errAFBadRing)
		r.release()
		return used, true
	}
	if used+snap > len(r.arena) {
		return used, false
	}
	// Consume the frame.
	if r.left--; r.left == 0 || next <= 0 || r.pkt+next >= end {
		defer r.release() // after the last read of the frame below
	} else {
		r.pkt += next
	}
	var ip []byte
	var res linklayer.Result
	switch ne.Uint16(h[sllHatype:]) {
	case arphrdEther, arphrdLoopback:
		ip, res = linklayer.StripEthernet(h[mac : mac+snap])
	default:
		// The kernel's network header; tags, if any, after it.
		nh := int(ne.Uint16(h[tp3Net:]))
		if nh < mac || nh > mac+snap {
			r.Reject(errAFBadRing)
			return used, true
		}
		ip, res = linklayer.StripTags(binary.BigEndian.Uint16(h[sllProtocol:]), h[nh:mac+snap])
	}
	switch res {
	case linklayer.Short:
		r.Reject(errAFShort)
		return used, true
	case linklayer.NotIP:
		r.Reject(errAFNotIP)
		return used, true
	}
	buf := r.arena[used : used+len(ip)]
	copy(buf, ip)
	p.Dir = dirOfPktType(int(h[sllPktType]))
	if err := p.Decode(buf); err != nil {
		r.Reject(err)
		p.Data = nil
		return used, true
	}
	if len(p.Data) > r.snap {
		r.Reject(errSnapped)
		p.Data = nil
		return used, true
	}
	if ne.Uint32(h[tp3Status:])&unix.TP_STATUS_CSUMNOTREADY != 0 {
		p.ComputeChecksums()
	}
	p.Time = time.Unix(int64(ne.Uint32(h[tp3Sec:])), int64(ne.Uint32(h[tp3Nsec:])))
	r.Accept(p)
	return used + len(p.Data), true
}

// Stats returns the counters, with the kernel's drop count brought up to
// date (PACKET_STATISTICS, which the kernel resets on each read).
func (r *AFPacket) Stats() Stats {
	r.pollKernel()
	return r.Counters.Stats()
}

func (r *AFPacket) pollKernel() {
	if s, err := r.conn.Stats(); err == nil {
		r.AddKernelDrops(uint64(s.Drops))
	}
}

// Close implements Capturer. It is idempotent, wakes a blocked
// ReadPackets (which returns ErrClosed) and unmaps the ring once no read
// uses it. Packets already returned stay readable.
func (r *AFPacket) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	r.pollKernel()
	cerr := r.conn.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	merr := unix.Munmap(r.ring)
	r.ring = nil
	if err := firstErr(cerr, merr); err != nil {
		return fmt.Errorf("capture: close AF_PACKET socket on %s: %w", r.name, err)
	}
	return nil
}
