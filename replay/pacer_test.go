package replay_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/replay"
)

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func TestPacingSpeed(t *testing.T) {
	offsets := []time.Duration{0, ms(10), ms(10), ms(25), ms(1000), ms(1000.5)}
	for _, speed := range []float64{1, 4, 0.5} {
		for _, batch := range []int{1, 64} {
			t.Run(fmt.Sprintf("speed=%v/batch=%d", speed, batch), func(t *testing.T) {
				clock := replay.NewFakeClock(start)
				p, err := replay.New(&replay.Config{Open: memoryOpener(offsets, nil), Speed: speed, Clock: clock})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				out, err := readAll(t, p, clock, batch)
				if err != io.EOF {
					t.Fatalf("err %v, want io.EOF", err)
				}
				if len(out) != len(offsets) {
					t.Fatalf("got %d packets, want %d", len(out), len(offsets))
				}
				for i, g := range out {
					due := start.Add(time.Duration(float64(offsets[i]) / speed))
					if g.id != i || !g.time.Equal(due) || !g.at.Equal(due) {
						t.Errorf("packet %d: id %d, Time %v, released at %v; want id %d, both %v",
							i, g.id, g.time.Sub(start), g.at.Sub(start), i, due.Sub(start))
					}
				}
				// Packets due together come out together when there is room.
				if batch > 1 && out[1].call != out[2].call {
					t.Errorf("packets 1 and 2 share a due time but came in calls %d and %d", out[1].call, out[2].call)
				}
				st := p.Stats()
				wantElapsed := time.Duration(float64(offsets[len(offsets)-1]) / speed)
				if st.Packets != uint64(len(offsets)) || st.Span != offsets[len(offsets)-1] || st.Elapsed != wantElapsed {
					t.Errorf("stats %+v: want %d packets, span %v, elapsed %v", st, len(offsets), offsets[len(offsets)-1], wantElapsed)
				}
				if math.Abs(st.Speed()-speed) > 1e-6 {
					t.Errorf("speed achieved %v, want %v", st.Speed(), speed)
				}
				if st.TimingSamples != uint64(len(offsets)) || st.TimingMedian != 0 || st.TimingP99 != 0 || st.TimingMax != 0 {
					t.Errorf("timing error with an exact clock: %+v", st)
				}
				if st.Round != 1 || st.Rounds != 1 || st.RepeatsDone != 1 {
					t.Errorf("rounds: %+v", st)
				}
			})
		}
	}
}

