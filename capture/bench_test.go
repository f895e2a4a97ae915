package capture_test

import (
	"bytes"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

type benchPacket struct {
	name string
	b    []byte
}

// benchPackets are a timestamped ACK with a small (64-byte) and a
// 1400-byte payload, in both families.
func benchPackets(b *testing.B) []benchPacket {
	small, large := bytes.Repeat([]byte{'s'}, 64), bytes.Repeat([]byte{'l'}, 1400)
	seg := func(v6 bool, payload []byte) []byte {
		s := capture.Segment{Src: cli4, Dst: srv4, Seq: 1, Ack: 2, Flags: capture.FlagACK | capture.FlagPSH, Window: 501,
			Options: capture.AppendTimestamps(nil, 1, 2), Payload: payload}
		if v6 {
			s.Src, s.Dst = cli6, srv6
		}
		return segment(b, s)
	}
	return []benchPacket{
		{"v4/small", seg(false, small)},
		{"v4/1400", seg(false, large)},
		{"v6/small", seg(true, small)},
		{"v6/1400", seg(true, large)},
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bp := range benchPackets(b) {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.b)))
			var p capture.Packet
			for b.Loop() {
				if err := p.Decode(bp.b); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRewrite is what the copier does to each packet: point it at the
// target and fix up the ack and timestamps, checksums adjusted in place.
func BenchmarkRewrite(b *testing.B) {
	for _, bp := range benchPackets(b) {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			p := decoded(b, clone(bp.b))
			dst := [2]capture.Endpoint{capture.EndpointFrom(alt4), capture.EndpointFrom(srv4)}
			if p.IsIPv6() {
				dst = [2]capture.Endpoint{capture.EndpointFrom(alt6), capture.EndpointFrom(srv6)}
			}
			i := uint32(0)
			for b.Loop() {
				i++
				d := dst[i&1]
				if err := p.SetDst(d.Addr()); err != nil {
					b.Fatal(err)
				}
				p.SetDstPort(d.Port())
				p.SetAck(capture.Seq(i * 1448))
				p.SetTimestamps(i, i^0x5a5a5a5a)
			}
			b.StopTimer()
			checkAgainstReference(b, "after the benchmark", p)
		})
	}
}

// BenchmarkFullChecksum is the from-scratch alternative to the incremental
// setters, for comparison with BenchmarkRewrite.
func BenchmarkFullChecksum(b *testing.B) {
	for _, bp := range benchPackets(b) {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.b)))
			p := decoded(b, clone(bp.b))
			for b.Loop() {
				p.ComputeChecksums()
			}
		})
	}
}
