package tcpcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/rewrite"
)

// CopyRewriter makes several copies of each connection (TCPCopy's -n): copy
// i of a packet is rewritten by RewriteCopy(p, i), which reports false to
// drop that copy (a port collision, say). rewrite.Copies implements it.
type CopyRewriter interface {
	Copies() int
	RewriteCopy(p *capture.Packet, i int) bool
}

// Config configures a Copier. Capturer, Rewriter and NewTable are
// required.
type Config struct {
	// Capturer supplies the client packets.
	Capturer capture.Capturer
	// Rewriter picks the packets to copy and points them at the target;
	// usually a *rewrite.Transfer, or a rewrite.Chain of several.
	Rewriter rewrite.Rewriter
	// Copies, if set, copies each connection several times (after
	// Rewriter).
	Copies CopyRewriter
	// NewTable makes the session table of one shard, usually a
	// *session.Table whose Emitter sends toward the target. It is called
	// once per shard by NewCopier.
	NewTable func(shard int) SessionTable
	// Shards is how many goroutines own sessions, split by a hash of the
	// client endpoint. Zero means GOMAXPROCS.
	Shards int
	// Clock stamps responses and drives Tick. Nil means time.Now.
	Clock func() time.Time
	// TickInterval is how often timers run when no packet arrives. Zero
	// means 5 ms.
	TickInterval time.Duration
	// Batch is how many packets one capture read may bring. Zero means 64.
	Batch int
	// Drain is how long Run keeps the sessions going after the Capturer
	// reached its end (a file), until none is open. Tables report open
	// sessions through an Open() int method (session.Table has it). Zero
	// means no drain.
	Drain time.Duration
	// Logger receives lifecycle events. Nil discards.
	Logger *slog.Logger
}

// Copier wires capture, rewrite, the session tables and the responses from
// intercept. Each shard's table is owned by one goroutine, so tables need
// no locks; packets reach it in batches. A Copier is safe for concurrent
// use: Responses and Stats may be called from any goroutine.
type Copier struct {
	cfg     Config
	shards  []*shard
	scratch []byte // the capture goroutine's copy buffer
	running atomic.Bool
	done    chan struct{} // closed when Run returns
	stats   copierCounters
}

// Stats counts what the Copier did before the session tables.
type Stats struct {
	Captured      uint64 // packets the Capturer returned
	Filtered      uint64 // turned away by the Rewriter (not for this copier)
	CopiesDropped uint64 // copies the CopyRewriter refused
	Dispatched    uint64 // client packets handed to the shards (copies included)
	Responses     uint64 // responses handed to the shards
	BadResponses  uint64 // responses that did not decode
}

type copierCounters struct {
	captured, filtered, copiesDropped, dispatched, responses, badResponses atomic.Uint64
}

// shard is one session table and the goroutine that owns it.
type shard struct {
	table SessionTable
	in    chan *batch
	free  chan *batch
}

// batch is a copy of packets for one shard, owned by the Copier; a batch
// with probe set asks the shard how many sessions are open instead.
type batch struct {
	probe chan int
	resp  bool
	buf   []byte
	ends  []int
	times []time.Time
}

func (b *batch) reset(resp bool) {
	b.resp, b.buf, b.ends, b.times = resp, b.buf[:0], b.ends[:0], b.times[:0]
}

func (b *batch) add(data []byte, t time.Time) []byte {
	start := len(b.buf)
	b.buf = append(b.buf, data...)
	b.ends = append(b.ends, len(b.buf))
	b.times = append(b.times, t)
	return b.buf[start:]
}

// batchesPerShard bounds the batches in flight to one shard: when they are
// all queued the capture side waits, and the kernel counts what it drops.
const batchesPerShard = 32

