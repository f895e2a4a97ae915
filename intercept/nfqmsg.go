package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// The netlink and nfnetlink_queue wire format (linux/netlink.h,
// linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_queue.h). It is
// the kernel's ABI, spelled out here (x/sys has none of the queue's names)
// so the parser builds and is tested on every platform. Netlink headers are
// in host byte order; nfgenmsg's res_id and the queue's attribute payloads
// are big-endian.
const (
	nlmsgHdrLen = 16 // struct nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32
	nfgenLen    = 4  // struct nfgenmsg: family u8, version u8, res_id be16
	nlaHdrLen   = 4  // struct nlattr: len u16, type u16

	nlmsgNoop    = 1
	nlmsgError   = 2
	nlmsgDone    = 3
	nlmsgOverrun = 4
	nlmFRequest  = 0x1
	nlmFAck      = 0x4
	nlaTypeMask  = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

	nfnlSubsysQueue    = 3
	nfqMsgPacket       = nfnlSubsysQueue << 8 // NFQNL_MSG_PACKET is 0
	nfqMsgVerdict      = nfnlSubsysQueue<<8 | 1
	nfqMsgConfig       = nfnlSubsysQueue<<8 | 2
	nfqMsgVerdictBatch = nfnlSubsysQueue<<8 | 3

	nfqaPacketHdr  = 1  // struct nfqnl_msg_packet_hdr: packet_id be32, hw_protocol be16, hook u8
	nfqaVerdictHdr = 2  // struct nfqnl_msg_verdict_hdr: verdict be32, id be32
	nfqaTimestamp  = 4  // struct nfqnl_msg_packet_timestamp: sec be64, usec be64
	nfqaPayload    = 10 // the packet from its network header, up to the copy range
	nfqaCapLen     = 13 // be32 length of the whole packet, only when the payload is cut

	nfqaCfgCmd         = 1 // struct nfqnl_msg_config_cmd: command u8, pad u8, pf be16
	nfqaCfgParams      = 2 // struct nfqnl_msg_config_params (packed): copy_range be32, copy_mode u8
	nfqaCfgQueueMaxlen = 3 // be32
	nfqaCfgMask        = 4 // be32
	nfqaCfgFlags       = 5 // be32

	nfqCfgCmdBind   = 1
	nfqCopyPacket   = 2
	nfqCfgFFailOpen = 1

	nfDrop   = 0
	nfAccept = 1

	verdictMsgLen = nlmsgHdrLen + nfgenLen + nlaHdrLen + 8
)

// nfqCounters backs NFQueueStats.
type nfqCounters struct {
	received, reported, passed, undecodable, verdictBatches, verdictErrors, receiveErrors atomic.Uint64
}

func (c *nfqCounters) stats() NFQueueStats {
	return NFQueueStats{
		Received:       c.received.Load(),
		Reported:       c.reported.Load(),
		Passed:         c.passed.Load(),
		Undecodable:    c.undecodable.Load(),
		VerdictBatches: c.verdictBatches.Load(),
		VerdictErrors:  c.verdictErrors.Load(),
		ReceiveErrors:  c.receiveErrors.Load(),
	}
}

// nfqReader is the state of the one goroutine that reads an NFQUEUE
// socket: it parses the datagrams one recvmmsg returned, decodes each
// queued packet in place, and at flush sends the batch's verdicts and hands
// the reportable packets to report. Its slices are reused from batch to
// batch, so in steady state it does not allocate. Not safe for concurrent
// use.
type nfqReader struct {
	queue  uint16
	batch  int
	pass   []netip.Prefix
	c      *nfqCounters
	log    *slog.Logger
	now    func() time.Time
	send   func([]byte) error // writes verdict messages to the socket
	report func([]capture.Packet)

	pkts   []capture.Packet // to report; their Data views the receive buffers
	accept []uint32         // ids to ACCEPT
	maxID  uint32           // highest id in pkts
	out    []byte           // verdict messages
	seq    uint32
	clock  time.Time // now(), read once per batch when needed

	cfgSeq uint32
	cfgErr error // the kernel refused the configuration: Run fails

	// This batch's counts, added to c at flush, and its last verdict error.
	received, passed, undecodable, rxErrors, vErrors uint64
	vErr                                             error
}

func newNFQReader(cfg *NFQueueConfig, c *nfqCounters, log *slog.Logger, now func() time.Time, send func([]byte) error, report func([]capture.Packet)) *nfqReader {
	return &nfqReader{
		queue: cfg.Queue, batch: cfg.Batch, pass: cfg.PassList, c: c, log: log, now: now, send: send, report: report,
		pkts:   make([]capture.Packet, 0, cfg.Batch),
		accept: make([]uint32, 0, cfg.Batch),
		out:    make([]byte, 0, (cfg.Batch+1)*verdictMsgLen),
	}
}

