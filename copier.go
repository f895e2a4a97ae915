package tcpcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

// Config configures a Copier. Capturer, Rewriter and Table are required.
type Config struct {
	// Capturer supplies the client packets.
	Capturer capture.Capturer
	// Rewriter picks the packets to copy and points them at the target;
	// usually a *rewrite.Transfer, or a rewrite.Chain of several.
	Rewriter rewrite.Rewriter
	// Table keeps the sessions with the target, usually a *session.Table
	// whose Emitter sends toward the target.
	Table SessionTable
	// Clock stamps responses and drives Tick. Nil means time.Now.
	Clock func() time.Time
	// TickInterval is how often timers run when no packet arrives. Zero
	// means 5 ms.
	TickInterval time.Duration
	// Batch is how many packets one capture read may bring. Zero means 64.
	Batch int
	// Logger receives lifecycle events. Nil discards.
	Logger *slog.Logger
}

// Copier wires capture, rewrite, the session table and the responses from
// intercept: one goroutine owns the table, so the table needs no locks. It is
// safe for concurrent use: Responses may be called from any goroutine.
type Copier struct {
	cfg       Config
	responses chan *respBatch
	free      sync.Pool
	filtered  atomic.Uint64
	running   atomic.Bool
}

// respBatch is a copy of one batch of responses, owned by the Copier.
type respBatch struct {
	buf  []byte
	ends []int
}

// NewCopier checks cfg and returns a Copier; it starts nothing.
func NewCopier(cfg *Config) (*Copier, error) {
	if cfg == nil || cfg.Capturer == nil || cfg.Rewriter == nil || cfg.Table == nil {
		return nil, errors.New("tcpcopy: Config needs Capturer, Rewriter and Table")
	}
	c := &Copier{cfg: *cfg, responses: make(chan *respBatch, 256)}
	if c.cfg.Clock == nil {
		c.cfg.Clock = time.Now
	}
	if c.cfg.TickInterval <= 0 {
		c.cfg.TickInterval = 5 * time.Millisecond
	}
	if c.cfg.Batch <= 0 {
		c.cfg.Batch = 64
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c.free.New = func() any { return new(respBatch) }
	return c, nil
}

// Responses hands a batch of target responses (from intercept.Client) to
// the Copier. It copies them, so pkts may be reused when it returns; it
// blocks while the Copier is behind by more than a few hundred batches.
func (c *Copier) Responses(pkts []capture.Packet) {
	b := c.free.Get().(*respBatch)
	b.buf, b.ends = b.buf[:0], b.ends[:0]
	for i := range pkts {
		b.buf = append(b.buf, pkts[i].Data...)
		b.ends = append(b.ends, len(b.buf))
	}
	c.responses <- b
}

// Filtered is how many captured packets the Rewriter turned away.
func (c *Copier) Filtered() uint64 { return c.filtered.Load() }

type capBatch struct {
	pkts []capture.Packet
	err  error
}

// Run copies until ctx ends (it returns nil) or the Capturer fails or
// reaches its end (io.EOF is returned as nil once the table has had a last
// Tick). It closes the Capturer when it returns. Run may be called once.
func (c *Copier) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("tcpcopy: Copier.Run called twice")
	}
	batches := make(chan capBatch)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.capture(ctx, batches, done)
	}()
	defer func() {
		c.cfg.Capturer.Close()
		wg.Wait()
	}()

	tick := time.NewTicker(c.cfg.TickInterval)
	defer tick.Stop()
	table := c.cfg.Table
	var p capture.Packet
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-batches:
			for i := range b.pkts {
				table.HandleClient(&b.pkts[i])
			}
			table.Tick(c.cfg.Clock())
			switch {
			case b.err == nil:
				done <- struct{}{}
			case errors.Is(b.err, io.EOF):
				return nil
			default:
				return fmt.Errorf("tcpcopy: capture: %w", b.err)
			}
		case rb := <-c.responses:
			now := c.cfg.Clock()
			start := 0
			for _, end := range rb.ends {
				if p.DecodeHeaders(rb.buf[start:end]) == nil {
					p.Time = now
					table.HandleResponse(&p)
				}
				start = end
			}
			c.free.Put(rb)
			table.Tick(now)
		case <-tick.C:
			table.Tick(c.cfg.Clock())
		}
	}
}

// capture reads batches, filters and rewrites them, and hands them to Run's
// loop; it waits for the loop to finish with a batch before reading the
// next, since the packets alias the Capturer's buffers.
func (c *Copier) capture(ctx context.Context, out chan<- capBatch, done <-chan struct{}) {
	pkts := make([]capture.Packet, c.cfg.Batch)
	for {
		n, err := c.cfg.Capturer.ReadPackets(pkts)
		k := 0
		for i := 0; i < n; i++ {
			if !c.cfg.Rewriter.Rewrite(&pkts[i]) {
				c.filtered.Add(1)
				continue
			}
			pkts[k] = pkts[i]
			k++
		}
		if k > 0 || err != nil {
			select {
			case out <- capBatch{pkts: pkts[:k], err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			select {
			case <-done:
			case <-ctx.Done():
				return
			}
		}
	}
}
