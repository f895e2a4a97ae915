package linklayer

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestStrip(t *testing.T) {
	v4 := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2}
	v6 := append([]byte{0x60}, make([]byte, 39)...)
	eth := func(et uint16, rest ...[]byte) []byte {
		b := make([]byte, 12)
		b = binary.BigEndian.AppendUint16(b, et)
		for _, r := range rest {
			b = append(b, r...)
		}
		return b
	}
	tag := func(next uint16) []byte { return binary.BigEndian.AppendUint16([]byte{0, 5}, next) }
	sll := func(pt, proto uint16, ip []byte) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint16(b, pt)
		binary.BigEndian.PutUint16(b[14:], proto)
		return append(b, ip...)
	}
	sll2 := func(pt byte, proto uint16, ip []byte) []byte {
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b, proto)
		b[10] = pt
		return append(b, ip...)
	}
	null := func(order binary.ByteOrder, fam uint32, ip []byte) []byte {
		b := make([]byte, 4)
		order.PutUint32(b, fam)
		return append(b, ip...)
	}
	for _, tc := range []struct {
		name string
		t    Type
		b    []byte
		ip   []byte
		pt   int
		r    Result
	}{
		{"eth v4", Ethernet, eth(0x0800, v4), v4, PacketUnknown, OK},
		{"eth v6", Ethernet, eth(0x86dd, v6), v6, PacketUnknown, OK},
		{"eth 802.1Q", Ethernet, eth(0x8100, tag(0x0800), v4), v4, PacketUnknown, OK},
		{"eth QinQ", Ethernet, eth(0x88a8, tag(0x8100), tag(0x86dd), v6), v6, PacketUnknown, OK},
		{"eth 0x9100", Ethernet, eth(0x9100, tag(0x0800), v4), v4, PacketUnknown, OK},
		{"eth four tags", Ethernet, eth(0x8100, tag(0x8100), tag(0x8100), tag(0x8100), tag(0x0800), v4), v4, PacketUnknown, OK},
		{"eth five tags", Ethernet, eth(0x8100, tag(0x8100), tag(0x8100), tag(0x8100), tag(0x8100), tag(0x0800), v4), nil, PacketUnknown, NotIP},
		{"eth cut tag", Ethernet, eth(0x8100, []byte{0, 5}), nil, PacketUnknown, Short},
		{"eth ARP", Ethernet, eth(0x0806, v4), nil, PacketUnknown, NotIP},
		{"eth short", Ethernet, make([]byte, 13), nil, PacketUnknown, Short},
		{"raw v4", Raw, v4, v4, PacketUnknown, OK},
		{"raw 12 v6", RawDLT12, v6, v6, PacketUnknown, OK},
		{"raw 14", RawDLT14, v4, v4, PacketUnknown, OK},
		{"raw bad version", Raw, []byte{0x55}, nil, PacketUnknown, NotIP},
		{"raw empty", Raw, nil, nil, PacketUnknown, Short},
		{"ipv4 only", IPv4, v6, nil, PacketUnknown, NotIP},
		{"ipv6 only", IPv6, v6, v6, PacketUnknown, OK},
		{"sll out", LinuxSLL, sll(4, 0x0800, v4), v4, PacketOutgoing, OK},
		{"sll vlan", LinuxSLL, sll(0, 0x8100, append(tag(0x86dd), v6...)), v6, PacketHost, OK},
		{"sll short", LinuxSLL, make([]byte, 15), nil, PacketUnknown, Short},
		{"sll2 in", LinuxSLL2, sll2(0, 0x86dd, v6), v6, PacketHost, OK},
		{"sll2 short", LinuxSLL2, make([]byte, 19), nil, PacketUnknown, Short},
		{"null le v4", Null, null(binary.LittleEndian, 2, v4), v4, PacketUnknown, OK},
		{"null be v6 darwin", Null, null(binary.BigEndian, 30, v6), v6, PacketUnknown, OK},
		{"loop be v6 bsd", Loop, null(binary.BigEndian, 24, v6), v6, PacketUnknown, OK},
		{"loop le v6 freebsd", Loop, null(binary.LittleEndian, 28, v6), v6, PacketUnknown, OK},
		{"null linux v6", Null, null(binary.LittleEndian, 10, v6), v6, PacketUnknown, OK},
		{"null other family", Null, null(binary.LittleEndian, 7, v4), nil, PacketUnknown, NotIP},
		{"null short", Null, []byte{2, 0}, nil, PacketUnknown, Short},
		{"unknown type", Type(147), v4, nil, PacketUnknown, NotIP},
	} {
		ip, pt, r := Strip(tc.t, tc.b)
		if r != tc.r || pt != tc.pt || !bytes.Equal(ip, tc.ip) {
			t.Errorf("%s: Strip = %x, %d, %d; want %x, %d, %d", tc.name, ip, pt, r, tc.ip, tc.pt, tc.r)
		}
	}
}

func TestHelpers(t *testing.T) {
	if !Supported(LinuxSLL2) || Supported(147) {
		t.Error("Supported")
	}
	if LinuxSLL.String() != "LINUX_SLL" || Type(147).String() != "LINKTYPE(147)" {
		t.Error("String")
	}
	if NullFamily(4) != 2 || NullFamily(6) != 24 {
		t.Error("NullFamily")
	}
	if EtherTypeOf([]byte{0x45}) != EtherTypeIPv4 || EtherTypeOf([]byte{0x60}) != EtherTypeIPv6 || EtherTypeOf(nil) != 0 || EtherTypeOf([]byte{0x10}) != 0 {
		t.Error("EtherTypeOf")
	}
	b := make([]byte, 14)
	PutEthernet(b, []byte{1, 2, 3, 4, 5, 6}, []byte{7, 8, 9, 10, 11, 12}, 0x86dd)
	if ip, r := StripEthernet(append(b, 0x60)); r != OK || len(ip) != 1 {
		t.Error("PutEthernet")
	}
}