// datagram parses every netlink message of one datagram (d stays valid
// until the next recvmmsg: the packets reported view it). truncated is
// recvmmsg's MSG_TRUNC: the kernel's message did not fit the buffer.
func (r *nfqReader) datagram(d []byte, truncated bool) {
	for len(d) > 0 {
		var ok bool
		if d, ok = r.message(d); !ok {
			r.rxErrors++
			return
		}
		if len(r.pkts) == r.batch {
			r.flush()
		}
	}
	if truncated {
		r.rxErrors++ // it ended at a message boundary; the rest is lost
	}
}

// message parses the netlink message at the start of d and returns what
// follows it; ok is false when d does not hold a whole message.
func (r *nfqReader) message(d []byte) (rest []byte, ok bool) {
	ne := binary.NativeEndian
	if len(d) < nlmsgHdrLen {
		return nil, false
	}
	l := int(ne.Uint32(d))
	if l < nlmsgHdrLen || l > len(d) {
		return nil, false
	}
	typ := ne.Uint16(d[4:])
	m := d[nlmsgHdrLen:l]
	if l = nlAlign(l); l > len(d) {
		l = len(d) // the last message needs no padding
	}
	switch typ {
	case nfqMsgPacket:
		r.packet(m)
	case nlmsgError:
		r.ack(m)
	case nlmsgOverrun:
		r.rxErrors++
	case nlmsgNoop, nlmsgDone:
	}
	return d[l:], true
}

// packet handles one NFQNL_MSG_PACKET (nfqnl_build_packet_message): an
// nfgenmsg, then attributes, NFQA_PACKET_HDR first and NFQA_PAYLOAD last.
func (r *nfqReader) packet(m []byte) {
	if len(m) < nfgenLen {
		r.rxErrors++
		return
	}
	var (
		id, capLen   uint32
		hasID, bad   bool
		payload      []byte
		sec, usec    uint64
		hasTimestamp bool
	)
	be := binary.BigEndian
	for a := m[nfgenLen:]; len(a) > 0; {
		if len(a) < nlaHdrLen {
			bad = true
			break
		}
		l := int(binary.NativeEndian.Uint16(a))
		if l < nlaHdrLen || l > len(a) {
			bad = true
			break
		}
		v := a[nlaHdrLen:l]
		switch binary.NativeEndian.Uint16(a[2:]) & nlaTypeMask {
		case nfqaPacketHdr:
			if len(v) >= 4 {
				id, hasID = be.Uint32(v), true
			}
		case nfqaPayload:
			payload = v
		case nfqaTimestamp:
			if len(v) >= 16 {
				sec, usec, hasTimestamp = be.Uint64(v), be.Uint64(v[8:]), true
			}
		case nfqaCapLen:
			if len(v) >= 4 {
				capLen = be.Uint32(v)
			}
		}
		a = a[min(nlAlign(l), len(a)):]
	}
	if !hasID {
		// No id, no verdict: a later batch DROP covers the packet.
		r.rxErrors++
		return
	}
	r.received++
	n := len(r.pkts)
	r.pkts = r.pkts[:n+1]
	p := &r.pkts[n]
	var err error
	switch {
	case bad:
		err = errBadAttrs
	case capLen > uint32(len(payload)):
		// Longer than the copy range (NFQNL_MAX_COPY_RANGE, 65531 bytes):
		// the headers are there, the payload is cut.
		err = p.DecodeHeaders(payload)
	default:
		err = p.Decode(payload)
	}
	if err != nil {
		r.pkts = r.pkts[:n]
		r.undecodable++
		r.accept = append(r.accept, id)
		return
	}
	if passes(r.pass, p.Dst()) {
		r.pkts = r.pkts[:n]
		r.passed++
		r.accept = append(r.accept, id)
		return
	}
	p.Dir = capture.DirUnknown
	if hasTimestamp {
		// Only packets met before routing carry one (the kernel's input
		// hooks); those queued on OUTPUT get the time they were read.
		p.Time = time.Unix(int64(sec), int64(usec)*1e3)
	} else {
		if r.clock.IsZero() {
			r.clock = r.now()
		}
		p.Time = r.clock
	}
	if n == 0 || int32(id-r.maxID) > 0 { // ids wrap (nfq_id_after)
		r.maxID = id
	}
}

var errBadAttrs = errors.New("intercept: malformed NFQUEUE packet attributes")

// ack handles an NLMSG_ERROR: struct nlmsgerr, an errno (negative, zero
// for an acknowledgement) and the header of the message it answers.
func (r *nfqReader) ack(m []byte) {
	ne := binary.NativeEndian
	if len(m) < 4+nlmsgHdrLen {
		r.rxErrors++
		return
	}
	errno := -int32(ne.Uint32(m))
	typ, seq := ne.Uint16(m[4+4:]), ne.Uint32(m[4+8:])
	if typ == nfqMsgConfig && seq == r.cfgSeq && r.cfgSeq != 0 {
		if errno != 0 {
			r.cfgErr = syscall.Errno(errno)
		}
		return
	}
	if errno == 0 {
		return
	}
	// We send configuration and verdicts only, and verdicts ask for no
	// acknowledgement: this is a verdict the kernel refused (ENOENT for an
	// id it does not hold).
	r.vErrors++
	r.vErr = syscall.Errno(errno)
}

