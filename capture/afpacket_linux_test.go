package capture_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"golang.org/x/net/bpf"
)

func openAFPacket(t testing.TB, ns *netlab.NS, cfg *capture.AFPacketConfig) *capture.AFPacket {
	t.Helper()
	return netlab.Open(t, ns, func() (*capture.AFPacket, error) { return capture.NewAFPacket(cfg) })
}

// capPkt is a captured packet, copied.
type capPkt struct {
	t    time.Time
	dir  capture.Direction
	data []byte
}

func (c capPkt) packet(t testing.TB) *capture.Packet {
	t.Helper()
	var p capture.Packet
	if err := p.Decode(c.data); err != nil {
		t.Fatal(err)
	}
	p.Time, p.Dir = c.t, c.dir
	return &p
}

// collect reads from c, keeping copies of the packets keep accepts (nil:
// all), until stop reports true for a packet (which is kept if keep
// accepts it). After 10 s it closes c and fails.
func collect(t testing.TB, c capture.Capturer, keep, stop func(*capture.Packet) bool) []capPkt {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	pkts := make([]capture.Packet, 16)
	var out []capPkt
	for {
		n, err := c.ReadPackets(pkts)
		if err != nil {
			t.Fatalf("ReadPackets after %d packets: %v", len(out), err)
		}
		for i := range pkts[:n] {
			p := &pkts[i]
			if keep == nil || keep(p) {
				out = append(out, capPkt{p.Time, p.Dir, bytes.Clone(p.Data)})
			}
			if stop(p) {
				return out
			}
		}
	}
}

// countN stops after n kept packets.
func countN(n int, keep func(*capture.Packet) bool) (func(*capture.Packet) bool, func(*capture.Packet) bool) {
	got := 0
	k := func(p *capture.Packet) bool {
		if keep == nil || keep(p) {
			got++
			return true
		}
		return false
	}
	return k, func(*capture.Packet) bool { return got >= n }
}

// exchange runs one real TCP connection from A to B's port: the client
// writes req, the server answers resp and closes first, the client reads
// to EOF and closes. Once the server's socket is in TIME-WAIT (its ACK of
// the client's FIN, the connection's last packet, has gone out), a second
// connection from A (the marker) is opened: its SYN-ACK follows every
// packet of the first in both namespaces.
func exchange(t *testing.T, l *netlab.Pair, srv netip.AddrPort, req, resp []byte) (clientPort, markerPort uint16) {
	t.Helper()
	return exchangeFrom(t, l.A, l.B, srv, req, resp)
}

func isSynAck(port uint16) func(*capture.Packet) bool {
	return func(p *capture.Packet) bool {
		return p.HasFlags(capture.FlagSYN|capture.FlagACK) && p.DstPort() == port
	}
}

func sameBytes(t *testing.T, what string, got, want []capPkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d packets, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("%s: packet %d:\n got %x\nwant %x", what, i, got[i].data, want[i].data)
		}
	}
}

// sameSet compares packets as multisets: a veth without a queue sends
// from every CPU at once and the peer receives on per-CPU backlogs, so two
// packets sent close together may arrive in either order.
func sameSet(t *testing.T, what string, got, want []capPkt) {
	t.Helper()
	sorted := func(ps []capPkt) []capPkt {
		ps = slices.Clone(ps)
		slices.SortFunc(ps, func(a, b capPkt) int { return bytes.Compare(a.data, b.data) })
		return ps
	}
	sameBytes(t, what, sorted(got), sorted(want))
}

func filterDir(ps []capPkt, d capture.Direction) []capPkt {
	var out []capPkt
	for _, p := range ps {
		if p.dir == d {
			out = append(out, p)
		}
	}
	return out
}

// reassemble returns the payload bytes of one direction in sequence order,
// from the first SYN's sequence number.
func reassemble(t *testing.T, ps []capPkt) []byte {
	t.Helper()
	var isn capture.Seq
	buf := map[uint32][]byte{}
	for i, c := range ps {
		p := c.packet(t)
		if i == 0 {
			if !p.HasFlags(capture.FlagSYN) {
				t.Fatalf("first packet of a direction is not a SYN: flags %#x", p.Flags())
			}
			isn = p.Seq()
			continue
		}
		if len(p.Payload()) > 0 {
			buf[uint32(p.Seq()-isn-1)] = p.Payload()
		}
	}
	var out []byte
	for {
		b, ok := buf[uint32(len(out))]
		if !ok {
			break
		}
		out = append(out, b...)
	}
	return out
}

