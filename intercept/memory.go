package intercept

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Memory is an in-memory Interceptor for tests and harnesses: each Push is
// decoded and reported as one batch, in order, by Run. Datagrams that do not
// decode are counted and skipped. It is safe for concurrent use by one Run
// and any number of pushers.
type Memory struct {
	mu     sync.Mutex
	queue  [][][]byte
	notify chan struct{}

	reported, undecodable atomic.Uint64
}

var _ Interceptor = (*Memory)(nil)

// NewMemory returns an empty Memory interceptor.
func NewMemory() *Memory { return &Memory{notify: make(chan struct{}, 1)} }

// Push queues copies of the IP datagrams to be reported as one batch.
func (m *Memory) Push(datagrams ...[]byte) {
	batch := make([][]byte, len(datagrams))
	for i, d := range datagrams {
		batch[i] = append([]byte(nil), d...)
	}
	m.mu.Lock()
	m.queue = append(m.queue, batch)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// Reported is the number of packets handed to report so far.
func (m *Memory) Reported() uint64 { return m.reported.Load() }

// Undecodable is the number of pushed datagrams that did not decode.
func (m *Memory) Undecodable() uint64 { return m.undecodable.Load() }

// Run implements Interceptor: it reports pushed batches until ctx ends,
// then returns nil. The packets' Time is left zero.
func (m *Memory) Run(ctx context.Context, report func(pkts []capture.Packet)) error {
	var pkts []capture.Packet
	for {
		m.mu.Lock()
		var batch [][]byte
		if len(m.queue) > 0 {
			batch = m.queue[0]
			m.queue[0] = nil
			m.queue = m.queue[1:]
		}
		m.mu.Unlock()
		if batch == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-m.notify:
			}
			continue
		}
		pkts = pkts[:0]
		for _, d := range batch {
			var p capture.Packet
			if err := p.Decode(d); err != nil {
				m.undecodable.Add(1)
				continue
			}
			pkts = append(pkts, p)
		}
		if len(pkts) > 0 {
			report(pkts)
			m.reported.Add(uint64(len(pkts)))
		}
	}
}
