//go:build linux

// Command demo shows the classic pair at work in one command: as root it
// builds a lab of network namespaces on this machine (client, online,
// target, assistant; addresses from 198.18.0.0/15 only), starts an HTTP
// server on the online and the target hosts, runs the intercept and tcpcopy
// programs (built from this module), drives a bounded client load at the
// online server, and prints what each server handled and the copy ratio.
// Everything it made is removed when it ends, also on Ctrl-C.
//
//	go run ./examples/demo                       # assistant deployment
//	go run ./examples/demo -deployment nfqueue -n 2 -requests 500
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

type options struct {
	deployment  string
	copies      int
	requests    int
	concurrency int
	bin         string
	verbose     bool
	hold        time.Duration

	// The load harness (bench.go).
	load        string
	server      string
	duration    time.Duration
	connections int
	short       bool
	cpus        int
	profile     string
	tcpcopyArgs string
}

func main() {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&o.deployment, "deployment", "assistant", "where intercept runs: assistant (TCPCopy 1.x default: an assistant host black-holes the responses) or nfqueue (on the target, with an iptables NFQUEUE rule)")
	fs.IntVar(&o.copies, "n", 1, "copies of each connection (tcpcopy -n)")
	fs.IntVar(&o.requests, "requests", 200, "HTTP requests the clients make to the online server (at most 100000)")
	fs.IntVar(&o.concurrency, "concurrency", 4, "clients making requests at once (at most 64)")
	fs.StringVar(&o.bin, "bin", "", "directory with prebuilt tcpcopy and intercept binaries (default: go build them into a temporary directory)")
	fs.BoolVar(&o.verbose, "v", false, "show the programs' logs")
	fs.DurationVar(&o.hold, "hold", 0, "keep the lab up this long after the load, to look around (ip netns list)")
	fs.StringVar(&o.load, "load", "go", "load generator: go (the demo's bounded client, -requests) or wrk (flat out for -duration, and a cost report: the load harness)")
	fs.StringVar(&o.server, "server", "go", "HTTP server on the online and target hosts: go or nginx")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "with -load wrk: how long wrk runs (at most 5m)")
	fs.IntVar(&o.connections, "connections", 50, "with -load wrk: connections wrk keeps open (at most 10000; raise ulimit -n)")
	fs.BoolVar(&o.short, "short", false, "with -load wrk: one request per connection (Connection: close)")
	fs.StringVar(&o.profile, "profile", "", "write CPU profiles of tcpcopy and intercept into this directory (tcpcopy.prof, intercept.prof)")
	fs.StringVar(&o.tcpcopyArgs, "tcpcopy-flags", "", "more tcpcopy flags, space-separated (the online host's interface from the client is veth0: -tcpcopy-flags '-i veth0' captures with AF_PACKET)")
	fs.IntVar(&o.cpus, "cpus", 0, "run tcpcopy on this many CPUs (taskset and GOMAXPROCS; 0: all)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./examples/demo [options]   (as root)\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	switch {
	case o.deployment != "assistant" && o.deployment != "nfqueue":
		fmt.Fprintf(os.Stderr, "demo: invalid value %q for flag -deployment: must be assistant or nfqueue\n", o.deployment)
		os.Exit(2)
	case o.copies < 1 || o.copies > 16:
		fmt.Fprintf(os.Stderr, "demo: invalid value %d for flag -n: must be in [1, 16]\n", o.copies)
		os.Exit(2)
	case o.requests < 1 || o.requests > 100000:
		fmt.Fprintf(os.Stderr, "demo: invalid value %d for flag -requests: must be in [1, 100000]\n", o.requests)
		os.Exit(2)
	case o.concurrency < 1 || o.concurrency > 64:
		fmt.Fprintf(os.Stderr, "demo: invalid value %d for flag -concurrency: must be in [1, 64]\n", o.concurrency)
		os.Exit(2)
	case o.load != "go" && o.load != "wrk":
		fmt.Fprintf(os.Stderr, "demo: invalid value %q for flag -load: must be go or wrk\n", o.load)
		os.Exit(2)
	case o.server != "go" && o.server != "nginx":
		fmt.Fprintf(os.Stderr, "demo: invalid value %q for flag -server: must be go or nginx\n", o.server)
		os.Exit(2)
	case o.duration < time.Second || o.duration > 5*time.Minute:
		fmt.Fprintf(os.Stderr, "demo: invalid value %v for flag -duration: must be in [1s, 5m]\n", o.duration)
		os.Exit(2)
	case o.connections < 1 || o.connections > 10000:
		fmt.Fprintf(os.Stderr, "demo: invalid value %d for flag -connections: must be in [1, 10000]\n", o.connections)
		os.Exit(2)
	case o.cpus < 0 || o.cpus > 64:
		fmt.Fprintf(os.Stderr, "demo: invalid value %d for flag -cpus: must be in [0, 64]\n", o.cpus)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, &o)
	if ctx.Err() != nil {
		fmt.Println("demo: interrupted; everything it made is removed")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// say prints a line of the demo's narration.
func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

type reporter struct{}

func (reporter) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lab: "+format+"\n", args...)
}

