package cli

import (
	"fmt"
	"testing"
	"time"
)

func TestParseFilter(t *testing.T) {
	for expr, want := range map[string]string{
		"tcp and src port 8080":                                         "src ports [8080]",
		"src port 80 or src port 8080":                                  "src ports [80 8080]",
		"tcp and (dst port 80 or dst port 443) and dst host 198.18.0.2": "dst ports [80 443] dst nets [198.18.0.2/32]",
		"port 80 and net 198.18.0.0/15":                                 "ports [80] nets [198.18.0.0/15]",
		"src host fd00:198:18::1 && src port 80":                        "src ports [80] src nets [fd00:198:18::1/128]",
	} {
		f, err := ParseFilter(expr)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", expr, err)
			continue
		}
		got := ""
		add := func(name string, v any, n int) {
			if n > 0 {
				if got != "" {
					got += " "
				}
				got += fmt.Sprintf("%s %v", name, v)
			}
		}
		add("ports", f.Ports, len(f.Ports))
		add("src ports", f.SrcPorts, len(f.SrcPorts))
		add("dst ports", f.DstPorts, len(f.DstPorts))
		add("nets", f.Nets, len(f.Nets))
		add("src nets", f.SrcNets, len(f.SrcNets))
		add("dst nets", f.DstNets, len(f.DstNets))
		if got != want {
			t.Errorf("ParseFilter(%q) = %s, want %s", expr, got, want)
		}
	}
	for _, bad := range []string{"", "udp port 53", "src port", "src port 0", "src port 80 or dst port 80",
		"src port 80 and src port 81", "(src port 80", "src port 80 and", "src host nowhere", "src port 80 src port 81"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q) accepted it", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"120": 120 * time.Second, "90s": 90 * time.Second, "2m": 2 * time.Minute, "0": 0} {
		if got, err := ParseDuration(in, time.Second); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "soon", "-3s"} {
		if _, err := ParseDuration(bad, time.Second); err == nil {
			t.Errorf("ParseDuration(%q) accepted it", bad)
		}
	}
}
