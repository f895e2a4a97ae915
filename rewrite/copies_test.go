package rewrite

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/shadowcopy/tcpcopy/capture"
)

func newCopies(tb testing.TB, cfg CopiesConfig) *Copies {
	tb.Helper()
	c, err := NewCopies(&cfg)
	if err != nil {
		tb.Fatalf("NewCopies(%+v): %v", cfg, err)
	}
	return c
}

func TestNewCopiesErrors(t *testing.T) {
	pool, _ := ParseClientPool("198.18.200.x")
	for _, tc := range []struct {
		cfg CopiesConfig
		err string
	}{
		{CopiesConfig{Copies: -1}, "-1 copies: want 1 to 1023"},
		{CopiesConfig{Copies: 1024}, "1024 copies"},
		{CopiesConfig{Instance: -1}, "instance -1"},
		{CopiesConfig{Instance: 1024}, "instance 1024: want 0 to 1023"},
		{CopiesConfig{Instance: 3, Instances: 3}, "3 instances: want 4 (instance+1) to 1024"},
		{CopiesConfig{Instances: 1025}, "1025 instances"},
		{CopiesConfig{AddressPerCopy: true}, "AddressPerCopy needs a Pool"},
		{CopiesConfig{Linger: -time.Second}, "negative linger"},
		{CopiesConfig{Copies: 1023, Instances: 128}, "1023 copies x 128 instances do not fit"},
	} {
		_, err := NewCopies(&tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("NewCopies(%+v) error %v, want %q", tc.cfg, err, tc.err)
		}
	}
	if _, err := NewCopies(&CopiesConfig{Copies: 3, Pool: pool, AddressPerCopy: true, Instance: 5}); err != nil {
		t.Error(err)
	}
	c, err := NewCopies(nil)
	if err != nil || c.Copies() != 1 || c.Window() != 65535 || c.Port(40000, 0) != 40000 {
		t.Errorf("NewCopies(nil) = %+v, %v", c, err)
	}
}

func TestCopiesLayout(t *testing.T) {
	for _, tc := range []struct {
		copies, instance, instances int
		window                      int
		ports                       map[uint16][]uint16 // client port -> port of each copy
	}{
		// Two copies: the second is half the ring away, which covers the
		// whole Linux ephemeral range (32768-60999, 28232 ports).
		{copies: 2, window: 32767, ports: map[uint16][]uint16{40000: {40000, 7232}, 1: {1, 32768}, 65535: {65535, 32767}}},
		{copies: 3, window: 21845, ports: map[uint16][]uint16{40000: {40000, 61845, 18155}}},
		// Instance 1 sits half a band further: offset 32767/2.
		{copies: 2, instance: 1, window: 16383, ports: map[uint16][]uint16{40000: {56383, 23615}}},
		// Instances 2 and 3 at a quarter and three quarters of the band.
		{copies: 1, instance: 2, window: 16383, ports: map[uint16][]uint16{1000: {1000 + 16383}}},
		{copies: 1, instance: 3, window: 16383, ports: map[uint16][]uint16{1000: {1000 + 49151}}},
		{copies: 1, instance: 0, instances: 1024, window: 63, ports: map[uint16][]uint16{1000: {1000}}},
		{copies: 1023, window: 64, ports: map[uint16][]uint16{65535: {65535, 64, 128}}},
	} {
		c := newCopies(t, CopiesConfig{Copies: tc.copies, Instance: tc.instance, Instances: tc.instances, Tracked: -1})
		if c.Copies() != tc.copies || c.Window() != tc.window {
			t.Errorf("%+v: Copies %d, Window %d, want %d", tc, c.Copies(), c.Window(), tc.window)
		}
		for port, want := range tc.ports {
			for i, w := range want {
				if got := c.Port(port, i); got != w {
					t.Errorf("copies %d instance %d: copy %d of port %d is %d, want %d", tc.copies, tc.instance, i, port, got, w)
				}
			}
		}
		if c.Port(0, 0) != 0 || c.Port(1, -1) != 0 || c.Port(1, tc.copies) != 0 {
			t.Errorf("Port accepts port 0 or a bad copy")
		}
	}
}