func run(ctx context.Context, o *options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run me as root: the demo builds network namespaces (sudo go run ./examples/demo)")
	}
	for _, tool := range []string{"ip", "iptables", "wrk", "nginx"} {
		needed := tool == "ip" || tool == "iptables" && o.deployment == "nfqueue" ||
			tool == "wrk" && o.load == "wrk" || tool == "nginx" && o.server == "nginx"
		if _, err := exec.LookPath(tool); err != nil && needed {
			return fmt.Errorf("%s not found: apt-get install -y iproute2 iptables wrk nginx-light", tool)
		}
	}
	bin := o.bin
	if bin == "" {
		dir, err := os.MkdirTemp("", "tcpcopy-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		say("building tcpcopy and intercept into %s ...", dir)
		if err := build(ctx, dir); err != nil {
			return err
		}
		bin = dir
	}
	lab, err := netlab.NewStandalone(reporter{})
	if err != nil {
		return err
	}
	defer func() {
		cerr := lab.Close()
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		say("lab removed: namespaces, links, rules and processes")
	}()
	var d *demo
	if err := lab.Try(func() { d = setup(lab, o) }); err != nil {
		return err
	}
	if o.server == "nginx" {
		dir, err := os.MkdirTemp("", "tcpcopy-demo-nginx-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := lab.Try(func() {
			if d.onlineSrv, err = startNginx(d.online, onlineIP, filepath.Join(dir, "online")); err == nil {
				d.targetSrv, err = startNginx(d.target, targetIP, filepath.Join(dir, "target"))
			}
		}); err != nil {
			return err
		}
		if err != nil {
			return err
		}
	}
	defer d.closeServers()
	stopWatch, err := d.watchLeaks()
	if err != nil {
		return err
	}
	defer stopWatch()
	return d.run(ctx, lab, bin)
}

// build compiles the two programs from the module the demo runs in.
func build(ctx context.Context, dir string) error {
	for _, name := range []string{"tcpcopy", "intercept"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name),
			"github.com/shadowcopy/tcpcopy/examples/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s (run the demo from the repository, or give -bin): %v\n%s", name, err, out)
		}
	}
	return nil
}

// demo is the lab and what runs in it.
type demo struct {
	o                                 *options
	client, online, target, assistant *netlab.NS
	toTarget                          string // the assistant's interface facing the target
	onlineURL                         string
	interceptAddr                     string
	onlineSrv, targetSrv              requestCounter
	servers                           []*http.Server
	clientSaw                         atomic.Int64 // packets from the target that reached the client
}

// watchLeaks counts the TCP packets from the target that reach the client
// namespace (a raw IP socket sees every TCP datagram delivered there): a
// response that escaped intercept would show up here.
func (d *demo) watchLeaks() (stop func(), err error) {
	var capt *capture.RawIP
	if err := d.client.Do(func() (err error) { capt, err = capture.NewRawIP(nil); return err }); err != nil {
		return nil, err
	}
	target := netip.MustParseAddr(targetIP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		capture.Count(capt, &d.clientSaw, func(p *capture.Packet) bool { return p.Src() == target })
	}()
	return func() { capt.Close(); <-done }, nil
}

