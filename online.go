package tcpcopy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/intercept"
	"github.com/shadowcopy/tcpcopy/replay"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session"
)

// DefaultInterceptPort is the port intercept listens on (TCPCopy's -p).
const DefaultInterceptPort = 36524

// CaptureKind is how an Online host reads client packets. The zero value
// is invalid; OnlineConfig.Capture documents its default.
type CaptureKind uint8

const (
	// CaptureRawIP reads the datagrams the host delivers to itself with
	// raw IP sockets (TCPCopy's default): one recvmmsg per batch, and
	// every TCP datagram the host receives is copied up and filtered in
	// the process.
	CaptureRawIP CaptureKind = iota + 1
	// CaptureAFPacket reads frames at the link layer on
	// OnlineConfig.Interfaces, or all of them (TCPCopy's -i): a
	// TPACKET_V3 ring filled past a kernel filter, no syscall per batch
	// under load. The load harness measured tcpcopy's CPU per 1,000
	// copied keep-alive requests at 7.8 ms with it against 12.7 ms with
	// CaptureRawIP.
	CaptureAFPacket
	// CaptureFile reads a pcap or pcapng file (TCPCopy's offline build,
	// -i FILE), paced by its timestamps.
	CaptureFile
)

func (k CaptureKind) String() string {
	switch k {
	case CaptureRawIP:
		return "raw-ip"
	case CaptureAFPacket:
		return "af-packet"
	case CaptureFile:
		return "file"
	}
	return "CaptureKind(" + strconv.Itoa(int(k)) + ")"
}

// EmitKind is how an Online host sends copies to the target. The zero
// value is invalid; OnlineConfig.Emit documents its default.
type EmitKind uint8

const (
	// EmitRawIP sends from raw IP sockets through the host's routing and
	// netfilter (TCPCopy's default).
	EmitRawIP EmitKind = iota + 1
	// EmitAFPacket injects Ethernet frames on OnlineConfig.EmitInterface
	// (TCPCopy's --pcap-send, -o), bypassing routing and netfilter.
	EmitAFPacket
)

func (k EmitKind) String() string {
	switch k {
	case EmitRawIP:
		return "raw-ip"
	case EmitAFPacket:
		return "af-packet"
	}
	return "EmitKind(" + strconv.Itoa(int(k)) + ")"
}

// OfflineConfig configures offline replay (CaptureFile) with a
// replay.Pacer.
type OfflineConfig struct {
	// File is the pcap or pcapng file to read (TCPCopy's offline -i).
	File string
	// Speed divides the gaps between packets (TCPCopy's -a, "accelerated
	// times"). Zero means 1, the capture's own pace.
	Speed float64
	// MaxGap shortens every gap between two packets longer than it to it,
	// before Speed applies, so idle stretches of a capture are skipped
	// (TCPCopy's -I, in ms there). Zero means no cap.
	MaxGap time.Duration
	// Repeat is how many times the file is replayed (TCPCopy's -T). Zero
	// means 1.
	Repeat int
	// Tail is how long, after the last packet, Run keeps the sessions
	// going with the target before it returns (Config.Drain). Zero means
	// 120 s (TCPCopy's OFFLINE_TAIL_TIMEOUT); Run returns sooner once no
	// session is open.
	Tail time.Duration
}

