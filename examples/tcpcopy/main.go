// Command tcpcopy is the online half of the classic pair: it copies the live
// traffic of a local TCP service to a target server, with TCPCopy 1.x's
// flags. It is a thin layer over tcpcopy.Online: flags -> OnlineConfig ->
// Run.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/examples/internal/cli"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session/mysql"
)

const synopsis = `
tcpcopy copies the live traffic of a TCP service on this host to a target
server, in real time, without touching the service (the online half of the
classic TCPCopy pair; intercept is the other half).

Usage: tcpcopy -x TRANSFER -s INTERCEPTS [options]`

const examples = `
Examples:
  # Copy port 80 to 198.18.1.2:8080; the intercept runs on 198.18.2.2.
  tcpcopy -x 80-198.18.1.2:8080 -s 198.18.2.2

  # Twice the traffic, client addresses from a fake range the target
  # routes to the assistant host, statistics every 10 s.
  tcpcopy -x 80-198.18.1.2:80 -s 198.18.2.2 -c 198.18.200.x -n 2 --stats-interval 10s

  # Two online hosts feeding one target: give each its own -f.
  tcpcopy -x 80-198.18.1.2:80 -s 198.18.1.2 -f 0     (on the first)
  tcpcopy -x 80-198.18.1.2:80 -s 198.18.1.2 -f 1     (on the second)

  # Offline: replay a capture at twice its speed, idle gaps cut to 1 s.
  tcpcopy -x 198.18.0.2:80-198.18.1.2:80 -s 198.18.1.2 -i traffic.pcap -a 2 -I 1000

Statistics: a line "msg=stats" every --stats-interval, and "msg=\"final report\""
with every counter at exit. SIGINT, SIGTERM and SIGHUP stop tcpcopy cleanly.
Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a bad flag.`

// options holds the command line.
type options struct {
	transfer    string
	clientPool  string
	copies      int
	instance    int
	percent     float64
	gradually   bool
	ramp        time.Duration
	memoryMB    int
	mtu         int
	mss         int
	timeout     time.Duration
	keepalive   time.Duration
	intercepts  []string
	port        int
	conns       int
	input       string
	pcap        string
	filter      *capture.Filter
	speed       float64
	maxGap      time.Duration
	repeat      int
	tail        time.Duration
	output      string
	onlyFull    bool
	noWait      bool
	maxLag      time.Duration
	rawCapture  bool
	lonely      bool
	daemon      bool
	pidFile     string
	secret      string
	secretFile  string
	useTLS      bool
	tlsCA       string
	tlsName     string
	classic     bool
	classicPay  bool
	shards      int
	statsEvery  time.Duration
	metricsAddr string
	cpuProfile  string
	log         cli.LogOptions

	mysql          bool
	mysqlUsers     string
	mysqlPassFile  string
	mysqlSkipGrant bool
	mysqlUser      string
	mysqlDB        string
}

