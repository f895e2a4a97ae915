package capture

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// vmFor runs the filter compiled for Ethernet frames in the x/net/bpf VM.
func vmFor(t testing.TB, f *Filter) *bpf.VM {
	t.Helper()
	raw, err := compileFilter(f, 0xffff, frameEthernet)
	if err != nil {
		t.Fatal(err)
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("compiled program does not disassemble")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("NewVM: %v\n%v", err, ins)
	}
	return vm
}

func runVM(t testing.TB, vm *bpf.VM, etherType uint16, tags int, ip []byte) bool {
	t.Helper()
	mac := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	in := binary.BigEndian.AppendUint16(mac, etherType)
	if tags > 0 {
		in = binary.BigEndian.AppendUint16(mac, 0x88a8)
		for i := range tags {
			next := uint16(0x8100)
			if i == tags-1 {
				next = etherType
			}
			in = binary.BigEndian.AppendUint16(in, uint16(10+i))
			in = binary.BigEndian.AppendUint16(in, next)
		}
	}
	n, err := vm.Run(append(in, ip...))
	if err != nil {
		t.Fatalf("vm: %v", err)
	}
	return n > 0
}

var filterAddrs = []netip.Addr{
	netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"),
	netip.MustParseAddr("198.18.1.200"), netip.MustParseAddr("198.19.255.255"),
	netip.MustParseAddr("fd00:198:18::1"), netip.MustParseAddr("fd00:198:18::2"),
	netip.MustParseAddr("fd00:198:18:1::1"), netip.MustParseAddr("fd00:198:18:ffff:8000::9"),
}

var filterPrefixes = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("198.18.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.19.255.254/31"),
	netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("198.18.1.128/25"),
	netip.MustParsePrefix("fd00:198:18::1/128"), netip.MustParsePrefix("fd00:198:18::/64"),
	netip.MustParsePrefix("fd00:198:18::/48"), netip.MustParsePrefix("fd00:198:18:ffff:8000::/65"),
	netip.MustParsePrefix("::/0"), netip.MustParsePrefix("fd00:198:18:1::/63"),
}

var filterPorts = []uint16{80, 443, 8080, 40000, 0, 65535}

func randomFilter(r *rand.Rand) *Filter {
	ports := func() []uint16 {
		var p []uint16
		for range r.IntN(3) {
			p = append(p, filterPorts[r.IntN(len(filterPorts))])
		}
		return p
	}
	nets := func() []netip.Prefix {
		var p []netip.Prefix
		for range r.IntN(3) {
			p = append(p, filterPrefixes[r.IntN(len(filterPrefixes))])
		}
		return p
	}
	f := &Filter{}
	switch r.IntN(6) {
	case 0:
		f.Ports = ports()
	case 1:
		f.SrcPorts, f.DstPorts = ports(), ports()
	case 2:
		f.Nets = nets()
	case 3:
		f.SrcNets, f.DstNets = nets(), nets()
	default:
		f.Ports, f.SrcPorts, f.DstPorts = ports(), ports(), ports()
		f.Nets, f.SrcNets, f.DstNets = nets(), nets(), nets()
	}
	return f
}

