package intercept

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// runOnce is the lifecycle Server and Client share: a Run that may run
// once, and a Close that is idempotent, stops the Run and waits for it.
type runOnce struct {
	mu      sync.Mutex
	closed  atomic.Bool
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// begin starts the run, or fails with ErrClosed after Close and with an
// error naming what when it runs already. The run works under the returned
// context and defers end.
func (r *runOnce) begin(ctx context.Context, what string) (_ context.Context, end func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return nil, nil, ErrClosed
	}
	if r.running {
		return nil, nil, fmt.Errorf("intercept: %s called twice", what)
	}
	r.running = true
	ctx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	done := r.done
	return ctx, func() { cancel(); close(done) }, nil
}

// close marks it closed, runs onClose (if any) under its lock, then stops
// the run and waits for it. It reports false when it was closed already.
func (r *runOnce) close(onClose func()) bool {
	r.mu.Lock()
	if r.closed.Swap(true) {
		r.mu.Unlock()
		return false
	}
	running, cancel, done := r.running, r.cancel, r.done
	if onClose != nil {
		onClose()
	}
	r.mu.Unlock()
	if running {
		cancel()
		<-done
	}
	return true
}
