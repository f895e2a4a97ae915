package tcpcopy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"github.com/shadowcopy/tcpcopy/replay"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session"
)

// Offline replay in the copying lab (lab_linux_test.go): real HTTP
// traffic between the lab's client and online server is recorded on the
// online host, by the library (AF_PACKET capture written by emit's pcap
// writer) or by tcpdump or dumpcap in each link type they write; then the
// file is replayed through a Pacer and a Copier on the online host against
// the target, with NFQUEUE intercept, as TCPCopy's offline mode does. The
// target must serve the very requests the online server served (count and
// request lines). The client takes no part in the replay.

// recorder records the traffic on the online host's client-side link.
type recorder interface {
	// stop ends the recording and returns the file's path.
	stop(t *testing.T) string
}

// onlineIf is the online host's interface toward the client: the lab's
// first link, checked by its address.
func onlineIf(t *testing.T, l *copyLab) string {
	t.Helper()
	want := netip.MustParseAddrPort(l.onlineAddr).Addr()
	for _, p := range l.online.Addrs("veth0") {
		if p.Addr() == want {
			return "veth0"
		}
	}
	t.Fatalf("the online host's veth0 does not hold %v", want)
	return ""
}

// libRecorder captures with AF_PACKET and writes with emit.PcapWriter.
type libRecorder struct {
	capt *capture.AFPacket
	w    *emit.PcapWriter
	f    *os.File
	path string
	done chan error
}

func startLibRecorder(t *testing.T, l *copyLab, ethernet bool) *libRecorder {
	t.Helper()
	r := &libRecorder{path: filepath.Join(t.TempDir(), "lib.pcap"), done: make(chan error, 1)}
	var err error
	if r.f, err = os.Create(r.path); err != nil {
		t.Fatal(err)
	}
	if r.w, err = emit.NewPcapWriter(r.f, &emit.PcapWriterConfig{Ethernet: ethernet, Nanosecond: true}); err != nil {
		t.Fatal(err)
	}
	ifname := onlineIf(t, l)
	r.capt = netlab.Open(t, l.online, func() (*capture.AFPacket, error) {
		return capture.NewAFPacket(&capture.AFPacketConfig{Interfaces: []string{ifname}})
	})
	go func() {
		pkts := make([]capture.Packet, 64)
		for {
			n, err := r.capt.ReadPackets(pkts)
			for i := range pkts[:n] {
				if werr := r.w.WritePacket(pkts[i].Time, pkts[i].Data); werr != nil {
					r.done <- werr
					return
				}
			}
			if err != nil {
				if errors.Is(err, capture.ErrClosed) {
					err = nil
				}
				r.done <- err
				return
			}
		}
	}()
	return r
}

func (r *libRecorder) stop(t *testing.T) string {
	t.Helper()
	r.capt.Close()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("recorder: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("recorder did not stop")
	}
	t.Logf("library recorder: %+v", r.capt.Stats())
	if err := r.w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.f.Close(); err != nil {
		t.Fatal(err)
	}
	return r.path
}

// toolRecorder is tcpdump or dumpcap writing a file in the online
// namespace.
type toolRecorder struct {
	cmd  *exec.Cmd
	pw   *io.PipeWriter
	mu   sync.Mutex
	out  strings.Builder
	path string
}

// startTool starts tool with args (and -w FILE) and returns once the tool
// says it is capturing (ready on its output).
func startTool(t *testing.T, ns *netlab.NS, tool, ready, file string, args ...string) *toolRecorder {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		pkg := map[string]string{"tcpdump": "tcpdump", "dumpcap": "wireshark-common"}[tool]
		t.Skipf("skipping: %s is not installed (Debian package %s)", tool, pkg)
	}
	r := &toolRecorder{path: filepath.Join(t.TempDir(), file)}
	r.cmd = ns.Command(tool, append(args, "-w", r.path)...)
	pr, pw := io.Pipe()
	r.pw = pw
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	ns.StartCmd(r.cmd)
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		var once sync.Once
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), ready) {
				once.Do(func() { close(started) })
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("%s %v did not start:\n%s", tool, args, r.out.String())
	}
	// dumpcap says so a moment before its capture is open.
	time.Sleep(200 * time.Millisecond)
	return r
}