func newFlags(o *options) *cli.FlagSet {
	f := cli.NewFlagSet("tcpcopy")
	o.copies, o.percent, o.memoryMB, o.mtu, o.mss = 1, 100, 1024, 1500, 1460
	o.timeout, o.port, o.conns, o.speed, o.repeat = 120*time.Second, tcpcopy.DefaultInterceptPort, 2, 1, 1
	o.ramp, o.statsEvery, o.tail, o.maxLag = 5*time.Minute, 30*time.Second, 120*time.Second, 100*time.Millisecond
	f.Func("x", "transfer", "TRANSFER", "", "what to copy where: [onlineIP:]port[@mac]-targetIP:port[@mac][,...]; required", func(s string) error {
		if _, err := rewrite.ParseTransfer(s); err != nil {
			return err
		}
		o.transfer = s
		return nil
	})
	f.Func("c", "client-pool", "ADDRS", "", "rewrite client addresses to ones from this pool: 198.18.200.x, prefixes, ranges, lists", func(s string) error {
		if _, err := rewrite.ParseClientPool(s); err != nil {
			return err
		}
		o.clientPool = s
		return nil
	})
	f.Int(&o.copies, "n", "copies", "N", "copies of each connection", 1, rewrite.MaxCopies)
	f.Int(&o.instance, "f", "instance", "N", "this copier's number among those feeding one target (port shift)", 0, rewrite.MaxInstance)
	f.Float(&o.percent, "r", "percent", "P", "percentage of connections copied", 0.0001, 100)
	f.Bool(&o.gradually, "g", "gradually", "grow the copied percentage from 1 to -r over --ramp")
	f.Seconds(&o.ramp, "", "ramp", "DURATION", "how long -g takes (seconds, or like 10m)", time.Second)
	f.Int(&o.memoryMB, "m", "max-memory", "MB", "buffered client data cap: over it new sessions are shed (0: none)", 0, 1<<30)
	f.Int(&o.mtu, "M", "mtu", "BYTES", "largest datagram sent to the target", 576, 65535)
	f.Int(&o.mss, "D", "mss", "BYTES", "MSS of forged SYNs and segment size cap", 88, 65495)
	f.Seconds(&o.timeout, "t", "session-timeout", "SECONDS", "drop a session after this long without a packet either way", time.Second)
	f.Seconds(&o.keepalive, "k", "keepalive-timeout", "SECONDS", "drop a session after this long without data (default -t + 120)", time.Second)
	f.Func("s", "intercepts", "ADDRS", "", "intercept servers: ip[:port][,...] (IPv6 as [addr]:port); required", func(s string) error {
		if _, err := tcpcopy.ServerAddrs([]string{s}, tcpcopy.DefaultInterceptPort); err != nil {
			return err
		}
		o.intercepts = append(o.intercepts, s)
		return nil
	})
	f.Int(&o.port, "p", "intercept-port", "PORT", "port of intercepts given without one", 1, 65535)
	f.Int(&o.conns, "C", "conns", "N", "connections to each intercept", 1, 16)
	f.String(&o.input, "i", "input", "DEVS|FILE", "capture at the link layer on these interfaces (comma-separated; default: all), or replay this pcap/pcapng file (offline)")
	f.Bool(&o.rawCapture, "", "raw-capture", "capture with a raw IP socket, as TCPCopy does, instead of the AF_PACKET ring (costs more CPU)")
	f.String(&o.pcap, "", "pcap", "FILE", "replay this pcap/pcapng file (offline; same as -i FILE)")
	f.Func("F", "filter", "EXPR", "", "kernel filter for link-layer capture, pcap syntax subset: 'tcp and dst port 80 and dst host 198.18.0.2'", func(s string) error {
		flt, err := cli.ParseFilter(s)
		o.filter = flt
		return err
	})
	f.Float(&o.speed, "a", "speed", "X", "offline: replay X times faster", 0.001, 1e6)
	f.Seconds(&o.maxGap, "I", "max-gap", "MS", "offline: cut gaps between packets to this many milliseconds (0: keep)", time.Millisecond)
	f.Int(&o.repeat, "T", "repeat", "N", "offline: replay the file N times", 1, 1<<20)
	f.Seconds(&o.tail, "", "tail", "SECONDS", "offline: wait at most this long at the end for the sessions to finish", time.Second)
	f.String(&o.output, "o", "output", "DEV", "send at the link layer on this Ethernet interface (MACs from -x @mac or the neighbour table)")
	f.Bool(&o.onlyFull, "O", "only-full", "copy only connections whose SYN was captured")
	f.Bool(&o.noWait, "W", "no-wait", "send requests without waiting for the previous response")
	f.Seconds(&o.maxLag, "", "max-lag", "MS", "send a request without waiting for the previous response once it is this many milliseconds old (0: always wait, as TCPCopy)", time.Millisecond)
	f.Bool(&o.lonely, "L", "lonely", "keep running when intercept goes away (always the case here: tcpcopy reconnects)")
	f.Bool(&o.daemon, "d", "daemon", "run in the background (use -l for the log)")
	f.String(&o.pidFile, "P", "pid-file", "FILE", "write the process id to FILE")
	o.log.Register(f)
	f.String(&o.secret, "", "secret", "SECRET", "intercept shared secret (prefer --secret-file or $TCPCOPY_SECRET)")
	f.String(&o.secretFile, "", "secret-file", "FILE", "read the intercept shared secret from FILE")
	f.Bool(&o.useTLS, "", "tls", "connect to intercepts over TLS")
	f.String(&o.tlsCA, "", "tls-ca", "FILE", "PEM CA certificates for the intercepts' TLS certificates (default: the system's)")
	f.String(&o.tlsName, "", "tls-server-name", "NAME", "name expected in the intercepts' certificates (default: their address)")
	f.Bool(&o.classic, "", "classic", "speak TCPCopy 1.x's protocol, to pair with the C intercept (IPv4, no authentication)")
	f.Bool(&o.classicPay, "", "classic-payload", "the C intercept was built with payload (192-byte records)")
	f.Int(&o.shards, "", "shards", "N", "session table shards (default: the number of CPUs)", 0, 4096)
	f.Seconds(&o.statsEvery, "", "stats-interval", "SECONDS", "log a statistics line this often (0: never)", time.Second)
	f.String(&o.metricsAddr, "", "metrics-addr", "ADDR", "serve Prometheus metrics on ADDR (host:port) at /metrics")
	f.String(&o.cpuProfile, "", "cpu-profile", "FILE", "write a CPU profile (go tool pprof) to FILE until exit")
	f.Bool(&o.mysql, "", "mysql", "MySQL mode: re-authenticate copied logins against the target (intercept needs --payload 256)")
	f.String(&o.mysqlUsers, "u", "mysql-users", "USER@PASSWORD,...", "MySQL mode: the users' passwords on the target")
	f.String(&o.mysqlPassFile, "", "mysql-password-file", "FILE", "MySQL mode: read user@password lines from FILE")
	f.Bool(&o.mysqlSkipGrant, "", "mysql-skip-grant-tables", "MySQL mode: the target runs --skip-grant-tables (no passwords needed)")
	f.String(&o.mysqlUser, "", "mysql-default-user", "USER", "MySQL mode: log in connections seen mid-stream as USER when their login was never seen")
	f.String(&o.mysqlDB, "", "mysql-default-db", "DB", "MySQL mode: the database for such connections")
	return f
}

