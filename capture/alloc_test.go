package capture_test

import (
	"net/netip"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Sinks keep the compiler from discarding the calls measured below.
var (
	sinkInt   int
	sinkBool  bool
	sinkU16   uint16
	sinkU32   uint32
	sinkU64   uint64
	sinkSeq   capture.Seq
	sinkAddr  netip.Addr
	sinkEP    capture.Endpoint
	sinkFlow  capture.Flow
	sinkBytes []byte
	sinkErr   error
)

// Decoding, reading and rewriting a packet is the per-packet path: none of
// it may allocate (house style: zero allocations per packet is a test).
func TestZeroAllocs(t *testing.T) {
	for _, base := range rewriteBases(t) {
		b := base.b
		bad := with(b, func(b []byte) { b[0] = 0x75 })
		p := decoded(t, clone(b))
		v6 := p.IsIPv6()
		hdrs := p.IPHeaderLen() + p.DataOffset()
		addrs := [2]netip.Addr{alt4.Addr(), srv4.Addr()}
		wrong := alt6.Addr()
		if v6 {
			addrs = [2]netip.Addr{alt6.Addr(), srv6.Addr()}
			wrong = alt4.Addr()
		}
		i := 0
		for _, tc := range []struct {
			name string
			f    func()
		}{
			{"Decode", func() { sinkErr = p.Decode(p.Data) }},
			{"Decode into a fresh Packet", func() {
				var q capture.Packet
				sinkErr = q.Decode(b)
			}},
			{"DecodeHeaders", func() {
				var q capture.Packet
				sinkErr = q.DecodeHeaders(b[:hdrs])
			}},
			{"Decode error", func() {
				var q capture.Packet
				sinkErr = q.Decode(bad)
			}},
			{"DecodeHeaders error", func() {
				var q capture.Packet
				sinkErr = q.DecodeHeaders(b[:10])
			}},
			{"IsIPv6", func() { sinkBool = p.IsIPv6() }},
			{"IPHeaderLen", func() { sinkInt = p.IPHeaderLen() }},
			{"TCP", func() { sinkBytes = p.TCP() }},
			{"Src", func() { sinkAddr = p.Src() }},
			{"Dst", func() { sinkAddr = p.Dst() }},
			{"SrcPort", func() { sinkU16 = p.SrcPort() }},
			{"DstPort", func() { sinkU16 = p.DstPort() }},
			{"Seq", func() { sinkSeq = p.Seq() }},
			{"Ack", func() { sinkSeq = p.Ack() }},
			{"Flags", func() { sinkU16 = uint16(p.Flags()) }},
			{"HasFlags", func() { sinkBool = p.HasFlags(capture.FlagACK) }},
			{"Window", func() { sinkU16 = p.Window() }},
			{"DataOffset", func() { sinkInt = p.DataOffset() }},
			{"SrcEndpoint", func() { sinkEP = p.SrcEndpoint() }},
			{"DstEndpoint", func() { sinkEP = p.DstEndpoint() }},
			{"Flow", func() { sinkFlow = p.Flow() }},
			{"Flow.Reverse", func() { sinkFlow = p.Flow().Reverse() }},
			{"Flow map key", func() { sinkBool = map[capture.Flow]bool{}[p.Flow()] }},
			{"Endpoint.Hash", func() { sinkU64 = p.SrcEndpoint().Hash() }},
			{"Endpoint.AddrPort", func() { sinkAddr = p.SrcEndpoint().AddrPort().Addr() }},
			{"Options", func() { sinkBytes = p.Options() }},
			{"Payload", func() { sinkBytes = p.Payload() }},
			{"PayloadLen", func() { sinkInt = p.PayloadLen() }},
			{"SeqLen", func() { sinkU32 = p.SeqLen() }},
			{"EndSeq", func() { sinkSeq = p.EndSeq() }},
			{"MSS", func() { sinkU16, sinkBool = p.MSS() }},
			{"WindowScale", func() { _, sinkBool = p.WindowScale() }},
			{"SACKPermitted", func() { sinkBool = p.SACKPermitted() }},
			{"Timestamps", func() { sinkU32, _, sinkBool = p.Timestamps() }},
			{"ChecksumsValid", func() { sinkBool = p.ChecksumsValid() }},
			{"SetSrc", func() { i++; sinkErr = p.SetSrc(addrs[i%2]) }},
			{"SetDst", func() { i++; sinkErr = p.SetDst(addrs[i%2]) }},
			{"SetDst wrong family", func() { sinkErr = p.SetDst(wrong) }},
			{"SetSrcPort", func() { i++; p.SetSrcPort(uint16(i)) }},
			{"SetDstPort", func() { i++; p.SetDstPort(uint16(i)) }},
			{"SetSeq", func() { i++; p.SetSeq(capture.Seq(i)) }},
			{"SetAck", func() { i++; p.SetAck(capture.Seq(i)) }},
			{"SetFlags", func() { i++; p.SetFlags(uint8(i)) }},
			{"SetWindow", func() { i++; p.SetWindow(uint16(i)) }},
			{"SetMSS", func() { i++; sinkBool = p.SetMSS(uint16(i)) }},
			{"SetTimestamps", func() { i++; sinkBool = p.SetTimestamps(uint32(i), uint32(i)) }},
			{"ComputeChecksums", func() { p.ComputeChecksums() }},
		} {
			if n := testing.AllocsPerRun(100, tc.f); n != 0 {
				t.Errorf("%s: %s allocates %v times per call", base.name, tc.name, n)
			}
		}
		checkAgainstReference(t, base.name+" after the allocation runs", p)
	}
}

// Reading from a Memory capturer in steady state allocates nothing either:
// the packets alias the queued copies.
func TestMemoryReadZeroAllocs(t *testing.T) {
	m := capture.NewMemory()
	b := rewriteBases(t)[2].b
	for range 300 {
		m.Push(testTime, b)
	}
	pkts := make([]capture.Packet, 2)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := m.ReadPackets(pkts); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadPackets allocates %v times per call", n)
	}
}
