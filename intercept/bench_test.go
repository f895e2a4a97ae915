package intercept

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// countingConn counts the bytes read from a connection: the wire bytes the
// server sent, handshake included (negligible over b.N responses).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkRoute measures the whole response path over a loopback TCP
// connection: Server.report (routing, encoding), the writer, the Client's
// reader (decoding) and a Handler that counts. Each response is a 1000-byte
// data segment with a timestamps option, as a web server sends. It reports
// responses routed per second and the bytes on the wire per response, for
// each framing, headers only and with payload (the classic payload build
// carries up to 128 bytes, so native is given the same limit).
func BenchmarkRoute(b *testing.B) {
	for _, bc := range []struct {
		name    string
		classic bool
		payload int
	}{
		{"native/headers", false, 0},
		{"classic/headers", true, 0},
		{"native/payload128", false, ClassicPayloadLen},
		{"classic/payload128", true, ClassicPayloadLen},
	} {
		b.Run(bc.name, func(b *testing.B) { benchRoute(b, bc.classic, bc.payload) })
	}
}

func benchRoute(b *testing.B, classic bool, payload int) {
	srv, err := NewServer(&ServerConfig{
		Interceptor: NewMemory(), Secret: []byte("bench"), PayloadLimit: payload,
		AcceptClassic: classic, ClassicPayload: classic && payload > 0, QueueBytes: 16 << 20,
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { srv.Close(); <-served }()

	var got, wire atomic.Int64
	cl, err := NewClient(&ClientConfig{
		Servers: []string{ln.Addr().String()}, Secret: []byte("bench"),
		Classic: classic, ClassicPayload: classic && payload > 0,
		Handler: func(pkts []capture.Packet) { got.Add(int64(len(pkts))) },
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return countingConn{c, &wire}, nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	go cl.Run(ctx)
	defer cl.Close()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if err := cl.Ready(rctx); err != nil {
		b.Fatal(err)
	}
	client := netip.MustParseAddrPort("198.18.0.1:40000")
	cl.Announce(capture.EndpointFrom(client), ep("198.19.0.2:80"))
	for srv.Stats().Routes == 0 {
		time.Sleep(time.Millisecond)
	}
	seg, err := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.19.0.2:80"), Dst: client, Seq: 1, Ack: 1,
		Flags: capture.FlagACK | capture.FlagPSH, Window: 502,
		Options: capture.AppendTimestamps(nil, 1, 2), Payload: []byte(strings.Repeat("r", 1000)),
	})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 64
	pkts := make([]capture.Packet, batch)
	for i := range pkts {
		if err := pkts[i].Decode(seg); err != nil {
			b.Fatal(err)
		}
	}
	wire0 := wire.Load()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		n := min(batch, b.N-sent)
		// Keep at most 64 Ki responses in flight so none is dropped.
		for int64(sent)-got.Load() > 64<<10 {
			time.Sleep(50 * time.Microsecond)
		}
		srv.report(pkts[:n])
		sent += n
	}
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got.Load() != int64(b.N) {
		b.Fatalf("%d of %d responses arrived; server %+v", got.Load(), b.N, srv.Stats())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "responses/s")
	b.ReportMetric(float64(wire.Load()-wire0)/float64(b.N), "wire-B/resp")
}
