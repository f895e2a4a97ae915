package emit

import (
	"context"
	"fmt"
	"sync"
)

// RecorderConfig configures a Recorder. The zero value (or nil) keeps
// every datagram.
type RecorderConfig struct {
	// Limit is the most datagrams kept at once. Zero means unlimited;
	// a negative Limit keeps none (a dry run that only counts). Datagrams
	// past the limit are counted by Overflow and dropped.
	Limit int
}

// Record is one datagram a Recorder kept.
type Record struct {
	// Index is the datagram's position among all datagrams given to Emit
	// since NewRecorder, from 0; Reset does not restart it, and datagrams
	// lost to the limit leave gaps.
	Index uint64
	// Data is a copy of the datagram.
	Data []byte
}

// Recorder is an Emitter for tests and dry runs: it keeps a copy of every
// datagram it is given, in order. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	limit    int
	recs     []Record
	next     uint64
	overflow uint64
	closed   bool
	changed  chan struct{} // closed on every change; nil while nobody waits
}

var _ Emitter = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder(cfg *RecorderConfig) *Recorder {
	r := &Recorder{}
	if cfg != nil {
		r.limit = cfg.Limit
	}
	return r
}

// Emit implements Emitter: it copies each datagram. After Close it returns
// ErrClosed.
func (r *Recorder) Emit(pkts [][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	for _, p := range pkts {
		idx := r.next
		r.next++
		if r.limit < 0 || (r.limit > 0 && len(r.recs) >= r.limit) {
			r.overflow++
			continue
		}
		r.recs = append(r.recs, Record{Index: idx, Data: append([]byte(nil), p...)})
	}
	r.notify()
	return nil
}

// notify wakes the waiters; r.mu is held.
func (r *Recorder) notify() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Records returns copies of the kept datagrams with their indexes, oldest
// first.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, len(r.recs))
	for i, rec := range r.recs {
		out[i] = Record{Index: rec.Index, Data: append([]byte(nil), rec.Data...)}
	}
	return out
}

// Packets returns copies of the kept datagrams, oldest first.
func (r *Recorder) Packets() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.recs))
	for i, rec := range r.recs {
		out[i] = append([]byte(nil), rec.Data...)
	}
	return out
}

// Len is the number of datagrams kept.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// Overflow is the number of datagrams dropped for the limit since
// NewRecorder or Reset.
func (r *Recorder) Overflow() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overflow
}

// Reset forgets the kept datagrams and the overflow count; indexes go on.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = nil
	r.overflow = 0
	r.notify()
}

// Wait blocks until at least n datagrams are kept (Len() >= n), ctx is done
// (its error, wrapped), or the Recorder is closed (ErrClosed).
func (r *Recorder) Wait(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		have, closed := len(r.recs), r.closed
		if have >= n {
			r.mu.Unlock()
			return nil
		}
		if closed {
			r.mu.Unlock()
			return ErrClosed
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("emit: recorder holds %d of %d datagrams: %w", have, n, ctx.Err())
		}
	}
}

// Close makes later Emits return ErrClosed and wakes Waits. The kept
// datagrams stay readable. It is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.notify()
	return nil
}
