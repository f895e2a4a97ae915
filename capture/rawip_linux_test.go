package capture_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"golang.org/x/sys/unix"
)

// labNet describes one address family of the lab.
type labNet struct {
	network string
	a, b    netip.Addr
}

var labNets = []labNet{
	{"ip4", netip.MustParseAddr(netlab.PairA4), netip.MustParseAddr(netlab.PairB4)},
	{"ip6", netip.MustParseAddr(netlab.PairA6), netip.MustParseAddr(netlab.PairB6)},
}

// openRawIP opens a capturer in namespace ns, closed by t.Cleanup (before
// the lab's namespaces are deleted).
func openRawIP(t *testing.T, ns *netlab.NS, cfg *capture.RawIPConfig) *capture.RawIP {
	t.Helper()
	return netlab.Open(t, ns, func() (*capture.RawIP, error) { return capture.NewRawIP(cfg) })
}

// rawSender is a header-including raw socket in a lab namespace.
type rawSender struct {
	fd int
	v6 bool
}

func openRawSender(t testing.TB, ns *netlab.NS, v6 bool) *rawSender {
	t.Helper()
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	s := &rawSender{fd: -1, v6: v6}
	if err := ns.Do(func() (err error) {
		s.fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *rawSender) send(t *testing.T, dgram []byte) {
	t.Helper()
	var sa unix.Sockaddr
	if s.v6 {
		sa = &unix.SockaddrInet6{Addr: [16]byte(dgram[24:40])}
	} else {
		sa = &unix.SockaddrInet4{Addr: [4]byte(dgram[16:20])}
	}
	if err := unix.Sendto(s.fd, dgram, 0, sa); err != nil {
		t.Fatalf("sendto: %v", err)
	}
}

// labSegment builds the i-th test segment from A to B with plen payload
// bytes, an uncommon TTL and, for IPv6, a traffic class and flow label, so a
// rebuilt header has to get every field right.
func labSegment(t testing.TB, n labNet, i, plen int, dport uint16) []byte {
	t.Helper()
	payload := make([]byte, plen)
	for k := range payload {
		payload[k] = byte(i + k)
	}
	s := &capture.Segment{
		Src:     netip.AddrPortFrom(n.a, 40000+uint16(i)),
		Dst:     netip.AddrPortFrom(n.b, dport),
		Seq:     capture.Seq(1000 * i),
		Ack:     capture.Seq(7),
		Flags:   capture.FlagACK | capture.FlagPSH,
		Window:  512,
		Payload: payload,
		TTL:     77,
		ID:      uint16(i + 1), // nonzero, or the kernel picks one
	}
	if i%2 == 0 {
		s.Options = capture.AppendTimestamps(nil, uint32(i), 5)
	}
	b, err := capture.AppendSegment(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if n.network == "ip6" {
		b[0], b[1], b[2], b[3] = 0x6a, 0xb1, 0x23, byte(i) // class 0xab, label 0x123xx
	}
	return b
}

// TestRawIPCrafted sends crafted segments from A to B: B's capturer must
// return each one byte for byte (for IPv6, with a rebuilt header), and A's
// capturer must see only B's answers (RSTs), never what A sent.
func TestRawIPCrafted(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			capB := openRawIP(t, lab.B, &capture.RawIPConfig{Network: n.network})
			capA := openRawIP(t, lab.A, &capture.RawIPConfig{Network: n.network})
			tx := openRawSender(t, lab.A, n.network == "ip6")
			const count = 100
			var sent [][]byte
			var bytesSent uint64
			start := time.Now()
			for i := range count {
				b := labSegment(t, n, i, (i*137)%1400, 9000)
				sent = append(sent, b)
				bytesSent += uint64(len(b))
				tx.send(t, b)
			}
			got := netlab.Collect(t, capB, count, nil)
			for i, p := range got {
				if !bytes.Equal(p.Data, sent[i]) {
					t.Fatalf("packet %d:\n got %x\nwant %x", i, p.Data, sent[i])
				}
				if p.Time.Before(start.Add(-time.Second)) || p.Time.After(time.Now().Add(time.Second)) {
					t.Errorf("packet %d: time %v outside the test's run from %v", i, p.Time, start)
				}
			}
			if s := capB.Stats(); s.Packets != count || s.Bytes != bytesSent {
				t.Errorf("B stats %+v, want %d packets, %d bytes", s, count, bytesSent)
			}
			// B answers every segment to its closed port with a RST.
			for i, p := range netlab.Collect(t, capA, count, nil) {
				if p.Src() != n.b || p.Dst() != n.a || !p.HasFlags(capture.FlagRST) {
					t.Fatalf("A captured packet %d %v flags %#x: want only RSTs from B", i, p.Flow(), p.Flags())
				}
			}
		})
	}
}