// OnlineConfig configures an Online host: the fields mirror TCPCopy's
// options (the flag is named in each comment). Transfer (or TransferMap)
// and Servers are required; every zero value is documented.
type OnlineConfig struct {
	// Transfer is the transfer map (-x), in rewrite.ParseTransfer's syntax,
	// for example "80-198.18.1.2:8080".
	Transfer string
	// TransferMap, if set, is used instead of parsing Transfer.
	TransferMap *rewrite.Transfer

	// ClientPool is the fake client address pool (-c), in
	// rewrite.ParseClientPool's syntax; the targets are taken out of it.
	// Empty keeps the real client addresses.
	ClientPool string
	// Pool, if set, is used instead of parsing ClientPool.
	Pool *rewrite.ClientPool
	// Copies is how many copies of each connection to make (-n). Zero
	// means 1.
	Copies int
	// Instance is this copier's number among those feeding one target
	// (-f), so their port shifts never meet. Zero is instance 0.
	Instance int
	// SamplePercent is the share of connections copied (-r), in (0, 100].
	// Zero means 100.
	SamplePercent float64
	// Ramp, if positive, grows the sampled share from 1% to SamplePercent
	// over this long (-g, "gradually").
	Ramp time.Duration

	// Servers are the intercepts to connect to (-s): host or host:port
	// (IPv6 in brackets with a port). Required.
	Servers []string
	// Port is the port of Servers given without one (-p). Zero means
	// DefaultInterceptPort.
	Port uint16
	// Conns is the number of connections to each intercept (-C). Zero
	// means 2, as TCPCopy.
	Conns int
	// Secret is the intercepts' shared secret (see
	// intercept.ClientConfig.Secret). Empty: the empty key.
	Secret []byte
	// TLS, when set, makes the intercept connections TLS.
	TLS *tls.Config
	// Classic speaks TCPCopy 1.x's framing to intercepts (IPv4 only, no
	// authentication), to pair with the C intercept.
	Classic bool
	// ClassicPayload expects the payload build's records from a classic
	// intercept.
	ClassicPayload bool
	// Dial dials the intercepts. Zero: the intercept Client's default.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// Capture is how client packets are read. Zero means CaptureFile when
	// Offline.File is set, and CaptureAFPacket otherwise.
	Capture CaptureKind
	// Interfaces are the interfaces CaptureAFPacket reads (-i). Empty
	// means every interface, packets the host receives (as CaptureRawIP
	// sees them, and also ones it forwards).
	Interfaces []string
	// CaptureFilter is CaptureAFPacket's kernel filter (-F). Nil means
	// the packets to the transfer map's online ports, and to its online
	// addresses when every route names one.
	CaptureFilter *capture.Filter
	// CaptureRing is CaptureAFPacket's ring size in bytes. Zero means
	// 16 MiB: 128 blocks of 128 KiB, each handed over when full or after
	// 8 ms (captureBlockTimeout), so the ring rides out a second of the
	// copier being starved of CPU under a light load and more under a
	// heavy one. The ring's pages count in RSS as the kernel fills them.
	CaptureRing int
	// Offline configures CaptureFile.
	Offline OfflineConfig
	// Capturer, if set, is used instead of opening one (a harness's
	// capture.Memory, say); Capture, Interfaces and Offline are ignored.
	// The Online closes it.
	Capturer capture.Capturer

	// Emit is how copies are sent. Zero means EmitAFPacket when
	// EmitInterface is set, EmitRawIP otherwise.
	Emit EmitKind
	// EmitInterface is the interface EmitAFPacket sends on (-o).
	EmitInterface string
	// EmitSrcMAC and EmitDstMAC are the frames' addresses for
	// EmitAFPacket. Nil means the transfer map's "@mac" suffixes (which
	// must then agree across routes), and failing those the interface's
	// own address and the next hop's looked up in the kernel's tables.
	EmitSrcMAC, EmitDstMAC net.HardwareAddr
	// NewEmitter, if set, makes each shard's Emitter instead (a harness's
	// emit.Recorder, say); Emit and its fields are ignored. The Online
	// closes what it returns if it has a Close method.
	NewEmitter func(shard int) (emit.Emitter, error)

	// Session is the template of every shard's session table: timeouts
	// (-t is IdleTimeout, -k KeepaliveTimeout), NoWait (-W), MaxLag
	// (--max-lag), OnlyFull (-O), MSS (-D), MaxMemory (-m), Protocol.
	// MaxMemory is the cap of the whole host: each of the Shards tables
	// gets an equal part.
	// Emitter, OnOpen, OnClose and Logger are set by the Online.
	Session session.Config
	// MTU is the largest datagram sent to the target (-M): session
	// segments are cut to it. Zero means the Session.MSS or the session
	// default.
	MTU int
	// Shards is the number of session tables, each owned by one goroutine.
	// Zero means GOMAXPROCS.
	Shards int

	// Clock reads the time. Nil means time.Now.
	Clock func() time.Time
	// Logger receives lifecycle events and session-level events. Nil
	// discards.
	Logger *slog.Logger
}

// Online is the copier host of the classic pair, TCPCopy's tcpcopy: it
// captures client packets, rewrites and copies them, keeps one emulated
// client per copied connection and sends to the target, using the
// responses reported by intercepts. It wires a Copier, its rewriters,
// session tables and emitters, and an intercept.Client from one
// OnlineConfig. It is safe for concurrent use; Run runs once.
type Online struct {
	cfg   OnlineConfig
	log   *slog.Logger
	clock func() time.Time

	transfer *rewrite.Transfer
	sampler  *rewrite.Sampler
	pool     *rewrite.ClientPool
	copies   *rewrite.Copies
	// copyRewriter makes the -n copies: copies, or the offline rounds'.
	copyRewriter CopyRewriter

	capt     capture.Capturer
	pacer    *replay.Pacer // offline replay
	emitters []emit.Emitter
	tables   []*session.Table
	copier   *Copier
	ic       *intercept.Client

	running   atomic.Bool
	started   atomic.Int64 // Run's start, Unix nanoseconds
	closeOnce sync.Once
}

