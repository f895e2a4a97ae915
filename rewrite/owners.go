package rewrite

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
)

// owners remembers, for each fake client endpoint a SYN was sent from,
// which original connection (endpoint and copy) claimed it and when. It is
// a fixed-size, set-associative table: memory is bounded and a claim never
// allocates; when a set is full, the stalest entry is replaced.
//
// Locks are per shard. Claims happen on SYNs and releases on FINs and RSTs,
// a few packets per connection; the other packets look here only for a
// linger period after a conflict (see Copies).
type owners struct {
	shards []ownerShard
	mask   uint64 // shards-1
	sets   uint64 // sets per shard, a power of two
	linger int64  // ns
	grace  int64  // ns a claim lasts after its holder's FIN or RST

	// lastConflict is 1 + the time of the latest refusal or takeover (a
	// claim replacing another connection's expired one), 0 before any.
	lastConflict atomic.Int64
}

const ownerWays = 4

type ownerShard struct {
	mu sync.Mutex
	e  []owner
	_  [32]byte // keep neighbouring locks off one cache line
}

// owner is one claim: 64 bytes, a cache line. The connection is named by
// its client endpoint, a hash of its server endpoint (the same client
// endpoint may talk to two servers, and the session table keys on the
// client endpoint alone) and the copy.
type owner struct {
	fake, orig capture.Endpoint
	copy       uint16
	server     uint64
	seen       int64 // ns on the Copies clock
}

func (w *owner) is(orig capture.Endpoint, server uint64, copy uint16) bool {
	return w.orig == orig && w.server == server && w.copy == copy
}

func newOwners(entries int, linger int64) *owners {
	grace := min(linger, int64(time.Second))
	shards := 64
	for shards > 1 && entries/shards < 4*ownerWays {
		shards /= 2
	}
	sets := 1
	for sets*2*ownerWays*shards <= entries {
		sets *= 2
	}
	o := &owners{
		shards: make([]ownerShard, shards),
		mask:   uint64(shards - 1),
		sets:   uint64(sets),
		linger: linger,
		grace:  grace,
	}
	for i := range o.shards {
		o.shards[i].e = make([]owner, sets*ownerWays)
	}
	return o
}

// capacity is how many endpoints the table tracks.
func (o *owners) capacity() int { return len(o.shards) * int(o.sets) * ownerWays }

func (o *owners) set(fake capture.Endpoint) (*ownerShard, []owner) {
	h := fake.Hash()
	sh := &o.shards[h&o.mask]
	i := ((h >> 32) & (o.sets - 1)) * ownerWays
	return sh, sh.e[i : i+ownerWays]
}

func (o *owners) live(w *owner, now int64) bool { return now-w.seen < o.linger }

// claim records that the SYN of connection (orig, server, copy) goes out
// from fake at now. It reports false when fake is held by another
// connection seen less than the linger period ago, and whether a claim
// still live was evicted to make room.
func (o *owners) claim(fake, orig capture.Endpoint, server uint64, copy uint16, now int64) (ok, evicted bool) {
	sh, ways := o.set(fake)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	victim := 0
	for i := range ways {
		w := &ways[i]
		if w.fake == fake {
			if !w.is(orig, server, copy) {
				// Refused while the holder is live; taken over after, but
				// the old holder may not be over, so its packets get
				// checked for a while.
				o.conflict(now)
				if o.live(w, now) {
					return false, false
				}
			}
			w.orig, w.server, w.copy, w.seen = orig, server, copy, now
			return true, false
		}
		v := &ways[victim]
		if v.fake.IsValid() && (!w.fake.IsValid() || w.seen < v.seen) {
			victim = i
		}
	}
	v := &ways[victim]
	evicted = v.fake.IsValid() && o.live(v, now)
	*v = owner{fake: fake, orig: orig, copy: copy, server: server, seen: now}
	return true, evicted
}

// check is claim for a packet other than a SYN, while collisions are
// recent: it refuses a packet whose fake endpoint another live connection
// holds, and keeps the holder's claim fresh while it talks.
func (o *owners) check(fake, orig capture.Endpoint, server uint64, copy uint16, now int64) bool {
	sh, ways := o.set(fake)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range ways {
		w := &ways[i]
		if w.fake != fake || !o.live(w, now) {
			continue
		}
		if !w.is(orig, server, copy) {
			o.conflict(now)
			return false
		}
		w.seen = now
		return true
	}
	return true
}

// release shortens the claim of a connection that sent FIN or RST to the
// grace period, so that another connection may take the endpoint soon
// after it closed (port reuse at high rates) rather than a whole linger
// period later. The grace absorbs the closing packets still to come.
func (o *owners) release(fake, orig capture.Endpoint, server uint64, copy uint16, now int64) {
	sh, ways := o.set(fake)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range ways {
		w := &ways[i]
		if w.fake == fake && w.is(orig, server, copy) {
			w.seen = min(w.seen, now-o.linger+o.grace)
			return
		}
	}
}

func (o *owners) conflict(now int64) { o.lastConflict.Store(now + 1) }

// alert reports whether a conflict happened less than the linger period
// before now, so that packets other than SYNs must be checked too.
func (o *owners) alert(now int64) bool {
	last := o.lastConflict.Load()
	if last == 0 {
		return false
	}
	if now-(last-1) < o.linger {
		return true
	}
	o.lastConflict.CompareAndSwap(last, 0)
	return false
}
