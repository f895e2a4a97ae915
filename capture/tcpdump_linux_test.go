package capture_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

// tcpdumpRun is tcpdump writing a file in a lab namespace.
type tcpdumpRun struct {
	cmd  *exec.Cmd
	pw   *io.PipeWriter
	out  bytes.Buffer
	mu   sync.Mutex
	path string
}

// startTcpdump starts tcpdump in ns with args, writing to a new file, and
// returns once it is capturing ("listening on" on its stderr).
func startTcpdump(t *testing.T, ns *netlab.NS, args ...string) *tcpdumpRun {
	t.Helper()
	r := &tcpdumpRun{path: filepath.Join(t.TempDir(), "rec.pcap")}
	// A 32 MiB buffer: with its default 2 MiB and a 256 KiB snap length,
	// libpcap's ring on "any" has room for a handful of packets and the
	// kernel drops the rest (tcpdump says so when it exits).
	args = append([]string{"-n", "-U", "--immediate-mode", "-s", "65575", "-B", "32768", "-w", r.path}, args...)
	r.cmd = ns.Command("tcpdump", args...)
	pr, pw := io.Pipe()
	r.pw = pw
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	ns.StartCmd(r.cmd)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("tcpdump %v did not start:\n%s", args, r.out.String())
	}
	return r
}

// stop ends tcpdump with SIGINT (it closes the file properly) and waits.
func (r *tcpdumpRun) stop(t *testing.T) string {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	err := r.cmd.Wait()
	r.pw.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("tcpdump: %v\n%s", err, r.out.String())
	}
	return r.out.String()
}

