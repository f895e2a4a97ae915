package tcpcopy

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session"
)

// countingEmitter is a discarding Emitter that counts what a shard's table
// sends: all datagrams, and those carrying payload. It is safe for
// concurrent use.
type countingEmitter struct {
	all, data atomic.Uint64
	want      atomic.Uint64 // data count at which to wake a waiter
	wake      chan struct{} // shared by the shards' emitters, buffered 1
}

var _ emit.Emitter = (*countingEmitter)(nil)

func (e *countingEmitter) Emit(pkts [][]byte) error {
	n := uint64(0)
	for _, b := range pkts {
		if ipv4HasPayload(b) {
			n++
		}
	}
	e.all.Add(uint64(len(pkts)))
	if n > 0 && e.data.Add(n) >= e.want.Load() {
		select {
		case e.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return nil
}

// ipv4HasPayload reports whether the IPv4 TCP datagram b carries payload;
// a few header reads, so the emitter costs next to nothing.
func ipv4HasPayload(b []byte) bool {
	if len(b) < 20 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+13 {
		return false
	}
	return int(binary.BigEndian.Uint16(b[2:4])) > ihl+int(b[ihl+12]>>4)*4
}

// BenchmarkCopier is the sharded copier's throughput in client data packets
// per second: Memory capture, transfer map rewrite, dispatch to one session
// table per shard (GOMAXPROCS of them, so -cpu 1,2 shows how it scales) and
// counting emitters. copierSessions established sessions (window scale 7
// both ways, NoWait) get 200-byte requests round-robin; the target ACKs
// each session's 64 packets of a chunk once the copier has sent them.
//
// The benchmark goroutine pushes a chunk while the copier works on the one
// before, so the capture side reads full batches rather than racing Push
// for one packet at a time, and the Memory holds at most two chunks. Push
// itself (a copy and a lock per packet) is timed: about a fifth of the CPU
// at -cpu 1.
func BenchmarkCopier(b *testing.B) {
	const (
		copierSessions = 1024
		perChunk       = 64 // packets of a session per chunk, ACKed together
		chunk          = copierSessions * perChunk
		payloadLen     = 200
		onlineAck      = 7001 // the client's ACK: one request stream
	)
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	online := netip.MustParseAddrPort("198.18.0.2:80")
	target := netip.MustParseAddrPort("198.18.1.2:80")
	transfer, err := rewrite.ParseTransfer(online.String() + "-" + target.String())
	if err != nil {
		b.Fatal(err)
	}
	mem := capture.NewMemory()
	wake := make(chan struct{}, 1)
	var ems []*countingEmitter
	var tables []*session.Table
	c, err := NewCopier(&Config{
		Capturer: mem, Rewriter: transfer,
		NewTable: func(int) SessionTable { // called in order, before Run
			em := &countingEmitter{wake: wake}
			// A long RTO: a session idle between two chunks (the race
			// detector slows a chunk to a large fraction of a second)
			// must not retransmit and be counted twice.
			tab := session.New(&session.Config{Emitter: em, NoWait: true, RTO: time.Minute})
			ems, tables = append(ems, em), append(tables, tab)
			return tab
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopRun()
		return <-errc
	}
	defer stop() // also when the benchmark fails

	// The sessions: clients 198.18.16.0 and up, 16 ports per address.
	opts := capture.AppendWindowScale(capture.AppendMSS(nil, 1460), 7)
	mk := func(s *capture.Segment) capture.Packet {
		s.Window = 65535
		buf, err := capture.AppendSegment(nil, s)
		if err != nil {
			b.Fatal(err)
		}
		var p capture.Packet
		if err := p.Decode(buf); err != nil {
			b.Fatal(err)
		}
		return p
	}
	t0 := time.Now()
	clients := make([]netip.AddrPort, copierSessions)
	isn := make([]capture.Seq, copierSessions)
	data := make([]capture.Packet, copierSessions) // each session's request, seq set per push
	acks := make([]capture.Packet, copierSessions) // each session's ACK from the target
	synAcks := make([]capture.Packet, 0, copierSessions)
	shardOf := make([]int, copierSessions)
	syns := make([]uint64, len(ems))
	payload := make([]byte, payloadLen)
	for i := range copierSessions {
		h := i >> 4
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 16 + byte(h>>8), byte(h)}), uint16(32768+i&15))
		clients[i] = client
		isn[i] = capture.Seq(uint32(i) * 2654435761) // spread, some wrap around
		tisn := capture.Seq(5000 + i)
		syn := mk(&capture.Segment{Src: client, Dst: online, Seq: isn[i], Flags: capture.FlagSYN, Options: opts})
		mem.Push(t0, syn.Data)
		synAcks = append(synAcks, mk(&capture.Segment{Src: target, Dst: client, Seq: tisn, Ack: isn[i].Add(1),
			Flags: capture.FlagSYN | capture.FlagACK, Options: opts}))
		data[i] = mk(&capture.Segment{Src: client, Dst: online, Seq: isn[i].Add(1), Ack: onlineAck,
			Flags: capture.FlagPSH | capture.FlagACK, Payload: payload})
		acks[i] = mk(&capture.Segment{Src: target, Dst: client, Seq: tisn.Add(1), Ack: isn[i].Add(1), Flags: capture.FlagACK})
		shardOf[i] = c.shardOf(capture.EndpointFrom(client))
		syns[shardOf[i]]++
	}
	poll := func(what string, done func() bool) {
		for !done() {
			select {
			case <-ctx.Done():
				b.Fatalf("setup: %s: %v", what, ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
	}
	sentAll := func(perSession uint64) func() bool {
		return func() bool {
			for k, em := range ems {
				if em.all.Load() < perSession*syns[k] {
					return false
				}
			}
			return true
		}
	}
	poll("SYNs sent", sentAll(1))
	c.Responses(synAcks)
	poll("handshake ACKs sent", sentAll(2)) // the table ACKs each SYN-ACK
	for k, em := range ems {
		if n := em.all.Load(); n != 2*syns[k] {
			b.Fatalf("setup: shard %d sent %d packets for %d sessions, want 2 each", k, n, syns[k])
		}
	}
	for i := range copierSessions {
		third := mk(&capture.Segment{Src: clients[i], Dst: online, Seq: isn[i].Add(1), Ack: onlineAck, Flags: capture.FlagACK})
		mem.Push(t0, third.Data)
	}
	poll("third ACKs absorbed", func() bool {
		n := uint64(0)
		for _, tab := range tables {
			n += tab.Stats().AbsorbedACKs
		}
		return n == copierSessions
	})

	// want[k] is how many data packets shard k sends out of the first n
	// (round-robin over sessions).
	want := make([]uint64, len(ems))
	wantOf := func(n int) []uint64 {
		clear(want)
		for i := range copierSessions {
			cnt := n / copierSessions
			if i < n%copierSessions {
				cnt++
			}
			want[shardOf[i]] += uint64(cnt)
		}
		return want
	}
	// waitSent returns once every shard has sent its data packets of the
	// first n; each shard sends in capture order, so that includes all of
	// them and no later ones are missing.
	waitSent := func(n int) {
		w := wantOf(n)
		for k, em := range ems {
			em.want.Store(w[k])
		}
		for {
			done := true
			for k, em := range ems {
				if em.data.Load() < w[k] {
					done = false
				}
			}
			if done {
				return
			}
			select {
			case <-wake:
			case <-ctx.Done():
				b.Fatalf("%d of the first %d data packets sent: %v", sentData(ems), n, ctx.Err())
			}
		}
	}
	var ackBatch []capture.Packet
	ackSent := func(n int) { // ACKs everything each session sent of the first n
		ackBatch = ackBatch[:0]
		for i := range copierSessions {
			cnt := n / copierSessions
			if i < n%copierSessions {
				cnt++
			}
			if cnt == 0 {
				continue
			}
			acks[i].SetAck(isn[i].Add(1 + uint32(cnt*payloadLen)))
			ackBatch = append(ackBatch, acks[i])
		}
		c.Responses(ackBatch)
	}

	b.ReportAllocs()
	b.ResetTimer()
	for start := 0; start < b.N; start += chunk {
		end := min(start+chunk, b.N)
		for j := start; j < end; j++ {
			i := j % copierSessions
			data[i].SetSeq(isn[i].Add(1 + uint32(j/copierSessions*payloadLen)))
			mem.Push(t0, data[i].Data)
		}
		if start > 0 {
			waitSent(start) // the chunk before this one
			ackSent(start)
		}
	}
	waitSent(b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")

	if err := stop(); err != nil {
		b.Fatal(err)
	}
	w := wantOf(b.N)
	for k, em := range ems {
		if n := em.data.Load(); n != w[k] {
			b.Errorf("shard %d sent %d data packets, want %d", k, n, w[k])
		}
	}
	var st session.Stats
	for _, tab := range tables {
		st = st.Add(tab.Stats())
	}
	if st.ClientPackets != uint64(2*copierSessions+b.N) || st.Retransmitted != 0 || st.Duplicates != 0 ||
		st.BufferFull != 0 || st.NoSession != 0 || st.UnknownResponses != 0 || st.Started != copierSessions {
		b.Errorf("session stats %+v", st)
	}
	if cs := c.Stats(); cs.Filtered != 0 || cs.BadResponses != 0 || cs.Dispatched != uint64(2*copierSessions+b.N) {
		b.Errorf("copier stats %+v", cs)
	}
}

func sentData(ems []*countingEmitter) uint64 {
	n := uint64(0)
	for _, em := range ems {
		n += em.data.Load()
	}
	return n
}
