package replay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Config configures a Pacer. Open is required; every other zero value is
// documented.
type Config struct {
	// Open opens the source, a file-fed Capturer: New calls it for the
	// first round and the Pacer again for each repeat. FileOpener makes
	// one for a pcap or pcapng file.
	Open func() (capture.Capturer, error)
	// Speed divides the time between packets (TCPCopy's -a): 2 replays
	// twice as fast, 0.5 at half speed; 0.001 to 1e6. Zero means 1, the
	// capture's own pace. Ignored in Fast mode.
	Speed float64
	// Fast hands packets out as fast as they are read, without waiting:
	// the copier and the target set the pace.
	Fast bool
	// MaxIdle shortens every gap of the capture longer than MaxIdle to
	// MaxIdle (TCPCopy's -I, in milliseconds there), so that idle
	// stretches of a capture are skipped; each such gap is counted once
	// (Stats.GapsSkipped, Stats.Skipped). It is capture time, before Speed
	// applies. Zero skips nothing. (TCPCopy drops such a gap whole; keeping
	// MaxIdle of it keeps the bursts either side apart.)
	MaxIdle time.Duration
	// Repeat is how many times the source is replayed (TCPCopy's -T), each
	// round opened anew with Open and starting where the last one ended.
	// Zero means 1.
	Repeat int
	// Clock reads the time and waits. Nil means RealClock{}. The Copier
	// reading the Pacer must use the same clock (see Pacer.Now).
	Clock Clock
	// Batch is how many packets are read from the source at once. Zero
	// means 64.
	Batch int
	// Logger receives lifecycle events (rounds, skipped gaps at debug
	// level). Nil discards.
	Logger *slog.Logger
}

// Speeds outside these bounds are refused: they are typing errors, and
// would overflow the timeline. Fast mode is the way to go flat out.
const (
	minSpeed = 1e-3
	maxSpeed = 1e6
)

// longWait is a wait for one packet worth a log line: a capture with an
// idle stretch (or a bad timestamp) that MaxIdle would skip.
const longWait = 10 * time.Second

// maxBatch bounds the memory a misconfigured Batch can pin.
const maxBatch = 1 << 16

// maxEmptyReads bounds how often in a row a source may break the Capturer
// contract by returning neither packets nor an error.
const maxEmptyReads = 1000

// Pacer is a capture.Capturer that hands out the packets of a file-fed
// source when they are due: the first at once, each later one when its
// capture time, relative to the first packet's, divided by Speed and less
// the idle time skipped (see MaxIdle), has passed on the Clock. Each packet
// comes out with Packet.Time set to its due time, so a session table fed
// by it measures the capture's round-trip times and pauses, scaled by
// Speed, on the Clock the Copier uses. Packets whose capture time is
// earlier than one before them (several interfaces, clock steps) are due
// at once.
//
// Packets of one ReadPackets come from one read of the source and alias
// its buffers, which stay valid until the next ReadPackets or Close. At
// the end of the last round ReadPackets returns io.EOF; a source error is
// returned as it is, after the packets read before it, and stops the
// replay (no later round: nothing is replayed twice). Errors are sticky.
//
// One goroutine may call ReadPackets at a time; Stats, Now and Close are
// safe from any goroutine, and Close unblocks a ReadPackets waiting for a
// packet's time.
type Pacer struct {
	cfg    Config
	clock  Clock
	log    *slog.Logger
	closed chan struct{}
	once   sync.Once
	cerr   error

	// The reader's state: one ReadPackets at a time.
	buf          []capture.Packet
	n, off       int   // buf[off:n] are read and not handed out yet
	srcErr       error // what the source returned with buf's packets
	err          error // sticky
	started      bool
	base         time.Time // release time of the very first packet
	roundStarted bool
	high         time.Time     // the latest capture time of the round
	virt         time.Duration // due offset from base, in capture time
	due          time.Time     // due time of buf[off], when dueValid
	dueValid     bool
	empty        int
	lates        []time.Duration

	mu       sync.Mutex // guards the fields below
	src      capture.Capturer
	past     capture.Stats // sources of the rounds before
	smp      *sample
	isClosed bool

	packets, bytes, gaps, skipped atomic.Uint64
	round, repeats                atomic.Int64
	span, elapsed                 atomic.Int64
}

var _ capture.Capturer = (*Pacer)(nil)

