package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LogOptions are the logging flags every program has.
type LogOptions struct {
	File   string // -l: append to this file; empty: stderr
	Format string // text or json
	Level  string // debug, info, warn, error
}

// Register adds -l/--log, --log-format and --log-level.
func (o *LogOptions) Register(f *FlagSet) {
	o.Format, o.Level = "text", "info"
	f.String(&o.File, "l", "log", "FILE", "write the log to FILE instead of stderr")
	f.Func("", "log-format", "text|json", "text", "log record format", func(s string) error {
		if s != "text" && s != "json" {
			return errors.New("must be text or json")
		}
		o.Format = s
		return nil
	})
	f.Func("", "log-level", "LEVEL", "info", "least important level logged: debug, info, warn, error", func(s string) error {
		var l slog.Level
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return errors.New("must be debug, info, warn or error")
		}
		o.Level = s
		return nil
	})
}

// Open returns the logger and a function that closes its file.
func (o *LogOptions) Open(stderr io.Writer) (*slog.Logger, func(), error) {
	w, closeFn := stderr, func() {}
	if o.File != "" {
		f, err := os.OpenFile(o.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, err
		}
		w, closeFn = f, func() { f.Close() }
	}
	var level slog.Level
	level.UnmarshalText([]byte(o.Level))
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, hopts)
	if o.Format == "json" {
		h = slog.NewJSONHandler(w, hopts)
	}
	return slog.New(h), closeFn, nil
}

// WritePIDFile writes the process id to path and returns a function that
// removes the file (if it still holds this pid).
func WritePIDFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	pid := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(path, []byte(pid+"\n"), 0o644); err != nil {
		return nil, err
	}
	return func() {
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == pid {
			os.Remove(path)
		}
	}, nil
}

// daemonEnv marks the re-executed child of Daemonize.
const daemonEnv = "TCPCOPY_EXAMPLE_DAEMONIZED"

// Daemonize starts this program again in a new session, detached from the
// terminal, with the same arguments, and reports true in the parent, which
// should then exit; the child gets false. (A Go program cannot fork
// safely, so -d re-executes.) The child's output goes to /dev/null: use -l
// for its log.
func Daemonize(stdout io.Writer) (parent bool, err error) {
	if os.Getenv(daemonEnv) == "1" {
		return false, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return false, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	fmt.Fprintf(stdout, "%d\n", cmd.Process.Pid)
	return true, cmd.Process.Release()
}

// SignalContext returns a context cancelled by SIGINT, SIGTERM or SIGHUP;
// a second signal kills the process the default way.
func SignalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-ctx.Done()
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			log.Info("stopping", "cause", cause)
		}
		stop() // a second signal is not caught
	}()
	return ctx, stop
}

// Report logs the statistics every interval (if positive) until ctx ends.
func Report(ctx context.Context, log *slog.Logger, interval time.Duration, attrs func() []slog.Attr) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			log.LogAttrs(ctx, slog.LevelInfo, "stats", attrs()...)
		}
	}
}

// Metrics serves Prometheus metrics made from attrs on addr (/metrics)
// until the returned stop function is called. Each numeric attribute
// becomes prog_KEY (dots to underscores): a gauge when gauge(key) reports
// true, else a counter named with _total.
func Metrics(addr, prog string, attrs func() []slog.Attr, gauge func(key string) bool, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&attrCollector{prog: prog, attrs: attrs, gauge: gauge},
	)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("metrics: serving", "addr", ln.Addr().String(), "path", "/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// attrCollector turns statistics attributes into constant metrics at each
// scrape. It is an unchecked collector: the set of metrics follows the
// library's counters.
type attrCollector struct {
	prog  string
	attrs func() []slog.Attr
	gauge func(string) bool
}

func (c *attrCollector) Describe(chan<- *prometheus.Desc) {}

func (c *attrCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.attrs() {
		var v float64
		switch a.Value.Kind() {
		case slog.KindUint64:
			v = float64(a.Value.Uint64())
		case slog.KindInt64:
			v = float64(a.Value.Int64())
		case slog.KindFloat64:
			v = a.Value.Float64()
		case slog.KindDuration:
			v = a.Value.Duration().Seconds()
		default:
			continue
		}
		name := c.prog + "_" + strings.NewReplacer(".", "_", "-", "_").Replace(a.Key)
		typ := prometheus.GaugeValue
		if a.Value.Kind() == slog.KindDuration {
			name += "_seconds"
		} else if !c.gauge(a.Key) {
			typ = prometheus.CounterValue
			name += "_total"
		}
		desc := prometheus.NewDesc(name, c.prog+" statistic "+a.Key, nil, nil)
		m, err := prometheus.NewConstMetric(desc, typ, v)
		if err == nil {
			ch <- m
		}
	}
}

// Fail writes err as one line "prog: err" to w (without repeating the
// library's own "prog:" prefix) and returns ExitError.
func Fail(w io.Writer, prog string, err error) int {
	msg := strings.TrimPrefix(err.Error(), prog+": ")
	fmt.Fprintf(w, "%s: %s\n", prog, msg)
	return ExitError
}

// ParseArgs parses args and handles -h and -v. It reports done with the
// exit code when the program should end now: help or version printed, or a
// bad flag reported on one line of stderr.
func ParseArgs(f *FlagSet, args []string, stdout, stderr io.Writer, prog, synopsis, examples string) (code int, done bool) {
	switch err := f.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		f.PrintUsage(stdout, synopsis, examples)
		return ExitOK, true
	case errors.Is(err, ErrVersion):
		fmt.Fprintf(stdout, "%s %s\n", prog, Version())
		return ExitOK, true
	case err != nil:
		return UsageFail(stderr, prog, err), true
	}
	return 0, false
}

// UsageFail reports a bad flag or value on one line and returns ExitUsage.
func UsageFail(stderr io.Writer, prog string, err error) int {
	fmt.Fprintf(stderr, "%s: %v (%s -h for help)\n", prog, err, prog)
	return ExitUsage
}

// RunReporting runs run until it returns, logging summary() every
// interval meanwhile, and then a final report of summary() and full().
func RunReporting(ctx context.Context, log *slog.Logger, interval time.Duration, run func(context.Context) error, summary, full func() []slog.Attr) error {
	repCtx, stopReport := context.WithCancel(ctx)
	repDone := make(chan struct{})
	go func() {
		defer close(repDone)
		Report(repCtx, log, interval, summary)
	}()
	err := run(ctx)
	stopReport()
	<-repDone
	log.LogAttrs(context.Background(), slog.LevelInfo, "final report", append(summary(), full()...)...)
	return err
}

// Background puts the program in the background when daemon is set (the
// parent should then exit with code) and writes the PID file. It reports
// exit when the caller should return code now; otherwise cleanup removes
// the PID file at the end.
func Background(daemon bool, pidFile string, stdout, stderr io.Writer, prog string) (cleanup func(), code int, exit bool) {
	if daemon {
		parent, err := Daemonize(stdout)
		if err != nil {
			return nil, Fail(stderr, prog, fmt.Errorf("daemon: %w", err)), true
		}
		if parent {
			return nil, ExitOK, true
		}
	}
	removePID, err := WritePIDFile(pidFile)
	if err != nil {
		return nil, Fail(stderr, prog, fmt.Errorf("pid file: %w", err)), true
	}
	return removePID, 0, false
}

// CPUProfile writes a CPU profile (runtime/pprof) to path until the
// returned stop is called; an empty path profiles nothing.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