// stop ends the tool with SIGINT (it closes the file properly) and waits.
func (r *toolRecorder) stop(t *testing.T) string {
	t.Helper()
	time.Sleep(100 * time.Millisecond) // the last packets reach the file (-U)
	r.cmd.Process.Signal(syscall.SIGINT)
	err := r.cmd.Wait()
	r.pw.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v\n%s", r.cmd.Args[4], err, r.out.String())
	}
	t.Logf("%s: %s", r.cmd.Args[4], strings.TrimSpace(r.out.String()))
	return r.path
}

// recorders by name; the file's link type is in the name.
var recorders = map[string]func(t *testing.T, l *copyLab) recorder{
	"lib-RAW":    func(t *testing.T, l *copyLab) recorder { return startLibRecorder(t, l, false) },
	"lib-EN10MB": func(t *testing.T, l *copyLab) recorder { return startLibRecorder(t, l, true) },
	"tcpdump-EN10MB": func(t *testing.T, l *copyLab) recorder {
		return startTool(t, l.online, "tcpdump", "listening on", "en.pcap",
			"-n", "-U", "--immediate-mode", "-B", "32768", "-i", onlineIf(t, l), "-y", "EN10MB", "tcp port 80")
	},
	"tcpdump-LINUX_SLL": func(t *testing.T, l *copyLab) recorder {
		return startTool(t, l.online, "tcpdump", "listening on", "sll.pcap",
			"-n", "-U", "--immediate-mode", "-B", "32768", "-i", "any", "-y", "LINUX_SLL", "tcp port 80")
	},
	"tcpdump-LINUX_SLL2-nano": func(t *testing.T, l *copyLab) recorder {
		return startTool(t, l.online, "tcpdump", "listening on", "sll2.pcap",
			"-n", "-U", "--immediate-mode", "-B", "32768", "-i", "any", "-y", "LINUX_SLL2",
			"--time-stamp-precision=nano", "tcp port 80")
	},
	// tcpdump 4.99 writes pcap only; dumpcap writes pcapng.
	"dumpcap-pcapng": func(t *testing.T, l *copyLab) recorder {
		return startTool(t, l.online, "dumpcap", "Capturing on", "rec.pcapng",
			"-i", onlineIf(t, l), "-f", "tcp port 80", "-q")
	},
}

// traffic makes HTTP requests from the client to the online server: a
// keep-alive connection with small and large answers and an upload, and
// short connections; gap is the pause between requests.
func traffic(l *copyLab, tag string, gap time.Duration) {
	hc := l.httpClient(true)
	for i := range 4 {
		l.get(hc, fmt.Sprintf("/%s/keepalive/%d", tag, i))
		time.Sleep(gap)
	}
	l.get(hc, fmt.Sprintf("/big/%d", 300000))
	l.do(hc, "POST", fmt.Sprintf("/%s/upload", tag), 20000)
	hc.CloseIdleConnections() // the client closes: its FIN is in the capture
	short := l.httpClient(false)
	for i := range 3 {
		l.get(short, fmt.Sprintf("/%s/short/%d", tag, i))
		time.Sleep(gap)
	}
	time.Sleep(100 * time.Millisecond) // the closing handshakes
}

// replayOptions vary replayFile.
type replayOptions struct {
	cfg         replay.Config // Open is set by replayFile
	drain       time.Duration // zero: 20 s
	roundCopies bool          // give each round connections of its own
}

