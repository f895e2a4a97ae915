package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

// FuzzDecode feeds arbitrary bytes to Decode and DecodeHeaders: they must
// not panic, every error must match exactly one sentinel, and a packet that
// decodes must be usable through every accessor and setter. For a packet
// that decodes whole, the setters must keep the checksums equal to a full
// recompute whatever the headers look like (IPv4 options, IPv6 extension
// chains, odd option layouts).
func FuzzDecode(f *testing.F) {
	for _, b := range rewriteBases(f) {
		f.Add(b.b)
		f.Add(b.b[:len(b.b)-1])
		f.Add(append(clone(b.b), 0, 0, 0, 0, 0, 0))
	}
	f.Add(handV4SYN())
	f.Add(handV6Ext())
	f.Add([]byte{})
	f.Add([]byte{0x45})
	f.Add([]byte{0x60})
	f.Add(with(handV4SYN(), func(b []byte) { b[6] = 0x20 }))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := clone(b)
		var p capture.Packet
		errD := p.Decode(b)
		checkFuzzErr(t, errD)
		if errD == nil {
			if len(p.Payload()) != p.PayloadLen() {
				t.Fatalf("Decode: len(Payload) = %d, PayloadLen = %d", len(p.Payload()), p.PayloadLen())
			}
			exercise(t, &p, b)
		}
		var h capture.Packet
		errH := h.DecodeHeaders(b)
		checkFuzzErr(t, errH)
		if errH == nil {
			exercise(t, &h, b)
		} else if errD == nil {
			t.Fatalf("Decode succeeded but DecodeHeaders failed: %v", errH)
		}
		if errD == nil && !bytes.Equal(p.Data, h.Data) {
			t.Fatalf("Decode and DecodeHeaders disagree on Data")
		}
		if !bytes.Equal(b, in) {
			t.Fatalf("decoding changed its input")
		}
		if errD != nil {
			return
		}
		// Rewrite a copy with right checksums and hold the setters to
		// the full recompute.
		p2 := decoded(t, clone(p.Data))
		p2.ComputeChecksums()
		if !p2.ChecksumsValid() {
			t.Fatalf("ChecksumsValid false right after ComputeChecksums")
		}
		for i, v := range []uint64{0, 0xffffffffffffffff, binary.LittleEndian.Uint64(append(clone(in), make([]byte, 8)...))} {
			for op := range uint32(10) {
				applyRandomSetter(p2, op+uint32(i)<<8, v)
				checkAgainstReference(t, "setter", p2)
			}
		}
	})
}

func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q matches %d sentinels, want 1", err, n)
	}
}

// exercise calls every accessor of a decoded packet and checks the views
// stay inside Data and b.
func exercise(t *testing.T, p *capture.Packet, b []byte) {
	t.Helper()
	if len(p.Data) > len(b) || (len(p.Data) > 0 && &p.Data[0] != &b[0]) {
		t.Fatalf("Data is not a prefix of the input")
	}
	pay := p.Payload()
	if len(pay) > 0 && &pay[len(pay)-1] != &p.Data[len(p.Data)-1] {
		t.Fatalf("Payload is not the tail of Data")
	}
	if p.PayloadLen() < len(pay) {
		t.Fatalf("PayloadLen %d < len(Payload) %d", p.PayloadLen(), len(pay))
	}
	if p.IPHeaderLen()+p.DataOffset()+len(pay) != len(p.Data) {
		t.Fatalf("IP header %d + TCP header %d + payload %d != %d", p.IPHeaderLen(), p.DataOffset(), len(pay), len(p.Data))
	}
	if p.DataOffset() < 20 || p.DataOffset() > 60 || len(p.TCP()) != p.DataOffset() || len(p.Options()) != p.DataOffset()-20 {
		t.Fatalf("bad TCP header view: data offset %d", p.DataOffset())
	}
	if v6 := p.IsIPv6(); v6 != (b[0]>>4 == 6) || p.Src().Is6() != v6 || p.Dst().Is6() != v6 {
		t.Fatalf("family confusion")
	}
	f := p.Flow()
	if f.Reverse().Reverse() != f || f.Src != p.SrcEndpoint() || f.Dst != p.DstEndpoint() {
		t.Fatalf("flow confusion")
	}
	if f.Src.AddrPort() != netip.AddrPortFrom(p.Src(), p.SrcPort()) {
		t.Fatalf("SrcEndpoint %v, want %v:%d", f.Src, p.Src(), p.SrcPort())
	}
	_ = f.String()
	_ = f.Src.Hash()
	_, _, _, _ = p.Seq(), p.Ack(), p.Window(), p.HasFlags(capture.FlagSYN)
	if p.EndSeq() != p.Seq().Add(p.SeqLen()) {
		t.Fatalf("EndSeq")
	}
	_, _ = p.MSS()
	_, _ = p.WindowScale()
	_ = p.SACKPermitted()
	_, _, _ = p.Timestamps()
	_ = p.ChecksumsValid()
}