// Property: for ports in any window of Window() consecutive ports, every
// copy of every instance (up to Instances) gets a distinct port: copies
// never collide with each other, with other instances, or with the
// original ports (copy 0 of instance 0).
func TestCopiesNeverCollideWithinWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	type layout struct{ n, f int }
	cases := []layout{{1, 1}, {2, 1}, {3, 1}, {1023, 1}, {2, 2}, {3, 3}, {1, 1024}, {63, 1024}, {5, 7}, {10, 100}}
	for range 60 {
		n := 1 + rng.IntN(40)
		f := 1 + rng.IntN(40)
		cases = append(cases, layout{n, f})
	}
	for _, l := range cases {
		cs := make([]*Copies, l.f)
		for f := range l.f {
			cs[f] = newCopies(t, CopiesConfig{Copies: l.n, Instance: f, Instances: l.f, Tracked: -1})
		}
		w := cs[0].Window()
		for f := range l.f {
			if cs[f].Window() != w {
				t.Fatalf("%+v: instances disagree on the window", l)
			}
		}
		for _, x := range []int{0, 1, 28000, 65535 - w/2, rng.IntN(65535)} {
			var seen [65536]bool
			for _, c := range cs {
				for i := range l.n {
					for k := range w {
						port := uint16((x+k)%65535 + 1)
						q := c.Port(port, i)
						if q == 0 || seen[q] {
							t.Fatalf("copies %d x instances %d, window %d from %d: port %d copy %d maps to %d, taken", l.n, l.f, w, x+1, port, i, q)
						}
						seen[q] = true
					}
				}
			}
		}
		// Instance 0's copy 0 keeps the client's port.
		if got := cs[0].Port(40000, 0); got != 40000 {
			t.Fatalf("%+v: first copy moved port 40000 to %d", l, got)
		}
	}
}

func TestCopiesRewriteCopy(t *testing.T) {
	pool, err := ParseClientPool("198.18.200.x,fd00:198:18:200::/64")
	if err != nil {
		t.Fatal(err)
	}
	for _, perCopy := range []bool{false, true} {
		c := newCopies(t, CopiesConfig{Copies: 3, Pool: pool, AddressPerCopy: perCopy, Clock: new(fakeClock).Now})
		for _, v6 := range []bool{false, true} {
			src, dst := cli4, tgt4
			if v6 {
				src, dst = cli6, tgt6
			}
			base, _ := pool.Addr(src.Addr())
			addrs := map[netip.Addr]bool{}
			for i := range 3 {
				for _, flags := range []uint8{capture.FlagSYN, capture.FlagACK | capture.FlagPSH} {
					p := packet(t, src, dst, flags, "hello")
					if !c.RewriteCopy(p, i) {
						t.Fatalf("copy %d of %s refused: %+v", i, p.Flow(), c.Stats())
					}
					if !p.ChecksumsValid() {
						t.Fatalf("copy %d: checksums wrong", i)
					}
					if p.SrcPort() != c.Port(src.Port(), i) || p.DstEndpoint().AddrPort() != dst || string(p.Payload()) != "hello" {
						t.Fatalf("copy %d: %s", i, p.Flow())
					}
					if !pool.Contains(p.Src()) {
						t.Fatalf("copy %d: source %s not from the pool", i, p.Src())
					}
					if !perCopy && p.Src() != base {
						t.Fatalf("copy %d: source %s, want the client's pool address %s", i, p.Src(), base)
					}
					addrs[p.Src()] = true
				}
			}
			if perCopy && len(addrs) != 3 {
				t.Errorf("AddressPerCopy: copies used addresses %v, want 3 distinct", addrs)
			}
		}
		if st := c.Stats(); st.Packets != 12 || st.Collisions != 0 {
			t.Errorf("stats %+v", st)
		}
	}
}