// readFile reads a whole capture file.
func readFile(t *testing.T, path string) ([]capPkt, *capture.File) {
	t.Helper()
	f, err := capture.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkts := make([]capture.Packet, 8)
	var out []capPkt
	for {
		n, err := f.ReadPackets(pkts)
		for i := range pkts[:n] {
			out = append(out, capPkt{pkts[i].Time, pkts[i].Dir, bytes.Clone(pkts[i].Data)})
		}
		if err == io.EOF {
			return out, f
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// normalized returns the packets of the client port with full checksums
// (tcpdump records what the device got: partial checksums on send with
// offload; AFPacket completes them) and, unless keepDir, no direction.
func normalized(t *testing.T, ps []capPkt, cport uint16, keepDir bool) []capPkt {
	var out []capPkt
	for _, p := range ps {
		pp := p.packet(t)
		if pp.SrcPort() != cport && pp.DstPort() != cport {
			continue
		}
		pp.ComputeChecksums()
		d := p.dir
		if !keepDir {
			d = capture.DirUnknown
		}
		out = append(out, capPkt{p.t, d, pp.Data})
	}
	return out
}

// TestTcpdumpFiles records a real TCP connection with tcpdump in every
// link type it writes on Linux (Ethernet on a veth and on lo, Linux
// cooked SLL and SLL2 on "any"; microsecond and nanosecond files) while an
// AFPacket capturer watches the same interface; File must read from each
// recording the very packets AFPacket saw, with directions where the file
// has them and timestamps close to the kernel's.
func TestTcpdumpFiles(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("skipping: tcpdump is not installed (Debian package tcpdump)")
	}
	for _, tc := range []struct {
		name    string
		iface   string // "" for any; "lo" for loopback traffic
		args    []string
		hasDir  bool
		network string
	}{
		{"EN10MB", "veth", []string{"-y", "EN10MB"}, false, "ip4"},
		{"EN10MB-nano-ip6", "veth", []string{"-y", "EN10MB", "--time-stamp-precision=nano"}, false, "ip6"},
		{"LINUX_SLL", "", []string{"-y", "LINUX_SLL"}, true, "ip4"},
		{"LINUX_SLL2", "", []string{"-y", "LINUX_SLL2"}, true, "ip6"},
		{"loopback", "lo", []string{"-y", "EN10MB"}, false, "ip4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := netlab.NewPair(t)
			l.Lab.Require("ss")
			n := labNets[0]
			if tc.network == "ip6" {
				n = labNets[1]
			}
			cli := l.A
			tdIf, afIfs := "any", []string(nil)
			dir := capture.DirUnknown
			switch tc.iface {
			case "veth":
				tdIf, afIfs = l.BIf, []string{l.BIf}
			case "lo":
				// Client and server both in B, over lo; libpcap keeps
				// only the received copy of each packet on lo.
				cli, tdIf, afIfs, dir = l.B, "lo", []string{"lo"}, capture.DirIn
			}
			const port = 8080
			af := openAFPacket(t, l.B, &capture.AFPacketConfig{Interfaces: afIfs, Direction: dir, Filter: &capture.Filter{Ports: []uint16{port}}})
			args := append(append([]string{"-i", tdIf}, tc.args...), fmt.Sprintf("tcp port %d", port))
			td := startTcpdump(t, l.B, args...)
			cport, mport := exchangeFrom(t, cli, l.B, netip.AddrPortFrom(n.b, port),
				bytes.Repeat([]byte("q"), 3000), bytes.Repeat([]byte("r"), 20000))
			live := collect(t, af, nil, isSynAck(mport))
			time.Sleep(50 * time.Millisecond) // tcpdump writes what it has read
			log := td.stop(t)
			if m := regexp.MustCompile(`(\d+) packets? dropped by kernel`).FindStringSubmatch(log); m != nil && m[1] != "0" {
				t.Fatalf("tcpdump itself lost packets, the comparison would be void:\n%s", log)
			}

			rec, f := readFile(t, td.path)
			got, want := normalized(t, rec, cport, tc.hasDir), normalized(t, live, cport, tc.hasDir)
			if len(want) < 6 {
				t.Fatalf("AFPacket saw only %d packets", len(want))
			}
			sort := func(ps []capPkt) []capPkt {
				ps = slices.Clone(ps)
				slices.SortFunc(ps, func(a, b capPkt) int {
					if c := bytes.Compare(a.data, b.data); c != 0 {
						return c
					}
					return int(a.dir) - int(b.dir)
				})
				return ps
			}
			sg, sw := sort(got), sort(want)
			if len(sg) != len(sw) {
				t.Logf("file stats %+v", f.Stats())
				for _, p := range sw {
					if !slices.ContainsFunc(sg, func(q capPkt) bool { return bytes.Equal(q.data, p.data) }) {
						pp := p.packet(t)
						t.Logf("missing from the file: %v %v flags %#x len %d", p.dir, pp.Flow(), pp.Flags(), len(pp.Payload()))
					}
				}
				t.Fatalf("file has %d packets of the connection, AFPacket saw %d\ntcpdump: %s", len(sg), len(sw), log)
			}
			for i := range sg {
				if !bytes.Equal(sg[i].data, sw[i].data) || sg[i].dir != sw[i].dir {
					t.Fatalf("packet %d: file %v %x\nAFPacket %v %x", i, sg[i].dir, sg[i].data, sw[i].dir, sw[i].data)
				}
				// Both timestamps come from the kernel, taken at nearly
				// the same moment.
				if d := sg[i].t.Sub(sw[i].t); d < -time.Second || d > time.Second {
					t.Fatalf("packet %d: file time %v, AFPacket time %v", i, sg[i].t, sw[i].t)
				}
			}
			if tc.hasDir && !slices.ContainsFunc(got, func(p capPkt) bool { return p.dir == capture.DirOut }) {
				t.Fatal("no outgoing packet in a cooked capture")
			}
			if s := f.Stats(); s.Truncated+s.Malformed != 0 {
				t.Fatalf("file stats %+v", s)
			}
		})
	}
}

// exchangeFrom is exchange with the client in any namespace.
func exchangeFrom(t *testing.T, cli, srvNS *netlab.NS, srv netip.AddrPort, req, resp []byte) (clientPort, markerPort uint16) {
	t.Helper()
	ln := srvNS.Listen("tcp", srv.String())
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(req))); err != nil {
			errc <- err
			return
		}
		_, err = c.Write(resp)
		errc <- err
	}()
	conn := cli.Dial("tcp", srv.String())
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(conn); err != nil || len(got) != len(resp) {
		t.Fatalf("client read %d bytes, %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	clientPort = uint16(conn.LocalAddr().(*net.TCPAddr).Port)
	conn.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if out := srvNS.Run("ss", "-Htan", "state", "time-wait", "dport", fmt.Sprintf(":%d", clientPort)); strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's socket never reached TIME-WAIT")
		}
	}
	m := cli.Dial("tcp", srv.String())
	markerPort = uint16(m.LocalAddr().(*net.TCPAddr).Port)
	m.Close()
	return clientPort, markerPort
}
