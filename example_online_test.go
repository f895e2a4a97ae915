package tcpcopy_test

import (
	"context"
	"log"
	"net"
	"time"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/intercept"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session"
)

// The README's library examples, compiled (they need root and a lab to run).

// Example_stages wires the stages by hand, as the walking-skeleton test
// does, on the online host.
func Example_stages() {
	ctx := context.Background()
	capt, _ := capture.NewRawIP(nil) // inbound TCP, IPv4
	em, _ := emit.NewRawIP(nil)      // IP_HDRINCL sends
	transfer, _ := rewrite.ParseTransfer("198.18.0.2:80-198.18.1.2:80")

	var ic *intercept.Client
	table := session.New(&session.Config{
		Emitter: em,
		OnOpen:  func(c, t capture.Endpoint) { ic.Announce(c, t) }, // before the SYN
		OnClose: func(c, t capture.Endpoint) { ic.Remove(c, t) },
	})
	copier, _ := tcpcopy.NewCopier(&tcpcopy.Config{
		Capturer: capt, Rewriter: transfer, Shards: 1,
		NewTable: func(int) tcpcopy.SessionTable { return table },
	})
	ic, _ = intercept.NewClient(&intercept.ClientConfig{
		Servers: []string{"198.18.1.2:36524"},
		Handler: copier.Responses,
	})
	go ic.Run(ctx)
	ic.Ready(ctx)
	copier.Run(ctx)
}

// Example_target is the target side of the classic deployment, by hand.
func Example_target() {
	ctx := context.Background()
	nfq, _ := intercept.NewNFQueue(&intercept.NFQueueConfig{Queue: 7})
	srv, _ := intercept.NewServer(&intercept.ServerConfig{Interceptor: nfq})
	ln, _ := net.Listen("tcp", "198.18.1.2:36524")
	srv.Serve(ctx, ln)
}

// ExampleOnline is what the tcpcopy program does: one OnlineConfig.
func ExampleOnline() {
	ctx := context.Background()
	on, err := tcpcopy.NewOnline(&tcpcopy.OnlineConfig{
		Transfer: "80-198.18.1.2:8080",   // -x
		Servers:  []string{"198.18.2.2"}, // -s
		Copies:   2,                      // -n
		Session:  session.Config{IdleTimeout: 120 * time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	err = on.Run(ctx) // until ctx ends
	log.Println(on.Stats().Summary(), err)
}

// ExampleService is what the intercept program does on the target: the
// NFQUEUE rule installed at start and removed at exit.
func ExampleService() {
	ctx := context.Background()
	svc, err := intercept.NewService(&intercept.ServiceConfig{
		NFQueue: &intercept.NFQueueConfig{Queue: 0},
		Rules:   &intercept.NFQueueRulesConfig{Ports: []uint16{8080}},
		Server:  intercept.ServerConfig{Secret: []byte("a long random secret")},
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(svc.Run(ctx), svc.Stats())
}