// New checks cfg and opens the source for the first round (so a missing
// or unreadable file is reported here). It starts no goroutines.
func New(cfg *Config) (*Pacer, error) {
	if cfg == nil || cfg.Open == nil {
		return nil, errors.New("replay: Config needs Open")
	}
	c := *cfg
	switch {
	case math.IsNaN(c.Speed) || c.Speed < 0 || c.Speed != 0 && (c.Speed < minSpeed || c.Speed > maxSpeed):
		return nil, fmt.Errorf("replay: speed %v is outside %v..%v", c.Speed, minSpeed, maxSpeed)
	case c.MaxIdle < 0:
		return nil, fmt.Errorf("replay: idle threshold %v is negative", c.MaxIdle)
	case c.Repeat < 0:
		return nil, fmt.Errorf("replay: repeat count %d is negative", c.Repeat)
	case c.Batch < 0 || c.Batch > maxBatch:
		return nil, fmt.Errorf("replay: batch %d is outside 1..%d", c.Batch, maxBatch)
	}
	if c.Speed == 0 {
		c.Speed = 1
	}
	if c.Repeat == 0 {
		c.Repeat = 1
	}
	if c.Batch == 0 {
		c.Batch = 64
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	src, err := c.Open()
	if err != nil {
		return nil, fmt.Errorf("replay: open the source: %w", err)
	}
	if src == nil {
		return nil, errors.New("replay: Open returned a nil Capturer")
	}
	p := &Pacer{
		cfg: c, clock: c.Clock, log: c.Logger, closed: make(chan struct{}),
		buf: make([]capture.Packet, c.Batch), lates: make([]time.Duration, 0, c.Batch),
		src: src, smp: newSample(),
	}
	p.round.Store(1)
	return p, nil
}

// Now reads the Pacer's clock: give it to the Copier (tcpcopy.Config.Clock)
// so that responses and timers are on the clock the packets are stamped on.
func (p *Pacer) Now() time.Time { return p.clock.Now() }

// ReadPackets implements capture.Capturer: it blocks until the next packet
// is due, then fills pkts with the packets due by now.
func (p *Pacer) ReadPackets(pkts []capture.Packet) (int, error) {
	for {
		select {
		case <-p.closed:
			return 0, capture.ErrClosed
		default:
		}
		if len(pkts) == 0 {
			return 0, nil
		}
		if p.off < p.n {
			if n, err := p.release(pkts); n > 0 || err != nil {
				return n, err
			}
			continue // the Clock woke early
		}
		if p.err != nil {
			return 0, p.err
		}
		if err := p.srcErr; err != nil {
			p.srcErr = nil
			if !errors.Is(err, io.EOF) {
				p.err = err
				return 0, err
			}
			p.repeats.Add(1)
			if int(p.round.Load()) >= p.cfg.Repeat {
				p.err = io.EOF
				return 0, io.EOF
			}
			if err := p.reopen(); err != nil {
				p.err = err
				return 0, err
			}
			continue
		}
		p.mu.Lock()
		src := p.src
		p.mu.Unlock()
		n, err := src.ReadPackets(p.buf)
		if n < 0 || n > len(p.buf) {
			p.err = fmt.Errorf("replay: the source returned %d packets for %d places", n, len(p.buf))
			return 0, p.err
		}
		p.n, p.off, p.srcErr = n, 0, err
		if n == 0 && err == nil {
			if p.empty++; p.empty >= maxEmptyReads {
				p.err = fmt.Errorf("replay: the source returned no packet and no error %d times in a row", p.empty)
			}
			continue
		}
		p.empty = 0
	}
}

// release hands out the packets of buf due by now, waiting for the first.
func (p *Pacer) release(pkts []capture.Packet) (int, error) {
	if p.cfg.Fast {
		now := p.clock.Now()
		k := 0
		for ; k < len(pkts) && p.off < p.n; k++ {
			p.schedule()
			pkts[k] = p.buf[p.off]
			pkts[k].Time = now
			p.bytes.Add(uint64(len(pkts[k].Data)))
			p.advance()
		}
		p.packets.Add(uint64(k))
		p.elapsed.Store(int64(now.Sub(p.base)))
		return k, nil
	}
	if !p.clock.Wait(p.schedule(), p.closed) {
		return 0, capture.ErrClosed
	}
	now := p.clock.Now()
	p.lates = p.lates[:0]
	k := 0
	for k < len(pkts) && p.off < p.n {
		due := p.schedule()
		if due.After(now) {
			break
		}
		pkts[k] = p.buf[p.off]
		pkts[k].Time = due
		p.bytes.Add(uint64(len(pkts[k].Data)))
		p.lates = append(p.lates, now.Sub(due))
		p.advance()
		k++
	}
	p.packets.Add(uint64(k))
	p.elapsed.Store(int64(now.Sub(p.base)))
	p.mu.Lock()
	for _, d := range p.lates {
		p.smp.add(d)
	}
	p.mu.Unlock()
	return k, nil
}

// schedule returns the due time of buf[off], working it out once: the gap
// since the round's latest capture time, shortened to MaxIdle (and counted)
// when longer, is added to the timeline.
func (p *Pacer) schedule() time.Time {
	if p.dueValid {
		return p.due
	}
	if !p.started {
		p.started = true
		p.base = p.clock.Now()
	}
	t := p.buf[p.off].Time
	switch {
	case !p.roundStarted:
		// A round starts where the last one ended, without a gap.
		p.roundStarted = true
		p.high = t
	case t.After(p.high):
		gap := t.Sub(p.high)
		p.high = t
		p.span.Add(int64(gap))
		if !p.cfg.Fast && p.cfg.MaxIdle > 0 && gap > p.cfg.MaxIdle {
			p.gaps.Add(1)
			p.skipped.Add(uint64(gap - p.cfg.MaxIdle))
			p.log.Debug("replay: idle gap skipped", "gap", gap, "kept", p.cfg.MaxIdle, "round", p.round.Load())
			gap = p.cfg.MaxIdle
		}
		p.virt += gap
		if !p.cfg.Fast && float64(gap)/p.cfg.Speed > float64(longWait) {
			p.log.Info("replay: a long pause in the capture (Config.MaxIdle, -I, skips such gaps)",
				"gap", gap, "speed", p.cfg.Speed, "round", p.round.Load())
		}
	}
	off := p.virt
	if p.cfg.Speed != 1 {
		// Saturate rather than overflow (146 years).
		off = time.Duration(min(float64(off)/p.cfg.Speed, 1<<62))
	}
	p.due, p.dueValid = p.base.Add(off), true
	return p.due
}

func (p *Pacer) advance() {
	p.off++
	p.dueValid = false
}

// reopen starts the next round with a new source.
func (p *Pacer) reopen() error {
	next := p.round.Load() + 1
	src, err := p.cfg.Open()
	if err != nil {
		return fmt.Errorf("replay: round %d: open the source: %w", next, err)
	}
	if src == nil {
		return fmt.Errorf("replay: round %d: Open returned a nil Capturer", next)
	}
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		src.Close()
		return capture.ErrClosed
	}
	old := p.src
	p.past = p.past.Add(statsOf(old))
	p.src = src
	p.mu.Unlock()
	if err := old.Close(); err != nil {
		p.log.Warn("replay: close the source of the last round", "err", err)
	}
	p.round.Store(next)
	p.roundStarted = false
	p.log.Info("replay: next round", "round", next, "of", p.cfg.Repeat)
	return nil
}

