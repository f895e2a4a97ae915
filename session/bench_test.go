package session

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

// BenchmarkRequestAndResponse is the per-packet cost of an open session: a
// captured client request rewritten toward the target, the target's answer
// and the ACK the table makes (one op = both packets).
func BenchmarkRequestAndResponse(b *testing.B) {
	tab, transfer, mk := benchSession(b)
	online := netip.MustParseAddrPort("198.18.0.2:80")
	var p capture.Packet
	p.Time = t0 // Decode keeps it
	req := mk(clientAP, online, 0, 7001, psh, strings.Repeat("r", 300))
	resp := mk(targetAP, clientAP, 0, 0, psh, strings.Repeat("a", 1400))
	reqBuf, respBuf := make([]byte, len(req)), make([]byte, len(resp))
	cseq, tseq := capture.Seq(1001), capture.Seq(5001)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		copy(reqBuf, req)
		_ = p.Decode(reqBuf)
		p.SetSeq(cseq)
		transfer.Rewrite(&p)
		tab.HandleClient(&p)
		cseq = cseq.Add(300)
		copy(respBuf, resp)
		_ = p.Decode(respBuf)
		p.SetSeq(tseq)
		p.SetAck(cseq)
		tab.HandleResponse(&p)
		tseq = tseq.Add(1400)
		tab.Tick(t0)
	}
	b.StopTimer()
	if st := tab.Stats(); st.Sent < 2*uint64(b.N) || st.Duplicates+st.NoSession+st.UnknownResponses != 0 {
		b.Fatalf("not copying: %+v", st)
	}
}

// benchSession returns a table with one open session (client clientAP
// copied from 198.18.0.2:80 to targetAP through the returned transfer map)
// and a builder of segments.
func benchSession(b *testing.B) (*Table, *rewrite.Transfer, func(src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload string) []byte) {
	var sent int
	tab := New(&Config{Emitter: countEmitter{&sent}, NoWait: true})
	transfer, err := rewrite.ParseTransfer("198.18.0.2:80-" + targetAP.String())
	if err != nil {
		b.Fatal(err)
	}
	mk := func(src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload string) []byte {
		p, err := capture.AppendSegment(nil, &capture.Segment{Src: src, Dst: dst, Seq: capture.Seq(seq),
			Ack: capture.Seq(ack), Flags: flags, Window: 65535, Payload: []byte(payload)})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	var p capture.Packet
	p.Time = t0
	_ = p.Decode(mk(clientAP, netip.MustParseAddrPort("198.18.0.2:80"), 1000, 0, syn, ""))
	transfer.Rewrite(&p)
	tab.HandleClient(&p)
	_ = p.Decode(mk(targetAP, clientAP, 5000, 1001, synack, ""))
	tab.HandleResponse(&p)
	return tab, transfer, mk
}

// openSessions fills a table with n established, idle sessions from
// distinct client ports and addresses.
func openSessions(tb testing.TB, tab *Table, n int) []capture.Endpoint {
	keys := make([]capture.Endpoint, 0, n)
	var p capture.Packet
	var buf []byte
	for i := range n {
		// 198.18.128.0/17 and up: 16 ports per address.
		host := i >> 4
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18 + byte(host>>15&1), 128 | byte(host>>8&0x7f), byte(host)}), uint16(1024+i&15))
		var err error
		buf, err = capture.AppendSegment(buf[:0], &capture.Segment{Src: c, Dst: targetAP, Seq: 1000, Flags: syn, Window: 512,
			Options: capture.AppendMSS(nil, 1460)})
		if err != nil {
			tb.Fatal(err)
		}
		p.Time = t0
		_ = p.Decode(buf)
		tab.HandleClient(&p)
		buf, _ = capture.AppendSegment(buf[:0], &capture.Segment{Src: targetAP, Dst: c, Seq: 5000, Ack: 1001, Flags: synack, Window: 512})
		_ = p.Decode(buf)
		tab.HandleResponse(&p)
		keys = append(keys, capture.EndpointFrom(c))
		if i%1024 == 0 {
			tab.Tick(t0)
		}
	}
	tab.Tick(t0)
	return keys
}

// BenchmarkIdleSessionMemory reports the heap an established, idle session
// holds (its state, the kept SYN, the map entry).
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 100_000
	var sent int
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tab := New(&Config{Emitter: countEmitter{&sent}})
		openSessions(b, tab, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/session")
		runtime.KeepAlive(tab)
	}
}

// BenchmarkMillionSessions builds a table of 1,000,000 sessions and
// measures the lookup of a response for a random one of them (a duplicate
// ACK: found, nothing to send), and the heap the table holds.
func BenchmarkMillionSessions(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a million sessions")
	}
	const n = 1_000_000
	var sent int
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tab := New(&Config{Emitter: countEmitter{&sent}})
	keys := openSessions(b, tab, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-table")
	var bufs [][]byte
	for i := range 4096 {
		c := keys[(i*7919)%n].AddrPort()
		buf, _ := capture.AppendSegment(nil, &capture.Segment{Src: targetAP, Dst: c, Seq: 5001, Ack: 1001, Flags: ack, Window: 512})
		bufs = append(bufs, buf)
	}
	var p capture.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = p.Decode(bufs[i&4095])
		tab.HandleResponse(&p)
	}
	b.StopTimer()
	if st := tab.Stats(); st.UnknownResponses != 0 || st.Active != n {
		b.Fatalf("stats %+v", st)
	}
}

// BenchmarkClientPacket is the issue 9 microbenchmark: one captured client
// data packet through the transfer map rewrite, the session table and a
// discarding emitter, on an open session (the target ACKs every 16th).
func BenchmarkClientPacket(b *testing.B) {
	tab, transfer, mk := benchSession(b)
	online := netip.MustParseAddrPort("198.18.0.2:80")
	var p capture.Packet
	p.Time = t0
	req := mk(clientAP, online, 0, 7001, psh, strings.Repeat("r", 200))
	ackPkt := mk(targetAP, clientAP, 5001, 0, ack, "")
	buf := make([]byte, len(req))
	cseq := capture.Seq(1001)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		copy(buf, req)
		_ = p.Decode(buf)
		p.SetSeq(cseq)
		transfer.Rewrite(&p)
		tab.HandleClient(&p)
		cseq = cseq.Add(200)
		if i&15 == 15 {
			_ = p.Decode(ackPkt)
			p.SetAck(cseq)
			tab.HandleResponse(&p)
			tab.Tick(t0)
		}
	}
	b.StopTimer()
	if st := tab.Stats(); st.Sent < uint64(b.N) {
		b.Fatalf("not copying: %+v", st)
	}
}
