package intercept

import (
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestNFQueueRulesCommands checks the commands NFQueueRules runs, with a
// Command that records them and runs true or false instead (no root
// needed; TestNFQueueRules runs the real tools in a namespace).
func TestNFQueueRulesCommands(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("iptables rules are Linux only")
	}
	if _, err := exec.LookPath("true"); err != nil {
		t.Skip("true not found")
	}
	var ran []string
	fail := ""
	cmd := func(name string, args ...string) *exec.Cmd {
		line := name + " " + strings.Join(args, " ")
		ran = append(ran, line)
		if fail != "" && strings.Contains(line, fail) {
			return exec.Command("false")
		}
		return exec.Command("true")
	}
	r, err := NewNFQueueRules(&NFQueueRulesConfig{Ports: []uint16{80}, Queue: 5, Command: cmd})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Install(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	spec := "OUTPUT -p tcp --sport 80 -m comment --comment tcpcopy-intercept -j NFQUEUE --queue-num 5"
	want := []string{
		"iptables -w 5 -I " + spec,
		"ip6tables -w 5 -I " + spec,
		"ip6tables -w 5 -D " + spec,
		"iptables -w 5 -D " + spec,
	}
	if !slices.Equal(ran, want) {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(ran, "\n"), strings.Join(want, "\n"))
	}

	// The second insert fails: the first rule is removed again.
	ran, fail = nil, "ip6tables -w 5 -I"
	r, _ = NewNFQueueRules(&NFQueueRulesConfig{Ports: []uint16{80}, Bypass: true, Family: "", Command: cmd})
	if err := r.Install(); err == nil {
		t.Fatal("Install succeeded")
	}
	if len(ran) != 3 || !strings.HasPrefix(ran[2], "iptables -w 5 -D") || !strings.HasSuffix(ran[2], "--queue-bypass") {
		t.Errorf("ran %q", ran)
	}

	for _, bad := range []*NFQueueRulesConfig{nil, {}, {Ports: []uint16{0}}, {Ports: []uint16{1}, Family: "ipx"}} {
		if _, err := NewNFQueueRules(bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
	r, _ = NewNFQueueRules(&NFQueueRulesConfig{Ports: []uint16{1, 2}, Family: "ipv6"})
	if specs := r.Specs(); len(specs) != 2 || specs[0][0] != "ip6tables" {
		t.Errorf("specs %q", specs)
	}
}

func TestAFPacketConfig(t *testing.T) {
	for _, bad := range []*AFPacketConfig{nil, {}, {Ports: []uint16{80}, Batch: -1}} {
		if _, err := NewAFPacket(bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
	a, err := NewAFPacket(&AFPacketConfig{Ports: []uint16{80, 8080}})
	if err != nil {
		t.Fatal(err)
	}
	if f := a.ccfg.Filter; a.ccfg.Direction.String() != "in" || !slices.Equal(f.SrcPorts, []uint16{80, 8080}) {
		t.Errorf("capture config %+v", a.ccfg)
	}
	a.Close()
	if err := a.Open(); err != ErrClosed {
		t.Errorf("Open after Close: %v", err)
	}
}