// TestCaptureRealTCP captures one real TCP connection between the stacks
// of two namespaces with AF_PACKET on both veth ends and raw IP sockets on
// both sides, and checks every capturer against the others and against
// what the sockets wrote: every packet, right direction, right bytes.
func TestCaptureRealTCP(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			l := netlab.NewPair(t)
			l.Lab.Require("ss")
			const port = 8080
			filter := &capture.Filter{Ports: []uint16{port}}
			afA := openAFPacket(t, l.A, &capture.AFPacketConfig{Interfaces: []string{l.AIf}, Filter: filter})
			afB := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Filter: filter})
			rawA := openRawIP(t, l.A, &capture.RawIPConfig{Network: n.network})
			rawB := openRawIP(t, l.B, &capture.RawIPConfig{Network: n.network})
			req, resp := bytes.Repeat([]byte("request-"), 5000), bytes.Repeat([]byte("RESPONSE"), 9000)
			start := time.Now()
			cport, mport := exchange(t, l, netip.AddrPortFrom(n.b, port), req, resp)

			// The marker's SYN-ACK ends what a capturer that sees B's
			// packets collects; the raw socket in B sees only A's: there
			// the marker's first packet after its SYN ends it.
			markerAck := func(p *capture.Packet) bool {
				return p.SrcPort() == mport && !p.HasFlags(capture.FlagSYN)
			}
			all := func(c capture.Capturer, stop func(*capture.Packet) bool) []capPkt {
				ps := collect(t, c, nil, stop)
				var out []capPkt
				for _, p := range ps {
					if pp := p.packet(t); pp.SrcPort() == cport || pp.DstPort() == cport {
						out = append(out, p)
					}
				}
				return out
			}
			a, b := all(afA, isSynAck(mport)), all(afB, isSynAck(mport))
			aOut, aIn, bOut, bIn := filterDir(a, capture.DirOut), filterDir(a, capture.DirIn), filterDir(b, capture.DirOut), filterDir(b, capture.DirIn)
			if len(aOut)+len(aIn) != len(a) || len(bOut)+len(bIn) != len(b) {
				t.Fatal("packets without a direction")
			}
			sameSet(t, "A sent vs B received", bIn, aOut)
			sameSet(t, "B sent vs A received", aIn, bOut)
			for _, p := range aOut {
				if pp := p.packet(t); pp.Src() != n.a || pp.Dst() != n.b {
					t.Fatalf("A sent %v", pp.Flow())
				}
			}
			for _, p := range a {
				pp := p.packet(t)
				if !pp.ChecksumsValid() {
					t.Fatalf("captured packet %v with wrong checksums", pp.Flow())
				}
				if p.t.Before(start.Add(-time.Second)) || p.t.After(time.Now().Add(time.Second)) {
					t.Fatalf("timestamp %v outside the test", p.t)
				}
			}
			if got := reassemble(t, aOut); !bytes.Equal(got, req) {
				t.Fatalf("client stream: %d bytes captured, %d written", len(got), len(req))
			}
			if got := reassemble(t, bOut); !bytes.Equal(got, resp) {
				t.Fatalf("server stream: %d bytes captured, %d written", len(got), len(resp))
			}
			fin := func(ps []capPkt) bool {
				return slices.ContainsFunc(ps, func(p capPkt) bool { return p.packet(t).HasFlags(capture.FlagFIN) })
			}
			if !fin(aOut) || !fin(bOut) {
				t.Fatal("a FIN is missing")
			}

			// The raw IP sockets see exactly the inbound half, with the
			// checksums the sender left (partial on veth, offloaded).
			for _, x := range []struct {
				raw  *capture.RawIP
				stop func(*capture.Packet) bool
				want []capPkt
			}{{rawB, markerAck, bIn}, {rawA, isSynAck(mport), aIn}} {
				got := all(x.raw, x.stop)
				for i := range got {
					p := got[i].packet(t)
					p.ComputeChecksums()
					if got[i].dir != capture.DirIn {
						t.Fatalf("raw IP packet with direction %v", got[i].dir)
					}
				}
				sameSet(t, "raw IP vs AF_PACKET", got, x.want)
			}
			s := afB.Stats()
			if s.KernelDrops != 0 || s.Truncated+s.Malformed+s.NotTCP+s.Fragments != 0 {
				t.Fatalf("AF_PACKET stats %+v", s)
			}
		})
	}
}

