package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// Filter describes the TCP packets a capturer keeps. AFPacket compiles it
// into a classic BPF program that the kernel runs before it queues a packet,
// so what fails the filter costs no copy and no wakeup.
//
// A packet passes when it is TCP over IPv4 or IPv6 and every non-empty
// field matches; within a field, one element matching is enough. The zero
// Filter passes every TCP packet. A prefix of one family never matches a
// packet of the other, so Nets with only IPv4 prefixes keeps only IPv4.
//
// Like tcpdump's "tcp port" primitives, a Filter that tests ports passes no
// packet whose ports it cannot see at a fixed place: IPv4 fragments after
// the first, and IPv6 packets with extension headers before TCP. Without
// port tests these pass, to be counted (Fragments, NotTCP) or decoded.
type Filter struct {
	// Ports: the source or the destination port is one of these.
	Ports []uint16
	// SrcPorts: the source port is one of these.
	SrcPorts []uint16
	// DstPorts: the destination port is one of these.
	DstPorts []uint16
	// Nets: the source or the destination address is in one of these.
	Nets []netip.Prefix
	// SrcNets: the source address is in one of these.
	SrcNets []netip.Prefix
	// DstNets: the destination address is in one of these.
	DstNets []netip.Prefix
}

// maxFilterElems bounds each field so every conditional jump of the
// compiled program stays within the 255 instructions BPF can skip.
const maxFilterElems = 32

func (f *Filter) check() error {
	for _, ports := range [][]uint16{f.Ports, f.SrcPorts, f.DstPorts} {
		if len(ports) > maxFilterElems {
			return fmt.Errorf("capture: filter: %d ports in one field, at most %d", len(ports), maxFilterElems)
		}
	}
	for _, nets := range [][]netip.Prefix{f.Nets, f.SrcNets, f.DstNets} {
		if len(nets) > maxFilterElems {
			return fmt.Errorf("capture: filter: %d prefixes in one field, at most %d", len(nets), maxFilterElems)
		}
		for _, p := range nets {
			if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
				return fmt.Errorf("capture: filter: prefix %v is not a plain IPv4 or IPv6 prefix", p)
			}
		}
	}
	return nil
}

func (f *Filter) testsPorts() bool {
	return len(f.Ports)+len(f.SrcPorts)+len(f.DstPorts) > 0
}

// Match reports whether the decoded packet p passes f. It is the reference
// the compiled program is tested against; unlike the program it also sees
// the ports of IPv6 packets with extension headers.
func (f *Filter) Match(p *Packet) bool {
	if f == nil {
		return true
	}
	src, dst := p.Src(), p.Dst()
	sp, dp := p.SrcPort(), p.DstPort()
	return (len(f.Ports) == 0 || hasPort(f.Ports, sp) || hasPort(f.Ports, dp)) &&
		(len(f.SrcPorts) == 0 || hasPort(f.SrcPorts, sp)) &&
		(len(f.DstPorts) == 0 || hasPort(f.DstPorts, dp)) &&
		(len(f.Nets) == 0 || inNets(f.Nets, src) || inNets(f.Nets, dst)) &&
		(len(f.SrcNets) == 0 || inNets(f.SrcNets, src)) &&
		(len(f.DstNets) == 0 || inNets(f.DstNets, dst))
}

func hasPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func inNets(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// A small assembler with forward labels for the filter compiler. Classic
// BPF conditional jumps skip at most 255 instructions; assemble relaxes a
// longer one into a short jump to an unconditional one (32-bit skip).
type label int

type asmItem struct {
	ins    bpf.Instruction
	jt, jf label // jumps: 0 means the next instruction
	kind   uint8 // itemPlain, itemCond, itemJA, itemMark
	mark   label
}

const (
	itemPlain = iota
	itemCond
	itemJA
	itemMark
)

type bpfAsm struct {
	items  []asmItem
	labels int
}

func (a *bpfAsm) label() label {
	a.labels++
	return label(a.labels) // labels start at 1; 0 means "next"
}

func (a *bpfAsm) mark(l label) { a.items = append(a.items, asmItem{kind: itemMark, mark: l}) }

func (a *bpfAsm) emit(ins ...bpf.Instruction) {
	for _, in := range ins {
		a.items = append(a.items, asmItem{ins: in})
	}
}

// jump jumps to t when the condition holds and to f otherwise (0: the
// next instruction).
func (a *bpfAsm) jump(cond bpf.JumpTest, v uint32, t, f label) {
	a.items = append(a.items, asmItem{ins: bpf.JumpIf{Cond: cond, Val: v}, jt: t, jf: f, kind: itemCond})
}

func (a *bpfAsm) ja(l label) { a.items = append(a.items, asmItem{jt: l, kind: itemJA}) }

// layout returns each item's instruction index and each label's.
func (a *bpfAsm) layout() (at []int, pos []int) {
	at, pos = make([]int, len(a.items)), make([]int, a.labels+1)
	n := 0
	for i, it := range a.items {
		at[i] = n
		if it.kind == itemMark {
			pos[it.mark] = n
		} else {
			n++
		}
	}
	return at, pos
}

func (a *bpfAsm) assemble() ([]bpf.RawInstruction, error) {
	for range 64 {
		at, pos := a.layout()
		far := -1
		for i, it := range a.items {
			if it.kind != itemCond {
				continue
			}
			for _, l := range []label{it.jt, it.jf} {
				if l != 0 && pos[l]-at[i]-1 > 255 {
					far = i
				}
			}
		}
		if far < 0 {
			break
		}
		// cond(jt=T, jf=F) becomes: cond(jt=LT, jf=0); ja F; LT: ja T.
		it := a.items[far]
		next, lt := a.label(), a.label()
		orNext := func(l label) label {
			if l == 0 {
				return next
			}
			return l
		}
		repl := []asmItem{
			{ins: it.ins, jt: lt, kind: itemCond},
			{jt: orNext(it.jf), kind: itemJA},
			{kind: itemMark, mark: lt},
			{jt: orNext(it.jt), kind: itemJA},
			{kind: itemMark, mark: next},
		}
		a.items = append(a.items[:far], append(repl, a.items[far+1:]...)...)
	}
	at, pos := a.layout()
	var ins []bpf.Instruction
	for i, it := range a.items {
		skip := func(l label) (uint32, error) {
			if l == 0 {
				return 0, nil
			}
			if pos[l] <= at[i] {
				return 0, fmt.Errorf("capture: filter compiler: label %d not after instruction %d", l, at[i])
			}
			return uint32(pos[l] - at[i] - 1), nil
		}
		switch it.kind {
		case itemPlain:
			ins = append(ins, it.ins)
		case itemJA:
			s, err := skip(it.jt)
			if err != nil {
				return nil, err
			}
			ins = append(ins, bpf.Jump{Skip: s})
		case itemCond:
			t, err1 := skip(it.jt)
			f, err2 := skip(it.jf)
			if err1 != nil || err2 != nil || t > 255 || f > 255 {
				return nil, fmt.Errorf("capture: filter too large: cannot place a jump (%v, %v)", err1, err2)
			}
			j := it.ins.(bpf.JumpIf)
			j.SkipTrue, j.SkipFalse = uint8(t), uint8(f)
			ins = append(ins, j)
		}
	}
	if len(ins) > 4096 { // BPF_MAXINSNS
		return nil, fmt.Errorf("capture: filter too large: %d instructions", len(ins))
	}
	return bpf.Assemble(ins)
}

// Where a compiled filter finds the link header.
const (
	// frameFromKernel: the program runs on an AF_PACKET SOCK_RAW socket
	// bound to interfaces of any kind. On Ethernet and loopback it parses
	// the frame; on other devices (tunnels, WireGuard, PPP) it starts at
	// the network header the kernel knows (SKF_NET_OFF loads) with the
	// EtherType of skb->protocol.
	frameFromKernel = iota
	// frameEthernet: the data is an Ethernet frame (for tests in the
	// x/net/bpf VM, which lacks the kernel's extensions).
	frameEthernet
)

// skfNetOff makes a BPF load relative to the network header (linux/filter.h).
const skfNetOff = 0xfff00000 // -0x100000

// ARPHRD values of the devices whose frames the filter parses itself.
const (
	arphrdEther    = 1
	arphrdLoopback = 772
)

// compileFilter compiles f (nil: every TCP packet) into a program that
// returns snapRet for a passing packet and 0 otherwise. The program walks
// up to two VLAN tags in the frame and keeps the offset of the IP header
// in X.
func compileFilter(f *Filter, snapRet uint32, mode int) ([]bpf.RawInstruction, error) {
	if f == nil {
		f = &Filter{}
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	a := &bpfAsm{}
	reject, v4, v6, ports, accept := a.label(), a.label(), a.label(), a.label(), a.label()

	// EtherType into A, the offset of what follows it into X.
	eth := a.label()
	if mode == frameFromKernel {
		walk := a.label()
		a.emit(bpf.LoadExtension{Num: bpf.ExtLinkLayerType})
		a.jump(bpf.JumpEqual, arphrdEther, eth, 0)
		a.jump(bpf.JumpEqual, arphrdLoopback, eth, 0)
		a.emit(bpf.LoadExtension{Num: bpf.ExtProto}, bpf.LoadConstant{Dst: bpf.RegX, Val: skfNetOff})
		a.ja(walk)
		a.mark(eth)
		a.emit(bpf.LoadAbsolute{Off: 12, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 14})
		a.mark(walk)
	} else {
		a.mark(eth)
		a.emit(bpf.LoadAbsolute{Off: 12, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 14})
	}
	for range 3 { // the EtherType, then up to two tags
		tag := a.label()
		a.jump(bpf.JumpEqual, 0x0800, v4, 0)
		a.jump(bpf.JumpEqual, 0x86dd, v6, 0)
		a.jump(bpf.JumpEqual, 0x8100, tag, 0)
		a.jump(bpf.JumpEqual, 0x88a8, tag, 0)
		a.jump(bpf.JumpEqual, 0x9100, tag, reject)
		a.mark(tag)
		// Next EtherType at X+2; then X += 4.
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: 0},
			bpf.TXA{}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 4}, bpf.TAX{},
			bpf.LoadScratch{Dst: bpf.RegA, N: 0})
	}
	a.ja(reject)

	// IPv4.
	a.mark(v4)
	a.emit(bpf.LoadIndirect{Off: 9, Size: 1})
	a.jump(bpf.JumpEqual, 6, 0, reject)
	if f.testsPorts() {
		a.emit(bpf.LoadIndirect{Off: 6, Size: 2})
		a.jump(bpf.JumpBitsSet, 0x1fff, reject, 0)
	}
	compileNets(a, f, false, reject)
	// X = IP offset + IHL*4.
	a.emit(bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2}, bpf.ALUOpX{Op: bpf.ALUOpAdd}, bpf.TAX{})
	a.ja(ports)

	// IPv6.
	a.mark(v6)
	compileNets(a, f, true, reject)
	a.emit(bpf.LoadIndirect{Off: 6, Size: 1})
	tcp6 := a.label()
	a.jump(bpf.JumpEqual, 6, tcp6, 0)
	if f.testsPorts() {
		a.ja(reject)
	} else {
		// Extension headers (hop-by-hop, routing, fragment, AH,
		// destination options): Decode walks them.
		for _, nh := range []uint32{0, 43, 44, 51} {
			a.jump(bpf.JumpEqual, nh, accept, 0)
		}
		a.jump(bpf.JumpEqual, 60, accept, reject)
	}
	a.mark(tcp6)
	a.emit(bpf.TXA{}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40}, bpf.TAX{})

	// Ports, X at the TCP header.
	a.mark(ports)
	compilePorts(a, f.Ports, []uint32{0, 2}, reject)
	compilePorts(a, f.SrcPorts, []uint32{0}, reject)
	compilePorts(a, f.DstPorts, []uint32{2}, reject)
	a.mark(accept)
	a.emit(bpf.RetConstant{Val: snapRet})
	a.mark(reject)
	a.emit(bpf.RetConstant{Val: 0})
	return a.assemble()
}

