package replay_test

import (
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/replay"
)

func TestRealClock(t *testing.T) {
	for _, c := range []replay.RealClock{{}, {Spin: time.Millisecond}} {
		cancel := make(chan struct{})
		for _, d := range []time.Duration{-time.Millisecond, 0, 300 * time.Microsecond, 3 * time.Millisecond} {
			due := time.Now().Add(d)
			if !c.Wait(due, cancel) {
				t.Fatalf("%+v: Wait(%v) reported a cancel", c, d)
			}
			if now := c.Now(); now.Before(due) {
				t.Errorf("%+v: Wait(%v) returned %v early", c, d, due.Sub(now))
			}
		}
		close(cancel)
		begin := time.Now()
		if c.Wait(time.Now().Add(time.Hour), cancel) {
			t.Errorf("%+v: Wait with a closed cancel reported the time came", c)
		}
		if time.Since(begin) > 10*time.Second {
			t.Errorf("%+v: cancel took %v", c, time.Since(begin))
		}
	}
}

func TestFakeClock(t *testing.T) {
	c := replay.NewFakeClock(start)
	c.Late = func(n int) time.Duration { return time.Duration(n+1) * time.Millisecond }
	cancel := make(chan struct{})
	c.Wait(start.Add(-time.Second), cancel) // in the past: no move, no lateness
	if !c.Now().Equal(start) || c.Waits() != 0 {
		t.Errorf("waiting for the past moved the clock to %v", c.Now())
	}
	c.Wait(start.Add(time.Second), cancel)
	if want := start.Add(time.Second + time.Millisecond); !c.Now().Equal(want) || c.Waits() != 1 {
		t.Errorf("now %v, want %v", c.Now(), want)
	}
	c.Advance(time.Minute)
	if want := start.Add(time.Minute + time.Second + time.Millisecond); !c.Now().Equal(want) {
		t.Errorf("after Advance: %v, want %v", c.Now(), want)
	}
	close(cancel)
	if c.Wait(start.Add(time.Hour), cancel) {
		t.Error("Wait with a closed cancel")
	}
}