// NewCopier checks cfg, makes the shards' tables and returns a Copier; it
// starts nothing.
func NewCopier(cfg *Config) (*Copier, error) {
	if cfg == nil || cfg.Capturer == nil || cfg.Rewriter == nil || cfg.NewTable == nil {
		return nil, errors.New("tcpcopy: Config needs Capturer, Rewriter and NewTable")
	}
	c := &Copier{cfg: *cfg, done: make(chan struct{})}
	if c.cfg.Clock == nil {
		c.cfg.Clock = time.Now
	}
	if c.cfg.TickInterval <= 0 {
		c.cfg.TickInterval = 5 * time.Millisecond
	}
	if c.cfg.Batch <= 0 {
		c.cfg.Batch = 64
	}
	if c.cfg.Shards <= 0 {
		c.cfg.Shards = runtime.GOMAXPROCS(0)
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if c.cfg.Copies != nil && c.cfg.Copies.Copies() < 1 {
		return nil, fmt.Errorf("tcpcopy: CopyRewriter makes %d copies", c.cfg.Copies.Copies())
	}
	for i := range c.cfg.Shards {
		sh := &shard{
			table: c.cfg.NewTable(i),
			in:    make(chan *batch, batchesPerShard),
			free:  make(chan *batch, batchesPerShard),
		}
		if sh.table == nil {
			return nil, fmt.Errorf("tcpcopy: NewTable(%d) returned nil", i)
		}
		for range batchesPerShard {
			sh.free <- &batch{}
		}
		c.shards = append(c.shards, sh)
	}
	return c, nil
}

// Stats returns a snapshot of the Copier's own counters; the session
// tables keep theirs.
func (c *Copier) Stats() Stats {
	s := &c.stats
	return Stats{
		Captured: s.captured.Load(), Filtered: s.filtered.Load(),
		CopiesDropped: s.copiesDropped.Load(), Dispatched: s.dispatched.Load(),
		Responses: s.responses.Load(), BadResponses: s.badResponses.Load(),
	}
}

func (c *Copier) shardOf(e capture.Endpoint) int {
	return int(e.Hash() % uint64(len(c.shards)))
}

// Responses hands a batch of target responses (from intercept.Client) to
// the shards that own their clients. It copies them, so pkts may be reused
// when it returns; it blocks while a shard is far behind. After Run has
// returned it drops them.
func (c *Copier) Responses(pkts []capture.Packet) {
	var open [64]*batch // per shard, for up to 64 shards without allocating
	var bs []*batch
	if len(c.shards) <= len(open) {
		bs = open[:len(c.shards)]
	} else {
		bs = make([]*batch, len(c.shards))
	}
	now := c.cfg.Clock()
	for i := range pkts {
		k := c.shardOf(pkts[i].DstEndpoint())
		if bs[k] == nil {
			select {
			case bs[k] = <-c.shards[k].free:
			case <-c.done:
				return
			}
			bs[k].reset(true)
		}
		bs[k].add(pkts[i].Data, now)
	}
	c.stats.responses.Add(uint64(len(pkts)))
	for k, b := range bs {
		if b != nil {
			select {
			case c.shards[k].in <- b:
			case <-c.done:
				return
			}
		}
	}
}

// Run copies until ctx ends (it returns nil) or the Capturer fails or
// reaches its end (io.EOF is returned as nil once the shards have handled
// everything read). It closes the Capturer when it returns. Run may be
// called once.
func (c *Copier) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("tcpcopy: Copier.Run called twice")
	}
	defer close(c.done)
	var wg sync.WaitGroup
	shardCtx, stopShards := context.WithCancel(context.Background())
	for _, sh := range c.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runShard(shardCtx, sh)
		}()
	}
	// The Capturer is closed to unblock a pending read when ctx ends.
	stop := context.AfterFunc(ctx, func() { c.cfg.Capturer.Close() })
	err := c.capture(ctx)
	if errors.Is(err, io.EOF) && c.cfg.Drain > 0 {
		c.drain(ctx)
	}
	stop()
	c.cfg.Capturer.Close()
	stopShards() // shards drain what is queued, then stop
	wg.Wait()
	if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, capture.ErrClosed) {
		return nil
	}
	return fmt.Errorf("tcpcopy: capture: %w", err)
}

