//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

// The load harness (issue 9): with -load wrk the demo drives the online
// server with wrk for -duration instead of its own bounded Go client, and
// reports what the copy cost: requests per second on both servers, the
// loss, the CPU time of tcpcopy and intercept per 1,000 copied requests,
// and their peak RSS. -server nginx serves with nginx (Debian's) instead of
// the demo's Go server.

// requestCounter is a server that can say how many requests it handled.
type requestCounter interface{ count() int64 }

func (c *counter) count() int64 { return c.n.Load() }

// nginxServer is an nginx started in a namespace; it counts requests with
// stub_status on a loopback port that no NFQUEUE rule or route touches.
type nginxServer struct {
	ns   *netlab.NS
	base int64 // the status requests themselves
}

const nginxConf = `daemon off;
worker_processes 1;
worker_rlimit_nofile 19000;
pid %[1]s/nginx.pid;
error_log stderr error;
events { worker_connections 18000; }
http {
	access_log off;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
	keepalive_requests 1000000;
	server {
		listen %[2]s:80 reuseport backlog=4096;
		location / { root %[1]s; try_files /answer.txt =404; }
	}
	server {
		listen 127.0.0.1:8099;
		location / { stub_status; }
	}
}
`

func startNginx(ns *netlab.NS, addr, dir string) (*nginxServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	// The same answer as the Go server's: a few segments.
	if err := os.WriteFile(filepath.Join(dir, "answer.txt"), []byte(strings.Repeat("tcpcopy demo answer\n", 200)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, addr), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "nginx.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := ns.Command("nginx", "-c", conf, "-p", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	ns.StartCmd(cmd)
	s := &nginxServer{ns: ns}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err = s.status(); err == nil {
			s.base = 0
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(logf.Name())
	return nil, fmt.Errorf("nginx in %s did not come up: %v\n%s", ns.Name(), err, out)
}

var nginxRequests = regexp.MustCompile(`\n\s*\d+\s+\d+\s+(\d+)`)

// status reads nginx's request counter (which counts this request too).
func (s *nginxServer) status() (int64, error) {
	var n int64
	err := s.ns.Do(func() error {
		// Dialed here, on the namespace's thread: an http.Client would
		// dial from a goroutine of its own, outside the namespace.
		c, err := net.DialTimeout("tcp", "127.0.0.1:8099", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		m := nginxRequests.FindSubmatch(b)
		if m == nil {
			return fmt.Errorf("unexpected stub_status answer %q", b)
		}
		n, err = strconv.ParseInt(string(m[1]), 10, 64)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.base++
	return n - s.base, nil
}

func (s *nginxServer) count() int64 {
	n, _ := s.status()
	return n
}

// wrk runs the load generator in the client namespace and returns the
// requests per second it reports.
func (d *demo) wrk(ctx context.Context) (float64, error) {
	o := d.o
	args := []string{"-t", "2", "-c", strconv.Itoa(o.connections), "-d", o.duration.String(), "--latency"}
	if o.short {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, d.onlineURL+"/bench")
	cmd := d.client.Command("wrk", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	if o.verbose {
		fmt.Printf("%s", out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no rate:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// usage is what the kernel accounted to a process so far.
type usage struct {
	cpu    time.Duration // user + system
	peakKB int64         // VmHWM
}

func procUsage(pid int) (usage, error) {
	var u usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			u.peakKB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return u, nil
}

// benchReport is one line of the harness's results.
func benchReport(o *options, onlineRate, targetRate float64, online, target int64, tc, ic usage) string {
	want := online * int64(o.copies)
	loss := 0.0
	if want > 0 {
		loss = 100 * float64(want-target) / float64(want)
	}
	per := func(u usage) float64 {
		if target == 0 {
			return 0
		}
		return float64(u.cpu.Microseconds()) / 1000 / (float64(target) / 1000)
	}
	mode := "keep-alive"
	if o.short {
		mode = "short"
	}
	return fmt.Sprintf("server=%s deployment=%s mode=%s conns=%d tcpcopy_cpus=%s online=%d (%.0f/s) target=%d (%.0f/s) loss=%.3f%% "+
		"tcpcopy_cpu=%.1fms/1k intercept_cpu=%.1fms/1k tcpcopy_rss=%.1fMiB intercept_rss=%.1fMiB",
		o.server, o.deployment, mode, o.connections, cpusLabel(o.cpus), online, onlineRate, target, targetRate, loss,
		per(tc), per(ic), float64(tc.peakKB)/1024, float64(ic.peakKB)/1024)
}

func cpusLabel(n int) string {
	if n == 0 {
		return "all"
	}
	return strconv.Itoa(n)
}

// pinned wraps a command line so the program runs on its first n CPUs
// with GOMAXPROCS=n (n 0: unpinned).
func pinned(n int, path string, args []string) (string, []string) {
	if n == 0 {
		return path, args
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return path, args
	}
	return "env", append([]string{"GOMAXPROCS=" + strconv.Itoa(n), "taskset", "-c", fmt.Sprintf("0-%d", n-1), path}, args...)
}
