package intercept_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/intercept"
)

// A server with an in-memory interceptor routes a target's SYN-ACK to the
// copier that announced the client.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	mem := intercept.NewMemory()
	srv, _ := intercept.NewServer(&intercept.ServerConfig{Interceptor: mem})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ctx, ln)
	defer srv.Close()

	got := make(chan string, 1)
	cl, _ := intercept.NewClient(&intercept.ClientConfig{
		Servers: []string{ln.Addr().String()},
		Handler: func(pkts []capture.Packet) {
			for i := range pkts {
				got <- fmt.Sprintf("%v seq %d", pkts[i].Flow(), pkts[i].Seq())
			}
		},
	})
	go cl.Run(ctx)
	defer cl.Close()
	if err := cl.Ready(ctx); err != nil {
		panic(err)
	}

	client := netip.MustParseAddrPort("198.18.0.1:40000")
	target := netip.MustParseAddrPort("198.19.0.2:80")
	cl.Announce(capture.EndpointFrom(client), capture.EndpointFrom(target))

	synAck, _ := capture.AppendSegment(nil, &capture.Segment{
		Src: target, Dst: client, Seq: 1000, Ack: 2001,
		Flags: capture.FlagSYN | capture.FlagACK, Window: 65535,
	})
	mem.Push(synAck) // the server holds it until the ClientAdd arrives
	fmt.Println(<-got)
	// Output: 198.19.0.2:80->198.18.0.1:40000 seq 1000
}