// crafted builds the i-th test segment from A to B on dport.
func crafted(t *testing.T, n labNet, i int, dport uint16) []byte {
	return labSegment(t, n, i, 10+i, dport)
}

// TestAFPacketFilterAndDirection: the kernel filter keeps the wanted
// port and direction only; RawFilter replaces Filter.
func TestAFPacketFilterAndDirection(t *testing.T) {
	l := netlab.NewPair(t)
	in := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn,
		Filter: &capture.Filter{DstPorts: []uint16{9000}, SrcNets: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/30"), netip.MustParsePrefix("fd00:198:18::/64")}}})
	out := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirOut})
	// A user's program: tcpdump -i veth -dd 'ip6' (Ethernet frames).
	raw6 := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn, RawFilter: []bpf.RawInstruction{
		{Op: 0x28, K: 12}, {Op: 0x15, Jt: 0, Jf: 1, K: 0x86dd}, {Op: 0x6, K: 262144}, {Op: 0x6, K: 0},
	}})
	var want, want6 [][]byte
	for _, n := range labNets {
		tx := openRawSender(t, l.A, n.network == "ip6")
		for i := range 20 {
			port := uint16(9000 + i%2)
			b := crafted(t, n, i, port)
			tx.send(t, b)
			if port == 9000 {
				want = append(want, b)
			}
			if n.network == "ip6" {
				want6 = append(want6, b)
			}
		}
	}
	// A marker that passes the filter ends each collection.
	last4 := labNets[1]
	tx := openRawSender(t, l.A, true)
	marker := crafted(t, last4, 99, 9000)
	tx.send(t, marker)
	want, want6 = append(want, marker), append(want6, marker)
	isMarker := func(p *capture.Packet) bool { return bytes.Equal(p.Data, marker) }

	got := collect(t, in, nil, isMarker)
	if len(got) != len(want) {
		t.Fatalf("DirIn with filter: %d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].data, want[i]) || got[i].dir != capture.DirIn {
			t.Fatalf("DirIn packet %d: %v %x, want %x", i, got[i].dir, got[i].data, want[i])
		}
	}
	got6 := collect(t, raw6, nil, isMarker)
	if len(got6) != len(want6) {
		t.Fatalf("raw filter: %d packets, want the %d IPv6 ones", len(got6), len(want6))
	}
	// B answers each crafted segment with a RST: 41 of them.
	rsts := collect(t, out, nil, func(p *capture.Packet) bool {
		return p.HasFlags(capture.FlagRST) && p.Dst() == last4.a && p.SrcPort() == 9000 && p.DstPort() == 40099
	})
	if len(rsts) != 41 {
		t.Fatalf("DirOut: %d packets, want 41 RSTs", len(rsts))
	}
	for _, p := range rsts {
		if pp := p.packet(t); p.dir != capture.DirOut || !pp.HasFlags(capture.FlagRST) || (pp.Src() != labNets[0].b && pp.Src() != labNets[1].b) {
			t.Fatalf("DirOut captured %v %v flags %#x", p.dir, pp.Flow(), pp.Flags())
		}
	}
}