// replayFile replays path with a Pacer and a Copier on the online host
// (raw IP emit, one session table per shard, intercept through the lab's
// client) until the file ends and the sessions drain, and returns the
// report.
func replayFile(t *testing.T, l *copyLab, path string, o replayOptions) replay.Report {
	t.Helper()
	cfg := o.cfg
	cfg.Open = replay.FileOpener(path, nil)
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
	}
	p, err := replay.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	em := netlab.Open(t, l.online, func() (*emit.RawIP, error) { return emit.NewRawIP(nil) })
	transfer, err := rewrite.ParseTransfer(l.onlineAddr + "-" + l.targetAddr)
	if err != nil {
		t.Fatal(err)
	}
	var rw rewrite.Rewriter = transfer
	if o.roundCopies {
		copies, err := rewrite.NewCopies(&rewrite.CopiesConfig{Copies: max(cfg.Repeat, 1), Clock: p.Now})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := replay.NewRoundCopies(p, copies, 1)
		if err != nil {
			t.Fatal(err)
		}
		rw = rewrite.Chain(transfer, rc)
	}
	drain := o.drain
	if drain == 0 {
		drain = 20 * time.Second
	}
	var tables []*session.Table
	copier, err := tcpcopy.NewCopier(&tcpcopy.Config{
		Capturer: p,
		Rewriter: rw,
		Clock:    p.Now, // the clock the packets are stamped on
		Drain:    drain,
		NewTable: func(int) tcpcopy.SessionTable {
			c := l.opts.session
			c.Emitter = em
			c.OnOpen = func(c, tg capture.Endpoint) { l.ic.Announce(c, tg) }
			c.OnClose = func(c, tg capture.Endpoint) { l.ic.Remove(c, tg) }
			tab := session.New(&c)
			tables = append(tables, tab)
			return tab
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.tables = tables
	l.copier = copier // the intercept client hands it the responses
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Minute)
	defer cancel()
	if err := copier.Run(ctx); err != nil {
		t.Fatalf("copier: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the replay did not end in time")
	}
	var stats []session.Stats
	for _, tab := range tables {
		stats = append(stats, tab.Stats())
	}
	cs := copier.Stats()
	r := replay.Summarize(p.Stats(), replay.CopierCounts{
		Captured: cs.Captured, Filtered: cs.Filtered, Dispatched: cs.Dispatched, Responses: cs.Responses,
	}, stats...)
	t.Logf("replay report:\n%s", r)
	return r
}

// checkServed waits (bounded) until the target served as many requests as
// want holds and compares the request lines.
func checkServed(t *testing.T, l *copyLab, want []string) {
	t.Helper()
	got := l.waitTarget(len(want))
	want, got = slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))
	if !slices.Equal(got, want) {
		t.Fatalf("target served %d requests, want %d:\n target %q\n want   %q", len(got), len(want), trim(got), trim(want))
	}
	t.Logf("target served the %d requests of the capture", len(got))
}

// TestReplayLinkTypes records the same kind of traffic in each link type
// and file format and replays it at four times its speed.
func TestReplayLinkTypes(t *testing.T) {
	for _, name := range []string{
		"lib-RAW", "lib-EN10MB", "tcpdump-EN10MB", "tcpdump-LINUX_SLL", "tcpdump-LINUX_SLL2-nano", "dumpcap-pcapng",
	} {
		t.Run(name, func(t *testing.T) {
			l := newCopyLab(t, labOptions{noCopier: true})
			rec := recorders[name](t, l)
			traffic(l, name, 20*time.Millisecond)
			path := rec.stop(t)
			online := l.onlineSrv.handled()
			r := replayFile(t, l, path, replayOptions{cfg: replay.Config{Speed: 4}})
			checkServed(t, l, online)
			checkReport(t, r, 1+3, 0)
		})
	}
}

// checkReport checks the session figures of a replay whose capture holds
// sessions connections, forged of them without a SYN.
func checkReport(t *testing.T, r replay.Report, sessions, forged uint64) {
	t.Helper()
	if r.Sessions != sessions || r.Complete != sessions || r.NoSYN != forged || r.Filtered == 0 {
		t.Errorf("report: %d sessions (%d complete, %d without SYN), %d filtered; want %d complete, %d without SYN, the server's packets filtered",
			r.Sessions, r.Complete, r.NoSYN, r.Filtered, sessions, forged)
	}
	if r.Rounds < 1 || r.Packets == 0 || r.TimingSamples == 0 {
		t.Errorf("report: %+v", r)
	}
}

func TestReplayIPv6(t *testing.T) {
	l := newCopyLab(t, labOptions{noCopier: true, ipv6: true})
	rec := recorders["tcpdump-LINUX_SLL2-nano"](t, l)
	traffic(l, "v6", 10*time.Millisecond)
	path := rec.stop(t)
	online := l.onlineSrv.handled()
	r := replayFile(t, l, path, replayOptions{cfg: replay.Config{Speed: 2}})
	checkServed(t, l, online)
	checkReport(t, r, 1+3, 0)
}