// OnlineStats is everything an Online counts, from capture to the
// intercept connections. Every client packet captured is filtered, copied
// or counted under a drop reason somewhere below.
type OnlineStats struct {
	Uptime time.Duration

	Capture   capture.Stats         // packets captured, decode failures, kernel drops
	Copier    Stats                 // filtered, copies dropped, dispatched, responses
	Transfer  rewrite.TransferStats // -x matches
	Sampler   rewrite.SamplerStats  // -r decisions
	Pool      rewrite.PoolStats     // -c rewrites (without copies)
	Copies    rewrite.CopiesStats   // -n/-f copies and collisions
	Session   session.Stats         // sum over the shards
	Emit      emit.Stats            // sum over the shards' emitters
	Intercept intercept.ClientStats // connections to the intercepts
	Replay    replay.Stats          // offline replay's pacing (zero when live)

	// CopyRatio is the share of the connections seen that were copied
	// without loss: sessions started, less those that timed out in
	// their handshake or on a gap or that the protocol module skipped, over
	// sessions started plus those shed over the memory cap. It is 1 while
	// no connection was seen.
	CopyRatio float64
}

// NewOnline checks cfg, parses the transfer map and client pool, and opens
// the capture and emit sockets (so a missing privilege is reported here).
// It starts nothing; Run does.
func NewOnline(cfg *OnlineConfig) (*Online, error) {
	if cfg == nil {
		return nil, errors.New("tcpcopy: OnlineConfig is required")
	}
	o := &Online{cfg: *cfg, log: cfg.Logger, clock: cfg.Clock}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.clock == nil {
		o.clock = time.Now
	}
	c := &o.cfg
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.Conns <= 0 {
		c.Conns = 2
	}
	if c.Port == 0 {
		c.Port = DefaultInterceptPort
	}
	var err error
	if o.transfer, err = o.parseTransfer(); err != nil {
		return nil, err
	}
	servers, err := ServerAddrs(c.Servers, c.Port)
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		return nil, errors.New("tcpcopy: no intercept servers (-s)")
	}
	if err := o.sessionTemplate(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			o.closeAll()
		}
	}()
	if o.capt, err = o.openCapture(); err != nil {
		return nil, err
	}
	var drain time.Duration
	if o.pacer != nil {
		// The packets are stamped on the Pacer's clock: the Copier, and
		// so the sessions, run on it too.
		o.clock = o.pacer.Now
		if drain = c.Offline.Tail; drain == 0 {
			drain = 120 * time.Second
		}
	}
	rw, err := o.rewriters()
	if err != nil {
		return nil, err
	}
	var newTableErr error
	ccfg := &Config{
		Capturer: o.capt,
		Rewriter: rw,
		Shards:   c.Shards,
		Clock:    o.clock,
		Drain:    drain,
		Logger:   o.log,
		NewTable: func(shard int) SessionTable {
			t, err := o.newTable(shard)
			if err != nil {
				newTableErr = errors.Join(newTableErr, err)
				return nil
			}
			return t
		},
	}
	if o.copyRewriter != nil {
		ccfg.Copies = o.copyRewriter
	}
	o.copier, err = NewCopier(ccfg)
	if newTableErr != nil {
		return nil, newTableErr
	}
	if err != nil {
		return nil, err
	}
	o.ic, err = intercept.NewClient(&intercept.ClientConfig{
		Servers:        servers,
		Conns:          c.Conns,
		Handler:        o.copier.Responses,
		Secret:         c.Secret,
		TLS:            c.TLS,
		Classic:        c.Classic,
		ClassicPayload: c.ClassicPayload,
		Dial:           c.Dial,
		Clock:          o.clock,
		Logger:         o.log,
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return o, nil
}

// ServerAddrs turns intercept addresses as TCPCopy's -s takes them ("ip",
// "ip:port", "[v6]:port", a bare IPv6 address, or several joined by
// commas) into host:port strings, with port for those without one.
func ServerAddrs(list []string, port uint16) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, netip.AddrPortFrom(a, port).String())
				continue
			}
			host, p, err := net.SplitHostPort(s)
			if err != nil {
				return nil, fmt.Errorf("tcpcopy: intercept address %q: %v", s, err)
			}
			if _, err := netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("tcpcopy: intercept address %q: host must be an IP address", s)
			}
			if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
				return nil, fmt.Errorf("tcpcopy: intercept address %q: bad port %q", s, p)
			}
			out = append(out, net.JoinHostPort(host, p))
		}
	}
	return out, nil
}