// TestAFPacketInterfaces captures on two of B's three links with one
// socket, and on all of them.
func TestAFPacketInterfaces(t *testing.T) {
	l := netlab.NewPair(t)
	c := l.Lab.Namespace("c")
	d := l.Lab.Namespace("d")
	cIf, bIf2 := l.Lab.Link(c, netip.MustParsePrefix("198.18.1.1/24"), l.B, netip.MustParsePrefix("198.18.1.2/24"))
	dIf, bIf3 := l.Lab.Link(d, netip.MustParsePrefix("198.18.2.1/24"), l.B, netip.MustParsePrefix("198.18.2.2/24"))
	_, _ = cIf, dIf
	two := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf, bIf3}, Direction: capture.DirIn})
	any := openAFPacket(t, l.B, &capture.AFPacketConfig{Direction: capture.DirIn})
	one := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{bIf2}, Direction: capture.DirIn})

	send := func(ns *netlab.NS, src, dst string, port uint16) []byte {
		t.Helper()
		b := segment(t, capture.Segment{Src: netip.MustParseAddrPort(src + ":1234"), Dst: netip.AddrPortFrom(netip.MustParseAddr(dst), port), Seq: 1, Flags: capture.FlagACK, ID: port})
		openRawSender(t, ns, false).send(t, b)
		return b
	}
	fromA := send(l.A, netlab.PairA4, netlab.PairB4, 1)
	fromC := send(c, "198.18.1.1", "198.18.1.2", 2)
	fromD := send(d, "198.18.2.1", "198.18.2.2", 3)
	isData := func(p *capture.Packet) bool { return p.SrcPort() == 1234 }
	k, stop := countN(2, isData)
	got := collect(t, two, k, stop)
	if !bytes.Equal(got[0].data, fromA) || !bytes.Equal(got[1].data, fromD) {
		t.Fatalf("two interfaces: got %d packets, not from A and D", len(got))
	}
	k, stop = countN(3, isData)
	if got := collect(t, any, k, stop); !bytes.Equal(got[1].data, fromC) {
		t.Fatalf("all interfaces: second packet is not from C")
	}
	k, stop = countN(1, isData)
	if got := collect(t, one, k, stop); !bytes.Equal(got[0].data, fromC) {
		t.Fatalf("one interface: packet not from C")
	}
	if s := two.Stats(); s.Packets != 2 {
		t.Fatalf("two interfaces: stats %+v (the third link's packet passed the filter?)", s)
	}
}

// TestAFPacketVLAN sends real TCP through 802.1Q and QinQ (802.1ad outer,
// 802.1Q inner) VLAN devices on the veth pair and captures on the veth:
// the tags the device keeps in the frame are walked in both directions.
func TestAFPacketVLAN(t *testing.T) {
	l := netlab.NewPair(t)
	if out, err := l.A.RunErr("ip", "link", "add", "link", l.AIf, "name", "vq", "type", "vlan", "id", "10"); err != nil {
		t.Skipf("skipping: the kernel cannot make VLAN devices (CONFIG_VLAN_8021Q?): %s", out)
	}
	l.A.IP("link", "del", "vq")
	for _, side := range []struct {
		ns   *netlab.NS
		dev  string
		q, d string
	}{{l.A, l.AIf, "198.18.10.1/24", "198.18.11.1/24"}, {l.B, l.BIf, "198.18.10.2/24", "198.18.11.2/24"}} {
		side.ns.IP("link", "add", "link", side.dev, "name", "vq", "type", "vlan", "id", "10")
		side.ns.IP("link", "add", "link", side.dev, "name", "vs", "type", "vlan", "proto", "802.1ad", "id", "20")
		side.ns.IP("link", "add", "link", "vs", "name", "vsq", "type", "vlan", "id", "30")
		for _, dev := range []string{"vq", "vs", "vsq"} {
			side.ns.IP("link", "set", dev, "up")
		}
		side.ns.AddAddr("vq", netip.MustParsePrefix(side.q))
		side.ns.AddAddr("vsq", netip.MustParsePrefix(side.d))
	}
	for _, dst := range []string{"198.18.10.2", "198.18.11.2"} {
		t.Run(dst, func(t *testing.T) {
			capB := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Filter: &capture.Filter{Ports: []uint16{7000}}})
			capA := openAFPacket(t, l.A, &capture.AFPacketConfig{Interfaces: []string{l.AIf}, Filter: &capture.Filter{Ports: []uint16{7000}}})
			ln := l.B.Listen("tcp", dst+":7000")
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Write([]byte("over the VLAN"))
					c.Close()
				}
			}()
			conn := l.A.Dial("tcp", dst+":7000")
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if b, err := io.ReadAll(conn); err != nil || string(b) != "over the VLAN" {
				t.Fatalf("read %q, %v", b, err)
			}
			conn.Close()
			isFinFromA := func(p *capture.Packet) bool {
				return p.HasFlags(capture.FlagFIN) && p.DstPort() == 7000
			}
			for _, c := range []*capture.AFPacket{capA, capB} {
				got := collect(t, c, nil, isFinFromA)
				sawData := slices.ContainsFunc(got, func(p capPkt) bool {
					return string(p.packet(t).Payload()) == "over the VLAN"
				})
				if !sawData || len(got) < 4 {
					t.Fatalf("captured %d packets, data seen %v", len(got), sawData)
				}
				if s := c.Stats(); s.NotTCP+s.Truncated+s.Malformed != 0 {
					t.Fatalf("stats %+v", s)
				}
			}
		})
	}
}