// TestReplayMidConnection replays a capture that starts while a keep-alive
// connection is open: its handshake is forged, and only the requests in
// the capture reach the target.
func TestReplayMidConnection(t *testing.T) {
	l := newCopyLab(t, labOptions{noCopier: true})
	hc := l.httpClient(true)
	l.get(hc, "/before/1")
	l.get(hc, "/before/2")
	rec := recorders["lib-RAW"](t, l)
	time.Sleep(100 * time.Millisecond) // the ring is up
	for i := range 3 {
		l.get(hc, fmt.Sprintf("/after/%d", i))
	}
	hc.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	path := rec.stop(t)
	r := replayFile(t, l, path, replayOptions{cfg: replay.Config{}})
	checkServed(t, l, []string{"GET /after/0", "GET /after/1", "GET /after/2"})
	checkReport(t, r, 1, 1)
}

// TestReplaySpeedFactor records about 4.5 s of traffic with a 2 s idle
// stretch and replays it at -a 4 with -I 500, sleeping and spinning the
// last 2 ms of each wait: each replay should take about
// (4.5 - 1.5) / 4 s. The figures are logged, not asserted (timed
// assertions are flaky on shared machines); the requests are checked.
// Each replay gets a lab of its own: the target keeps TIME-WAIT for the
// connections it closed, which a second replay of the same ports and
// sequence numbers would meet. The file's addresses are the same in every
// lab.
func TestReplaySpeedFactor(t *testing.T) {
	dir := t.TempDir()
	var path string
	var online []string
	var recorded time.Duration
	t.Run("record", func(t *testing.T) {
		l := newCopyLab(t, labOptions{noCopier: true})
		rec := recorders["lib-RAW"](t, l)
		begin := time.Now()
		traffic(l, "first", 150*time.Millisecond)
		time.Sleep(2 * time.Second) // idle
		traffic(l, "second", 150*time.Millisecond)
		tmp := rec.stop(t)
		recorded = time.Since(begin)
		online = l.onlineSrv.handled()
		path = filepath.Join(dir, "speed.pcap")
		b, err := os.ReadFile(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if path == "" {
		t.FailNow()
	}
	for _, spin := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprintf("spin=%v", spin), func(t *testing.T) {
			l := newCopyLab(t, labOptions{noCopier: true})
			begin := time.Now()
			r := replayFile(t, l, path, replayOptions{cfg: replay.Config{
				Speed: 4, MaxIdle: 500 * time.Millisecond, Clock: replay.RealClock{Spin: spin},
			}})
			took := time.Since(begin)
			checkServed(t, l, online)
			if r.GapsSkipped < 1 {
				t.Errorf("no idle gap skipped: %+v", r)
			}
			t.Logf("clock spin %v: recorded %v, capture span %v, %d gap(s) skipped (%v): due in %v at -a 4; replay took %v (drain included), speed achieved %.2f; timing error median %v, p99 %v, max %v over %d packets",
				spin, recorded.Round(time.Millisecond), r.Span, r.GapsSkipped, r.TimeSkipped, (r.Span-r.TimeSkipped)/4,
				took.Round(time.Millisecond), r.Speed, r.TimingMedian, r.TimingP99, r.TimingMax, r.TimingSamples)
		})
	}
}

// TestReplayRepeat replays a capture twice (-T 2), each round with
// connections of its own (RoundCopies): the target serves every request
// twice, also of the connections it closed itself (TIME-WAIT there).
func TestReplayRepeat(t *testing.T) {
	l := newCopyLab(t, labOptions{noCopier: true})
	rec := recorders["lib-RAW"](t, l)
	traffic(l, "repeat", 10*time.Millisecond)
	path := rec.stop(t)
	online := l.onlineSrv.handled()
	r := replayFile(t, l, path, replayOptions{cfg: replay.Config{Repeat: 2, Speed: 2}, roundCopies: true})
	checkServed(t, l, append(slices.Clone(online), online...))
	if r.Rounds != 2 || r.Sessions != 8 || r.Complete != 8 {
		t.Errorf("report: %d rounds, %d sessions, %d complete; want 2, 8, 8", r.Rounds, r.Sessions, r.Complete)
	}
}
