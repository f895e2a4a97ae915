package emit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/emit"
)

func TestRecorderKeepsCopiesInOrder(t *testing.T) {
	r := emit.NewRecorder(nil)
	a, b := []byte{0x45, 1, 2}, []byte{0x60, 3}
	if err := r.Emit([][]byte{a, b}); err != nil {
		t.Fatal(err)
	}
	a[1] = 99 // the caller may reuse its buffers after Emit
	got := r.Packets()
	if len(got) != 2 || !bytes.Equal(got[0], []byte{0x45, 1, 2}) || !bytes.Equal(got[1], []byte{0x60, 3}) {
		t.Fatalf("Packets = %x", got)
	}
	got[0][0] = 0 // Packets hands out copies
	if r.Packets()[0][0] != 0x45 {
		t.Fatal("Packets returned the recorder's own buffer")
	}
	recs := r.Records()
	if recs[0].Index != 0 || recs[1].Index != 1 {
		t.Fatalf("indexes %d %d, want 0 1", recs[0].Index, recs[1].Index)
	}
	recs[1].Data[0] = 0
	if r.Records()[1].Data[0] != 0x60 {
		t.Fatal("Records returned the recorder's own buffer")
	}
	if r.Len() != 2 {
		t.Fatalf("Len = %d", r.Len())
	}
}

func TestRecorderResetKeepsIndexes(t *testing.T) {
	r := emit.NewRecorder(nil)
	_ = r.Emit([][]byte{{1}, {2}, {3}})
	r.Reset()
	if r.Len() != 0 || len(r.Packets()) != 0 {
		t.Fatalf("after Reset Len = %d", r.Len())
	}
	_ = r.Emit([][]byte{{4}})
	if recs := r.Records(); len(recs) != 1 || recs[0].Index != 3 || recs[0].Data[0] != 4 {
		t.Fatalf("after Reset: %+v", recs)
	}
}

func TestRecorderLimit(t *testing.T) {
	r := emit.NewRecorder(&emit.RecorderConfig{Limit: 2})
	_ = r.Emit([][]byte{{1}, {2}, {3}})
	_ = r.Emit([][]byte{{4}})
	if r.Len() != 2 || r.Overflow() != 2 {
		t.Fatalf("Len %d Overflow %d, want 2 2", r.Len(), r.Overflow())
	}
	r.Reset()
	if r.Overflow() != 0 {
		t.Fatalf("Overflow after Reset = %d", r.Overflow())
	}
	_ = r.Emit([][]byte{{5}})
	if recs := r.Records(); len(recs) != 1 || recs[0].Index != 4 {
		t.Fatalf("after Reset: %+v", recs)
	}

	dry := emit.NewRecorder(&emit.RecorderConfig{Limit: -1})
	_ = dry.Emit([][]byte{{1}, {2}})
	if dry.Len() != 0 || dry.Overflow() != 2 {
		t.Fatalf("dry run: Len %d Overflow %d", dry.Len(), dry.Overflow())
	}
}

func TestRecorderWait(t *testing.T) {
	r := emit.NewRecorder(nil)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := r.Emit([][]byte{{byte(w), byte(i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx, writers*each); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if r.Len() != writers*each {
		t.Fatalf("Len = %d", r.Len())
	}
	seen := map[uint64]bool{}
	for _, rec := range r.Records() {
		if seen[rec.Index] {
			t.Fatalf("index %d twice", rec.Index)
		}
		seen[rec.Index] = true
	}
	if err := r.Wait(ctx, 0); err != nil { // already satisfied
		t.Fatal(err)
	}
}

func TestRecorderWaitTimeout(t *testing.T) {
	r := emit.NewRecorder(nil)
	_ = r.Emit([][]byte{{1}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := r.Wait(ctx, 2)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
}

func TestRecorderClose(t *testing.T) {
	r := emit.NewRecorder(nil)
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background(), 1) }()
	time.Sleep(10 * time.Millisecond) // let Wait block; the result is the same if it has not
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, emit.ErrClosed) {
			t.Fatalf("Wait after Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake Wait")
	}
	if err := r.Emit([][]byte{{1}}); !errors.Is(err, emit.ErrClosed) {
		t.Fatalf("Emit after Close = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestReasonString(t *testing.T) {
	for r, want := range map[emit.Reason]string{
		0: "invalid-reason", emit.MsgSize: "msgsize", emit.Perm: "perm",
		emit.NoBuffers: "nobuffers", emit.Invalid: "invalid", emit.Other: "other",
		emit.NoNeighbour: "noneighbour", 42: "Reason(42)",
	} {
		if r.String() != want {
			t.Errorf("%d.String() = %q, want %q", uint8(r), r.String(), want)
		}
	}
}

func TestCounters(t *testing.T) {
	var c emit.Counters
	c.AddSent(100)
	c.AddSent(50)
	c.AddDrop(emit.MsgSize)
	c.AddDrop(emit.Perm)
	c.AddDrop(emit.NoBuffers)
	c.AddDrop(emit.Invalid)
	c.AddDrop(0) // an invalid reason lands in Other
	c.AddDrop(emit.NoNeighbour)
	s := c.Stats()
	want := emit.Stats{Sent: 2, Bytes: 150, MsgSize: 1, Perm: 1, NoBuffers: 1, Invalid: 1, Other: 1, NoNeighbour: 1}
	if s != want || s.Dropped() != 6 {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
}

func ExampleRecorder() {
	rec := emit.NewRecorder(nil)
	// A stage under test emits into the recorder...
	_ = rec.Emit([][]byte{{0x45, 0x00}, {0x60, 0x00}})
	// ...and the test waits for and inspects what came out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rec.Wait(ctx, 2); err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rec.Records() {
		fmt.Printf("#%d version %d\n", r.Index, r.Data[0]>>4)
	}
	// Output:
	// #0 version 4
	// #1 version 6
}