// readAllAsync reads c on a goroutine, copying packets, until c is closed.
type asyncReader struct {
	mu   sync.Mutex
	got  []capPkt
	done chan struct{}
}

func readAsync(c capture.Capturer) *asyncReader {
	r := &asyncReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		pkts := make([]capture.Packet, 32)
		for {
			n, err := c.ReadPackets(pkts)
			if err != nil {
				return
			}
			r.mu.Lock()
			for i := range pkts[:n] {
				r.got = append(r.got, capPkt{pkts[i].Time, pkts[i].Dir, bytes.Clone(pkts[i].Data)})
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// wait polls until cond holds on the packets read so far, for up to 10 s.
func (r *asyncReader) wait(cond func([]capPkt) bool) []capPkt {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		got := slices.Clone(r.got)
		r.mu.Unlock()
		if cond(got) || time.Now().After(deadline) {
			return got
		}
	}
}

// TestAFPacketTaggedFrames injects VLAN-tagged Ethernet frames (802.1Q,
// QinQ 802.1ad+802.1Q, 0x9100+802.1Q) from an AF_PACKET socket in A: A's
// capturer sees them sent with every tag in the frame, B's received with
// the outer tag moved out of the frame by the kernel (skb_vlan_untag) and
// the inner one still in it; both walk what is there.
func TestAFPacketTaggedFrames(t *testing.T) {
	l := netlab.NewPair(t)
	f := &capture.Filter{DstPorts: []uint16{9000}}
	capA := openAFPacket(t, l.A, &capture.AFPacketConfig{Interfaces: []string{l.AIf}, Direction: capture.DirOut, Filter: f})
	capB := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn, Filter: f})
	var conn *packet.Conn
	if err := l.A.Do(func() error {
		ifi, err := net.InterfaceByName(l.AIf)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, 0, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var want [][]byte
	tagSets := [][]uint16{{0x8100}, {0x88a8, 0x8100}, {0x9100, 0x8100}, {0x8100}}
	for i, tags := range tagSets {
		n := labNets[i%2]
		ip := crafted(t, n, i, 9000)
		frame := vlanFrame(ip, tags...)
		copy(frame[0:6], l.BMAC)
		copy(frame[6:12], l.AMAC)
		if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: l.BMAC}); err != nil {
			t.Fatal(err)
		}
		want = append(want, ip)
	}
	for _, c := range []*capture.AFPacket{capA, capB} {
		k, stop := countN(len(want), nil)
		got := collect(t, c, k, stop)
		for i := range got {
			if !bytes.Equal(got[i].data, want[i]) {
				t.Fatalf("frame %d (tags %#x):\n got %x\nwant %x", i, tagSets[i], got[i].data, want[i])
			}
		}
	}
}

// TestAFPacketKernelDrops overflows a small ring behind a reader that does
// not read: the kernel's drops show up in Stats, and every packet sent is
// either read or counted as dropped.
func TestAFPacketKernelDrops(t *testing.T) {
	l := netlab.NewPair(t)
	const block = 64 << 10
	c := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn,
		SnapLen: 2000, BlockSize: block, RingSize: 2 * block, Filter: &capture.Filter{DstPorts: []uint16{9000, 9999}}})
	tx := openRawSender(t, l.A, false)
	const flood = 400 // ~1.3 KB each: ten blocks' worth into two
	for i := range flood {
		tx.send(t, labSegment(t, labNets[0], i, 1200, 9000))
	}
	var s capture.Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if s = c.Stats(); s.KernelDrops > 0 || time.Now().After(deadline) {
			break
		}
	}
	if s.KernelDrops == 0 {
		t.Fatalf("stats %+v: no kernel drops after %d packets into a %d-byte ring", s, flood, 2*block)
	}
	// Now read: what the ring held, then a marker sent once there is room.
	r := readAsync(c)
	r.wait(func(got []capPkt) bool { return len(got) > 0 })
	tx.send(t, labSegment(t, labNets[0], 0, 10, 9999))
	got := r.wait(func(got []capPkt) bool {
		return len(got) > 0 && got[len(got)-1].packet(t).DstPort() == 9999
	})
	c.Close()
	<-r.done
	s = c.Stats()
	if s.Packets != uint64(len(got)) || s.Packets+s.KernelDrops != flood+1 || got[len(got)-1].packet(t).DstPort() != 9999 {
		t.Fatalf("stats %+v, read %d: want the marker last and packets + drops = %d", s, len(got), flood+1)
	}
	t.Logf("ring held %d of %d packets, kernel dropped %d", s.Packets-1, flood, s.KernelDrops)
}

