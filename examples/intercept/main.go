// Command intercept is the target-side half of the classic pair: it
// captures the target's responses to copied connections, keeps them from
// the real clients, and reports them to the tcpcopy that owns each client,
// with TCPCopy 1.x's flags. It is a thin layer over intercept.Service:
// flags -> ServiceConfig -> Run.
package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/examples/internal/cli"
	"github.com/shadowcopy/tcpcopy/intercept"
)

const synopsis = `
intercept captures a target server's responses to the connections tcpcopy
copies, keeps them from the real clients and reports them to tcpcopy (the
target-side half of the classic TCPCopy pair).

Two ways to capture (DESIGN.md section 2):
  NFQUEUE (default), intercept on the target: an iptables rule
    "iptables -I OUTPUT -p tcp --sport PORT -j NFQUEUE" queues the responses;
    intercept drops them. --rules PORT installs that rule at start and
    removes it at exit.
  AF_PACKET (-i and -F), intercept on an assistant host with IP forwarding
    off, to which the target routes the clients' addresses: intercept sees
    the responses at the link layer and the assistant black-holes them.

Usage: intercept [options]`

const examples = `
Examples:
  # On the target, classic deployment; the service listens on port 80.
  intercept --rules 80

  # On an assistant host (ip_forward off), the target's responses arriving on eth1.
  intercept -i eth1 -F 'tcp and src port 80'

  # Authenticated, with the administrators' own addresses passed through.
  intercept --rules 80 --secret-file /etc/tcpcopy.secret -x 198.18.9.0/24

Statistics: a line "msg=stats" every --stats-interval, and "msg=\"final report\""
with every counter at exit. SIGINT, SIGTERM and SIGHUP stop intercept
cleanly and remove the rules it installed.
Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a bad flag.`

type options struct {
	interfaces  []string
	filter      string
	ports       []uint16
	targets     []netip.Prefix
	passList    []netip.Prefix
	port        int
	bind        string
	queueLen    int
	queueNum    int
	batch       int
	routeTTL    time.Duration
	hashSize    int
	failOpen    bool
	rulePorts   []uint16
	ruleFamily  string
	bypass      bool
	daemon      bool
	pidFile     string
	secret      string
	secretFile  string
	tlsCert     string
	tlsKey      string
	classic     bool
	classicPay  bool
	payload     int
	statsEvery  time.Duration
	metricsAddr string
	cpuProfile  string
	log         cli.LogOptions
}

