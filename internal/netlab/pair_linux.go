package netlab

import (
	"net"
	"net/netip"
	"testing"
)

// Addresses of a Pair.
const (
	PairA4, PairB4 = "198.18.0.1", "198.18.0.2"
	PairA6, PairB6 = "fd00:198:18::1", "fd00:198:18::2"
)

// A Pair is the smallest lab: namespaces A and B joined by one veth pair
// carrying PairA4/PairB4 (/24) and PairA6/PairB6 (/64), with permanent
// neighbour entries, so no packet waits on ARP or neighbour discovery.
type Pair struct {
	Lab        *Lab
	A, B       *NS
	AIf, BIf   string
	AMAC, BMAC net.HardwareAddr
}

// NewPair builds a Pair for t (skipping as New does, and when IPv6 is
// missing).
func NewPair(t testing.TB) *Pair {
	t.Helper()
	lab := New(t)
	lab.RequireIPv6()
	p := &Pair{Lab: lab, A: lab.Namespace("a"), B: lab.Namespace("b")}
	p.AIf, p.BIf = lab.LinkWith(p.A, p.B, &LinkConfig{
		AAddrs: []netip.Prefix{netip.MustParsePrefix(PairA4 + "/24"), netip.MustParsePrefix(PairA6 + "/64")},
		BAddrs: []netip.Prefix{netip.MustParsePrefix(PairB4 + "/24"), netip.MustParsePrefix(PairB6 + "/64")},
	})
	p.AMAC, p.BMAC = p.A.HardwareAddr(p.AIf), p.B.HardwareAddr(p.BIf)
	for _, s := range []struct {
		ns           *NS
		dev          string
		peer4, peer6 string
		mac          net.HardwareAddr
	}{{p.A, p.AIf, PairB4, PairB6, p.BMAC}, {p.B, p.BIf, PairA4, PairA6, p.AMAC}} {
		s.ns.IP("neigh", "replace", s.peer4, "lladdr", s.mac.String(), "dev", s.dev, "nud", "permanent")
		s.ns.IP("neigh", "replace", s.peer6, "lladdr", s.mac.String(), "dev", s.dev, "nud", "permanent")
	}
	return p
}

// HardwareAddr returns the MAC address of an interface in the namespace.
func (n *NS) HardwareAddr(ifname string) net.HardwareAddr {
	n.lab.t.Helper()
	var mac net.HardwareAddr
	if err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		n.lab.t.Fatalf("netlab: %s: interface %s: %v", n.name, ifname, err)
	}
	return mac
}