// config turns the options into the library's configuration; problems
// that involve several flags are usage errors.
func (o *options) config(f *cli.FlagSet, log *slog.Logger) (*tcpcopy.OnlineConfig, error) {
	if o.transfer == "" {
		return nil, cli.Usagef("missing -x (what to copy where, like 80-198.18.1.2:8080)")
	}
	if len(o.intercepts) == 0 {
		return nil, cli.Usagef("missing -s (the intercept servers)")
	}
	tr, err := rewrite.ParseTransfer(o.transfer)
	if err != nil {
		return nil, cli.Usagef("invalid value %q for flag -x: %v", o.transfer, err)
	}
	cfg := &tcpcopy.OnlineConfig{
		TransferMap:    tr,
		Copies:         o.copies,
		Instance:       o.instance,
		SamplePercent:  o.percent,
		Servers:        o.intercepts,
		Port:           uint16(o.port),
		Conns:          o.conns,
		Classic:        o.classic,
		ClassicPayload: o.classicPay,
		EmitInterface:  o.output,
		CaptureFilter:  o.filter,
		Shards:         o.shards,
		Logger:         log,
	}
	if o.clientPool != "" {
		if cfg.Pool, err = rewrite.ParseClientPool(o.clientPool, tr.Targets()...); err != nil {
			return nil, cli.Usagef("invalid value %q for flag -c: %v", o.clientPool, err)
		}
	}
	if o.gradually {
		cfg.Ramp = o.ramp
	}
	if f.Set("M") {
		cfg.MTU = o.mtu
	}
	if f.Set("D") {
		cfg.Session.MSS = uint16(o.mss)
	}
	cfg.Session.OnlyFull = o.onlyFull
	cfg.Session.NoWait = o.noWait
	cfg.Session.MaxLag = o.maxLag
	if o.maxLag == 0 {
		cfg.Session.MaxLag = -1 // session.Config's zero is the default
	}
	cfg.Session.IdleTimeout = o.timeout
	cfg.Session.KeepaliveTimeout = o.keepalive
	if !f.Set("k") {
		cfg.Session.KeepaliveTimeout = o.timeout + 120*time.Second
	}
	cfg.Session.MaxMemory = int64(o.memoryMB) << 20
	if err := o.mysqlMode(f, cfg, log); err != nil {
		return nil, err
	}

	file := o.pcap
	if o.input != "" {
		// A file (offline) or interfaces; interface names may hold dots
		// (VLANs), never a slash.
		looksLikeFile := strings.Contains(o.input, "/") || strings.HasSuffix(o.input, ".pcap") ||
			strings.HasSuffix(o.input, ".pcapng") || strings.HasSuffix(o.input, ".cap")
		if st, err := os.Stat(o.input); err == nil && st.Mode().IsRegular() {
			file = o.input
		} else if looksLikeFile {
			return nil, cli.Usagef("invalid value %q for flag -i: no such file", o.input)
		} else {
			cfg.Interfaces = cli.ParseList(o.input)
		}
	}
	if o.rawCapture {
		if file != "" || len(cfg.Interfaces) > 0 {
			return nil, cli.Usagef("--raw-capture reads every interface: it takes no -i")
		}
		cfg.Capture = tcpcopy.CaptureRawIP
	}
	offline := f.Set("a") || f.Set("I") || f.Set("T")
	if file != "" {
		cfg.Offline = tcpcopy.OfflineConfig{File: file, Speed: o.speed, MaxGap: o.maxGap, Repeat: o.repeat, Tail: o.tail}
	} else if offline {
		return nil, cli.Usagef("-a, -I and -T are for offline replay: give the file with -i FILE")
	}
	if cfg.Secret, err = cli.ReadSecret(o.secret, o.secretFile, "TCPCOPY_SECRET"); err != nil {
		return nil, cli.Usagef("invalid value %q for flag --secret-file: %v", o.secretFile, err)
	}
	if o.useTLS || o.tlsCA != "" || o.tlsName != "" {
		tc := &tls.Config{ServerName: o.tlsName, MinVersion: tls.VersionTLS12}
		if o.tlsCA != "" {
			pem, err := os.ReadFile(o.tlsCA)
			if err != nil {
				return nil, cli.Usagef("invalid value %q for flag --tls-ca: %v", o.tlsCA, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, cli.Usagef("invalid value %q for flag --tls-ca: no PEM certificate", o.tlsCA)
			}
		}
		cfg.TLS = tc
	}
	if o.classic && cfg.TLS != nil {
		return nil, cli.Usagef("--classic and --tls exclude each other")
	}
	return cfg, nil
}

// mysqlMode sets up the MySQL protocol module (session/mysql) when --mysql
// is given.
func (o *options) mysqlMode(f *cli.FlagSet, cfg *tcpcopy.OnlineConfig, log *slog.Logger) error {
	if !o.mysql {
		for _, name := range []string{"mysql-users", "mysql-password-file", "mysql-skip-grant-tables", "mysql-default-user", "mysql-default-db"} {
			if f.Set(name) {
				return cli.Usagef("--%s needs --mysql", name)
			}
		}
		return nil
	}
	users, err := mysql.ParseUsers(o.mysqlUsers)
	if err != nil {
		return cli.Usagef("invalid value %q for flag -u: %v", o.mysqlUsers, err)
	}
	if len(users) == 0 && o.mysqlPassFile == "" && !o.mysqlSkipGrant {
		log.Warn("tcpcopy: --mysql without -u, --mysql-password-file or --mysql-skip-grant-tables: every login will be skipped")
	}
	p, err := mysql.New(&mysql.Config{
		Users: users, PasswordFile: o.mysqlPassFile, SkipGrantTables: o.mysqlSkipGrant,
		DefaultUser: o.mysqlUser, DefaultDatabase: o.mysqlDB, Logger: log,
	})
	if err != nil {
		return cli.Usagef("MySQL mode: %v", err)
	}
	cfg.Session.Protocol = p
	return nil
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	f := newFlags(&o)
	usageErr := func(err error) int { return cli.UsageFail(stderr, "tcpcopy", err) }
	if code, done := cli.ParseArgs(f, args, stdout, stderr, "tcpcopy", synopsis, examples); done {
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
	removePID, code, exit := cli.Background(o.daemon, o.pidFile, stdout, stderr, "tcpcopy")
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
	on, err := tcpcopy.NewOnline(cfg)
	if err != nil {
		if o.log.File != "" {
			log.Error("tcpcopy: cannot start", "err", err)
		}
		return cli.Fail(stderr, "tcpcopy", err)
	}
	attrs := func() []slog.Attr { return on.Stats().Attrs() }
	stopMetrics, err := cli.Metrics(o.metricsAddr, "tcpcopy", attrs, isGauge, log)
	if err != nil {
		on.Close()
		return cli.Fail(stderr, "tcpcopy", err)
	}
	defer stopMetrics()
	log.Info("tcpcopy: starting", "version", cli.Version(), "transfer", cfg.TransferMap.String(), "intercepts", o.intercepts)

	runErr := cli.RunReporting(ctx, log, o.statsEvery, on.Run,
		func() []slog.Attr { return on.Stats().Summary() }, attrs)
	if runErr != nil {
		if o.log.File != "" {
			log.Error("tcpcopy: stopped", "err", runErr)
		}
		return cli.Fail(stderr, "tcpcopy", runErr)
	}
	log.Info("tcpcopy: stopped")
	return cli.ExitOK
}

// isGauge tells the metrics that go up and down from the counters.
func isGauge(key string) bool {
	switch key {
	case "copy_ratio", "session.active", "intercept.connected", "intercept.tracked":
		return true
	}
	return false
}
