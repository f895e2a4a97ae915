package intercept

import (
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
)

// isPow2 rate-limits logs to counts 1, 2, 4, 8, ...
func isPow2(n uint64) bool { return bits.OnesCount64(n) == 1 }

// NFQueueConfig configures an NFQueue. Every zero value picks the documented
// default.
type NFQueueConfig struct {
	// Queue is the NFQUEUE number the iptables rule sends responses to
	// (--queue-num). Zero: queue 0.
	Queue uint16
	// MaxQueueLen is how many packets the kernel holds for us before it
	// drops (or, with FailOpen, accepts) new ones. Zero: 8192; the kernel
	// default of 1024 overflows at a few thousand responses per second.
	MaxQueueLen uint32
	// FailOpen makes the kernel accept packets when the queue is full
	// (NFQA_CFG_F_FAIL_OPEN) instead of dropping them. Accepted responses
	// reach the real clients, so it is off by default.
	FailOpen bool
	// PassList holds destinations whose packets get ACCEPT and are not
	// reported (administrators' own connections to the target, health
	// checks). Zero: none.
	PassList []netip.Prefix
	// Batch is the most packets read with one recvmmsg and handed to
	// report in one call, and so in one batch DROP verdict; what is
	// already queued is batched, nothing waits for a batch to fill. Run
	// holds a 68 KiB receive buffer per packet of a batch (room for the
	// largest packet the kernel copies). Zero: 64.
	Batch int
	// ReadBuffer is the netlink socket's receive buffer in bytes (capped by
	// net.core.rmem_max). Zero: 8 MiB.
	ReadBuffer int
	// NetNS, when not zero, is a file descriptor of the network namespace
	// to open the queue in (as /proc/PID/ns/net); zero: the calling
	// thread's namespace when Open (or Run) is called.
	NetNS int
	// Logger receives errors (verdict errors rate-limited). Zero: discard.
	Logger *slog.Logger
}

// NFQueueStats counts what an NFQueue saw. Every packet received is
// Reported, Passed or Undecodable; those still queued when Run stops are
// not received (the kernel drops them when the queue is unbound).
type NFQueueStats struct {
	Received uint64 // packets read from the queue
	Reported uint64 // decoded, given DROP and handed to report
	Passed   uint64 // destination on the PassList: ACCEPT
	// Undecodable counts packets that do not decode as a TCP datagram (of
	// one the kernel cut at its copy range of 65531 bytes only the headers
	// must be whole) or whose message's attributes are malformed: ACCEPT.
	Undecodable uint64
	// VerdictBatches counts the batch DROP verdicts sent; Reported divided
	// by it is the mean batch.
	VerdictBatches uint64
	// VerdictErrors counts verdicts the kernel did not take: refused (an
	// NLMSG_ERROR answers them) or not sent.
	VerdictErrors uint64
	// ReceiveErrors counts socket overruns (ENOBUFS: the kernel dropped
	// messages to us) and messages too malformed to carry a packet id; the
	// packets concerned get the next batch DROP.
	ReceiveErrors uint64
}

func (c *NFQueueConfig) withDefaults() (NFQueueConfig, *slog.Logger, error) {
	var cfg NFQueueConfig
	if c != nil {
		cfg = *c
		cfg.PassList = append([]netip.Prefix(nil), c.PassList...)
	}
	for _, p := range cfg.PassList {
		if !p.IsValid() {
			return cfg, nil, fmt.Errorf("intercept: invalid PassList prefix %v", p)
		}
	}
	if cfg.Batch < 0 || cfg.ReadBuffer < 0 || cfg.NetNS < 0 {
		return cfg, nil, fmt.Errorf("intercept: negative Batch %d, ReadBuffer %d or NetNS %d", cfg.Batch, cfg.ReadBuffer, cfg.NetNS)
	}
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = 8192
	}
	if cfg.Batch == 0 {
		cfg.Batch = 64
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 8 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return cfg, log, nil
}

// passes reports whether a is on the pass list.
func passes(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
