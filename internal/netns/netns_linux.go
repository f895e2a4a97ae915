package netns

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// ErrGoexit is returned by Do when f called runtime.Goexit.
var ErrGoexit = errors.New("netns: the function called runtime.Goexit (t.FailNow from the wrong goroutine?)")

// Do runs f on a new goroutine locked to an OS thread that is switched into
// the network namespace the file descriptor fd refers to, switches the
// thread back, and returns f's error joined with any error of the switch.
// Sockets f creates stay in the namespace for their life and may be used
// from any goroutine afterwards; goroutines f starts run in the caller's
// namespace. A panic in f is raised again in the caller. A thread that
// cannot be switched back stays locked, so the runtime ends it.
func Do(fd int, f func() error) error {
	type result struct {
		err      error
		panicked bool
		pv       any
		stack    []byte
	}
	done := make(chan result, 1)
	go func() {
		res := result{err: ErrGoexit}
		defer func() { done <- res }()

		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res.err, restored = fmt.Errorf("netns: open the current network namespace: %w", err), true
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			res.err, restored = fmt.Errorf("netns: enter network namespace fd %d: %w", fd, err), true
			return
		}
		defer func() {
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				res.err = errors.Join(res.err, fmt.Errorf("netns: leave network namespace fd %d: %w", fd, err))
				return
			}
			restored = true
		}()
		defer func() {
			if p := recover(); p != nil {
				res.panicked, res.pv, res.stack = true, p, debug.Stack()
			}
		}()
		res.err = f()
	}()
	r := <-done
	if r.panicked {
		panic(fmt.Sprintf("netns: panic in Do: %v\n%s", r.pv, r.stack))
	}
	return r.err
}