func (o *Online) parseTransfer() (*rewrite.Transfer, error) {
	if o.cfg.TransferMap != nil {
		return o.cfg.TransferMap, nil
	}
	if strings.TrimSpace(o.cfg.Transfer) == "" {
		return nil, errors.New("tcpcopy: no transfer map (-x)")
	}
	return rewrite.ParseTransfer(o.cfg.Transfer)
}

// rewriters builds Transfer, Sampler and the pool or Copies.
func (o *Online) rewriters() (rewrite.Rewriter, error) {
	c := &o.cfg
	chain := []rewrite.Rewriter{o.transfer}
	if c.SamplePercent < 0 || c.SamplePercent > 100 {
		return nil, fmt.Errorf("tcpcopy: sample percent %v is not in (0, 100]", c.SamplePercent)
	}
	if (c.SamplePercent > 0 && c.SamplePercent < 100) || c.Ramp > 0 {
		var err error
		o.sampler, err = rewrite.NewSampler(&rewrite.SamplerConfig{
			Percent: c.SamplePercent, Ramp: c.Ramp, Clock: o.clock,
		})
		if err != nil {
			return nil, err
		}
		chain = append(chain, o.sampler)
	}
	o.pool = c.Pool
	if o.pool == nil && strings.TrimSpace(c.ClientPool) != "" {
		var err error
		if o.pool, err = rewrite.ParseClientPool(c.ClientPool, o.transfer.Targets()...); err != nil {
			return nil, err
		}
	}
	if c.Copies < 0 || c.Instance < 0 {
		return nil, fmt.Errorf("tcpcopy: copies %d and instance %d must not be negative", c.Copies, c.Instance)
	}
	// An offline file replayed several times (-T) brings the same client
	// ports and sequence numbers back each round: each round is a copy of
	// its own, on ports that do not meet the earlier rounds' sessions.
	rounds, n := 1, max(c.Copies, 1)
	if o.pacer != nil && c.Offline.Repeat > 1 {
		rounds = c.Offline.Repeat
	}
	if n > 1 || c.Instance > 0 || rounds > 1 {
		var err error
		o.copies, err = rewrite.NewCopies(&rewrite.CopiesConfig{
			Copies: n * rounds, Instance: c.Instance, Pool: o.pool, Clock: o.clock,
		})
		if err != nil {
			return nil, err
		}
		o.copyRewriter = o.copies
		if rounds > 1 {
			rc, err := replay.NewRoundCopies(o.pacer, o.copies, n)
			if err != nil {
				return nil, err
			}
			o.copyRewriter = rc
			if n == 1 {
				o.copyRewriter = nil
				chain = append(chain, rc)
			}
		}
	} else if o.pool != nil {
		chain = append(chain, o.pool)
	}
	return rewrite.Chain(chain...), nil
}

// sessionTemplate fills in the session settings that depend on others.
func (o *Online) sessionTemplate() error {
	c := &o.cfg
	if c.MTU != 0 {
		if c.MTU < 128 || c.MTU > 65535 {
			return fmt.Errorf("tcpcopy: MTU %d is not in [128, 65535]", c.MTU)
		}
		// The session cuts segments to its MSS: take the largest header
		// of the target families (IPv6 40 + TCP 20, IPv4 20 + 20).
		hdr := 40
		for _, a := range o.transfer.Targets() {
			if a.Is6() {
				hdr = 60
			}
		}
		if mss := c.MTU - hdr; c.Session.MSS == 0 || int(c.Session.MSS) > mss {
			c.Session.MSS = uint16(mss)
		}
	}
	if c.Session.MaxMemory < 0 {
		return fmt.Errorf("tcpcopy: memory cap %d is negative", c.Session.MaxMemory)
	}
	return nil
}