// compilePorts emits the test "the 16-bit word at X+off is one of ports"
// for each off; no match jumps to reject.
func compilePorts(a *bpfAsm, ports []uint16, offs []uint32, reject label) {
	if len(ports) == 0 {
		return
	}
	match := a.label()
	for _, off := range offs {
		a.emit(bpf.LoadIndirect{Off: off, Size: 2})
		for _, p := range ports {
			a.jump(bpf.JumpEqual, uint32(p), match, 0)
		}
	}
	a.ja(reject)
	a.mark(match)
}

// compileNets emits the address fields of f for one family.
func compileNets(a *bpfAsm, f *Filter, v6 bool, reject label) {
	src, dst := uint32(12), uint32(16)
	if v6 {
		src, dst = 8, 24
	}
	for _, fld := range []struct {
		nets []netip.Prefix
		offs []uint32
	}{{f.Nets, []uint32{src, dst}}, {f.SrcNets, []uint32{src}}, {f.DstNets, []uint32{dst}}} {
		if len(fld.nets) == 0 {
			continue
		}
		match := a.label()
		for _, off := range fld.offs {
			for _, p := range fld.nets {
				if p.Addr().Is6() == v6 {
					compilePrefix(a, p.Masked(), off, match)
				}
			}
		}
		a.ja(reject)
		a.mark(match)
	}
}

