package emit_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/shadowcopy/tcpcopy/internal/netlab"
)

// The privileged tests' lab: namespaces A and B joined by a veth pair, with
// addresses from 198.18.0.0/15 and fd00:198:18::/48 only and static
// neighbours, so no packet waits on ARP or neighbour discovery.
const (
	labA4, labB4 = "198.18.0.1", "198.18.0.2"
	labA6, labB6 = "fd00:198:18::1", "fd00:198:18::2"
)

type pairLab struct {
	lab        *netlab.Lab
	a, b       *netlab.NS
	aIf, bIf   string
	aMAC, bMAC net.HardwareAddr
}

func newPair(t testing.TB) *pairLab {
	t.Helper()
	lab := netlab.New(t)
	lab.RequireIPv6()
	l := &pairLab{lab: lab, a: lab.Namespace("a"), b: lab.Namespace("b")}
	l.aIf, l.bIf = lab.LinkWith(l.a, l.b, &netlab.LinkConfig{
		AAddrs: []netip.Prefix{netip.MustParsePrefix(labA4 + "/24"), netip.MustParsePrefix(labA6 + "/64")},
		BAddrs: []netip.Prefix{netip.MustParsePrefix(labB4 + "/24"), netip.MustParsePrefix(labB6 + "/64")},
	})
	l.aMAC, l.bMAC = hwAddr(t, l.a, l.aIf), hwAddr(t, l.b, l.bIf)
	for _, s := range []struct {
		ns         *netlab.NS
		dev        string
		peer4, pe6 string
		mac        net.HardwareAddr
	}{{l.a, l.aIf, labB4, labB6, l.bMAC}, {l.b, l.bIf, labA4, labA6, l.aMAC}} {
		s.ns.IP("neigh", "replace", s.peer4, "lladdr", s.mac.String(), "dev", s.dev, "nud", "permanent")
		s.ns.IP("neigh", "replace", s.pe6, "lladdr", s.mac.String(), "dev", s.dev, "nud", "permanent")
	}
	return l
}

func hwAddr(t testing.TB, ns *netlab.NS, ifname string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}
