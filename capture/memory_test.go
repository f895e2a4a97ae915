package capture_test

import (
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

var testTime = time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)

// memSeg is a data segment from cli4 whose Seq tells test packets apart.
func memSeg(t testing.TB, seq capture.Seq) []byte {
	t.Helper()
	return segment(t, capture.Segment{Src: cli4, Dst: srv4, Seq: seq, Flags: capture.FlagACK, Payload: []byte("data")})
}

func TestMemoryBatchesAndCounts(t *testing.T) {
	m := capture.NewMemory()
	frag := with(memSeg(t, 0), func(b []byte) { b[6] = 0x20 })
	udp := with(memSeg(t, 0), func(b []byte) { b[9] = 17 })
	short := memSeg(t, 0)[:30]
	bad := with(memSeg(t, 0), func(b []byte) { b[0] = 0x44 })
	in := [][]byte{memSeg(t, 1), frag, memSeg(t, 2), udp, short, memSeg(t, 3), bad, memSeg(t, 4), memSeg(t, 5)}
	for i, b := range in {
		m.Push(testTime.Add(time.Duration(i)*time.Second), b)
	}
	// Push copies: changing the caller's buffer afterwards changes nothing.
	in[0][len(in[0])-1] = 'X'

	pkts := make([]capture.Packet, 2)
	var got []capture.Seq
	var times []time.Time
	var sizes []int
	for {
		n, err := m.ReadPackets(pkts)
		if n == 0 && err == nil {
			t.Fatal("ReadPackets returned no packets and no error")
		}
		for _, p := range pkts[:n] {
			got = append(got, p.Seq())
			times = append(times, p.Time)
			if string(p.Payload()) != "data" {
				t.Errorf("packet %d: payload %q", p.Seq(), p.Payload())
			}
		}
		sizes = append(sizes, n)
		if len(got) == 5 {
			break
		}
		if err != nil {
			t.Fatalf("ReadPackets: %v after %v", err, got)
		}
	}
	if want := []capture.Seq{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("read seqs %v, want %v", got, want)
	}
	if want := []int{2, 2, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
	for i, idx := range []int{0, 2, 5, 7, 8} {
		if want := testTime.Add(time.Duration(idx) * time.Second); !times[i].Equal(want) {
			t.Errorf("packet %d: Time %v, want %v", i, times[i], want)
		}
	}
	m.CloseWrite()
	for range 2 {
		if n, err := m.ReadPackets(pkts); n != 0 || err != io.EOF {
			t.Errorf("after CloseWrite: %d, %v; want 0, io.EOF", n, err)
		}
	}
	want := capture.Stats{Packets: 5, Bytes: 5 * 44, Truncated: 1, Malformed: 1, NotTCP: 1, Fragments: 1}
	if got := m.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.ReadPackets(pkts); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// CloseWrite lets the reader drain what was queued before io.EOF.
func TestMemoryCloseWriteDrains(t *testing.T) {
	m := capture.NewMemory()
	m.Push(testTime, memSeg(t, 1))
	m.Push(testTime, []byte{0x45}) // only undecodable ones left at the end
	m.CloseWrite()
	pkts := make([]capture.Packet, 8)
	if n, err := m.ReadPackets(pkts); n != 1 || err != nil {
		t.Fatalf("ReadPackets = %d, %v; want 1, nil", n, err)
	}
	if n, err := m.ReadPackets(pkts); n != 0 || err != io.EOF {
		t.Fatalf("ReadPackets = %d, %v; want 0, io.EOF", n, err)
	}
	if s := m.Stats(); s.Packets != 1 || s.Truncated != 1 {
		t.Errorf("Stats = %+v", s)
	}
}

// ReadPackets with no room returns at once rather than waiting for a packet
// it could not return.
func TestMemoryReadEmptySlice(t *testing.T) {
	m := capture.NewMemory()
	m.Push(testTime, memSeg(t, 1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := m.ReadPackets(nil); n != 0 || err != nil {
			t.Errorf("ReadPackets(nil) = %d, %v; want 0, nil", n, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		m.Close()
		<-done
		t.Fatal("ReadPackets(nil) blocked")
	}
	// The packet is still there.
	pkts := make([]capture.Packet, 1)
	if n, err := m.ReadPackets(pkts); n != 1 || err != nil || pkts[0].Seq() != 1 {
		t.Errorf("ReadPackets = %d, %v", n, err)
	}
}

func TestMemoryCloseUnblocksReader(t *testing.T) {
	m := capture.NewMemory()
	errc := make(chan error, 1)
	go func() {
		_, err := m.ReadPackets(make([]capture.Packet, 4))
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("ReadPackets returned %v on an empty queue", err)
	case <-time.After(20 * time.Millisecond):
	}
	m.Close()
	if err := <-errc; !errors.Is(err, capture.ErrClosed) {
		t.Errorf("blocked ReadPackets returned %v, want ErrClosed", err)
	}
	// Close wins over queued packets.
	m.Push(testTime, memSeg(t, 1))
	if _, err := m.ReadPackets(make([]capture.Packet, 4)); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("ReadPackets after Close = %v, want ErrClosed", err)
	}
}

func TestMemoryCloseWriteUnblocksReader(t *testing.T) {
	m := capture.NewMemory()
	errc := make(chan error, 1)
	go func() {
		_, err := m.ReadPackets(make([]capture.Packet, 4))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	m.CloseWrite()
	if err := <-errc; err != io.EOF {
		t.Errorf("blocked ReadPackets returned %v, want io.EOF", err)
	}
}

// Writers push while the reader is blocked; every packet arrives once, each
// writer's in order.
func TestMemoryConcurrentPush(t *testing.T) {
	const writers, each = 8, 200
	m := capture.NewMemory()
	type result struct {
		seqs []capture.Seq
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		pkts := make([]capture.Packet, 7)
		for {
			n, err := m.ReadPackets(pkts)
			for _, p := range pkts[:n] {
				r.seqs = append(r.seqs, p.Seq())
			}
			if err != nil {
				if err != io.EOF {
					r.err = err
				}
				res <- r
				return
			}
		}
	}()
	time.Sleep(10 * time.Millisecond) // let the reader block first
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				m.Push(testTime, memSeg(t, capture.Seq(w<<16|i)))
				if i%50 == 0 {
					m.Push(testTime, []byte{0x99}) // undecodable, counted
				}
			}
		})
	}
	wg.Wait()
	m.CloseWrite()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.seqs) != writers*each {
		t.Fatalf("read %d packets, want %d", len(r.seqs), writers*each)
	}
	next := make([]int, writers)
	for _, s := range r.seqs {
		w, i := int(s>>16), int(s&0xffff)
		if i != next[w] {
			t.Fatalf("writer %d: got packet %d, want %d", w, i, next[w])
		}
		next[w]++
	}
	if s := m.Stats(); s.Packets != writers*each || s.Malformed != writers*each/50 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestCountersReject(t *testing.T) {
	var c capture.Counters
	for _, err := range []error{
		capture.ErrTruncated, capture.ErrMalformed, capture.ErrMalformed, capture.ErrNotTCP,
		capture.ErrFragment, capture.ErrFragment, capture.ErrFragment, errors.New("something else"),
	} {
		c.Reject(err)
	}
	// Real decode errors land under their sentinel too.
	var p capture.Packet
	c.Reject(p.Decode(nil))
	c.AddKernelDrops(10)
	c.AddKernelDrops(5)
	c.Accept(decoded(t, memSeg(t, 1)))
	want := capture.Stats{Packets: 1, Bytes: 44, Truncated: 2, Malformed: 3, NotTCP: 1, Fragments: 3, KernelDrops: 15}
	if got := c.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}