func randomSegment(t testing.TB, r *rand.Rand) []byte {
	v6 := r.IntN(2) == 1
	pick := func() netip.Addr {
		if v6 {
			return filterAddrs[4+r.IntN(4)]
		}
		return filterAddrs[r.IntN(4)]
	}
	var opts []byte
	if r.IntN(2) == 0 {
		opts = AppendMSS(nil, 1460)
	}
	b, err := AppendSegment(nil, &Segment{
		Src: netip.AddrPortFrom(pick(), filterPorts[r.IntN(len(filterPorts))]),
		Dst: netip.AddrPortFrom(pick(), filterPorts[r.IntN(len(filterPorts))]),
		Seq: 1, Flags: FlagACK, Options: opts, Payload: make([]byte, r.IntN(20)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !v6 && r.IntN(4) == 0 {
		// IPv4 options move the TCP header: rebuild with IHL 6.
		nb := append(append(append([]byte(nil), b[:20]...), 1, 1, 1, 0), b[20:]...)
		nb[0] = 0x46
		binary.BigEndian.PutUint16(nb[2:], uint16(len(nb)))
		b = nb
	}
	return b
}

// TestFilterMatchesVM holds the compiled program to Filter.Match on random
// filters and packets, with and without VLAN tags in the data.
func TestFilterMatchesVM(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		f := randomFilter(r)
		vm := vmFor(t, f)
		for range 50 {
			b := randomSegment(t, r)
			var p Packet
			if err := p.Decode(b); err != nil {
				t.Fatal(err)
			}
			et := uint16(0x0800)
			if p.IsIPv6() {
				et = 0x86dd
			}
			want := f.Match(&p)
			for tags := range 3 {
				if got := runVM(t, vm, et, tags, b); got != want {
					t.Fatalf("filter %d %+v, %d tags, packet %v: program says %v, Match %v", i, f, tags, p.Flow(), got, want)
				}
			}
			if runVM(t, vm, et, 3, b) {
				t.Fatalf("filter %+v passed a packet behind three tags", f)
			}
		}
	}
}

// TestFilterEdges covers what the program must reject or pass untested.
func TestFilterEdges(t *testing.T) {
	seg := func(src, dst string) []byte {
		b, err := AppendSegment(nil, &Segment{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Flags: FlagSYN})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v4 := seg("198.18.0.1:40000", "198.18.0.2:80")
	v6 := seg("[fd00:198:18::1]:40000", "[fd00:198:18::2]:80")
	frag := append([]byte(nil), v4...)
	frag[7] = 1 // fragment offset 8
	firstFrag := append([]byte(nil), v4...)
	firstFrag[6] |= 0x20 // MF, offset 0: ports are there
	udp := append([]byte(nil), v4...)
	udp[9] = 17
	// IPv6 with a destination options header before TCP.
	ext := append(append([]byte(nil), v6[:40]...), 6, 0, 1, 4, 0, 0, 0, 0)
	ext = append(ext, v6[40:]...)
	ext[6] = 60
	binary.BigEndian.PutUint16(ext[4:], uint16(len(ext)-40))
	udp6 := append([]byte(nil), v6...)
	udp6[6] = 17

	all := vmFor(t, nil)
	ports := vmFor(t, &Filter{Ports: []uint16{80}})
	nets := vmFor(t, &Filter{Nets: []netip.Prefix{netip.MustParsePrefix("fd00:198:18::/48")}})
	for _, tc := range []struct {
		name string
		vm   *bpf.VM
		et   uint16
		b    []byte
		want bool
	}{
		{"all v4", all, 0x0800, v4, true},
		{"all v6", all, 0x86dd, v6, true},
		{"all non-first fragment", all, 0x0800, frag, true},
		{"ports non-first fragment", ports, 0x0800, frag, false},
		{"ports first fragment", ports, 0x0800, firstFrag, true},
		{"all udp", all, 0x0800, udp, false},
		{"all udp6", all, 0x86dd, udp6, false},
		{"all ext header", all, 0x86dd, ext, true},
		{"ports ext header", ports, 0x86dd, ext, false},
		{"nets ext header", nets, 0x86dd, ext, true},
		{"nets v4", nets, 0x0800, v4, false},
		{"ARP", all, 0x0806, v4, false},
		{"short", ports, 0x0800, v4[:22], false},
	} {
		if got := runVM(t, tc.vm, tc.et, 0, tc.b); got != tc.want {
			t.Errorf("%s: program says %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	many := make([]uint16, maxFilterElems+1)
	for _, f := range []*Filter{
		{Ports: many},
		{Nets: []netip.Prefix{{}}},
		{SrcNets: []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.0.0/112")}},
		{DstNets: make([]netip.Prefix, maxFilterElems+1)},
	} {
		if _, err := compileFilter(f, 100, frameFromKernel); err == nil {
			t.Errorf("compiled %+v", f)
		}
	}
	// The largest filter still fits BPF's jump limits.
	big := &Filter{}
	for i := range maxFilterElems {
		big.Ports = append(big.Ports, uint16(i))
		big.SrcPorts = append(big.SrcPorts, uint16(i))
		big.Nets = append(big.Nets, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 1, 0x98, 0, 0x18, byte(i)}), 127))
		big.DstNets = append(big.DstNets, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 25))
	}
	if _, err := compileFilter(big, 100, frameFromKernel); err != nil {
		t.Fatalf("largest filter: %v", err)
	}
	// Relaxed long jumps still compute the same answers.
	big.Ports = append(big.Ports[:maxFilterElems-2], 80, 40000)
	big.SrcPorts = append(big.SrcPorts[:maxFilterElems-2], 80, 40000)
	big.Nets = append(big.Nets[:maxFilterElems-2], filterPrefixes[2], filterPrefixes[8])
	big.DstNets = append(big.DstNets[:maxFilterElems-1], filterPrefixes[1])
	vm := vmFor(t, big)
	r := rand.New(rand.NewPCG(3, 4))
	matched := 0
	for range 2000 {
		b := randomSegment(t, r)
		var p Packet
		if err := p.Decode(b); err != nil {
			t.Fatal(err)
		}
		et := uint16(0x0800)
		if p.IsIPv6() {
			et = 0x86dd
		}
		want := big.Match(&p)
		if got := runVM(t, vm, et, 1, b); got != want {
			t.Fatalf("largest filter, packet %v: program says %v, Match %v", p.Flow(), got, want)
		}
		if want {
			matched++
		}
	}
	if matched == 0 {
		t.Fatal("no packet matched the largest filter: the test tests nothing")
	}
}

func TestPrologue(t *testing.T) {
	if p, err := prologue(DirUnknown, nil); err != nil || p != nil {
		t.Fatalf("empty prologue = %v, %v", p, err)
	}
	for _, dir := range []Direction{DirUnknown, DirIn, DirOut} {
		p, err := prologue(dir, []int{3, 7})
		if err != nil {
			t.Fatal(err)
		}
		ins, ok := bpf.Disassemble(p)
		if !ok {
			t.Fatalf("%v: does not disassemble", dir)
		}
		// Falls through past its end for a passing packet: every jump
		// lands inside the program or just after it.
		for i, in := range ins {
			switch j := in.(type) {
			case bpf.JumpIf:
				if i+1+int(max(j.SkipTrue, j.SkipFalse)) > len(ins) {
					t.Fatalf("%v: jump at %d past the end: %v", dir, i, ins)
				}
			case bpf.Jump:
				if i+1+int(j.Skip) > len(ins) {
					t.Fatalf("%v: jump at %d past the end: %v", dir, i, ins)
				}
			}
		}
	}
}