func TestCopiesRefusals(t *testing.T) {
	pool, _ := ParseClientPool("198.18.200.1")
	c := newCopies(t, CopiesConfig{Copies: 2, Pool: pool})
	if c.RewriteCopy(packet(t, cli4, tgt4, capture.FlagACK, ""), 2) || c.RewriteCopy(packet(t, cli4, tgt4, capture.FlagACK, ""), -1) {
		t.Error("copy index out of range accepted")
	}
	if c.RewriteCopy(packet(t, netip.AddrPortFrom(cli4.Addr(), 0), tgt4, capture.FlagACK, ""), 0) {
		t.Error("source port 0 accepted")
	}
	if c.RewriteCopy(packet(t, cli6, tgt6, capture.FlagACK, ""), 0) {
		t.Error("IPv6 packet accepted by a copy with an IPv4 pool")
	}
	want := CopiesStats{BadCopy: 2, BadPort: 1, NoAddress: 1}
	if st := c.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// Two clients that share the pool's only address and a port: the second
// SYN is refused and counted, its later packets too, the first goes on;
// after the linger period the endpoint is free again.
func TestCopiesCollision(t *testing.T) {
	pool, _ := ParseClientPool("198.18.200.1")
	clk := new(fakeClock)
	c := newCopies(t, CopiesConfig{Pool: pool, Clock: clk.Now, Linger: 10 * time.Second})
	a := netip.AddrPortFrom(addr4(1), 40000)
	b := netip.AddrPortFrom(addr4(2), 40000)
	step := func(src netip.AddrPort, flags uint8, want bool) {
		t.Helper()
		p := packet(t, src, tgt4, flags, "")
		if got := c.Rewrite(p); got != want {
			t.Fatalf("%s flags %#x at %v: Rewrite = %v, want %v (%+v)", src, flags, time.Duration(clk.ns.Load()), got, want, c.Stats())
		}
	}
	step(a, capture.FlagSYN, true)
	step(a, capture.FlagACK, true)
	clk.Advance(time.Second)
	step(b, capture.FlagSYN, false) // collision
	step(b, capture.FlagACK, false) // its data too
	step(a, capture.FlagACK, true)  // the owner goes on
	step(a, capture.FlagSYN, true)  // and may retransmit its SYN
	clk.Advance(5 * time.Second)
	step(b, capture.FlagSYN, false)                // still within linger of a's last packet
	step(a, capture.FlagSYN|capture.FlagACK, true) // not a claim: a SYN-ACK from the client side
	clk.Advance(11 * time.Second)                  // a went quiet for longer than the linger
	step(b, capture.FlagSYN, true)                 // b takes the endpoint over
	step(a, capture.FlagACK, false)                // and a, if it wakes up, is the stranger now
	want := CopiesStats{Packets: 6, Collisions: 2, CollidedPackets: 2}
	if st := c.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	// Once no collision happened for the linger period, packets other
	// than SYNs are not checked any more.
	clk.Advance(11 * time.Second)
	step(a, capture.FlagACK, true)
	if c.owners.lastConflict.Load() != 0 {
		t.Error("alert not cleared after the linger period")
	}
}

// A closed connection lets its fake endpoint go after a second: port
// reuse by another client at high rates is not a collision.
func TestCopiesReleaseOnClose(t *testing.T) {
	pool, _ := ParseClientPool("198.18.200.1")
	for _, closing := range []uint8{capture.FlagFIN | capture.FlagACK, capture.FlagRST} {
		clk := new(fakeClock)
		c := newCopies(t, CopiesConfig{Pool: pool, Clock: clk.Now})
		a := netip.AddrPortFrom(addr4(1), 40000)
		b := netip.AddrPortFrom(addr4(2), 40000)
		if !c.Rewrite(syn(t, a, tgt4)) {
			t.Fatal("a's SYN refused")
		}
		// b's FIN for the same endpoint does not release a's claim.
		if !c.Rewrite(packet(t, b, tgt4, closing, "")) {
			t.Fatal("a stray FIN refused without a conflict")
		}
		if !c.Rewrite(packet(t, a, tgt4, closing, "")) {
			t.Fatal("a's close refused")
		}
		clk.Advance(500 * time.Millisecond)
		if c.Rewrite(syn(t, b, tgt4)) {
			t.Fatal("b's SYN accepted within the close grace")
		}
		clk.Advance(600 * time.Millisecond)
		if !c.Rewrite(syn(t, b, tgt4)) {
			t.Fatalf("b's SYN refused after a closed: %+v", c.Stats())
		}
	}
}

// The same client endpoint talking to two servers meets itself on one fake
// endpoint (the session table keys on the client alone): a collision.
func TestCopiesCollisionTwoServers(t *testing.T) {
	clk := new(fakeClock)
	c := newCopies(t, CopiesConfig{Clock: clk.Now})
	if !c.Rewrite(syn(t, cli4, tgt4)) {
		t.Fatal("first SYN refused")
	}
	other := netip.AddrPortFrom(tgt4.Addr(), 8443)
	if c.Rewrite(syn(t, cli4, other)) {
		t.Fatal("second server's SYN on the same client endpoint accepted")
	}
	if st := c.Stats(); st.Collisions != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Copies of distinct client ports (in the window) never collide, across
// thousands of SYNs: no false alarms from the table.
func TestCopiesNoFalseCollisions(t *testing.T) {
	pool, _ := ParseClientPool("198.18.200.0/30")
	clk := new(fakeClock)
	c := newCopies(t, CopiesConfig{Copies: 3, Pool: pool, Clock: clk.Now, Tracked: 1 << 14})
	for port := 32768; port < 32768+3000; port++ {
		for cl := range 2 {
			for i := range 3 {
				if !c.RewriteCopy(syn(t, netip.AddrPortFrom(addr4(cl), uint16(port)), tgt4), i) {
					t.Fatalf("port %d client %d copy %d refused: %+v", port, cl, i, c.Stats())
				}
			}
		}
		clk.Advance(time.Millisecond)
	}
}

// A claim is one cache line, as Tracked's documentation says.
func TestOwnerSize(t *testing.T) {
	if n := unsafe.Sizeof(owner{}); n != 64 {
		t.Errorf("owner is %d bytes, want 64", n)
	}
}

// A table too small for the SYN rate evicts claims and says so, and does
// not invent collisions.
func TestCopiesEvictions(t *testing.T) {
	clk := new(fakeClock)
	c := newCopies(t, CopiesConfig{Copies: 2, Clock: clk.Now, Tracked: 16})
	if c.owners.capacity() < 16 || c.owners.capacity() > 32 {
		t.Errorf("capacity %d for 16 tracked", c.owners.capacity())
	}
	for port := 1000; port < 2000; port++ {
		for i := range 2 {
			if !c.RewriteCopy(syn(t, netip.AddrPortFrom(cli4.Addr(), uint16(port)), tgt4), i) {
				t.Fatalf("refused: %+v", c.Stats())
			}
		}
	}
	if st := c.Stats(); st.Evictions == 0 || st.Collisions != 0 {
		t.Errorf("stats %+v: want evictions, no collisions", st)
	}
}

// One Copies serves many shards at once.
func TestCopiesConcurrent(t *testing.T) {
	pool, _ := ParseClientPool("198.18.200.0/28")
	clk := new(fakeClock)
	c := newCopies(t, CopiesConfig{Copies: 4, Pool: pool, AddressPerCopy: true, Clock: clk.Now, Tracked: 4096})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range 500 {
				// Clients may share a pool address, so they do not
				// share ports (within the window: no collision).
				src := netip.AddrPortFrom(addr4(g), uint16(20000+g*1000+k))
				for i := range 4 {
					for _, f := range []uint8{capture.FlagSYN, capture.FlagACK} {
						if !c.RewriteCopy(packet(t, src, tgt4, f, ""), i) {
							t.Errorf("goroutine %d: %s copy %d refused", g, src, i)
							return
						}
					}
				}
				clk.Advance(time.Microsecond)
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Collisions != 0 || st.Packets != 8*500*4*2 {
		t.Errorf("stats %+v", st)
	}
}
