package rewrite

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Route is one item of a transfer map: packets to Online (address may be
// unspecified for "any local address") go to Target.
type Route struct {
	Online netip.AddrPort // Addr invalid means any address
	Target netip.AddrPort
}

// Transfer is the transfer map Rewriter (TCPCopy's -x): it keeps packets
// whose destination matches a route and points them at the route's target.
// It is safe for concurrent use.
type Transfer struct {
	routes   []Route
	unmapped atomic.Uint64
	mapped   atomic.Uint64
}

var _ Rewriter = (*Transfer)(nil)

// ParseTransfer parses TCPCopy's transfer syntax,
// "[onlineIP:]onlinePort-targetIP:targetPort[,...]", with IPv6 addresses in
// brackets ("[2001:db8::1]:80"). Errors quote the bad item.
func ParseTransfer(s string) (*Transfer, error) {
	t := &Transfer{}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("rewrite: empty transfer map")
	}
	for _, item := range strings.Split(s, ",") {
		r, err := parseRoute(strings.TrimSpace(item))
		if err != nil {
			return nil, fmt.Errorf("rewrite: transfer item %q: %w", item, err)
		}
		t.routes = append(t.routes, r)
	}
	return t, nil
}

// NewTransfer builds a Transfer from routes.
func NewTransfer(routes ...Route) (*Transfer, error) {
	for _, r := range routes {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("rewrite: route %v-%v: %w", r.Online, r.Target, err)
		}
	}
	return &Transfer{routes: append([]Route(nil), routes...)}, nil
}

func parseRoute(item string) (Route, error) {
	online, target, ok := cutDash(item)
	if !ok {
		return Route{}, fmt.Errorf("want [onlineIP:]onlinePort-targetIP:targetPort")
	}
	var r Route
	if p, err := strconv.ParseUint(online, 10, 16); err == nil {
		r.Online = netip.AddrPortFrom(netip.Addr{}, uint16(p))
	} else if ap, err := netip.ParseAddrPort(online); err == nil {
		r.Online = ap
	} else {
		return Route{}, fmt.Errorf("online side %q is neither a port nor address:port", online)
	}
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return Route{}, fmt.Errorf("target side %q: want address:port", target)
	}
	r.Target = ap
	return r, r.check()
}

// cutDash splits at the dash that separates online from target; IPv6
// addresses contain no dash, so the first one outside brackets is it.
func cutDash(s string) (string, string, bool) {
	depth := 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case '-':
			if depth == 0 {
				return s[:i], s[i+1:], i > 0 && i < len(s)-1
			}
		}
	}
	return "", "", false
}

func (r Route) check() error {
	if r.Online.Port() == 0 || r.Target.Port() == 0 {
		return fmt.Errorf("port 0")
	}
	if !r.Target.Addr().IsValid() || r.Target.Addr().IsUnspecified() {
		return fmt.Errorf("target address missing")
	}
	if a := r.Online.Addr(); a.IsValid() && a.Is4() != r.Target.Addr().Is4() {
		return fmt.Errorf("online and target are of different address families")
	}
	return nil
}

// Routes returns a copy of the routes.
func (t *Transfer) Routes() []Route { return append([]Route(nil), t.routes...) }

// Match returns the route for packets to dst, if any.
func (t *Transfer) Match(dst netip.Addr, port uint16) (Route, bool) {
	for _, r := range t.routes {
		if r.Online.Port() != port {
			continue
		}
		if a := r.Online.Addr(); a.IsValid() && a != dst {
			continue
		}
		if r.Target.Addr().Is4() != dst.Is4() {
			continue
		}
		return r, true
	}
	return Route{}, false
}

// Rewrite implements Rewriter: destination to the route's target.
func (t *Transfer) Rewrite(p *capture.Packet) bool {
	r, ok := t.Match(p.Dst(), p.DstPort())
	if !ok {
		t.unmapped.Add(1)
		return false
	}
	if err := p.SetDst(r.Target.Addr()); err != nil {
		t.unmapped.Add(1)
		return false
	}
	p.SetDstPort(r.Target.Port())
	t.mapped.Add(1)
	return true
}

// TransferStats counts Rewrite's decisions.
type TransferStats struct {
	Mapped   uint64 // rewritten toward a target
	Unmapped uint64 // matched no route (filtered out)
}

// Stats returns a snapshot of the counters.
func (t *Transfer) Stats() TransferStats {
	return TransferStats{Mapped: t.mapped.Load(), Unmapped: t.unmapped.Load()}
}