func newFlags(o *options) *cli.FlagSet {
	f := cli.NewFlagSet("intercept")
	o.port, o.routeTTL, o.statsEvery, o.hashSize = intercept.DefaultPort, 120*time.Second, 30*time.Second, 65536
	f.Func("i", "interfaces", "DEVS", "", "capture the responses at the link layer on these interfaces (comma-separated; assistant and two-box deployments); needs -F", func(s string) error {
		o.interfaces = cli.ParseList(s)
		if len(o.interfaces) == 0 {
			return errors.New("no interface")
		}
		return nil
	})
	f.Func("F", "filter", "EXPR", "", "which packets are responses, pcap syntax subset: 'tcp and src port 80 [and src host 198.18.1.2]'", func(s string) error {
		flt, err := cli.ParseFilter(s)
		if err != nil {
			return err
		}
		if len(flt.DstPorts)+len(flt.DstNets) > 0 {
			return errors.New("only source ports and hosts select responses (src port N, src host ADDR)")
		}
		o.ports = append(append([]uint16(nil), flt.SrcPorts...), flt.Ports...)
		o.targets = append(append([]netip.Prefix(nil), flt.SrcNets...), flt.Nets...)
		if len(o.ports) == 0 {
			return errors.New("needs the target service's port (src port N)")
		}
		o.filter = s
		return nil
	})
	f.Func("x", "pass-list", "ADDRS", "", "destinations whose responses are let through and not reported (addresses or prefixes, comma-separated)", func(s string) error {
		ps, err := cli.ParsePrefixes(s)
		o.passList = append(o.passList, ps...)
		return err
	})
	f.Int(&o.port, "p", "port", "PORT", "port tcpcopy connects to", 1, 65535)
	f.Func("b", "bind", "ADDR", "", "address to listen on (default: all)", func(s string) error {
		if _, err := netip.ParseAddr(s); err != nil {
			return errors.New("not an IP address")
		}
		o.bind = s
		return nil
	})
	f.Int(&o.queueLen, "q", "queue-len", "N", "NFQUEUE length the kernel holds for intercept (default 8192)", 1, 1<<24)
	f.Int(&o.queueNum, "", "queue-num", "N", "NFQUEUE number (--queue-num of the iptables rule)", 0, 65535)
	f.Int(&o.batch, "n", "combine", "N", "most responses read and reported at once (default 64)", 1, 4096)
	f.Seconds(&o.routeTTL, "t", "route-timeout", "SECONDS", "forget a client's route after this long unused", time.Second)
	f.Int(&o.hashSize, "s", "hash-size", "N", "accepted for TCPCopy compatibility; the route table grows as needed", 1, 1<<30)
	f.Bool(&o.failOpen, "", "fail-open", "let responses through (to the real clients) when the queue is full, instead of dropping them")
	f.Func("", "rules", "PORTS", "", "install 'iptables -I OUTPUT -p tcp --sport PORT -j NFQUEUE' for these ports at start, remove at exit", func(s string) error {
		ps, err := cli.ParsePorts(s)
		o.rulePorts = ps
		return err
	})
	f.Func("", "rules-family", "ipv4|ipv6|both", "both", "which of iptables and ip6tables --rules uses", func(s string) error {
		switch s {
		case "ipv4", "ipv6":
			o.ruleFamily = s
		case "both":
			o.ruleFamily = ""
		default:
			return errors.New("must be ipv4, ipv6 or both")
		}
		return nil
	})
	f.Bool(&o.bypass, "", "queue-bypass", "with --rules: let responses through while no intercept is bound to the queue")
	f.Bool(&o.daemon, "d", "daemon", "run in the background (use -l for the log)")
	f.String(&o.pidFile, "P", "pid-file", "FILE", "write the process id to FILE")
	o.log.Register(f)
	f.String(&o.secret, "", "secret", "SECRET", "shared secret tcpcopy must know (prefer --secret-file or $TCPCOPY_SECRET)")
	f.String(&o.secretFile, "", "secret-file", "FILE", "read the shared secret from FILE")
	f.String(&o.tlsCert, "", "tls-cert", "FILE", "serve TLS with this PEM certificate (needs --tls-key)")
	f.String(&o.tlsKey, "", "tls-key", "FILE", "PEM private key of --tls-cert")
	f.Bool(&o.classic, "", "classic", "also accept the C tcpcopy (TCPCopy 1.x protocol: IPv4, no authentication; trusted networks only)")
	f.Bool(&o.classicPay, "", "classic-payload", "the C tcpcopy was built with payload (192-byte records)")
	f.Int(&o.payload, "", "payload", "BYTES", "payload bytes reported with each response (for response comparison, MySQL)", 0, 65535)
	f.Seconds(&o.statsEvery, "", "stats-interval", "SECONDS", "log a statistics line this often (0: never)", time.Second)
	f.String(&o.metricsAddr, "", "metrics-addr", "ADDR", "serve Prometheus metrics on ADDR (host:port) at /metrics")
	f.String(&o.cpuProfile, "", "cpu-profile", "FILE", "write a CPU profile (go tool pprof) to FILE until exit")
	return f
}

