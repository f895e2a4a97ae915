package intercept_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/intercept"
)

func TestNewServiceErrors(t *testing.T) {
	for name, cfg := range map[string]*intercept.ServiceConfig{
		"two interceptors": {Interceptor: intercept.NewMemory(), NFQueue: &intercept.NFQueueConfig{}},
		"rules without nfqueue": {Interceptor: intercept.NewMemory(),
			Rules: &intercept.NFQueueRulesConfig{Ports: []uint16{80}}},
		"rules without ports":   {Rules: &intercept.NFQueueRulesConfig{}},
		"af_packet, no ports":   {AFPacket: &intercept.AFPacketConfig{}},
		"classic and TLS":       {Interceptor: intercept.NewMemory(), Server: intercept.ServerConfig{AcceptClassic: true, TLS: &tls.Config{}}},
		"nfqueue bad batch len": {NFQueue: &intercept.NFQueueConfig{Batch: -1}},
	} {
		if _, err := intercept.NewService(cfg); err == nil {
			t.Errorf("%s: NewService accepted it", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestServiceMemory serves a copier over loopback with a memory
// interceptor: a response to an announced client reaches it.
func TestServiceMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mem := intercept.NewMemory()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := intercept.NewService(&intercept.ServiceConfig{Interceptor: mem, Listener: ln,
		Server: intercept.ServerConfig{Secret: []byte("k")}})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Addr() != nil {
		t.Errorf("Addr before Run: %v", svc.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	<-svc.Ready()

	got := make(chan capture.Endpoint, 4)
	cl, err := intercept.NewClient(&intercept.ClientConfig{
		Servers: []string{svc.Addr().String()}, Secret: []byte("k"),
		Handler: func(pkts []capture.Packet) {
			for i := range pkts {
				got <- pkts[i].DstEndpoint()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	clDone := make(chan error, 1)
	go func() { clDone <- cl.Run(ctx) }()
	if err := cl.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddrPort("198.18.0.1:40000")
	target := netip.MustParseAddrPort("198.18.1.2:80")
	if err := cl.Announce(capture.EndpointFrom(client), capture.EndpointFrom(target)); err != nil {
		t.Fatal(err)
	}
	d, err := capture.AppendSegment(nil, &capture.Segment{Src: target, Dst: client, Seq: 1, Ack: 2,
		Flags: capture.FlagSYN | capture.FlagACK, Window: 100})
	if err != nil {
		t.Fatal(err)
	}
	mem.Push(d)
	select {
	case e := <-got:
		if e.AddrPort() != client {
			t.Errorf("response for %v, want %v", e, client)
		}
	case <-ctx.Done():
		t.Fatalf("no response routed: %+v", svc.Stats())
	}
	if st := svc.Stats(); st.Server.Routed != 1 || st.Server.Copiers != 1 || st.Uptime <= 0 {
		t.Errorf("stats %+v", st)
	}
	if err := svc.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	cl.Close()
	<-clDone
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestServiceRulesRemovedOnFailure: the rules Run installs are removed when
// it fails after installing them (here the queue cannot be opened), as on
// any other way out of Run. The iptables tool is faked: nothing runs.
func TestServiceRulesRemovedOnFailure(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	fake := func(name string, args ...string) *exec.Cmd {
		mu.Lock()
		calls = append(calls, name+" "+strings.Join(args, " "))
		mu.Unlock()
		return exec.Command("true")
	}
	svc, err := intercept.NewService(&intercept.ServiceConfig{
		// An fd that is no network namespace: Open fails after the rules
		// went in, before anything touches this host's queues.
		NFQueue: &intercept.NFQueueConfig{Queue: 9, NetNS: 1 << 20},
		Rules:   &intercept.NFQueueRulesConfig{Ports: []uint16{80}, Family: "ipv4", Command: fake},
		Listen:  "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded without a network namespace to open the queue in")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"iptables -w 5 -I OUTPUT -p tcp --sport 80 -m comment --comment tcpcopy-intercept -j NFQUEUE --queue-num 9",
		"iptables -w 5 -D OUTPUT -p tcp --sport 80 -m comment --comment tcpcopy-intercept -j NFQUEUE --queue-num 9",
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("iptables calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if st := svc.Stats(); st.Rules != 0 {
		t.Errorf("%d rules still counted", st.Rules)
	}
}
