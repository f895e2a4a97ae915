package intercept

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// NFQueueRulesConfig configures NFQueueRules. Every zero value picks the
// documented default.
type NFQueueRulesConfig struct {
	// Ports are the target service's ports; each gets one rule per family
	// that queues the responses sent from it (--sport). Required.
	Ports []uint16
	// Queue is the NFQUEUE number (--queue-num), as in NFQueueConfig.
	// Zero: queue 0.
	Queue uint16
	// Bypass adds --queue-bypass: while no program is bound to the queue
	// the kernel ACCEPTs the responses (they reach the real clients)
	// instead of dropping them. Zero: off, so responses are dropped while
	// intercept is down, the safe side for the real clients.
	Bypass bool
	// Family is "ipv4" (iptables only), "ipv6" (ip6tables only) or empty
	// for both.
	Family string
	// IPTables and IP6Tables are the tools to run. Zero: "iptables" and
	// "ip6tables", looked up in PATH.
	IPTables, IP6Tables string
	// Command makes the command that runs a tool. Zero: exec.Command. A
	// harness passes one that runs the tool in another network namespace
	// (for example "ip netns exec NAME").
	Command func(name string, args ...string) *exec.Cmd
	// Logger receives each rule installed and removed. Zero: discard.
	Logger *slog.Logger
}

// NFQueueRules installs the iptables rules of the classic deployment,
//
//	iptables  -w 5 -I OUTPUT -p tcp --sport PORT -m comment --comment tcpcopy-intercept -j NFQUEUE --queue-num N [--queue-bypass]
//	ip6tables (the same)
//
// and removes exactly those rules (with -D and the same specification, so
// one copy of a rule that was there before stays). It runs the iptables
// tools, the one place the library executes a program: their netlink
// protocol (nf_tables or the legacy xtables blobs) is not a stable API to
// speak directly, and the tools are what administrators use and audit. The
// comment marks the rules for an administrator cleaning up after a crash.
//
// A program that installs rules must remove them when it exits, also on
// SIGINT and SIGTERM: Remove is idempotent, so it may be called from the
// signal path and again on the normal one. A program may instead leave the
// rules to the user and not use this type. An NFQueueRules is safe for
// concurrent use. Install and Remove report ErrNotSupported outside Linux.
type NFQueueRules struct {
	cfg NFQueueRulesConfig
	log *slog.Logger

	mu        sync.Mutex
	installed [][]string // tool and rule specification, in install order
	done      bool       // Install ran
}

// NewNFQueueRules checks cfg and returns the rules, not yet installed.
func NewNFQueueRules(cfg *NFQueueRulesConfig) (*NFQueueRules, error) {
	if cfg == nil || len(cfg.Ports) == 0 {
		return nil, errors.New("intercept: NFQueueRulesConfig.Ports is required")
	}
	c := *cfg
	c.Ports = append([]uint16(nil), cfg.Ports...)
	for _, p := range c.Ports {
		if p == 0 {
			return nil, errors.New("intercept: NFQueueRulesConfig.Ports holds port 0")
		}
	}
	switch c.Family {
	case "", "ipv4", "ipv6":
	default:
		return nil, fmt.Errorf("intercept: NFQueueRulesConfig.Family %q is not ipv4, ipv6 or empty", c.Family)
	}
	if c.IPTables == "" {
		c.IPTables = "iptables"
	}
	if c.IP6Tables == "" {
		c.IP6Tables = "ip6tables"
	}
	if c.Command == nil {
		c.Command = exec.Command
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NFQueueRules{cfg: c, log: log}, nil
}

// Specs returns the rules as tool and arguments after the operation (-I or
// -D), in install order.
func (r *NFQueueRules) Specs() [][]string {
	var specs [][]string
	var tools []string
	if r.cfg.Family != "ipv6" {
		tools = append(tools, r.cfg.IPTables)
	}
	if r.cfg.Family != "ipv4" {
		tools = append(tools, r.cfg.IP6Tables)
	}
	for _, tool := range tools {
		for _, p := range r.cfg.Ports {
			spec := []string{tool, "OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(int(p)),
				"-m", "comment", "--comment", "tcpcopy-intercept",
				"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(r.cfg.Queue))}
			if r.cfg.Bypass {
				spec = append(spec, "--queue-bypass")
			}
			specs = append(specs, spec)
		}
	}
	return specs
}

// Install inserts every rule. If one fails it removes those it inserted
// and returns the error. It runs once; a second call reports an error.
func (r *NFQueueRules) Install() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("intercept: iptables rules: %w", ErrNotSupported)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return errors.New("intercept: NFQueueRules.Install called twice")
	}
	r.done = true
	for _, spec := range r.Specs() {
		if err := r.run("-I", spec); err != nil {
			return errors.Join(err, r.removeLocked())
		}
		r.installed = append(r.installed, spec)
		r.log.Info("intercept: installed rule", "rule", strings.Join(append([]string{spec[0], "-I"}, spec[1:]...), " "))
	}
	return nil
}

// Remove deletes the rules Install inserted, in reverse order, and
// forgets them, also when a deletion fails (the error says which); later
// calls do nothing. It is safe to call before Install.
func (r *NFQueueRules) Remove() error {
	if runtime.GOOS != "linux" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removeLocked()
}

// Close is Remove.
func (r *NFQueueRules) Close() error { return r.Remove() }

func (r *NFQueueRules) removeLocked() error {
	var errs []error
	for i := len(r.installed) - 1; i >= 0; i-- {
		spec := r.installed[i]
		if err := r.run("-D", spec); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("intercept: removed rule", "rule", strings.Join(append([]string{spec[0], "-D"}, spec[1:]...), " "))
	}
	r.installed = nil
	return errors.Join(errs...)
}

func (r *NFQueueRules) run(op string, spec []string) error {
	args := append([]string{"-w", "5", op}, spec[1:]...)
	out, err := r.cfg.Command(spec[0], args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("intercept: %s %s: %w: %s", spec[0], strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