// compilePrefix emits "the address at X+off is in p: jump to match", one
// 32-bit word at a time; a mismatch falls through to the next test.
func compilePrefix(a *bpfAsm, p netip.Prefix, off uint32, match label) {
	bits := p.Bits()
	if bits == 0 {
		a.ja(match)
		return
	}
	addr := p.Addr().AsSlice()
	next := a.label()
	for w := 0; w*32 < bits; w++ {
		val := binary.BigEndian.Uint32(addr[4*w:])
		a.emit(bpf.LoadIndirect{Off: off + uint32(4*w), Size: 4})
		left := bits - 32*w
		last := left <= 32
		if left < 32 {
			mask := ^uint32(0) << (32 - left)
			a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
			val &= mask
		}
		if last {
			a.jump(bpf.JumpEqual, val, match, next)
		} else {
			a.jump(bpf.JumpEqual, val, 0, next)
		}
	}
	a.mark(next)
}

// directionPrologue returns instructions that reject packets of the other
// direction (SKF_AD_PKTTYPE: PACKET_OUTGOING is 4) and of interfaces not in
// ifindexes (SKF_AD_IFINDEX), to put before a program; they fall through to
// it for a packet that passes.
func prologue(dir Direction, ifindexes []int) ([]bpf.RawInstruction, error) {
	a := &bpfAsm{}
	reject, pass := a.label(), a.label()
	if len(ifindexes) > 0 {
		ok := a.label()
		a.emit(bpf.LoadExtension{Num: bpf.ExtInterfaceIndex})
		for _, i := range ifindexes {
			a.jump(bpf.JumpEqual, uint32(i), ok, 0)
		}
		a.ja(reject)
		a.mark(ok)
	}
	switch dir {
	case DirIn:
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.jump(bpf.JumpEqual, 4, reject, pass)
	case DirOut:
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.jump(bpf.JumpEqual, 4, pass, reject)
	default:
		a.ja(pass)
	}
	a.mark(reject)
	a.emit(bpf.RetConstant{Val: 0})
	a.mark(pass)
	if len(ifindexes) == 0 && dir != DirIn && dir != DirOut {
		return nil, nil
	}
	return a.assemble()
}
