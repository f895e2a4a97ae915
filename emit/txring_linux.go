package emit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"unsafe"

	"github.com/shadowcopy/tcpcopy/internal/linklayer"
	"golang.org/x/sys/unix"
)

// txRing is the PACKET_TX_RING of an AFPacket (packet(7) and the kernel's
// Documentation/networking/packet_mmap.rst). Its frames are shared with the
// kernel, which owns a frame from the moment its status is
// TP_STATUS_SEND_REQUEST until it sets it back to TP_STATUS_AVAILABLE, when
// the skb built on it is freed (tpacket_destruct_skb). On send() the kernel
// walks the ring from its own head and sends frames while their status is
// SEND_REQUEST (tpacket_snd): frames are filled in ring order and the
// kernel's head follows tail. It is not safe for concurrent use; AFPacket
// serializes.
type txRing struct {
	fd   int    // out of the netpoller, as AFPacket.fd
	mem  []byte // the mapping
	offs []int  // offset of each frame in mem
	lens []int  // datagram length of each queued frame
	room int    // largest Ethernet frame a frame takes: fits it, the MTU and hdr_len

	// Frames tail, tail+1, ... (queued of them) are filled and not yet
	// counted; the unflushed last of them were filled since the last
	// flush.
	head, tail, queued, unflushed int
	// stuck: the kernel did not take every frame at the last flush of
	// this Emit; they are offered again at the next Emit.
	stuck bool
	// broken: the kernel stopped at a frame it refused as malformed
	// (TP_STATUS_WRONG_FORMAT), and will never send past it.
	broken bool

	errno unix.Errno // of the last flush
}

// Offsets in a TPACKET_V2 frame: struct tpacket2_hdr, then at txFrameHdr
// a struct virtio_net_hdr (PACKET_VNET_HDR), then the Ethernet frame.
const (
	tp2Status   = 0
	tp2Len      = 4
	vnetHdrLen  = txFrameHdr + 2 // virtio_net_hdr.hdr_len
	vnetLen     = 10             // sizeof(struct virtio_net_hdr)
	txFrameData = txFrameHdr + vnetLen
)

// Statuses the kernel owns; the rest (TP_STATUS_AVAILABLE and the
// timestamp bits the destructor may add) mean the frame is ours.
const tpKernel = unix.TP_STATUS_SEND_REQUEST | unix.TP_STATUS_SENDING | unix.TP_STATUS_WRONG_FORMAT

// newTXRing opens a second AF_PACKET socket on ifi with a TX ring of at
// least c.TXRing frames.
func newTXRing(c *AFPacketConfig, ifi *net.Interface) (*txRing, error) {
	frameSize := c.TXFrameSize
	if frameSize == 0 {
		frameSize = (txFrameData + linklayer.EthernetLen + ifi.MTU + txFrameAlign - 1) &^ (txFrameAlign - 1)
		frameSize = max(frameSize, minTXFrame)
	}
	if frameSize > maxTXFrame {
		return nil, fmt.Errorf("emit: AF_PACKET TX ring on %s: MTU %d needs frames over %d bytes", c.Interface, ifi.MTU, maxTXFrame)
	}
	blockSize, blocks, perBlock := txGeometry(c.TXRing, frameSize, unix.Getpagesize())
	fd, err := openPacket(ifi.Index, c)
	if err != nil {
		return nil, err
	}
	r := &txRing{fd: fd, room: min(frameSize-txFrameData, linklayer.EthernetLen+ifi.MTU, 0xffff)}
	if err := r.setup(blockSize, blocks, frameSize); err != nil {
		r.close()
		return nil, fmt.Errorf("emit: AF_PACKET TX ring on %s: %w", c.Interface, err)
	}
	r.offs = make([]int, blocks*perBlock)
	for i := range r.offs {
		r.offs[i] = i/perBlock*blockSize + i%perBlock*frameSize
	}
	r.lens = make([]int, len(r.offs))
	return r, nil
}

// txGeometry lays out frames of frameSize bytes in blocks of a power of two
// pages (what the kernel allocates for a block), doubled while more than an
// eighth of a block would be left over, up to 128 KiB. It returns the block
// size, the number of blocks for at least frames frames, and the frames in
// a block.
func txGeometry(frames, frameSize, page int) (blockSize, blocks, perBlock int) {
	blockSize = page
	for blockSize < frameSize {
		blockSize *= 2
	}
	for blockSize < 128<<10 && blockSize%frameSize*8 > blockSize {
		blockSize *= 2
	}
	perBlock = blockSize / frameSize
	blocks = (frames + perBlock - 1) / perBlock
	return blockSize, blocks, perBlock
}

