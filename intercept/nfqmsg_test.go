package intercept

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/shadowcopy/tcpcopy/capture"
)

// The datagrams below are built by hand from the layout of
// linux/netfilter/nfnetlink_queue.h and nfqnl_build_packet_message (an
// nfgenmsg, NFQA_PACKET_HDR first, NFQA_PAYLOAD last), not by the code under
// test.

// nfqAttr is one attribute of a crafted message.
type nfqAttr struct {
	typ uint16
	val []byte
}

// appendNlmsg appends a netlink message of typ with body, padded to 4 bytes.
func appendNlmsg(b []byte, typ uint16, seq uint32, body []byte) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, uint32(nlmsgHdrLen+len(body)))
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, 0)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// packetBody is the body of an NFQNL_MSG_PACKET for queue 7.
func packetBody(attrs ...nfqAttr) []byte {
	b := []byte{2, 0, 0, 7} // AF_INET, NFNETLINK_V0, res_id 7
	for _, a := range attrs {
		b = binary.NativeEndian.AppendUint16(b, uint16(nlaHdrLen+len(a.val)))
		b = binary.NativeEndian.AppendUint16(b, a.typ)
		b = append(b, a.val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func hdrAttr(id uint32) nfqAttr {
	v := binary.BigEndian.AppendUint32(nil, id)
	return nfqAttr{nfqaPacketHdr, append(v, 0x08, 0x00, 3)} // ETH_P_IP, NF_INET_LOCAL_OUT
}

func payloadAttr(p []byte) nfqAttr { return nfqAttr{nfqaPayload, p} }

func timestampAttr(sec, usec uint64) nfqAttr {
	return nfqAttr{nfqaTimestamp, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, sec), usec)}
}

// appendPacket appends an NFQNL_MSG_PACKET with the usual metadata (out
// interface, skb info) around the header and payload.
func appendPacket(b []byte, id uint32, payload []byte, extra ...nfqAttr) []byte {
	attrs := []nfqAttr{hdrAttr(id), {6, []byte{0, 0, 0, 1}}} // NFQA_IFINDEX_OUTDEV lo
	attrs = append(attrs, extra...)
	attrs = append(attrs, nfqAttr{14, []byte{0, 0, 0, 1}}, payloadAttr(payload)) // NFQA_SKB_INFO
	return appendNlmsg(b, nfqMsgPacket, 0, packetBody(attrs...))
}

// appendError appends an NLMSG_ERROR answering a message of typ and seq.
func appendError(b []byte, errno int32, typ uint16, seq uint32) []byte {
	body := binary.NativeEndian.AppendUint32(nil, uint32(-errno))
	body = appendNlmsg(body, typ, seq, nil)
	return appendNlmsg(b, nlmsgError, seq, body)
}

// verdict is one decoded verdict message.
type verdict struct {
	typ     uint16
	verdict uint32
	id      uint32
}

// nfqHarness is an nfqReader without a socket: it records what would be
// sent and what is reported.
type nfqHarness struct {
	r        *nfqReader
	c        nfqCounters
	sent     [][]byte
	sendErr  error
	reports  [][]capture.Packet
	now      time.Time
	batch    int
	noRecord bool // for the allocation test
}

func newHarness(t testing.TB, batch int, pass ...netip.Prefix) *nfqHarness {
	h := &nfqHarness{now: time.Unix(1700000000, 0), batch: batch}
	cfg, log, err := (&NFQueueConfig{Queue: 7, Batch: batch, PassList: pass}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	h.r = newNFQReader(&cfg, &h.c, log, func() time.Time { return h.now }, h.send, h.report)
	return h
}

func (h *nfqHarness) send(b []byte) error {
	if !h.noRecord {
		h.sent = append(h.sent, bytes.Clone(b))
	}
	return h.sendErr
}

func (h *nfqHarness) report(pkts []capture.Packet) {
	if h.noRecord {
		return
	}
	var cp []capture.Packet
	for _, p := range pkts {
		p.Data = bytes.Clone(p.Data)
		cp = append(cp, p)
	}
	h.reports = append(h.reports, cp)
}

// run feeds datagrams and flushes after each, as Run does after a read.
func (h *nfqHarness) run(datagrams ...[]byte) {
	for _, d := range datagrams {
		h.r.datagram(d, false)
		h.r.flush()
	}
}

// verdicts decodes every verdict message sent so far.
func (h *nfqHarness) verdicts(t *testing.T) []verdict {
	t.Helper()
	var vs []verdict
	for _, b := range h.sent {
		for len(b) > 0 {
			if len(b) < verdictMsgLen {
				t.Fatalf("short verdict message %x", b)
			}
			ne := binary.NativeEndian
			if l := ne.Uint32(b); l != verdictMsgLen || ne.Uint16(b[6:]) != nlmFRequest {
				t.Fatalf("verdict header %x", b[:nlmsgHdrLen])
			}
			if !bytes.Equal(b[16:20], []byte{0, 0, 0, 7}) || ne.Uint16(b[20:]) != 12 || ne.Uint16(b[22:]) != nfqaVerdictHdr {
				t.Fatalf("verdict body %x", b[16:verdictMsgLen])
			}
			vs = append(vs, verdict{ne.Uint16(b[4:]), binary.BigEndian.Uint32(b[24:]), binary.BigEndian.Uint32(b[28:])})
			b = b[verdictMsgLen:]
		}
	}
	return vs
}

func (h *nfqHarness) reported() []capture.Packet {
	var all []capture.Packet
	for _, r := range h.reports {
		all = append(all, r...)
	}
	return all
}

func TestNFQueueParseDatagram(t *testing.T) {
	pass := netip.MustParsePrefix("198.18.0.0/24")
	h := newHarness(t, 64, pass)
	v4 := synAck4(t) // to 198.18.0.1: pass-listed
	v6 := data6(t)
	toOther, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: netip.MustParseAddrPort("198.51.100.1:40000"),
		Seq: 5, Ack: 6, Flags: capture.FlagACK, Window: 100, Payload: []byte("abc"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var d []byte
	d = appendPacket(d, 10, v6, timestampAttr(1600000000, 250000))
	d = appendPacket(d, 11, v4)
	d = appendPacket(d, 12, []byte{0x45, 1, 2}) // undecodable
	d = appendPacket(d, 13, toOther)
	d = appendNlmsg(d, nlmsgDone, 0, []byte{0, 0, 0, 0})
	h.run(d)

	got := h.reported()
	if len(h.reports) != 1 || len(got) != 2 {
		t.Fatalf("reports %v", h.reports)
	}
	if got[0].Src() != netip.MustParseAddr("fd00:198:18::2") || string(got[0].Payload()) != "hello world" {
		t.Errorf("first packet %v %q", got[0].Flow(), got[0].Payload())
	}
	if want := time.Unix(1600000000, 250000000); !got[0].Time.Equal(want) {
		t.Errorf("timestamp %v, want %v", got[0].Time, want)
	}
	if got[1].Dst() != netip.MustParseAddr("198.51.100.1") || string(got[1].Payload()) != "abc" || !got[1].Time.Equal(h.now) {
		t.Errorf("second packet %v %q at %v", got[1].Flow(), got[1].Payload(), got[1].Time)
	}
	if len(h.sent) != 1 {
		t.Fatalf("%d sends, want the batch's verdicts in one", len(h.sent))
	}
	want := []verdict{{nfqMsgVerdict, nfAccept, 11}, {nfqMsgVerdict, nfAccept, 12}, {nfqMsgVerdictBatch, nfDrop, 13}}
	if vs := h.verdicts(t); !equalVerdicts(vs, want) {
		t.Errorf("verdicts %v, want %v", vs, want)
	}
	st := h.c.stats()
	if st != (NFQueueStats{Received: 4, Reported: 2, Passed: 1, Undecodable: 1, VerdictBatches: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// within reports whether sub lies inside buf's memory.
func within(sub, buf []byte) bool {
	if len(sub) == 0 {
		return true
	}
	s, b := uintptr(unsafe.Pointer(unsafe.SliceData(sub))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return s >= b && s+uintptr(len(sub)) <= b+uintptr(len(buf))
}

func equalVerdicts(a, b []verdict) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNFQueueParseZeroCopy: reported packets view the datagram.
func TestNFQueueParseZeroCopy(t *testing.T) {
	var d []byte
	d = appendPacket(d, 1, synAck4(t))
	var seen []byte
	h := newHarness(t, 64)
	h.r.report = func(pkts []capture.Packet) { seen = pkts[0].Data }
	h.run(d)
	if len(seen) == 0 || !within(seen, d) {
		t.Error("the reported packet does not view the receive buffer")
	}
}

// TestNFQueueParseBatchLimit: more packets in what one read returned than
// Batch are reported (and DROPped) in batches of at most Batch.
func TestNFQueueParseBatchLimit(t *testing.T) {
	h := newHarness(t, 2)
	p := data6(t)
	var ds [][]byte
	for id := uint32(1); id <= 4; id++ {
		ds = append(ds, appendPacket(nil, id, p))
	}
	five := appendPacket(appendPacket(nil, 5, p), 6, synAck4(t))
	five = appendPacket(five, 7, p)
	for _, d := range append(ds, five) {
		h.r.datagram(d, false)
	}
	h.r.flush()
	var sizes []int
	for _, r := range h.reports {
		sizes = append(sizes, len(r))
	}
	if len(sizes) != 4 || sizes[0] != 2 || sizes[1] != 2 || sizes[2] != 2 || sizes[3] != 1 {
		t.Errorf("report sizes %v, want [2 2 2 1]", sizes)
	}
	want := []verdict{{nfqMsgVerdictBatch, nfDrop, 2}, {nfqMsgVerdictBatch, nfDrop, 4}, {nfqMsgVerdictBatch, nfDrop, 6}, {nfqMsgVerdictBatch, nfDrop, 7}}
	if vs := h.verdicts(t); !equalVerdicts(vs, want) {
		t.Errorf("verdicts %v, want %v", vs, want)
	}
	if st := h.c.stats(); st.Reported != 7 || st.VerdictBatches != 4 || st.Received != 7 {
		t.Errorf("stats %+v", st)
	}
}

// TestNFQueueParseIDWrap: the batch DROP names the latest id across the
// wrap of the kernel's 32-bit id sequence.
func TestNFQueueParseIDWrap(t *testing.T) {
	h := newHarness(t, 64)
	var d []byte
	for _, id := range []uint32{0xfffffffe, 0xffffffff, 0, 1} {
		d = appendPacket(d, id, data6(t))
	}
	h.run(d)
	if vs := h.verdicts(t); len(vs) != 1 || vs[0].id != 1 {
		t.Errorf("verdicts %v, want a batch DROP for id 1", vs)
	}
}

// TestNFQueueParseCapLen: a packet longer than the copy range arrives cut,
// with NFQA_CAP_LEN; its headers are enough to report it.
func TestNFQueueParseCapLen(t *testing.T) {
	full, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: netip.MustParseAddrPort("198.51.100.1:40000"),
		Seq: 5, Ack: 6, Flags: capture.FlagACK, Window: 100, Payload: bytes.Repeat([]byte("x"), 1000),
	})
	if err != nil {
		t.Fatal(err)
	}
	capLen := nfqAttr{nfqaCapLen, binary.BigEndian.AppendUint32(nil, uint32(len(full)))}
	h := newHarness(t, 64)
	h.run(appendPacket(nil, 3, full[:200], capLen), appendPacket(nil, 4, full[:200]))
	got := h.reported()
	if len(got) != 1 || got[0].PayloadLen() != 1000 || len(got[0].Payload()) != 160 {
		t.Fatalf("reported %v", got)
	}
	// Without NFQA_CAP_LEN a cut packet is malformed: ACCEPT.
	want := []verdict{{nfqMsgVerdictBatch, nfDrop, 3}, {nfqMsgVerdict, nfAccept, 4}}
	if vs := h.verdicts(t); !equalVerdicts(vs, want) {
		t.Errorf("verdicts %v, want %v", vs, want)
	}
	if st := h.c.stats(); st.Undecodable != 1 || st.Reported != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestNFQueueParseMalformed: truncated and garbage messages and attributes
// never panic; a packet with an id gets ACCEPT and counts as Undecodable,
// anything without one counts as ReceiveErrors.
func TestNFQueueParseMalformed(t *testing.T) {
	good := appendPacket(nil, 1, data6(t))
	le := binary.NativeEndian
	for _, tc := range []struct {
		name             string
		d                []byte
		truncated        bool
		undecodable, rxe uint64
		accept           []uint32
	}{
		{name: "empty"},
		{name: "short header", d: good[:10], rxe: 1},
		{name: "length beyond datagram", d: good[:len(good)-4], rxe: 1},
		{name: "length below header", d: le.AppendUint32(nil, 8), rxe: 1},
		{name: "no nfgenmsg", d: appendNlmsg(nil, nfqMsgPacket, 0, []byte{2, 0}), rxe: 1},
		{name: "no packet header", d: appendNlmsg(nil, nfqMsgPacket, 0, packetBody(payloadAttr(data6(t)))), rxe: 1},
		{name: "short packet header", d: appendNlmsg(nil, nfqMsgPacket, 0, packetBody(nfqAttr{nfqaPacketHdr, []byte{0, 0, 1}}, payloadAttr(data6(t)))), rxe: 1},
		{name: "no payload", d: appendNlmsg(nil, nfqMsgPacket, 0, packetBody(hdrAttr(5))), undecodable: 1, accept: []uint32{5}},
		{name: "garbage payload", d: appendPacket(nil, 6, []byte("GET / HTTP/1.1")), undecodable: 1, accept: []uint32{6}},
		{name: "attribute length below header", d: func() []byte {
			b := packetBody(hdrAttr(7))
			b = append(b, 2, 0, nfqaPayload, 0) // nla_len 2
			return appendNlmsg(nil, nfqMsgPacket, 0, b)
		}(), undecodable: 1, accept: []uint32{7}},
		{name: "attribute beyond message", d: func() []byte {
			b := packetBody(hdrAttr(8), payloadAttr(data6(t)))
			return appendNlmsg(nil, nfqMsgPacket, 0, b[:len(b)-8])
		}(), undecodable: 1, accept: []uint32{8}},
		{name: "half an attribute header", d: appendNlmsg(nil, nfqMsgPacket, 0, append(packetBody(hdrAttr(9)), 8, 0)), undecodable: 1, accept: []uint32{9}},
		{name: "short timestamp", d: appendPacket(nil, 10, data6(t), nfqAttr{nfqaTimestamp, []byte{1, 2, 3}})},
		{name: "truncated at a boundary", d: good, truncated: true, rxe: 1},
		{name: "good then garbage", d: append(bytes.Clone(good), 0xff, 0xff), rxe: 1},
		{name: "overrun message", d: appendNlmsg(nil, nlmsgOverrun, 0, nil), rxe: 1},
		{name: "unknown type", d: appendNlmsg(nil, 0x0101, 0, []byte{1, 2, 3, 4})},
		{name: "short error", d: appendNlmsg(nil, nlmsgError, 0, []byte{0xfe, 0xff, 0xff, 0xff}), rxe: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 64)
			h.r.datagram(tc.d, tc.truncated)
			h.r.flush()
			st := h.c.stats()
			if st.Undecodable != tc.undecodable || st.ReceiveErrors != tc.rxe {
				t.Errorf("stats %+v, want %d undecodable, %d receive errors", st, tc.undecodable, tc.rxe)
			}
			if st.Received != st.Reported+st.Passed+st.Undecodable {
				t.Errorf("stats %+v do not add up", st)
			}
			var accepted []uint32
			for _, v := range h.verdicts(t) {
				if v.typ == nfqMsgVerdict && v.verdict == nfAccept {
					accepted = append(accepted, v.id)
				}
			}
			if len(accepted) != len(tc.accept) || (len(accepted) > 0 && accepted[0] != tc.accept[0]) {
				t.Errorf("accepted %v, want %v", accepted, tc.accept)
			}
		})
	}
}

// TestNFQueueParseErrors: NLMSG_ERROR answers the configuration (ack or
// refusal) or refuses a verdict.
func TestNFQueueParseErrors(t *testing.T) {
	h := newHarness(t, 64)
	cfg := h.r.configMessage(8192, false)
	seq := binary.NativeEndian.Uint32(cfg[8:])
	h.run(appendError(nil, 0, nfqMsgConfig, seq))
	if h.r.cfgErr != nil {
		t.Fatalf("ack taken as %v", h.r.cfgErr)
	}
	h.run(appendError(appendError(nil, int32(syscall.ENOENT), nfqMsgVerdictBatch, 99), int32(syscall.ENOENT), nfqMsgVerdict, 100))
	if st := h.c.stats(); st.VerdictErrors != 2 || st.ReceiveErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	h.run(appendError(nil, 0, nfqMsgVerdict, 101)) // an acknowledgement nobody asked for
	h.run(appendError(nil, int32(syscall.EBUSY), nfqMsgConfig, seq))
	if !errors.Is(h.r.cfgErr, syscall.EBUSY) {
		t.Errorf("configuration error %v, want EBUSY", h.r.cfgErr)
	}
	if err := errNFQueueConfig(7, h.r.cfgErr); !strings.Contains(err.Error(), "NFQUEUE 7") {
		t.Errorf("error %q", err)
	}
	if st := h.c.stats(); st.VerdictErrors != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestNFQueueSendError: a failed send counts every verdict in it.
func TestNFQueueSendError(t *testing.T) {
	h := newHarness(t, 64)
	h.sendErr = syscall.ENOBUFS
	d := appendPacket(appendPacket(nil, 1, []byte{1}), 2, data6(t))
	h.run(d)
	if st := h.c.stats(); st.VerdictErrors != 2 || st.VerdictBatches != 1 || st.Reported != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestNFQueueConfigMessage checks the configuration against bytes written
// from nfnetlink_queue.h.
func TestNFQueueConfigMessage(t *testing.T) {
	h := newHarness(t, 64)
	h.r.seq = 41
	got := h.r.configMessage(8192, true)
	ne := binary.NativeEndian
	var want []byte
	want = ne.AppendUint32(want, 64)
	want = ne.AppendUint16(want, 0x0302) // NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_CONFIG
	want = ne.AppendUint16(want, 0x0005) // NLM_F_REQUEST | NLM_F_ACK
	want = ne.AppendUint32(want, 42)
	want = ne.AppendUint32(want, 0)
	want = append(want, 0, 0, 0, 7) // AF_UNSPEC, NFNETLINK_V0, res_id 7 big-endian
	attr := func(l, typ uint16, v ...byte) {
		want = ne.AppendUint16(want, l)
		want = ne.AppendUint16(want, typ)
		want = append(want, v...)
	}
	attr(8, 1, 1, 0, 0, 0)                   // NFQA_CFG_CMD: BIND, pf 0
	attr(9, 2, 0, 0, 0xff, 0xff, 2, 0, 0, 0) // NFQA_CFG_PARAMS: range 0xffff, NFQNL_COPY_PACKET, padding
	attr(8, 3, 0, 0, 0x20, 0)                // NFQA_CFG_QUEUE_MAXLEN 8192
	attr(8, 4, 0, 0, 0, 1)                   // NFQA_CFG_MASK FAIL_OPEN
	attr(8, 5, 0, 0, 0, 1)                   // NFQA_CFG_FLAGS FAIL_OPEN
	if !bytes.Equal(got, want) {
		t.Errorf("config\n%x\nwant\n%x", got, want)
	}
	if got := h.r.configMessage(1024, false); len(got) != 48 || ne.Uint32(got) != 48 {
		t.Errorf("config without flags: %x", got)
	}
}

// TestNFQueueParseAllocs: the parse, decode, verdict and report path of a
// read does not allocate.
func TestNFQueueParseAllocs(t *testing.T) {
	h := newHarness(t, 64, netip.MustParsePrefix("203.0.113.0/24"))
	h.noRecord = true
	var d []byte
	for id := uint32(1); id <= 8; id++ {
		d = appendPacket(d, id, data6(t), timestampAttr(1600000000, 1))
	}
	d = appendPacket(d, 9, []byte{0x45}) // undecodable: an ACCEPT
	d = appendPacket(d, 10, synAck4(t))
	h.run(d) // size the verdict buffer
	if n := testing.AllocsPerRun(100, func() {
		h.r.datagram(d, false)
		h.r.flush()
	}); n != 0 {
		t.Errorf("%v allocations per read", n)
	}
	if st := h.c.stats(); st.Reported != 102*9 || st.Undecodable != 102 { // one run to size, one to warm up, 100 counted
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkNFQueueParse(b *testing.B) {
	h := newHarness(b, 64)
	h.noRecord = true
	var ds [][]byte
	for id := uint32(1); id <= 64; id++ {
		ds = append(ds, appendPacket(nil, id, data6(b)))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, d := range ds {
			h.r.datagram(d, false)
		}
		h.r.flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ds)), "ns/pkt")
}

// FuzzNFQueueParse feeds arbitrary datagrams to the reader: no panic, the
// counters add up, every verdict message is well formed, every packet
// reported decodes and views the datagram.
func FuzzNFQueueParse(f *testing.F) {
	f.Add(appendPacket(appendPacket(nil, 1, synAck4(f), timestampAttr(1, 2)), 2, data6(f)), uint8(64))
	f.Add(appendPacket(nil, 3, []byte{0x45, 0, 0, 20}), uint8(1))
	f.Add(appendError(appendNlmsg(nil, nlmsgDone, 0, nil), -2, nfqMsgVerdict, 5), uint8(2))
	f.Add(appendNlmsg(nil, nfqMsgPacket, 0, append(packetBody(hdrAttr(4)), 3, 0, 10, 0)), uint8(3))
	f.Fuzz(func(t *testing.T, d []byte, batch uint8) {
		h := newHarness(t, int(batch%8)+1, netip.MustParsePrefix("198.18.0.0/31"))
		h.noRecord = true
		in := bytes.Clone(d)
		h.r.report = func(pkts []capture.Packet) {
			if len(pkts) == 0 || len(pkts) > h.batch {
				t.Fatalf("report of %d packets, batch %d", len(pkts), h.batch)
			}
			for i := range pkts {
				p := &pkts[i]
				var q capture.Packet
				if err := q.DecodeHeaders(p.Data); err != nil {
					t.Fatalf("reported packet does not decode: %v", err)
				}
				if !within(p.Data, in) {
					t.Fatal("reported packet outside the datagram")
				}
			}
		}
		h.noRecord = false
		h.r.datagram(in, batch&0x80 != 0)
		h.r.flush()
		h.verdicts(t)
		st := h.c.stats()
		if st.Received != st.Reported+st.Passed+st.Undecodable {
			t.Fatalf("stats %+v do not add up", st)
		}
	})
}