// FuzzRewriteChecksum builds a packet from fuzzed fields, applies a fuzzed
// sequence of setters and holds the result, after every step, to a full
// recompute of the checksums: byte for byte.
func FuzzRewriteChecksum(f *testing.F) {
	f.Add(false, uint64(1), uint16(40000), uint16(80), uint32(1), uint32(0), uint8(capture.FlagSYN), uint16(64240),
		synOptions(1460, 1, 0, 7), []byte(nil), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(true, uint64(2), uint16(40000), uint16(443), uint32(0xfffffff0), uint32(9), uint8(capture.FlagACK), uint16(501),
		oddTSOptions(1, 2), []byte("odd"), []byte{7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(false, uint64(3), uint16(1), uint16(2), uint32(3), uint32(4), uint8(0xff), uint16(0xffff),
		oddMSSOptions(536), []byte{0xff}, []byte{6, 0xff, 0xff, 6, 0, 0, 8, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0x11})
	f.Add(true, uint64(0xffffffffffffffff), uint16(0), uint16(0), uint32(0), uint32(0), uint8(0), uint16(0),
		[]byte{1, 1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}, bytes.Repeat([]byte{0xff}, 1401), []byte{8, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0xff})
	f.Fuzz(func(t *testing.T, v6 bool, addrBits uint64, sport, dport uint16, seq, ack uint32, flags uint8, window uint16,
		opts, payload, ops []byte) {
		if len(payload) > 4000 {
			payload = payload[:4000]
		}
		s := capture.Segment{
			Src: netip.AddrPortFrom(testAddr(v6, addrBits), sport), Dst: netip.AddrPortFrom(testAddr(v6, ^addrBits), dport),
			Seq: capture.Seq(seq), Ack: capture.Seq(ack), Flags: flags, Window: window,
			Options: opts, Payload: payload, ID: uint16(addrBits >> 17), TTL: uint8(addrBits >> 33),
		}
		b, err := capture.AppendSegment(nil, &s)
		if err != nil {
			if !errors.Is(err, capture.ErrMalformed) {
				t.Fatalf("AppendSegment: %v", err)
			}
			return // options over 40 bytes or malformed
		}
		p := decoded(t, b)
		checkAgainstReference(t, "AppendSegment", p)
		for len(ops) > 0 {
			op := ops[0]
			var v [8]byte
			n := copy(v[:], ops[1:])
			ops = ops[1+n:]
			before := clone(p.Data)
			val := binary.BigEndian.Uint64(v[:])
			applyRandomSetter(p, uint32(op)%10|uint32(op/10%2)<<8, val)
			checkAgainstReference(t, "setter", p)
			switch op % 10 {
			case 0:
				if p.SrcPort() != uint16(val) {
					t.Fatalf("SrcPort = %d, want %d", p.SrcPort(), uint16(val))
				}
			case 2:
				if p.Seq() != capture.Seq(val) {
					t.Fatalf("Seq = %d, want %d", p.Seq(), capture.Seq(val))
				}
			case 7:
				if tv, te, ok := p.Timestamps(); ok && (tv != uint32(val) || te != uint32(val>>32)) {
					t.Fatalf("Timestamps = %d, %d, want %d, %d", tv, te, uint32(val), uint32(val>>32))
				}
			case 8, 9:
				if op/10%2 == 1 && !bytes.Equal(before, p.Data) {
					t.Fatalf("a setter with the wrong family changed the packet")
				}
			}
		}
	})
}
