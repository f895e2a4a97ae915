package tcpcopy

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/intercept"
	"github.com/shadowcopy/tcpcopy/session"
)

func TestServerAddrs(t *testing.T) {
	got, err := ServerAddrs([]string{"198.18.1.2", "198.18.1.3:9000, fd00:198:18::5", "[fd00:198:18::6]:7"}, 36524)
	if err != nil {
		t.Fatal(err)
	}
	want := "198.18.1.2:36524 198.18.1.3:9000 [fd00:198:18::5]:36524 [fd00:198:18::6]:7"
	if strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"host.example:1", "198.18.1.2:0", "198.18.1.2:99999", "198.18.1.2:x"} {
		if _, err := ServerAddrs([]string{bad}, 1); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ServerAddrs(%q): error %v, want one quoting it", bad, err)
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"KernelDrops": "kernel_drops", "AbsorbedACKs": "absorbed_acks", "TLSFailures": "tls_failures",
		"Sent": "sent", "NotTCP": "not_tcp", "SkippedByProtocol": "skipped_by_protocol", "MsgSize": "msg_size",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCopyRatio(t *testing.T) {
	for _, c := range []struct {
		s    session.Stats
		want float64
	}{
		{session.Stats{}, 1},
		{session.Stats{Started: 10}, 1},
		{session.Stats{Started: 10, HandshakeTimeouts: 1, GapTimeouts: 1}, 0.8},
		{session.Stats{Started: 8, Shed: 2}, 0.8},
	} {
		if got := copyRatio(c.s); got != c.want {
			t.Errorf("copyRatio(%+v) = %v, want %v", c.s, got, c.want)
		}
	}
}

// TestAttrsComplete: every counter of every stage shows in Attrs.
func TestAttrsComplete(t *testing.T) {
	keys := map[string]bool{}
	for _, a := range (OnlineStats{}).Attrs() {
		if keys[a.Key] {
			t.Errorf("key %q twice", a.Key)
		}
		keys[a.Key] = true
	}
	for _, k := range []string{"copy_ratio", "capture.kernel_drops", "copier.filtered", "session.handshake_timeouts",
		"session.shed", "emit.no_buffers", "intercept.announce_dropped", "copies.collisions", "sampler.sampled_out", "intercept.missed"} {
		if !keys[k] {
			t.Errorf("Attrs lacks %q", k)
		}
	}
}

func TestNewOnlineErrors(t *testing.T) {
	ok := OnlineConfig{Transfer: "80-198.18.1.2:80", Servers: []string{"198.18.1.2"}, Capturer: capture.NewMemory(),
		NewEmitter: func(int) (emit.Emitter, error) { return emit.NewRecorder(nil), nil }}
	for name, mod := range map[string]func(c *OnlineConfig){
		"no transfer":   func(c *OnlineConfig) { c.Transfer = "" },
		"bad transfer":  func(c *OnlineConfig) { c.Transfer = "80-nowhere" },
		"no servers":    func(c *OnlineConfig) { c.Servers = nil },
		"bad server":    func(c *OnlineConfig) { c.Servers = []string{"198.18.1.2:0"} },
		"bad percent":   func(c *OnlineConfig) { c.SamplePercent = 101 },
		"bad MTU":       func(c *OnlineConfig) { c.MTU = 20 },
		"bad pool":      func(c *OnlineConfig) { c.ClientPool = "nonsense" },
		"bad copies":    func(c *OnlineConfig) { c.Copies = 5000 },
		"bad memory":    func(c *OnlineConfig) { c.Session.MaxMemory = -1 },
		"emit fails":    func(c *OnlineConfig) { c.NewEmitter = func(int) (emit.Emitter, error) { return nil, net.ErrClosed } },
		"no pcap file":  func(c *OnlineConfig) { c.Capturer = nil; c.Capture = CaptureFile },
		"missing pcap":  func(c *OnlineConfig) { c.Capturer = nil; c.Offline.File = "/nonexistent/x.pcap" },
		"bad emit kind": func(c *OnlineConfig) { c.NewEmitter = nil; c.Emit = EmitKind(9) },
	} {
		c := ok
		mod(&c)
		if o, err := NewOnline(&c); err == nil {
			o.Close()
			t.Errorf("%s: NewOnline accepted %+v", name, c)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	o, err := NewOnline(&ok)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	o.Close()
}

// TestOnlineWithService runs an Online with a memory capturer and a
// recording emitter against an intercept.Service with a memory interceptor
// on loopback: the copied SYN goes out, the target's SYN-ACK comes back
// through the service and the session answers it.
func TestOnlineWithService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mem := intercept.NewMemory()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := intercept.NewService(&intercept.ServiceConfig{Interceptor: mem, Listener: ln,
		Server: intercept.ServerConfig{Secret: []byte("s3cret")}})
	if err != nil {
		t.Fatal(err)
	}
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(ctx) }()
	<-svc.Ready()

	capt := capture.NewMemory()
	rec := emit.NewRecorder(nil)
	on, err := NewOnline(&OnlineConfig{
		Transfer:   "198.18.0.2:80-198.18.1.2:8080",
		Servers:    []string{svc.Addr().String()},
		Secret:     []byte("s3cret"),
		Capturer:   capt,
		NewEmitter: func(int) (emit.Emitter, error) { return rec, nil },
		Shards:     2,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- on.Run(runCtx) }()

	client := netip.MustParseAddrPort("198.18.0.1:40000")
	syn, err := capture.AppendSegment(nil, &capture.Segment{
		Src: client, Dst: netip.MustParseAddrPort("198.18.0.2:80"),
		Seq: 1000, Flags: capture.FlagSYN, Window: 65535, Options: capture.AppendMSS(nil, 1460),
	})
	if err != nil {
		t.Fatal(err)
	}
	capt.Push(time.Now(), syn)
	if err := rec.Wait(ctx, 1); err != nil {
		t.Fatalf("no SYN sent: %v (stats %+v)", err, on.Stats())
	}
	var p capture.Packet
	if err := p.Decode(rec.Packets()[0]); err != nil {
		t.Fatal(err)
	}
	if !p.HasFlags(capture.FlagSYN) || p.Seq() != 1000 || p.Dst() != netip.MustParseAddr("198.18.1.2") || p.DstPort() != 8080 {
		t.Fatalf("sent %v seq %d flags %#x, want the SYN to 198.18.1.2:8080", p.Flow(), p.Seq(), p.Flags())
	}
	synack, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.18.1.2:8080"), Dst: client,
		Seq: 5000, Ack: 1001, Flags: capture.FlagSYN | capture.FlagACK, Window: 65535, Options: capture.AppendMSS(nil, 1460),
	})
	if err != nil {
		t.Fatal(err)
	}
	mem.Push(synack)
	if err := rec.Wait(ctx, 2); err != nil {
		t.Fatalf("no ACK of the SYN-ACK: %v (stats %+v)", err, on.Stats())
	}
	if err := p.Decode(rec.Packets()[1]); err != nil {
		t.Fatal(err)
	}
	if p.Flags() != capture.FlagACK || p.Ack() != 5001 {
		t.Errorf("second packet flags %#x ack %d, want the ACK of the SYN-ACK", p.Flags(), p.Ack())
	}
	st := on.Stats()
	if st.Session.Started != 1 || st.Copier.Responses != 1 || st.Capture.Packets != 1 || st.Session.Sent != 2 || st.CopyRatio != 1 {
		t.Errorf("stats %+v", st)
	}
	// The second connection may still be in its handshake: wait for it
	// (bounded) before counting copier connections.
	for deadline := time.Now().Add(5 * time.Second); svc.Stats().Server.Copiers < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if s := svc.Stats(); s.Server.Routed != 1 || s.Server.Copiers != 2 {
		t.Errorf("service stats %+v", s)
	}
	stop()
	if err := <-runDone; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := on.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	cancel()
	if err := <-svcDone; err != nil {
		t.Errorf("Service.Run: %v", err)
	}
}