func (o *options) config(f *cli.FlagSet, log *slog.Logger) (*intercept.ServiceConfig, error) {
	cfg := &intercept.ServiceConfig{
		Listen: net.JoinHostPort(o.bind, strconv.Itoa(o.port)),
		Server: intercept.ServerConfig{
			AcceptClassic:  o.classic,
			ClassicPayload: o.classicPay,
			PayloadLimit:   o.payload,
			RouteTTL:       o.routeTTL,
		},
		Logger: log,
	}
	switch {
	case len(o.interfaces) > 0:
		if o.filter == "" {
			return nil, cli.Usagef("-i needs -F, the responses' source port (like -F 'tcp and src port 80')")
		}
		if len(o.rulePorts) > 0 || f.Set("q") || f.Set("queue-num") || o.failOpen {
			return nil, cli.Usagef("-i (AF_PACKET) excludes the NFQUEUE flags --rules, -q, --queue-num and --fail-open")
		}
		cfg.AFPacket = &intercept.AFPacketConfig{
			Interfaces: o.interfaces, Ports: o.ports, Targets: o.targets, PassList: o.passList, Batch: o.batch,
		}
	case o.filter != "":
		return nil, cli.Usagef("-F selects responses for -i (AF_PACKET); with NFQUEUE the iptables rule selects them (--rules)")
	default:
		cfg.NFQueue = &intercept.NFQueueConfig{
			Queue: uint16(o.queueNum), MaxQueueLen: uint32(o.queueLen), FailOpen: o.failOpen,
			PassList: o.passList, Batch: o.batch,
		}
		if len(o.rulePorts) > 0 {
			cfg.Rules = &intercept.NFQueueRulesConfig{Ports: o.rulePorts, Family: o.ruleFamily, Bypass: o.bypass}
		} else if o.bypass {
			return nil, cli.Usagef("--queue-bypass is an option of the rules --rules installs")
		}
	}
	var err error
	if cfg.Server.Secret, err = cli.ReadSecret(o.secret, o.secretFile, "TCPCOPY_SECRET"); err != nil {
		return nil, cli.Usagef("invalid value %q for flag --secret-file: %v", o.secretFile, err)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, cli.Usagef("--tls-cert and --tls-key go together")
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, cli.Usagef("invalid value %q for flag --tls-cert: %v", o.tlsCert, err)
		}
		if o.classic {
			return nil, cli.Usagef("--classic and --tls-cert exclude each other")
		}
		cfg.Server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	f := newFlags(&o)
	usageErr := func(err error) int { return cli.UsageFail(stderr, "intercept", err) }
	if code, done := cli.ParseArgs(f, args, stdout, stderr, "intercept", synopsis, examples); done {
		return code
	}
	log, closeLog, err := o.log.Open(stderr)
	if err != nil {
		return usageErr(fmt.Errorf("invalid value %q for flag -l: %v", o.log.File, err))
	}
	defer closeLog()
	cfg, err := o.config(f, log)
	if err != nil {
		return usageErr(err)
	}
	removePID, code, exit := cli.Background(o.daemon, o.pidFile, stdout, stderr, "intercept")
	if exit {
		return code
	}
	defer removePID()
	stopProfile, err := cli.CPUProfile(o.cpuProfile)
	if err != nil {
		return usageErr(fmt.Errorf("invalid value %q for flag --cpu-profile: %v", o.cpuProfile, err))
	}
	defer stopProfile()

	ctx, stop := cli.SignalContext(log)
	defer stop()
	svc, err := intercept.NewService(cfg)
	if err != nil {
		return cli.Fail(stderr, "intercept", err)
	}
	stopMetrics, err := cli.Metrics(o.metricsAddr, "intercept", func() []slog.Attr { return attrs(svc.Stats()) }, isGauge, log)
	if err != nil {
		return cli.Fail(stderr, "intercept", err)
	}
	defer stopMetrics()
	if len(cfg.Server.Secret) == 0 && !o.classic {
		log.Warn("intercept: no shared secret: any tcpcopy that reaches the port gets in (use --secret-file)")
	}
	log.Info("intercept: starting", "version", cli.Version(), "listen", cfg.Listen)

	runErr := cli.RunReporting(ctx, log, o.statsEvery, svc.Run,
		func() []slog.Attr { return summary(svc.Stats()) }, func() []slog.Attr { return attrs(svc.Stats()) })
	if runErr != nil {
		if o.log.File != "" {
			log.Error("intercept: stopped", "err", runErr)
		}
		return cli.Fail(stderr, "intercept", runErr)
	}
	log.Info("intercept: stopped")
	return cli.ExitOK
}

// attrs flattens every counter of the Service.
func attrs(st intercept.ServiceStats) []slog.Attr {
	return tcpcopy.AppendCounterAttrs([]slog.Attr{slog.Duration("uptime", st.Uptime.Round(time.Second))}, "intercept", st)
}

// summary is the one-line statistics report.
func summary(st intercept.ServiceStats) []slog.Attr {
	s := st.Server
	captured := st.NFQueue.Received + st.AFPacket.Capture.Packets
	kernel := st.NFQueue.ReceiveErrors + st.AFPacket.Capture.KernelDrops
	return []slog.Attr{
		slog.Int("copiers", s.Copiers),
		slog.Uint64("established", s.Established),
		slog.Int("routes", s.Routes),
		slog.Uint64("captured", captured),
		slog.Uint64("reported", s.Reported),
		slog.Uint64("routed", s.Routed),
		slog.Uint64("unrouted", s.Unrouted),
		slog.Uint64("dropped", s.Dropped+s.Oversize),
		slog.Uint64("passed", st.NFQueue.Passed+st.AFPacket.Passed),
		slog.Uint64("kernel_drops", kernel),
		slog.Uint64("auth_failures", s.AuthFailures),
		slog.Int("rules", st.Rules),
	}
}

func isGauge(key string) bool {
	switch key {
	case "intercept.rules", "intercept.server.copiers", "intercept.server.handshaking",
		"intercept.server.routes", "intercept.server.held":
		return true
	}
	return false
}
