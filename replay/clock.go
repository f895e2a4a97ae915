package replay

import (
	"sync"
	"time"
)

// Clock is the time source of a Pacer. The Copier that reads the Pacer
// must use the same clock (tcpcopy.Config.Clock = clock.Now), since the
// packets are stamped with their due times on it.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Wait blocks until Now is at or past t, or until cancel is closed;
	// it reports whether t came.
	Wait(t time.Time, cancel <-chan struct{}) bool
}

// RealClock is the system clock. Its zero value sleeps with Go's timers,
// which on Linux wake up to about a millisecond late when the process is
// otherwise idle (the runtime's poller waits in whole milliseconds). It is
// safe for concurrent use.
type RealClock struct {
	// Spin is the last part of each wait spent busy-waiting instead of
	// sleeping, so that packets go out within microseconds of their due
	// time; it must exceed the timers' lateness to help, and 2 ms does
	// (BenchmarkPacerSpeed: p99 about 10 µs on an idle host, against
	// 1 ms when sleeping only). It costs up to Spin of CPU per wait (with
	// dense traffic, most of a core), which a small host may miss
	// elsewhere. Zero sleeps only.
	Spin time.Duration
}

var _ Clock = RealClock{}

// timers are reused so that waiting does not allocate. Since Go 1.23 a
// stopped or fired timer holds no stale value, so Reset is all a reuse
// takes.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// Wait implements Clock.
func (c RealClock) Wait(t time.Time, cancel <-chan struct{}) bool {
	if d := time.Until(t) - c.Spin; d > 0 {
		timer := timers.Get().(*time.Timer)
		timer.Reset(d)
		select {
		case <-timer.C:
			timers.Put(timer)
		case <-cancel:
			timer.Stop()
			timers.Put(timer)
			return false
		}
	}
	// Bounded by Spin (plus one timer's lateness): the loop ends when t
	// comes. It does not yield: runtime.Gosched would put the goroutine on
	// the global run queue, which busy processors look at seldom, and a
	// loaded host would then wake it tens of milliseconds late.
	for time.Now().Before(t) {
		select {
		case <-cancel:
			return false
		default:
		}
	}
	return true
}

// FakeClock is a Clock for tests whose time moves only when Advance is
// called or when Wait jumps it to the time waited for, plus Late's answer:
// a Pacer driven by it runs at once and deterministically. It is safe for
// concurrent use.
type FakeClock struct {
	// Late, if set, returns how late the n-th Wait (counting from 0) that
	// had to wait wakes up, to simulate a busy host.
	Late func(n int) time.Duration

	mu    sync.Mutex
	now   time.Time
	waits int
}

var _ Clock = (*FakeClock)(nil)

// NewFakeClock returns a FakeClock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now implements Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Wait implements Clock: it moves the time to t (plus Late) if t is
// ahead, and returns false only if cancel is already closed.
func (c *FakeClock) Wait(t time.Time, cancel <-chan struct{}) bool {
	select {
	case <-cancel:
		return false
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
		if c.Late != nil {
			c.now = c.now.Add(c.Late(c.waits))
		}
		c.waits++
	}
	return true
}

// Advance moves the time forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Waits returns how many Waits had to wait (moved the time).
func (c *FakeClock) Waits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waits
}
