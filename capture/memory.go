package capture

import (
	"io"
	"sync"
	"time"
)

// Memory is an in-memory Capturer for tests and harnesses: datagrams pushed
// in come out of ReadPackets in order. It is a real Capturer (it decodes and
// counts like the others), safe for concurrent use by one reader and any
// number of writers.
type Memory struct {
	mu     sync.Mutex
	cond   sync.Cond
	queue  []memPacket
	eof    bool
	closed bool
	Counters
}

type memPacket struct {
	t time.Time
	b []byte
}

var _ Capturer = (*Memory)(nil)

// NewMemory returns an empty Memory capturer.
func NewMemory() *Memory {
	m := &Memory{}
	m.cond.L = &m.mu
	return m
}

// Push queues a copy of the IP datagram b captured at t.
func (m *Memory) Push(t time.Time, b []byte) {
	m.mu.Lock()
	m.queue = append(m.queue, memPacket{t, append([]byte(nil), b...)})
	m.mu.Unlock()
	m.cond.Signal()
}

// CloseWrite marks the end of input: once the queue is drained ReadPackets
// returns io.EOF.
func (m *Memory) CloseWrite() {
	m.mu.Lock()
	m.eof = true
	m.mu.Unlock()
	m.cond.Broadcast()
}

// ReadPackets implements Capturer. Undecodable datagrams are counted and
// skipped.
func (m *Memory) ReadPackets(pkts []Packet) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if m.closed {
			return 0, ErrClosed
		}
		if len(pkts) == 0 {
			// Nothing could be returned: waiting would block until Close.
			return 0, nil
		}
		n := 0
		for n < len(pkts) && len(m.queue) > 0 {
			mp := m.queue[0]
			m.queue = m.queue[1:]
			pkts[n].Time, pkts[n].Dir = mp.t, DirUnknown
			if err := pkts[n].Decode(mp.b); err != nil {
				m.Reject(err)
				continue
			}
			m.Accept(&pkts[n])
			n++
		}
		if n > 0 {
			return n, nil
		}
		if m.eof {
			return 0, io.EOF
		}
		m.cond.Wait()
	}
}

// Close implements Capturer; it is idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cond.Broadcast()
	return nil
}