func statsOf(c capture.Capturer) capture.Stats {
	if s, ok := c.(interface{ Stats() capture.Stats }); ok {
		return s.Stats()
	}
	return capture.Stats{}
}

// Close implements capture.Capturer: it closes the source and unblocks a
// pending ReadPackets; later ReadPackets return capture.ErrClosed. It is
// idempotent.
func (p *Pacer) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.mu.Lock()
		p.isClosed = true
		src := p.src
		p.mu.Unlock()
		p.cerr = src.Close()
	})
	return p.cerr
}

// Stats returns a snapshot of the counters.
func (p *Pacer) Stats() Stats {
	s := Stats{
		Packets:     p.packets.Load(),
		Bytes:       p.bytes.Load(),
		GapsSkipped: p.gaps.Load(),
		Skipped:     time.Duration(p.skipped.Load()),
		Round:       int(p.round.Load()),
		Rounds:      p.cfg.Repeat,
		RepeatsDone: int(p.repeats.Load()),
		Span:        time.Duration(p.span.Load()),
		Elapsed:     time.Duration(p.elapsed.Load()),
	}
	p.mu.Lock()
	vals := slices.Clone(p.smp.vals)
	s.TimingSamples, s.TimingMax = p.smp.seen, p.smp.max
	src, past := p.src, p.past
	p.mu.Unlock()
	slices.Sort(vals)
	s.TimingMedian, s.TimingP99 = quantile(vals, 0.5), quantile(vals, 0.99)
	s.Source = past.Add(statsOf(src))
	if pos, ok := src.(Positioner); ok {
		s.Read, s.Size = pos.Position()
	}
	return s
}