// TestAFPacketFanout splits 64 flows between two members of a group by
// flow hash: each flow goes to exactly one member, every packet arrives.
func TestAFPacketFanout(t *testing.T) {
	l := netlab.NewPair(t)
	cfg := &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn, FanoutGroup: 4242,
		Filter: &capture.Filter{DstPorts: []uint16{9000}}}
	members := []*capture.AFPacket{openAFPacket(t, l.B, cfg), openAFPacket(t, l.B, cfg)}
	readers := []*asyncReader{readAsync(members[0]), readAsync(members[1])}
	tx := openRawSender(t, l.A, false)
	const flows, per = 64, 4
	for r := range per {
		for f := range flows {
			tx.send(t, segment(t, capture.Segment{Src: netip.AddrPortFrom(labNets[0].a, uint16(20000+f)),
				Dst: netip.AddrPortFrom(labNets[0].b, 9000), Seq: capture.Seq(r), Flags: capture.FlagACK, ID: uint16(r*flows + f + 1)}))
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if members[0].Stats().Packets+members[1].Stats().Packets >= flows*per {
			break
		}
	}
	owner := map[uint16]int{}
	count := [2]int{}
	for i, r := range readers {
		members[i].Close()
		<-r.done
		for _, p := range r.got {
			port := p.packet(t).SrcPort()
			if o, ok := owner[port]; ok && o != i {
				t.Fatalf("flow from port %d went to both members", port)
			}
			owner[port] = i
			count[i]++
		}
	}
	if count[0]+count[1] != flows*per || len(owner) != flows || count[0] == 0 || count[1] == 0 {
		t.Fatalf("members read %v packets of %d flows, want %d packets split by flow", count, len(owner), flows*per)
	}
}

func TestAFPacketCloseUnblocks(t *testing.T) {
	l := netlab.NewPair(t)
	c := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}})
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadPackets(make([]capture.Packet, 4))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, capture.ErrClosed) {
			t.Fatalf("blocked ReadPackets returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock ReadPackets")
	}
	if _, err := c.ReadPackets(make([]capture.Packet, 4)); !errors.Is(err, capture.ErrClosed) {
		t.Fatalf("ReadPackets after Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestAFPacketConfigErrors(t *testing.T) {
	l := netlab.NewPair(t)
	for _, cfg := range []capture.AFPacketConfig{
		{Interfaces: []string{"nosuchif0"}},
		{Interfaces: []string{"lo", "lo"}},
		{SnapLen: 10},
		{SnapLen: 70000},
		{BlockSize: 1000},
		{BlockSize: 4096},
		{RingSize: 128 << 10}, // one block
		{BlockTimeout: time.Microsecond},
		{Direction: 7},
		{FanoutMode: 9},
		{Promiscuous: true},
		{Filter: &capture.Filter{}, RawFilter: []bpf.RawInstruction{{Op: 6}}},
		{Filter: &capture.Filter{Ports: make([]uint16, 100)}},
		{RawFilter: []bpf.RawInstruction{{Op: 0xffff}}},
	} {
		err := l.B.Do(func() error {
			c, err := capture.NewAFPacket(&cfg)
			if err == nil {
				c.Close()
				return fmt.Errorf("NewAFPacket(%+v) succeeded", cfg)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// TestAFPacketAllocs holds ReadPackets to zero allocations.
func TestAFPacketAllocs(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			l := netlab.NewPair(t)
			c := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: []string{l.BIf}, Direction: capture.DirIn})
			tx := openRawSender(t, l.A, n.network == "ip6")
			const runs, batch = 50, 16
			for i := range (runs + 2) * batch {
				tx.send(t, labSegment(t, n, i%200, 64, 9000))
			}
			timer := time.AfterFunc(20*time.Second, func() { c.Close() })
			defer timer.Stop()
			pkts := make([]capture.Packet, batch)
			var err error
			allocs := testing.AllocsPerRun(runs, func() {
				if err == nil {
					_, err = c.ReadPackets(pkts)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if allocs != 0 {
				t.Fatalf("ReadPackets allocates %.1f times per call", allocs)
			}
		})
	}
}