// TestMerged reads two capturers as one.
func TestMerged(t *testing.T) {
	a, b := capture.NewMemory(), capture.NewMemory()
	m := newMerged([]capture.Capturer{a, b})
	for i, src := range []*capture.Memory{a, b, a} {
		d, err := capture.AppendSegment(nil, &capture.Segment{
			Src: netip.MustParseAddrPort("198.18.0.1:1000"), Dst: netip.MustParseAddrPort("198.18.0.2:80"),
			Seq: capture.Seq(i), Flags: capture.FlagACK})
		if err != nil {
			t.Fatal(err)
		}
		src.Push(time.Now(), d)
	}
	seen := map[capture.Seq]bool{}
	pkts := make([]capture.Packet, 1) // one at a time: batches are split
	for len(seen) < 3 {
		n, err := m.ReadPackets(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			seen[pkts[i].Seq()] = true
		}
	}
	if st := m.Stats(); st.Packets != 3 {
		t.Errorf("stats %+v", st)
	}
	done := make(chan error, 1)
	go func() { _, err := m.ReadPackets(pkts); done <- err }()
	m.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ReadPackets after Close: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadPackets")
	}
}

// TestOnlineShedsOverMemoryCap: over the memory cap new sessions are shed
// and counted, and the Online keeps running.
func TestOnlineShedsOverMemoryCap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := intercept.NewService(&intercept.ServiceConfig{Interceptor: intercept.NewMemory(), Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	go svc.Run(ctx)
	<-svc.Ready()
	capt := capture.NewMemory()
	on, err := NewOnline(&OnlineConfig{
		Transfer: "198.18.0.2:80-198.18.1.2:80", Servers: []string{svc.Addr().String()},
		Capturer: capt, NewEmitter: func(int) (emit.Emitter, error) { return emit.NewRecorder(nil), nil },
		Shards: 2, Session: session.Config{MaxMemory: 2 * 3000}, // 3000 bytes per shard
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- on.Run(ctx) }()
	server := netip.MustParseAddrPort("198.18.0.2:80")
	push := func(client netip.AddrPort, seq capture.Seq, flags uint8, payload int) {
		d, err := capture.AppendSegment(nil, &capture.Segment{Src: client, Dst: server, Seq: seq, Ack: 1,
			Flags: flags, Window: 65535, Payload: make([]byte, payload)})
		if err != nil {
			t.Fatal(err)
		}
		capt.Push(time.Now(), d)
	}
	// Many clients, each a SYN and data the silent target never takes.
	for i := range 40 {
		c := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(20000+i))
		push(c, 100, capture.FlagSYN, 0)
		push(c, 101, capture.FlagACK|capture.FlagPSH, 1000)
		push(c, 1101, capture.FlagACK|capture.FlagPSH, 1000)
	}
	deadline := time.Now().Add(10 * time.Second)
	for on.Stats().Copier.Dispatched < 120 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	st := on.Stats()
	t.Logf("started %d, shed %d, ratio %.2f", st.Session.Started, st.Session.Shed, st.CopyRatio)
	if st.Session.Shed == 0 || st.CopyRatio >= 1 {
		t.Errorf("nothing shed over the cap: %+v", st.Session)
	}
	select {
	case err := <-done:
		t.Fatalf("Run ended over the memory cap: %v", err)
	default:
	}
	cancel()
	<-done
}