// families returns the address families the transfer map captures.
func (o *Online) families() (v4, v6 bool) {
	for _, r := range o.transfer.Routes() {
		a := r.Online.Addr()
		if !a.IsValid() {
			a = r.Target.Addr()
		}
		if a.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

func (o *Online) captureKind() CaptureKind {
	c := &o.cfg
	switch {
	case c.Capture != 0:
		return c.Capture
	case c.Offline.File != "":
		return CaptureFile
	}
	return CaptureAFPacket
}

// captureBlockTimeout is how long the capture ring's kernel side fills a
// block before handing it over: the most a client packet waits to be read
// under a light load, a few milliseconds the copy lags anyway.
const captureBlockTimeout = 8 * time.Millisecond

// transferFilter keeps the packets to the transfer map's online ports and,
// when every route names its online address, to those addresses.
func (o *Online) transferFilter() *capture.Filter {
	f := &capture.Filter{}
	hosts := true
	for _, r := range o.transfer.Routes() {
		if !slices.Contains(f.DstPorts, r.Online.Port()) {
			f.DstPorts = append(f.DstPorts, r.Online.Port())
		}
		a := r.Online.Addr()
		if !a.IsValid() || a.IsUnspecified() {
			hosts = false
		} else if p := netip.PrefixFrom(a, a.BitLen()); !slices.Contains(f.DstNets, p) {
			f.DstNets = append(f.DstNets, p)
		}
	}
	if !hosts || len(f.DstNets) > 32 {
		f.DstNets = nil // 32 is the most one filter field holds
	}
	if len(f.DstPorts) > 32 {
		f.DstPorts = nil
	}
	return f
}

func (o *Online) openCapture() (capture.Capturer, error) {
	c := &o.cfg
	if c.Capturer != nil {
		return c.Capturer, nil
	}
	switch kind := o.captureKind(); kind {
	case CaptureRawIP:
		v4, v6 := o.families()
		var srcs []capture.Capturer
		for _, fam := range []struct {
			on  bool
			net string
		}{{v4, "ip4"}, {v6, "ip6"}} {
			if !fam.on {
				continue
			}
			r, err := capture.NewRawIP(&capture.RawIPConfig{Network: fam.net})
			if err != nil {
				for _, s := range srcs {
					s.Close()
				}
				return nil, fmt.Errorf("tcpcopy: open raw IP capture (%s): %w", fam.net, err)
			}
			srcs = append(srcs, r)
		}
		if len(srcs) == 1 {
			return srcs[0], nil
		}
		return newMerged(srcs), nil
	case CaptureAFPacket:
		filter := c.CaptureFilter
		if filter == nil {
			filter = o.transferFilter()
		}
		ring := c.CaptureRing
		if ring == 0 {
			ring = 16 << 20
		}
		a, err := capture.NewAFPacket(&capture.AFPacketConfig{
			Interfaces:   c.Interfaces,
			Filter:       filter,
			Direction:    capture.DirIn,
			RingSize:     ring,
			BlockTimeout: captureBlockTimeout,
		})
		if err != nil {
			return nil, fmt.Errorf("tcpcopy: open AF_PACKET capture on %q: %w", c.Interfaces, err)
		}
		return a, nil
	case CaptureFile:
		if c.Offline.File == "" {
			return nil, errors.New("tcpcopy: offline replay needs a file (-i)")
		}
		if c.Offline.Tail < 0 {
			return nil, fmt.Errorf("tcpcopy: offline tail %v is negative", c.Offline.Tail)
		}
		p, err := replay.New(&replay.Config{
			Open:    replay.FileOpener(c.Offline.File, nil),
			Speed:   c.Offline.Speed,
			MaxIdle: c.Offline.MaxGap,
			Repeat:  c.Offline.Repeat,
			Logger:  o.log,
		})
		if err != nil {
			return nil, fmt.Errorf("tcpcopy: offline replay of %s: %w", c.Offline.File, err)
		}
		o.pacer = p
		return p, nil
	default:
		return nil, fmt.Errorf("tcpcopy: unknown capture kind %v", kind)
	}
}

func (o *Online) emitKind() EmitKind {
	switch {
	case o.cfg.Emit != 0:
		return o.cfg.Emit
	case o.cfg.EmitInterface != "":
		return EmitAFPacket
	}
	return EmitRawIP
}

func (o *Online) newEmitter(shard int) (emit.Emitter, error) {
	c := &o.cfg
	if c.NewEmitter != nil {
		return c.NewEmitter(shard)
	}
	switch kind := o.emitKind(); kind {
	case EmitRawIP:
		e, err := emit.NewRawIP(nil)
		if err != nil {
			return nil, fmt.Errorf("tcpcopy: open raw IP emitter: %w", err)
		}
		return e, nil
	case EmitAFPacket:
		if c.EmitInterface == "" {
			return nil, errors.New("tcpcopy: AF_PACKET sending needs an interface (-o)")
		}
		src, dst := c.EmitSrcMAC, c.EmitDstMAC
		if src == nil || dst == nil {
			rs, rd, err := routeMACs(o.transfer.Routes())
			if err != nil {
				return nil, err
			}
			if src == nil {
				src = rs
			}
			if dst == nil {
				dst = rd
			}
		}
		e, err := emit.NewAFPacket(&emit.AFPacketConfig{Interface: c.EmitInterface, SrcMAC: src, DstMAC: dst})
		if err != nil {
			return nil, fmt.Errorf("tcpcopy: open AF_PACKET emitter on %s: %w", c.EmitInterface, err)
		}
		return e, nil
	default:
		return nil, fmt.Errorf("tcpcopy: unknown emit kind %v", kind)
	}
}

// routeMACs returns the MACs the transfer map's routes agree on (nil when
// none is given); routes with different MACs are an error, since one
// emitter sends every frame.
func routeMACs(routes []rewrite.Route) (src, dst net.HardwareAddr, err error) {
	var s, d rewrite.MAC
	for _, r := range routes {
		for _, p := range []struct{ have, next *rewrite.MAC }{{&s, &r.OnlineMAC}, {&d, &r.TargetMAC}} {
			if p.next.IsZero() {
				continue
			}
			if !p.have.IsZero() && *p.have != *p.next {
				return nil, nil, fmt.Errorf("tcpcopy: the transfer map's routes give different MACs (%v, %v); use one MAC per copier", *p.have, *p.next)
			}
			*p.have = *p.next
		}
	}
	if !s.IsZero() {
		src = net.HardwareAddr(s[:])
	}
	if !d.IsZero() {
		dst = net.HardwareAddr(d[:])
	}
	return src, dst, nil
}

func (o *Online) newTable(shard int) (SessionTable, error) {
	em, err := o.newEmitter(shard)
	if err != nil {
		return nil, err
	}
	o.emitters = append(o.emitters, em)
	cfg := o.cfg.Session
	cfg.Emitter = em
	cfg.Logger = o.log
	if cfg.MaxMemory > 0 {
		cfg.MaxMemory = max(cfg.MaxMemory/int64(o.cfg.Shards), 1)
	}
	cfg.OnOpen = func(c, t capture.Endpoint) {
		if err := o.ic.Announce(c, t); err != nil {
			o.log.Debug("tcpcopy: announce", "client", c, "err", err)
		}
	}
	cfg.OnClose = func(c, t capture.Endpoint) { o.ic.Remove(c, t) }
	t := session.New(&cfg)
	o.tables = append(o.tables, t)
	return t, nil
}

// Run connects to the intercepts, waits until every connection is up
// (logging while it waits), then copies until ctx ends (it returns nil),
// the capture fails, or an offline replay has ended. It closes everything
// it opened before it returns. Run may be called once.
func (o *Online) Run(ctx context.Context) error {
	if !o.running.CompareAndSwap(false, true) {
		return errors.New("tcpcopy: Online.Run called twice")
	}
	o.started.Store(o.clock().UnixNano())
	defer o.closeAll()
	icCtx, stopIC := context.WithCancel(context.Background())
	icDone := make(chan error, 1)
	go func() { icDone <- o.ic.Run(icCtx) }()
	defer func() {
		stopIC()
		if err := <-icDone; err != nil {
			o.log.Warn("tcpcopy: intercept client", "err", err)
		}
	}()

	o.log.Info("tcpcopy: connecting to intercept", "servers", o.ic.Stats().Servers, "conns", o.cfg.Conns)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := o.ic.Ready(rctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		for _, s := range o.ic.Stats().Servers {
			if s.Up < o.cfg.Conns {
				o.log.Warn("tcpcopy: waiting for intercept", "server", s.Addr, "up", s.Up, "err", s.LastError)
			}
		}
	}
	o.log.Info("ready", "transfer", o.transfer.String(), "capture", o.captureKind(), "emit", o.emitKind(),
		"copies", max(o.cfg.Copies, 1), "shards", o.cfg.Shards)
	return o.copier.Run(ctx)
}

// Close releases what NewOnline opened, for an Online whose Run is never
// called (Run does it itself). It is idempotent.
func (o *Online) Close() error {
	o.closeAll()
	if o.ic != nil && !o.running.Load() {
		o.ic.Close()
	}
	return nil
}

// closeAll releases the capture socket and the emitters, once. The
// intercept client is stopped by Run.
func (o *Online) closeAll() {
	o.closeOnce.Do(func() {
		if o.capt != nil {
			o.capt.Close()
		}
		for _, e := range o.emitters {
			if c, ok := e.(io.Closer); ok {
				c.Close()
			}
		}
	})
}

// Stats returns a snapshot of every counter.
func (o *Online) Stats() OnlineStats {
	var s OnlineStats
	if t := o.started.Load(); t != 0 {
		s.Uptime = o.clock().Sub(time.Unix(0, t))
	}
	if st, ok := o.capt.(interface{ Stats() capture.Stats }); ok {
		s.Capture = st.Stats()
	}
	s.Copier = o.copier.Stats()
	s.Transfer = o.transfer.Stats()
	if o.sampler != nil {
		s.Sampler = o.sampler.Stats()
	}
	if o.pool != nil {
		s.Pool = o.pool.Stats()
	}
	if o.copies != nil {
		s.Copies = o.copies.Stats()
	}
	for _, t := range o.tables {
		s.Session = s.Session.Add(t.Stats())
	}
	for _, e := range o.emitters {
		if st, ok := e.(interface{ Stats() emit.Stats }); ok {
			s.Emit = s.Emit.Add(st.Stats())
		}
	}
	s.Intercept = o.ic.Stats()
	if o.pacer != nil {
		s.Replay = o.pacer.Stats()
	}
	s.CopyRatio = copyRatio(s.Session)
	return s
}

func copyRatio(s session.Stats) float64 {
	seen := s.Started + s.Shed
	if seen == 0 {
		return 1
	}
	lost := s.HandshakeTimeouts + s.GapTimeouts + s.SkippedByProtocol
	if lost > s.Started {
		lost = s.Started
	}
	return float64(s.Started-lost) / float64(seen)
}

// Attrs flattens the statistics into log attributes with stable keys
// ("capture.packets", "session.handshake_timeouts", "copy_ratio", ...), for
// one-line statistics reports and metrics. Every counter is included, so
// new ones appear without code here; per-server intercept states are
// summed.
func (s OnlineStats) Attrs() []slog.Attr {
	attrs := []slog.Attr{
		slog.Float64("copy_ratio", s.CopyRatio),
		slog.Duration("uptime", s.Uptime.Round(time.Second)),
	}
	attrs = AppendCounterAttrs(attrs, "capture", s.Capture)
	attrs = AppendCounterAttrs(attrs, "copier", s.Copier)
	attrs = AppendCounterAttrs(attrs, "transfer", s.Transfer)
	attrs = AppendCounterAttrs(attrs, "sampler", s.Sampler)
	attrs = AppendCounterAttrs(attrs, "pool", s.Pool)
	attrs = AppendCounterAttrs(attrs, "copies", s.Copies)
	attrs = AppendCounterAttrs(attrs, "session", s.Session)
	attrs = AppendCounterAttrs(attrs, "emit", s.Emit)
	ic := s.Intercept
	ic.Servers = nil
	attrs = AppendCounterAttrs(attrs, "intercept", ic)
	if s.Replay.Rounds > 0 {
		attrs = AppendCounterAttrs(attrs, "replay", s.Replay)
	}
	var missed uint64
	for _, sv := range s.Intercept.Servers {
		missed += sv.Missed
	}
	return append(attrs, slog.Uint64("intercept.missed", missed))
}

// Summary is the short form of the statistics: the numbers an operator
// looks at first.
func (s OnlineStats) Summary() []slog.Attr {
	ss := s.Session
	return []slog.Attr{
		slog.Uint64("active", ss.Active),
		slog.Uint64("started", ss.Started),
		slog.Uint64("finished", ss.Finished),
		slog.Uint64("timed_out", ss.HandshakeTimeouts+ss.GapTimeouts+ss.IdleTimeouts),
		slog.Uint64("captured", s.Capture.Packets),
		slog.Uint64("copied", s.Copier.Dispatched),
		slog.Uint64("requests", ss.Requests),
		slog.Uint64("pipelined", ss.Pipelined),
		slog.Uint64("sent", ss.Sent),
		slog.Uint64("retrans", ss.Retransmitted),
		slog.Uint64("responses", s.Copier.Responses),
		slog.Uint64("dropped", s.Dropped()),
		slog.Uint64("kernel_drops", s.Capture.KernelDrops),
		slog.String("ratio", strconv.FormatFloat(100*s.CopyRatio, 'f', 2, 64)+"%"),
	}
}

// Dropped is the sum of the drop counters that mean a lost client packet
// or session: capture failures, copies refused, session drops (not the
// duplicates and pure ACKs the table absorbs by design) and emitter drops.
func (s OnlineStats) Dropped() uint64 {
	c, ss := s.Capture, s.Session
	return c.Truncated + c.Malformed + c.KernelDrops +
		s.Copier.CopiesDropped + s.Copier.BadResponses + s.Pool.NoAddress +
		ss.NoSession + ss.BufferFull + ss.Shed + ss.ShedPackets + ss.HandshakeTimeouts + ss.GapTimeouts +
		ss.SkippedByProtocol + ss.EmitErrors + s.Emit.Dropped()
}

// AppendCounterAttrs appends one attribute per numeric field of the struct
// v (nested structs flattened), keyed prefix.snake_case_name. It is how
// OnlineStats.Attrs and intercept's statistics stay complete as counters
// are added.
func AppendCounterAttrs(attrs []slog.Attr, prefix string, v any) []slog.Attr {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return attrs
	}
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		key := prefix + "." + snake(f.Name)
		fv := rv.Field(i)
		switch fv.Kind() {
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			attrs = append(attrs, slog.Uint64(key, fv.Uint()))
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
			attrs = append(attrs, slog.Int64(key, fv.Int()))
		case reflect.Int64:
			if fv.Type() == reflect.TypeFor[time.Duration]() {
				attrs = append(attrs, slog.Duration(key, time.Duration(fv.Int())))
			} else {
				attrs = append(attrs, slog.Int64(key, fv.Int()))
			}
		case reflect.Float32, reflect.Float64:
			attrs = append(attrs, slog.Float64(key, fv.Float()))
		case reflect.Struct:
			if fv.Type() != reflect.TypeFor[time.Time]() {
				attrs = AppendCounterAttrs(attrs, key, fv.Interface())
			}
		}
	}
	return attrs
}

