package netlab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckPrefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"198.18.0.1/24", true},
		{"198.18.0.2/32", true},
		{"198.19.255.254/30", true},
		{"198.18.0.0/15", true},
		{"198.18.0.0/16", true},
		{"198.16.0.0/12", false}, // contains the range, but is wider
		{"198.51.100.1/24", false},
		{"198.20.0.1/24", false},
		{"10.0.0.1/8", false},
		{"127.0.0.1/8", false},
		{"0.0.0.0/0", false},
		{"fd00:198:18::1/64", true},
		{"fd00:198:18:ffff::1/128", true},
		{"fd00:198:18::/48", true},
		{"fd00:198::/32", false},
		{"fd00:198:19::1/64", false},
		{"2001:db8::1/64", false},
		{"fe80::1/64", false},
		{"::1/128", false},
		{"::/0", false},
		{"::ffff:198.18.0.1/128", false}, // IPv4-mapped: must be written as IPv4
	} {
		err := checkPrefix(netip.MustParsePrefix(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("checkPrefix(%s) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "netlab: ") {
			t.Errorf("checkPrefix(%s) error %q lacks the package prefix", tc.in, err)
		}
	}
	if err := checkPrefix(netip.Prefix{}); err == nil {
		t.Error("checkPrefix(zero Prefix) = nil, want error")
	}
	err := checkPrefix(netip.MustParsePrefix("198.51.100.1/24"))
	if err == nil || !strings.Contains(err.Error(), "198.51.100.1") {
		t.Errorf("checkPrefix(198.51.100.1/24) = %v, want an error naming the address", err)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"198.51.100.1", false},
		{"192.0.2.1", false},
		{"fd00:198:18::1", true},
		{"fd00:198:18::1%veth0", false}, // zones are refused
		{"fd00:199:18::1", false},
		{"::ffff:198.18.0.1", false},
	} {
		if err := checkAddr(netip.MustParseAddr(tc.in)); (err == nil) != tc.ok {
			t.Errorf("checkAddr(%s) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
	if err := checkAddr(netip.Addr{}); err == nil {
		t.Error("checkAddr(zero Addr) = nil, want error")
	}
}

func TestNSName(t *testing.T) {
	o := owner{pidNS: 4026531836, pid: 4821}
	name := nsName(o, 3, "client-1")
	if name != "tcn1ulajuk.4821.3-client-1" {
		t.Fatalf("nsName = %q", name)
	}
	if got, ok := nsOwner(name); !ok || got != o {
		t.Fatalf("nsOwner(%q) = %+v, %v; want %+v, true", name, got, ok, o)
	}
	for _, s := range []string{
		"", "tcn", "tcn1ulajuk", "tcn1ulajuk.4821", "tcn1ulajuk.4821.3", "tcn1ulajuk.4821.3-",
		"tcn1ulajuk.4821-a", "tcn1ulajuk.4821.3.1-a", "tcn1ulajuk.x.3-a", "tcn1ulajuk.0.3-a",
		"tcn1ulajuk.04821.3-a", "tcn1ulajuk.4821.x-a", "tcn1ulajuk.4821.03-a", "tcn1ULAJUK.4821.3-a",
		"tcn1ulajuk.4821.3-a/b", "xtcn1ulajuk.4821.3-a", "tcn1ulajuk.99999999999999999999.1-a",
		"tcn.4821.3-a", "tcnraw-21935-17",
	} {
		if o, ok := nsOwner(s); ok {
			t.Errorf("nsOwner(%q) = %+v, true; want false", s, o)
		}
	}
}

func TestCheckRole(t *testing.T) {
	for _, r := range []string{"a", "client", "r-1", "SERVER_2", strings.Repeat("x", 32)} {
		if err := checkRole(r); err != nil {
			t.Errorf("checkRole(%q) = %v", r, err)
		}
	}
	for _, r := range []string{"", "a b", "a/b", "a.b", "..", "é", strings.Repeat("x", 33)} {
		if err := checkRole(r); err == nil {
			t.Errorf("checkRole(%q) = nil, want error", r)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net.ipv4.conf.all.rp_filter", "/proc/sys/net/ipv4/conf/all/rp_filter"},
		{"net/ipv4/conf/veth0.10/rp_filter", "/proc/sys/net/ipv4/conf/veth0.10/rp_filter"},
		{"net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"},
	} {
		if got, err := sysctlPath(tc.key); err != nil || got != tc.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
	for _, key := range []string{
		"", "kernel.hostname", "vm.swappiness", "netx.a", "net", "net.", "net..ipv4",
		"net/../kernel/hostname", "net/ipv4/./ip_forward", "/proc/sys/net/ipv4/ip_forward",
	} {
		if got, err := sysctlPath(key); err == nil {
			t.Errorf("sysctlPath(%q) = %q, nil; want error", key, got)
		}
	}
}