func (r *txRing) setup(blockSize, blocks, frameSize int) error {
	fd := r.fd
	// PACKET_LOSS stays off: with it the kernel skips a malformed frame
	// silently, and it could not be counted. Virtio-net headers let each
	// frame say that the kernel copies it whole into the skb (hdr_len)
	// rather than attach the ring's page: a veth into another namespace
	// would copy each such skb into a new page (skb_orphan_frags), and a
	// small frame is cheaper to copy than to map.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fmt.Errorf("enable virtio-net headers: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return fmt.Errorf("select TPACKET_V2: %w", err)
	}
	req := unix.TpacketReq{
		Block_size: uint32(blockSize),
		Block_nr:   uint32(blocks),
		Frame_size: uint32(frameSize),
		Frame_nr:   uint32(blockSize / frameSize * blocks),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return fmt.Errorf("set up %d frames of %d bytes in %d-byte blocks: %w", req.Frame_nr, frameSize, blockSize, err)
	}
	var err error
	if r.mem, err = unix.Mmap(fd, 0, blockSize*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("map the ring: %w", err)
	}
	return nil
}

// status points at the tp_status of frame i. The kernel reads and writes it
// with barriers around (__packet_get_status, __packet_set_status);
// sequentially consistent atomics give the same order on our side.
func (r *txRing) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[r.offs[i]+tp2Status]))
}

// free reports whether the frame at head can be filled.
func (r *txRing) free() bool {
	return r.queued < len(r.offs) && atomic.LoadUint32(r.status(r.head))&tpKernel == 0
}

// put fills the frame at head, which must be free, with an Ethernet header
// and p, and asks the kernel to send it.
func (r *txRing) put(p []byte, dst, src *[6]byte) {
	f := r.mem[r.offs[r.head]:]
	eth := f[txFrameData : txFrameData+linklayer.EthernetLen]
	linklayer.PutEthernet(eth, dst[:], src[:], linklayer.EtherTypeOf(p))
	copy(f[txFrameData+linklayer.EthernetLen:], p)
	n := linklayer.EthernetLen + len(p)
	// No offloads (flags 0, VIRTIO_NET_HDR_GSO_NONE); hdr_len: copy the
	// whole frame into the skb's linear part (tpacket_fill_skb).
	clear(f[txFrameHdr:txFrameData])
	binary.NativeEndian.PutUint16(f[vnetHdrLen:], uint16(n))
	binary.NativeEndian.PutUint32(f[tp2Len:], uint32(vnetLen+n))
	atomic.StoreUint32(r.status(r.head), unix.TP_STATUS_SEND_REQUEST)
	r.lens[r.head] = len(p)
	r.head = r.next(r.head)
	r.queued++
	r.unflushed++
}

// due reports whether a flush may send something: there are new frames, or
// frames the kernel has not refused during this Emit.
func (r *txRing) due() bool {
	return r.unflushed > 0 || r.queued > 0 && !r.stuck
}

func (r *txRing) next(i int) int {
	if i++; i == len(r.offs) {
		return 0
	}
	return i
}

// flush asks the kernel to send the frames it has been given: one
// send(fd, NULL, 0, MSG_DONTWAIT). A frame the kernel cannot take now
// (full send buffer or device queue, interface down) keeps its status and
// goes with a later flush.
func (r *txRing) flush() {
	r.unflushed = 0
	for range 3 {
		_, _, r.errno = unix.Syscall6(unix.SYS_SENDTO, uintptr(r.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		if r.errno != unix.EINTR {
			return
		}
	}
}

// reason is the drop reason for a frame the last flush left behind or
// refused. A send that runs out of send buffer after taking some frames
// reports no error (tpacket_snd).
func (r *txRing) reason() Reason {
	if r.errno == 0 {
		return NoBuffers
	}
	return reasonOf(r.errno)
}

// take reports the state of the oldest queued frame: taken by the kernel
// (sent or on its way: count it as sent), still waiting, or refused as
// malformed.
func (r *txRing) take() (taken, malformed bool) {
	st := atomic.LoadUint32(r.status(r.tail))
	switch {
	case st&unix.TP_STATUS_SEND_REQUEST != 0:
		return false, false
	case st&unix.TP_STATUS_WRONG_FORMAT != 0:
		return false, true
	}
	return true, false
}

// pop drops the oldest queued frame from the queue and returns its
// Ethernet frame.
func (r *txRing) pop() []byte {
	off := r.offs[r.tail] + txFrameData
	f := r.mem[off : off+linklayer.EthernetLen+r.lens[r.tail]]
	r.tail = r.next(r.tail)
	r.queued--
	return f
}

// close unmaps the ring and closes its socket.
func (r *txRing) close() error {
	var errs []error
	if r.mem != nil {
		if err := unix.Munmap(r.mem); err != nil {
			errs = append(errs, fmt.Errorf("unmap the TX ring: %w", err))
		}
		r.mem = nil
	}
	if r.fd >= 0 {
		if err := unix.Close(r.fd); err != nil {
			errs = append(errs, fmt.Errorf("close the TX ring socket: %w", err))
		}
		r.fd = -1
	}
	return errors.Join(errs...)
}