func TestIdleGapSkipping(t *testing.T) {
	// Gaps of 4.9 s and 14.9 s are over the 1 s threshold; the one of
	// 0.9 s is not, nor is the step back in time (an out-of-order packet,
	// due at once).
	offsets := []time.Duration{0, ms(100), ms(5000), ms(5100), ms(6000), ms(5500), ms(20900), ms(20950)}
	virt := []time.Duration{0, ms(100), ms(1100), ms(1200), ms(2100), ms(2100), ms(3100), ms(3150)}
	const speed = 2
	for _, batch := range []int{1, 3, 64} {
		for _, srcBatch := range []int{1, 2, 64} {
			t.Run(fmt.Sprintf("batch=%d/source=%d", batch, srcBatch), func(t *testing.T) {
				clock := replay.NewFakeClock(start)
				p, err := replay.New(&replay.Config{
					Open: memoryOpener(offsets, nil), Speed: speed, MaxIdle: time.Second,
					Clock: clock, Batch: srcBatch,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				pkts := make([]capture.Packet, batch)
				var out []got
				for call := 0; call < 100; call++ {
					n, err := p.ReadPackets(pkts)
					for i := range pkts[:n] {
						out = append(out, got{id: idOf(&pkts[i]), time: pkts[i].Time})
					}
					// Stats in the middle must not count a gap again.
					if st := p.Stats(); st.GapsSkipped > 2 {
						t.Fatalf("call %d: %d gaps counted", call, st.GapsSkipped)
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if len(out) != len(offsets) {
					t.Fatalf("got %d packets, want %d", len(out), len(offsets))
				}
				for i, g := range out {
					if want := start.Add(virt[i] / speed); g.id != i || !g.time.Equal(want) {
						t.Errorf("packet %d (id %d) due at %v, want %v", i, g.id, g.time.Sub(start), want.Sub(start))
					}
				}
				st := p.Stats()
				if st.GapsSkipped != 2 || st.Skipped != ms(3900)+ms(13900) {
					t.Errorf("gaps skipped %d (%v), want 2 (17.8s)", st.GapsSkipped, st.Skipped)
				}
				if st.Span != ms(20950) {
					t.Errorf("span %v, want the capture's 20.95s", st.Span)
				}
			})
		}
	}
}

func TestRepeats(t *testing.T) {
	offsets := []time.Duration{0, time.Second, 2 * time.Second}
	clock := replay.NewFakeClock(start)
	opened := 0
	var sources []capture.Capturer
	open := memoryOpener(offsets, &opened)
	p, err := replay.New(&replay.Config{
		Open: func() (capture.Capturer, error) {
			c, err := open()
			sources = append(sources, c)
			return c, err
		},
		Repeat: 3, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out, err := readAll(t, p, clock, 2)
	if err != io.EOF {
		t.Fatalf("err %v, want io.EOF", err)
	}
	// Each round starts where the last ended.
	wantDue := []int{0, 1, 2, 2, 3, 4, 4, 5, 6}
	if len(out) != len(wantDue) {
		t.Fatalf("got %d packets, want %d", len(out), len(wantDue))
	}
	for i, g := range out {
		if g.id != i%3 || !g.time.Equal(start.Add(time.Duration(wantDue[i])*time.Second)) {
			t.Errorf("packet %d: id %d due %v, want id %d due %ds", i, g.id, g.time.Sub(start), i%3, wantDue[i])
		}
	}
	if opened != 3 {
		t.Errorf("source opened %d times, want 3", opened)
	}
	// Earlier rounds' sources are closed as the next opens.
	for i, s := range sources[:2] {
		if n, err := s.ReadPackets(make([]capture.Packet, 1)); n != 0 || !errors.Is(err, capture.ErrClosed) {
			t.Errorf("source of round %d still open: %d, %v", i+1, n, err)
		}
	}
	st := p.Stats()
	if st.Round != 3 || st.Rounds != 3 || st.RepeatsDone != 3 || st.Packets != 9 || st.Source.Packets != 9 {
		t.Errorf("stats %+v", st)
	}
	if st.Span != 6*time.Second || st.Elapsed != 6*time.Second {
		t.Errorf("span %v, elapsed %v, want 6s each", st.Span, st.Elapsed)
	}
	if n, err := p.ReadPackets(make([]capture.Packet, 4)); n != 0 || err != io.EOF {
		t.Errorf("after the end: %d, %v; want 0, io.EOF", n, err)
	}
}

func TestFastMode(t *testing.T) {
	offsets := []time.Duration{0, time.Second, time.Hour, time.Hour + time.Millisecond}
	clock := replay.NewFakeClock(start)
	p, err := replay.New(&replay.Config{
		Open: memoryOpener(offsets, nil), Fast: true, Speed: 0.001, MaxIdle: time.Millisecond,
		Repeat: 2, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out, err := readAll(t, p, clock, 3)
	if err != io.EOF {
		t.Fatalf("err %v", err)
	}
	if len(out) != 8 {
		t.Fatalf("got %d packets, want 8", len(out))
	}
	for i, g := range out {
		if g.id != i%4 || !g.time.Equal(start) {
			t.Errorf("packet %d: id %d, Time %v; want id %d stamped with the clock", i, g.id, g.time, i%4)
		}
	}
	if clock.Waits() != 0 {
		t.Errorf("fast mode waited %d times", clock.Waits())
	}
	st := p.Stats()
	if st.GapsSkipped != 0 || st.TimingSamples != 0 || st.Packets != 8 || st.RepeatsDone != 2 {
		t.Errorf("stats %+v", st)
	}
	if st.Span != 2*(time.Hour+time.Millisecond) {
		t.Errorf("span %v", st.Span)
	}
}

func TestTimingError(t *testing.T) {
	t.Run("one per wait", func(t *testing.T) {
		// Packets 10 ms apart; wait n wakes n%10 * 100µs late. The first
		// packet is due at once (no wait, no lateness).
		const n = 200
		offsets := make([]time.Duration, n)
		for i := range offsets {
			offsets[i] = time.Duration(i) * 10 * time.Millisecond
		}
		late := func(i int) time.Duration { return time.Duration(i%10) * 100 * time.Microsecond }
		clock := replay.NewFakeClock(start)
		clock.Late = late
		p, err := replay.New(&replay.Config{Open: memoryOpener(offsets, nil), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		out, err := readAll(t, p, clock, 8)
		if err != io.EOF || len(out) != n {
			t.Fatalf("%d packets, %v", len(out), err)
		}
		want := []time.Duration{0}
		for i := range n - 1 {
			want = append(want, late(i))
		}
		for i, g := range out {
			if g.at.Sub(g.time) != want[i] {
				t.Errorf("packet %d released %v after its due time, want %v", i, g.at.Sub(g.time), want[i])
			}
		}
		slices.Sort(want)
		// Nearest rank: the smallest value with at least q of the sample
		// at or below it.
		median, p99 := want[int(math.Ceil(0.5*n))-1], want[int(math.Ceil(0.99*n))-1]
		st := p.Stats()
		if st.TimingMedian != median || st.TimingP99 != p99 || st.TimingMax != 900*time.Microsecond || st.TimingSamples != n {
			t.Errorf("timing error median %v p99 %v max %v over %d, want %v %v 900µs over %d",
				st.TimingMedian, st.TimingP99, st.TimingMax, st.TimingSamples, median, p99, n)
		}
		if median != 400*time.Microsecond || p99 != 900*time.Microsecond {
			t.Errorf("test arithmetic: median %v p99 %v", median, p99)
		}
	})
	t.Run("catching up", func(t *testing.T) {
		// Waking 2.5 ms late for the packet due at 1 ms, the Pacer finds
		// the next two due too: they go out in the same batch, each as
		// late as it is.
		offsets := []time.Duration{0, ms(1), ms(2), ms(3), ms(10)}
		clock := replay.NewFakeClock(start)
		clock.Late = func(i int) time.Duration { return []time.Duration{ms(2.5), 0}[i] }
		p, err := replay.New(&replay.Config{Open: memoryOpener(offsets, nil), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		out, err := readAll(t, p, clock, 8)
		if err != io.EOF || len(out) != 5 {
			t.Fatalf("%d packets, %v", len(out), err)
		}
		lates := []time.Duration{0, ms(2.5), ms(1.5), ms(0.5), 0}
		calls := []int{0, 1, 1, 1, 2}
		for i, g := range out {
			if g.at.Sub(g.time) != lates[i] || g.call != calls[i] || !g.time.Equal(start.Add(offsets[i])) {
				t.Errorf("packet %d: due %v, released %v late in call %d; want due %v, %v late in call %d",
					i, g.time.Sub(start), g.at.Sub(g.time), g.call, offsets[i], lates[i], calls[i])
			}
		}
		st := p.Stats()
		// Sorted: 0, 0, 0.5, 1.5, 2.5 ms.
		if st.TimingMedian != ms(0.5) || st.TimingP99 != ms(2.5) || st.TimingMax != ms(2.5) {
			t.Errorf("timing error median %v p99 %v max %v, want 500µs 2.5ms 2.5ms", st.TimingMedian, st.TimingP99, st.TimingMax)
		}
	})
}

func TestSourceErrors(t *testing.T) {
	t.Run("error after packets", func(t *testing.T) {
		opened := 0
		src := &scripted{batches: [][]int{{0, 1}, {2}}, err: errBoom}
		p, err := replay.New(&replay.Config{
			Open:   func() (capture.Capturer, error) { opened++; return src, nil },
			Repeat: 3, Clock: replay.NewFakeClock(start),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		out, err := readAll(t, p, replay.NewFakeClock(start), 4)
		if err != errBoom {
			t.Fatalf("err %v, want the source's own error", err)
		}
		if len(out) != 3 {
			t.Errorf("got %d packets, want the 3 before the error", len(out))
		}
		for range 3 { // sticky, and no other round
			if n, err := p.ReadPackets(make([]capture.Packet, 4)); n != 0 || err != errBoom {
				t.Errorf("again: %d, %v", n, err)
			}
		}
		if opened != 1 {
			t.Errorf("source opened %d times after an error", opened)
		}
		if st := p.Stats(); st.RepeatsDone != 0 || st.Round != 1 {
			t.Errorf("a failed round counted as done: %+v", st)
		}
	})
	t.Run("EOF with the last packets", func(t *testing.T) {
		opened := 0
		p, err := replay.New(&replay.Config{
			Open: func() (capture.Capturer, error) {
				opened++
				return &scripted{batches: [][]int{{0}, {1, 2}}, withErr: true}, nil
			},
			Repeat: 2, Fast: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		out, err := readAll(t, p, replay.RealClock{}, 4)
		if err != io.EOF || len(out) != 6 || opened != 2 {
			t.Errorf("%d packets, %v, %d opens; want 6, io.EOF, 2", len(out), err, opened)
		}
	})
	t.Run("open fails in round 2", func(t *testing.T) {
		opened := 0
		open := memoryOpener([]time.Duration{0, time.Millisecond}, nil)
		p, err := replay.New(&replay.Config{
			Open: func() (capture.Capturer, error) {
				if opened++; opened == 2 {
					return nil, errBoom
				}
				return open()
			},
			Repeat: 3, Clock: replay.NewFakeClock(start),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		out, err := readAll(t, p, replay.NewFakeClock(start), 4)
		if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "round 2") {
			t.Errorf("err %v, want boom in round 2", err)
		}
		if len(out) != 2 || opened != 2 {
			t.Errorf("%d packets, %d opens", len(out), opened)
		}
	})
	t.Run("open fails at once", func(t *testing.T) {
		_, err := replay.New(&replay.Config{Open: func() (capture.Capturer, error) { return nil, errBoom }})
		if !errors.Is(err, errBoom) {
			t.Errorf("New: %v, want boom", err)
		}
	})
	t.Run("source breaking the contract", func(t *testing.T) {
		src := &scripted{batches: [][]int{{0}}, empty: 1 << 30}
		p, err := replay.New(&replay.Config{Open: func() (capture.Capturer, error) { return src, nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		n, err := p.ReadPackets(make([]capture.Packet, 4))
		if n != 0 || err == nil || !strings.Contains(err.Error(), "no packet and no error") {
			t.Errorf("%d, %v", n, err)
		}
		if src.reads > 2000 {
			t.Errorf("%d reads before giving up", src.reads)
		}
	})
}

func TestCloseUnblocksWait(t *testing.T) {
	opened := 0
	p, err := replay.New(&replay.Config{Open: memoryOpener([]time.Duration{0, time.Hour}, &opened)})
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]capture.Packet, 4)
	if n, err := p.ReadPackets(pkts); n != 1 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.ReadPackets(pkts)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait (either way the result is the same)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, capture.ErrClosed) {
			t.Errorf("waiting read ended with %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock ReadPackets")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := p.ReadPackets(pkts); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	open := memoryOpener([]time.Duration{0}, nil)
	for _, c := range []struct {
		name string
		cfg  *replay.Config
	}{
		{"nil", nil},
		{"no Open", &replay.Config{}},
		{"negative speed", &replay.Config{Open: open, Speed: -1}},
		{"NaN speed", &replay.Config{Open: open, Speed: math.NaN()}},
		{"infinite speed", &replay.Config{Open: open, Speed: math.Inf(1)}},
		{"too fast", &replay.Config{Open: open, Speed: 2e6}},
		{"too slow", &replay.Config{Open: open, Speed: 1e-4}},
		{"negative idle", &replay.Config{Open: open, MaxIdle: -time.Millisecond}},
		{"negative repeat", &replay.Config{Open: open, Repeat: -1}},
		{"negative batch", &replay.Config{Open: open, Batch: -1}},
		{"huge batch", &replay.Config{Open: open, Batch: 1 << 20}},
		{"nil source", &replay.Config{Open: func() (capture.Capturer, error) { return nil, nil }}},
	} {
		if p, err := replay.New(c.cfg); err == nil || !strings.HasPrefix(err.Error(), "replay: ") {
			t.Errorf("%s: New returned %v, %v", c.name, p, err)
		}
	}
	for _, speed := range []float64{0, 0.001, 1e6} {
		if _, err := replay.New(&replay.Config{Open: open, Speed: speed}); err != nil {
			t.Errorf("speed %v: %v", speed, err)
		}
	}
}

func TestZeroLengthRead(t *testing.T) {
	p, err := replay.New(&replay.Config{Open: memoryOpener([]time.Duration{0}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, err := p.ReadPackets(nil); n != 0 || err != nil {
		t.Errorf("ReadPackets(nil) = %d, %v", n, err)
	}
}

// Stats, Now and Round may be called while another goroutine reads.
func TestStatsConcurrent(t *testing.T) {
	offsets := make([]time.Duration, 2000)
	for i := range offsets {
		offsets[i] = time.Duration(i) * time.Microsecond
	}
	clock := replay.NewFakeClock(start)
	p, err := replay.New(&replay.Config{Open: memoryOpener(offsets, nil), Clock: clock, Repeat: 3, Batch: 7})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			st := p.Stats()
			if st.Packets > 6000 || p.Round() > 3 || p.Now().Before(start) {
				t.Errorf("stats %+v, round %d", st, p.Round())
				return
			}
		}
	}()
	out, err := readAll(t, p, clock, 5)
	<-done
	if err != io.EOF || len(out) != 6000 {
		t.Errorf("%d packets, %v", len(out), err)
	}
	p.Close()
}

// A pause the Pacer will wait out at length is logged, once.
func TestLongPauseLogged(t *testing.T) {
	var buf strings.Builder
	clock := replay.NewFakeClock(start)
	p, err := replay.New(&replay.Config{
		Open:  memoryOpener([]time.Duration{0, time.Second, 2 * time.Minute, 2*time.Minute + time.Second}, nil),
		Clock: clock, Logger: slog.New(slog.NewTextHandler(&buf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if out, err := readAll(t, p, clock, 1); err != io.EOF || len(out) != 4 {
		t.Fatalf("%d packets, %v", len(out), err)
	}
	if n := strings.Count(buf.String(), "long pause"); n != 1 {
		t.Errorf("%d log lines about the pause:\n%s", n, buf.String())
	}
}
