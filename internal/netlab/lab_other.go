//go:build !linux

package netlab

import (
	"net"
	"net/netip"
	"os/exec"
	"testing"
)

// A Lab makes namespaces and links for one test. Network namespaces exist
// only on Linux; elsewhere [New] skips the test, so no method is reached.
type Lab struct{}

// New skips the test: network namespaces are Linux only.
func New(t testing.TB) *Lab {
	t.Helper()
	t.Skip("netlab: Linux only: skipping")
	return nil
}

const unreachable = "netlab: Linux only (New skips the test)"

// Require is unreachable off Linux.
func (l *Lab) Require(tools ...string) { panic(unreachable) }

// RequireIPv6 is unreachable off Linux.
func (l *Lab) RequireIPv6() { panic(unreachable) }

// Namespace is unreachable off Linux.
func (l *Lab) Namespace(role string) *NS { panic(unreachable) }

// Link is unreachable off Linux.
func (l *Lab) Link(a *NS, aAddr netip.Prefix, b *NS, bAddr netip.Prefix) (aIf, bIf string) {
	panic(unreachable)
}

// LinkWith is unreachable off Linux.
func (l *Lab) LinkWith(a, b *NS, c *LinkConfig) (aIf, bIf string) { panic(unreachable) }

// An NS is a network namespace made by a [Lab].
type NS struct{}

// Name is unreachable off Linux.
func (n *NS) Name() string { panic(unreachable) }

// String is unreachable off Linux.
func (n *NS) String() string { panic(unreachable) }

// IP is unreachable off Linux.
func (n *NS) IP(args ...string) string { panic(unreachable) }

// AddAddr is unreachable off Linux.
func (n *NS) AddAddr(ifname string, p netip.Prefix) { panic(unreachable) }

// AddRoute is unreachable off Linux.
func (n *NS) AddRoute(dst netip.Prefix, via netip.Addr) { panic(unreachable) }

// AddRouteVia is unreachable off Linux.
func (n *NS) AddRouteVia(dst netip.Prefix, via netip.Addr, dev string) { panic(unreachable) }

// AddRouteDev is unreachable off Linux.
func (n *NS) AddRouteDev(dst netip.Prefix, dev string) { panic(unreachable) }

// Addrs is unreachable off Linux.
func (n *NS) Addrs(ifname string) []netip.Prefix { panic(unreachable) }

// Sysctl is unreachable off Linux.
func (n *NS) Sysctl(key, value string) { panic(unreachable) }

// GetSysctl is unreachable off Linux.
func (n *NS) GetSysctl(key string) string { panic(unreachable) }

// Command is unreachable off Linux.
func (n *NS) Command(name string, args ...string) *exec.Cmd { panic(unreachable) }

// RunErr is unreachable off Linux.
func (n *NS) RunErr(name string, args ...string) (string, error) { panic(unreachable) }

// Run is unreachable off Linux.
func (n *NS) Run(name string, args ...string) string { panic(unreachable) }

// Start is unreachable off Linux.
func (n *NS) Start(name string, args ...string) *exec.Cmd { panic(unreachable) }

// StartCmd is unreachable off Linux.
func (n *NS) StartCmd(cmd *exec.Cmd) { panic(unreachable) }

// Do is unreachable off Linux.
func (n *NS) Do(f func() error) error { panic(unreachable) }

// Listen is unreachable off Linux.
func (n *NS) Listen(network, address string) net.Listener { panic(unreachable) }

// ListenPacket is unreachable off Linux.
func (n *NS) ListenPacket(network, address string) net.PacketConn { panic(unreachable) }

// Dial is unreachable off Linux.
func (n *NS) Dial(network, address string) net.Conn { panic(unreachable) }

// DisableOffloads is unreachable off Linux.
func (n *NS) DisableOffloads(ifname string) { panic(unreachable) }

// HardwareAddr is unreachable off Linux.
func (n *NS) HardwareAddr(ifname string) net.HardwareAddr { panic(unreachable) }

// Pair is the two-namespace lab; off Linux NewPair skips.
type Pair struct {
	Lab        *Lab
	A, B       *NS
	AIf, BIf   string
	AMAC, BMAC net.HardwareAddr
}

// Addresses of a Pair.
const (
	PairA4, PairB4 = "198.18.0.1", "198.18.0.2"
	PairA6, PairB6 = "fd00:198:18::1", "fd00:198:18::2"
)

// NewPair skips the test off Linux.
func NewPair(t testing.TB) *Pair { New(t); return nil }