// Addresses: all from 198.18.0.0/15.
const (
	clientIP     = "198.18.0.1"
	onlineIP     = "198.18.0.2"
	routerIP     = "198.18.1.1"
	targetIP     = "198.18.1.2"
	targetToAsst = "198.18.2.1"
	asstFromTgt  = "198.18.2.2"
	onlineToAsst = "198.18.3.1"
	asstIP       = "198.18.3.2"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func setup(lab *netlab.Standalone, o *options) *demo {
	d := &demo{o: o}
	d.client = lab.Namespace("client")
	d.online = lab.Namespace("online")
	d.target = lab.Namespace("target")
	d.assistant = lab.Namespace("assistant")
	lab.Link(d.client, pfx(clientIP+"/24"), d.online, pfx(onlineIP+"/24"))
	lab.Link(d.online, pfx(routerIP+"/24"), d.target, pfx(targetIP+"/24"))
	_, d.toTarget = lab.Link(d.target, pfx(targetToAsst+"/24"), d.assistant, pfx(asstFromTgt+"/24"))
	lab.Link(d.online, pfx(onlineToAsst+"/24"), d.assistant, pfx(asstIP+"/24"))
	d.client.AddRoute(pfx("198.18.1.0/24"), netip.MustParseAddr(onlineIP))
	for _, ns := range []*netlab.NS{d.target, d.assistant, d.online} {
		ns.Sysctl("net.ipv4.conf.all.rp_filter", "0")
		ns.Sysctl("net.ipv4.conf.default.rp_filter", "0")
	}
	// The online host forwards, so a response that escaped intercept would
	// reach the real client: the demo shows none does.
	d.online.Sysctl("net.ipv4.ip_forward", "1")
	d.assistant.Sysctl("net.ipv4.ip_forward", "0")
	if o.deployment == "assistant" {
		// TCPCopy's recipe: on the target, route the clients to the
		// assistant, which black-holes what it receives for them.
		d.target.AddRoute(pfx("198.18.0.0/24"), netip.MustParseAddr(asstFromTgt))
		d.interceptAddr = asstIP
	} else {
		d.target.AddRoute(pfx("198.18.0.0/24"), netip.MustParseAddr(routerIP))
		d.interceptAddr = targetIP
	}
	d.onlineURL = "http://" + onlineIP
	if o.server == "go" {
		onlineSrv, targetSrv := &counter{}, &counter{}
		d.onlineSrv, d.targetSrv = onlineSrv, targetSrv
		d.servers = append(d.servers,
			serve(d.online.Listen("tcp4", onlineIP+":80"), onlineSrv),
			serve(d.target.Listen("tcp4", targetIP+":80"), targetSrv))
	}
	return d
}

func (d *demo) closeServers() {
	for _, s := range d.servers {
		s.Close()
	}
}

func (d *demo) run(ctx context.Context, lab *netlab.Standalone, bin string) error {
	o := d.o
	say("lab up (deployment %s):", o.deployment)
	say("  client %s -- %s online %s -- %s target", clientIP, onlineIP, routerIP, targetIP)
	if o.deployment == "assistant" {
		say("  target %s -- %s assistant %s -- %s online; target routes 198.18.0.0/24 to the assistant (ip_forward off)",
			targetToAsst, asstFromTgt, asstIP, onlineToAsst)
	} else {
		say("  intercept on the target with the NFQUEUE rule for port 80 (installed by intercept --rules 80)")
	}
	say("  HTTP servers on %s:80 (online) and %s:80 (target)", onlineIP, targetIP)

	var icArgs []string
	icNS := d.assistant
	if o.deployment == "assistant" {
		icArgs = []string{"-i", d.toTarget, "-F", "tcp and src port 80", "-b", asstIP}
	} else {
		icNS = d.target
		icArgs = []string{"--rules", "80", "--rules-family", "ipv4", "-b", targetIP}
	}
	icArgs = append(icArgs, "--stats-interval", "5")
	if o.profile != "" {
		icArgs = append(icArgs, "--cpu-profile", filepath.Join(o.profile, "intercept.prof"))
	}
	tcArgs := []string{"-x", onlineIP + ":80-" + targetIP + ":80", "-s", d.interceptAddr, "-n", fmt.Sprint(o.copies), "--stats-interval", "5"}
	if o.profile != "" {
		tcArgs = append(tcArgs, "--cpu-profile", filepath.Join(o.profile, "tcpcopy.prof"))
	}
	tcArgs = append(tcArgs, strings.Fields(o.tcpcopyArgs)...)

	var ic, tc *proc
	if err := lab.Try(func() {
		ic = start(icNS, "intercept", filepath.Join(bin, "intercept"), icArgs, o.verbose)
	}); err != nil {
		return err
	}
	say("$ intercept %s", shellJoin(icArgs))
	if err := ic.waitReady(ctx, 15*time.Second); err != nil {
		return err
	}
	if err := lab.Try(func() {
		path, args := pinned(o.cpus, filepath.Join(bin, "tcpcopy"), tcArgs)
		tc = start(d.online, "tcpcopy", path, args, o.verbose)
	}); err != nil {
		return err
	}
	say("$ tcpcopy %s", shellJoin(tcArgs))
	if err := tc.waitReady(ctx, 15*time.Second); err != nil {
		return err
	}

	var failed int64
	loadStart := time.Now()
	if o.load == "wrk" {
		mode := "keep-alive"
		if o.short {
			mode = "short connections"
		}
		say("driving wrk for %v with %d %s at http://%s/ ...", o.duration, o.connections, mode, onlineIP)
		rate, err := d.wrk(ctx)
		if err != nil {
			return err
		}
		say("wrk: %.0f requests/s", rate)
	} else {
		say("driving %d requests from %d clients at http://%s/ (half of them on keep-alive connections) ...", o.requests, o.concurrency, onlineIP)
		failed = d.load(ctx)
	}
	loadTime := time.Since(loadStart)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	online := d.onlineSrv.count()
	want := online * int64(o.copies)
	// Wait (bounded) for the copies to reach the target.
	deadline := time.Now().Add(30 * time.Second)
	last, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		got := d.targetSrv.count()
		if got >= want {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > 5*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if o.hold > 0 {
		say("holding the lab for %v (Ctrl-C to end) ...", o.hold)
		select {
		case <-time.After(o.hold):
		case <-ctx.Done():
		}
	}
	tcUse, tcErr := procUsage(tc.cmd.Process.Pid)
	icUse, icErr := procUsage(ic.cmd.Process.Pid)
	tcFinal := tc.stop(10 * time.Second)
	icFinal := ic.stop(10 * time.Second)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	got := d.targetSrv.count()
	say("")
	say("online server handled %d requests (%d client errors)", online, failed)
	say("target server handled %d requests (tcpcopy -n %d)", got, o.copies)
	ratio := 0.0
	if want > 0 {
		ratio = 100 * float64(got) / float64(want)
	}
	say("copy ratio: %.2f%% (%d of %d)", ratio, got, want)
	say("tcpcopy final report:   %s", tcFinal)
	say("intercept final report: %s", icFinal)
	say("packets from the target that reached the real client: %d", d.clientSaw.Load())
	if o.load == "wrk" {
		if tcErr != nil || icErr != nil {
			return fmt.Errorf("reading the programs' usage: %v %v", tcErr, icErr)
		}
		say("bench: %s", benchReport(o, float64(online)/loadTime.Seconds(), float64(got)/loadTime.Seconds(), online, got, tcUse, icUse))
	}
	if got < want {
		return fmt.Errorf("the target handled %d requests of %d", got, want)
	}
	return nil
}

// load makes o.requests requests from the client namespace and returns how
// many failed.
func (d *demo) load(ctx context.Context) int64 {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = d.client.Do(func() error {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	keep := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64}}
	short := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	defer keep.CloseIdleConnections()
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range d.o.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(d.o.requests) {
					return
				}
				hc := keep
				if i%2 == 1 {
					hc = short
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/demo/%d", d.onlineURL, i), nil)
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return failed.Load()
}

// counter is an HTTP server that counts the requests it handled.
type counter struct{ n atomic.Int64 }

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	// An answer of a few segments, so responses take more than one packet.
	io.WriteString(w, strings.Repeat("tcpcopy demo answer\n", 200))
}

func serve(ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv
}

// proc is one of the programs, started in a namespace.
type proc struct {
	name  string
	cmd   *exec.Cmd
	ready chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	final string
	tail  []string
}

func start(ns *netlab.NS, name, path string, args []string, verbose bool) *proc {
	p := &proc{name: name, ready: make(chan struct{}), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd = ns.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	ns.StartCmd(p.cmd)
	go func() {
		p.cmd.Wait()
		pw.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		readyOnce := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if verbose {
				fmt.Printf("  [%s] %s\n", name, line)
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			if strings.Contains(line, `msg="final report"`) {
				p.final = summary(line)
			}
			p.mu.Unlock()
			if strings.Contains(line, "msg=ready") {
				readyOnce.Do(func() { close(p.ready) })
			}
		}
		io.Copy(io.Discard, pr)
	}()
	return p
}

func (p *proc) waitReady(ctx context.Context, limit time.Duration) error {
	select {
	case <-p.ready:
		return nil
	case <-p.done:
	case <-time.After(limit):
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Errorf("%s did not become ready; its last lines:\n  %s", p.name, strings.Join(p.tail, "\n  "))
}

// stop sends SIGTERM and waits (bounded) for the program to print its final
// report and exit; the lab kills it later if it does not.
func (p *proc) stop(limit time.Duration) string {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.final == "" {
		return "(none)"
	}
	return p.final
}

// summary keeps the short statistics of a final report line: the fields
// before the first full counter (the ones with a dot in their key).
func summary(line string) string {
	_, rest, ok := strings.Cut(line, `msg="final report" `)
	if !ok {
		return line
	}
	var keep []string
	for _, f := range strings.Fields(rest) {
		k, _, _ := strings.Cut(f, "=")
		if strings.Contains(k, ".") || k == "copy_ratio" || k == "uptime" {
			break
		}
		keep = append(keep, f)
	}
	return strings.Join(keep, " ")
}

// shellJoin quotes the arguments that need it, for showing a command line.
func shellJoin(args []string) string {
	var out []string
	for _, a := range args {
		if strings.ContainsAny(a, " '\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}