// TestRawIPRealTCP captures a real TCP exchange between the namespaces'
// stacks: each side's capturer sees only the other side's segments.
func TestRawIPRealTCP(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			capB := openRawIP(t, lab.B, &capture.RawIPConfig{Network: n.network})
			capA := openRawIP(t, lab.A, &capture.RawIPConfig{Network: n.network})
			srv := netip.AddrPortFrom(n.b, 8080)
			var ln net.Listener
			if err := lab.B.Do(func() (err error) {
				ln, err = net.Listen("tcp", srv.String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write([]byte("world"))
				}
			}()
			var conn net.Conn
			if err := lab.A.Do(func() (err error) {
				conn, err = net.DialTimeout("tcp", srv.String(), 10*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, make([]byte, 5)); err != nil {
				t.Fatal(err)
			}
			conn.Close()

			check := func(c *capture.RawIP, from, to netip.Addr, payload string) {
				t.Helper()
				sawData := false
				// Read up to the sender's FIN; every segment must come from the peer.
				netlab.Collect(t, c, 1, func(p *capture.Packet) bool {
					if p.Src() != from || p.Dst() != to {
						t.Fatalf("captured %v: not from %v to %v", p.Flow(), from, to)
					}
					sawData = sawData || string(p.Payload()) == payload
					return p.HasFlags(capture.FlagFIN)
				})
				if !sawData {
					t.Errorf("no segment from %v carried %q", from, payload)
				}
			}
			check(capB, n.a, n.b, "hello")
			check(capA, n.b, n.a, "world")
		})
	}
}

// TestRawIPSnapLen counts a datagram longer than SnapLen as truncated and
// goes on with the next.
func TestRawIPSnapLen(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			c := openRawIP(t, lab.B, &capture.RawIPConfig{Network: n.network, SnapLen: 200})
			tx := openRawSender(t, lab.A, n.network == "ip6")
			tx.send(t, labSegment(t, n, 1, 1000, 9000))
			small := labSegment(t, n, 2, 50, 9000)
			tx.send(t, small)
			got := netlab.Collect(t, c, 1, nil)
			if !bytes.Equal(got[0].Data, small) {
				t.Fatalf("got %x, want the small segment %x", got[0].Data, small)
			}
			if s := c.Stats(); s.Truncated != 1 || s.Packets != 1 {
				t.Fatalf("stats %+v, want 1 truncated, 1 packet", s)
			}
		})
	}
}

// TestRawIPKernelDrops overflows a tiny receive buffer and checks that
// every datagram is either returned or counted as a kernel drop.
func TestRawIPKernelDrops(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			c := openRawIP(t, lab.B, &capture.RawIPConfig{Network: n.network, RecvBuffer: 4096})
			tx := openRawSender(t, lab.A, n.network == "ip6")
			const flood = 200
			for i := range flood {
				tx.send(t, labSegment(t, n, i, 100, 9000))
			}
			netlab.Collect(t, c, 1, nil) // drains what the buffer held
			// The kernel reports its drop count on the next datagram queued.
			tx.send(t, labSegment(t, n, 0, 10, 9999))
			netlab.Collect(t, c, 1, func(p *capture.Packet) bool { return p.DstPort() == 9999 })
			s := c.Stats()
			if s.KernelDrops == 0 || s.Packets+s.KernelDrops != flood+1 {
				t.Fatalf("stats %+v: want kernel drops and packets+drops = %d", s, flood+1)
			}
		})
	}
}

// TestRawIPCloseUnblocks closes a capturer under a blocked ReadPackets.
func TestRawIPCloseUnblocks(t *testing.T) {
	lab := netlab.NewPair(t)
	c := openRawIP(t, lab.B, nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadPackets(make([]capture.Packet, 4))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it block; the outcome is the same if it has not
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

// TestRawIPAllocs holds ReadPackets to zero allocations: the datagrams are
// queued first, then read batch by batch.
func TestRawIPAllocs(t *testing.T) {
	for _, n := range labNets {
		t.Run(n.network, func(t *testing.T) {
			lab := netlab.NewPair(t)
			c := openRawIP(t, lab.B, &capture.RawIPConfig{Network: n.network})
			tx := openRawSender(t, lab.A, n.network == "ip6")
			const runs, batch = 50, 16
			for i := range (runs + 1) * batch {
				tx.send(t, labSegment(t, n, i%200, 64, 9000))
			}
			timer := time.AfterFunc(20*time.Second, func() { c.Close() }) // never hang
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