// snake turns a Go field name into snake_case: "KernelDrops" ->
// "kernel_drops", "AbsorbedACKs" -> "absorbed_acks", "TLSFailures" ->
// "tls_failures".
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prevLower := rs[i-1] >= 'a' && rs[i-1] <= 'z' || rs[i-1] >= '0' && rs[i-1] <= '9'
			nextLower := i+1 < len(rs) && rs[i+1] >= 'a' && rs[i+1] <= 'z'
			// "ACKs": the s ends an acronym, not a word.
			if prevLower || (nextLower && !(i+2 == len(rs) && rs[i+1] == 's')) {
				b.WriteByte('_')
			}
		}
		if upper {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// merged reads several Capturers (the IPv4 and IPv6 raw sockets) as one.
// Each source has a reader goroutine that hands over a batch and waits
// until the consumer is done with it, so the source's buffers stay valid
// as Capturer requires.
type merged struct {
	srcs    []capture.Capturer
	ch      chan mbatch
	release []chan struct{}
	closed  chan struct{}
	once    sync.Once
	start   sync.Once
	wg      sync.WaitGroup

	cur *mbatch // batch being consumed
	off int
}

type mbatch struct {
	src  int
	pkts []capture.Packet
	n    int
	err  error
}

func newMerged(srcs []capture.Capturer) *merged {
	m := &merged{srcs: srcs, ch: make(chan mbatch), closed: make(chan struct{})}
	for range srcs {
		m.release = append(m.release, make(chan struct{}, 1))
	}
	return m
}

func (m *merged) run(i int) {
	defer m.wg.Done()
	buf := make([]capture.Packet, 64)
	for {
		n, err := m.srcs[i].ReadPackets(buf)
		select {
		case m.ch <- mbatch{src: i, pkts: buf, n: n, err: err}:
		case <-m.closed:
			return
		}
		if err != nil {
			return
		}
		select {
		case <-m.release[i]:
		case <-m.closed:
			return
		}
	}
}

func (m *merged) ReadPackets(pkts []capture.Packet) (int, error) {
	m.start.Do(func() {
		for i := range m.srcs {
			m.wg.Add(1)
			go m.run(i)
		}
	})
	if m.cur != nil && m.off >= m.cur.n {
		m.release[m.cur.src] <- struct{}{}
		m.cur = nil
	}
	if m.cur == nil {
		select {
		case b := <-m.ch:
			if b.err != nil && b.n == 0 {
				return 0, b.err
			}
			m.cur, m.off = &b, 0
		case <-m.closed:
			return 0, capture.ErrClosed
		}
	}
	k := copy(pkts, m.cur.pkts[m.off:m.cur.n])
	m.off += k
	if m.off >= m.cur.n && m.cur.err != nil {
		// The source ended with this batch: report it next time.
		err := m.cur.err
		m.cur = nil
		return k, err
	}
	return k, nil
}

func (m *merged) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		for _, s := range m.srcs {
			err = errors.Join(err, s.Close())
		}
	})
	m.wg.Wait()
	return err
}

func (m *merged) Stats() capture.Stats {
	var sum capture.Stats
	for _, s := range m.srcs {
		if st, ok := s.(interface{ Stats() capture.Stats }); ok {
			x := st.Stats()
			sum.Packets += x.Packets
			sum.Bytes += x.Bytes
			sum.Truncated += x.Truncated
			sum.Malformed += x.Malformed
			sum.NotTCP += x.NotTCP
			sum.Fragments += x.Fragments
			sum.KernelDrops += x.KernelDrops
		}
	}
	return sum
}