// flush sends the batch's verdicts, the ACCEPTs first and then one DROP
// for the highest id reported, in one message, hands the packets to
// report and adds the batch's counts.
func (r *nfqReader) flush() {
	out := r.out[:0]
	for _, id := range r.accept {
		out = r.appendVerdict(out, nfqMsgVerdict, nfAccept, id)
	}
	var batches uint64
	if len(r.pkts) > 0 {
		out = r.appendVerdict(out, nfqMsgVerdictBatch, nfDrop, r.maxID)
		batches = 1
	}
	r.out = out
	if len(out) > 0 {
		if err := r.send(out); err != nil {
			r.vErrors += uint64(len(out) / verdictMsgLen)
			r.vErr = err
		}
	}
	if len(r.pkts) > 0 {
		r.report(r.pkts)
		r.c.reported.Add(uint64(len(r.pkts)))
	}
	add := func(c *atomic.Uint64, n uint64) uint64 {
		if n == 0 {
			return 0
		}
		return c.Add(n)
	}
	add(&r.c.received, r.received)
	add(&r.c.passed, r.passed)
	add(&r.c.undecodable, r.undecodable)
	add(&r.c.verdictBatches, batches)
	// Rate-limited: a log line each time a count passes a power of two.
	if n := add(&r.c.verdictErrors, r.vErrors); n != 0 && bits.Len64(n) != bits.Len64(n-r.vErrors) {
		r.log.Warn("intercept: NFQUEUE verdicts not taken", "queue", r.queue, "err", r.vErr, "count", n)
	}
	if n := add(&r.c.receiveErrors, r.rxErrors); n != 0 && bits.Len64(n) != bits.Len64(n-r.rxErrors) {
		r.log.Warn("intercept: NFQUEUE messages lost to a socket overrun or malformed", "queue", r.queue, "count", n)
	}
	r.pkts, r.accept = r.pkts[:0], r.accept[:0]
	r.clock = time.Time{}
	r.received, r.passed, r.undecodable, r.rxErrors, r.vErrors, r.vErr = 0, 0, 0, 0, 0, nil
}

// appendVerdict appends an NFQNL_MSG_VERDICT or NFQNL_MSG_VERDICT_BATCH
// (nfqnl_recv_verdict, nfqnl_recv_verdict_batch) with no acknowledgement
// asked: the kernel answers only a refusal.
func (r *nfqReader) appendVerdict(b []byte, typ uint16, verdict, id uint32) []byte {
	r.seq++
	b = appendNlmsgHdr(b, verdictMsgLen, typ, nlmFRequest, r.seq, r.queue)
	b = appendAttrHdr(b, 8, nfqaVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, verdict)
	return binary.BigEndian.AppendUint32(b, id)
}

// configMessage returns the NFQNL_MSG_CONFIG that binds the queue and sets
// it up in one go (nfqnl_recv_config applies the command, then the
// parameters, the length and the flags), with an acknowledgement asked.
func (r *nfqReader) configMessage(maxLen uint32, failOpen bool) []byte {
	r.seq++
	r.cfgSeq = r.seq
	n := nlmsgHdrLen + nfgenLen + (nlaHdrLen + 4) + (nlaHdrLen + 8) + (nlaHdrLen + 4)
	if failOpen {
		n += 2 * (nlaHdrLen + 4)
	}
	b := appendNlmsgHdr(make([]byte, 0, n), n, nfqMsgConfig, nlmFRequest|nlmFAck, r.cfgSeq, r.queue)
	b = appendAttrHdr(b, 4, nfqaCfgCmd)
	b = append(b, nfqCfgCmdBind, 0, 0, 0) // pf: ignored since Linux 3.8
	b = appendAttrHdr(b, 5, nfqaCfgParams)
	b = binary.BigEndian.AppendUint32(b, 0xffff) // the kernel caps it at 65531
	b = append(b, nfqCopyPacket, 0, 0, 0)        // and 3 bytes of padding
	b = appendAttrHdr(b, 4, nfqaCfgQueueMaxlen)
	b = binary.BigEndian.AppendUint32(b, maxLen)
	if failOpen {
		b = appendAttrHdr(b, 4, nfqaCfgMask)
		b = binary.BigEndian.AppendUint32(b, nfqCfgFFailOpen)
		b = appendAttrHdr(b, 4, nfqaCfgFlags)
		b = binary.BigEndian.AppendUint32(b, nfqCfgFFailOpen)
	}
	return b
}

func appendNlmsgHdr(b []byte, length int, typ, flags uint16, seq uint32, queue uint16) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, uint32(length))
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)                      // port id: the kernel fills in ours
	b = append(b, 0, 0)                            // AF_UNSPEC, NFNETLINK_V0
	return binary.BigEndian.AppendUint16(b, queue) // res_id
}

func appendAttrHdr(b []byte, payload int, typ uint16) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlaHdrLen+payload))
	return binary.NativeEndian.AppendUint16(b, typ)
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// errNFQueueConfig wraps the kernel's refusal of the queue's configuration.
func errNFQueueConfig(queue uint16, err error) error {
	return fmt.Errorf("intercept: bind NFQUEUE %d: %w", queue, err)
}