// capture reads batches, filters, rewrites and copies the packets, and
// dispatches them to the shards by client endpoint.
func (c *Copier) capture(ctx context.Context) error {
	pkts := make([]capture.Packet, c.cfg.Batch)
	bs := make([]*batch, len(c.shards))
	copies := 1
	if c.cfg.Copies != nil {
		copies = c.cfg.Copies.Copies()
	}
	var cp capture.Packet
	for {
		n, err := c.cfg.Capturer.ReadPackets(pkts)
		c.stats.captured.Add(uint64(n))
		for i := 0; i < n; i++ {
			p := &pkts[i]
			if !c.cfg.Rewriter.Rewrite(p) {
				c.stats.filtered.Add(1)
				continue
			}
			for k := range copies {
				if c.cfg.Copies == nil {
					c.dispatch(bs, p.SrcEndpoint(), p.Data, p.Time)
					continue
				}
				// Each copy is rewritten in the buffer of the shard it
				// lands in; its shard is known only after the rewrite, so
				// it is made in scratch first.
				cp.Time = p.Time
				c.scratch = append(c.scratch[:0], p.Data...)
				if cp.Decode(c.scratch) != nil || !c.cfg.Copies.RewriteCopy(&cp, k) {
					c.stats.copiesDropped.Add(1)
					continue
				}
				c.dispatch(bs, cp.SrcEndpoint(), cp.Data, cp.Time)
			}
		}
		for k, b := range bs {
			if b != nil {
				select {
				case c.shards[k].in <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
				bs[k] = nil
			}
		}
		if err != nil {
			return err
		}
	}
}

func (c *Copier) dispatch(bs []*batch, key capture.Endpoint, data []byte, t time.Time) {
	k := c.shardOf(key)
	if bs[k] == nil {
		bs[k] = <-c.shards[k].free
		bs[k].reset(false)
	}
	bs[k].add(data, t)
	c.stats.dispatched.Add(1)
}

// drain waits until no shard has an open session, Drain passes or ctx
// ends.
func (c *Copier) drain(ctx context.Context) {
	deadline := time.Now().Add(c.cfg.Drain)
	probe := make(chan int)
	for time.Now().Before(deadline) {
		open := 0
		for _, sh := range c.shards {
			select {
			case sh.in <- &batch{probe: probe}:
			case <-ctx.Done():
				return
			}
			open += <-probe
		}
		if open == 0 {
			return
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// runShard owns one table: it hands it the batches and ticks its timers.
func (c *Copier) runShard(ctx context.Context, sh *shard) {
	tick := time.NewTicker(c.cfg.TickInterval)
	defer tick.Stop()
	var p capture.Packet
	opener, _ := sh.table.(interface{ Open() int })
	handle := func(b *batch) {
		if b.probe != nil {
			n := 0
			if opener != nil {
				n = opener.Open()
			}
			b.probe <- n
			return
		}
		start := 0
		for i, end := range b.ends {
			data := b.buf[start:end]
			start = end
			p.Time = b.times[i] // Decode keeps Time
			if b.resp {
				if p.DecodeHeaders(data) != nil {
					c.stats.badResponses.Add(1)
					continue
				}
				sh.table.HandleResponse(&p)
			} else if p.Decode(data) == nil {
				sh.table.HandleClient(&p)
			}
		}
		sh.free <- b
		sh.table.Tick(c.cfg.Clock())
	}
	for {
		select {
		case b := <-sh.in:
			handle(b)
		case <-tick.C:
			sh.table.Tick(c.cfg.Clock())
		case <-ctx.Done():
			for {
				select {
				case b := <-sh.in:
					handle(b)
				default:
					sh.table.Tick(c.cfg.Clock())
					return
				}
			}
		}
	}
}
