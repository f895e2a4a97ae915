package rewrite

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Route is one item of a transfer map: packets to Online go to Target.
type Route struct {
	// Online is the captured server endpoint. An invalid Addr means any
	// local address (TCPCopy's "80-..." form); such a route only takes
	// packets of Target's family.
	Online netip.AddrPort
	// Target is where the copies go. It is a unicast address; its port is
	// never 0.
	Target netip.AddrPort
	// OnlineMAC and TargetMAC are TCPCopy's optional "@mac" suffixes, for
	// link-layer sending: the source MAC of the frames (the online side's
	// interface) and the destination MAC (the target or the next hop). Zero
	// when not given. Transfer.Rewrite does not use them; a link-layer
	// Emitter does.
	OnlineMAC, TargetMAC MAC
}

// MAC is an Ethernet (EUI-48) address. The zero MAC means "not given".
type MAC [6]byte

// IsZero reports whether m is the zero MAC.
func (m MAC) IsZero() bool { return m == MAC{} }

// String formats m as six colon-separated hex bytes.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// Transfer is the transfer map Rewriter (TCPCopy's -x): it keeps packets
// whose destination matches a route and points them at the route's target.
// A route with an online address wins over one for any address, whatever
// their order. It is safe for concurrent use.
type Transfer struct {
	routes   []Route
	unmapped atomic.Uint64
	mapped   atomic.Uint64
}

// ParseTransfer parses TCPCopy's transfer syntax (-x):
//
//	[onlineIP:]onlinePort[@mac]-targetIP:targetPort[@mac][,...]
//
// IPv6 addresses go in brackets ("[fd00::1]:80"). The online IP may be
// left out (or be 0.0.0.0 or [::]) for any local address; the target IP
// and port are required. TCPCopy 1.x read a target without a colon as a
// bare port with address 0 ("80-198.19.0.2" became port 198), so such items
// are an error here rather than a guess. The optional "@mac" suffixes are
// TCPCopy's link-layer addresses (see Route). Items are separated by commas
// and may be padded with spaces. Two items that capture the same online
// endpoint are an error (TCPCopy silently used the first). Errors quote the
// bad item.
func ParseTransfer(s string) (*Transfer, error) {
	if strings.Trim(s, " \t,") == "" {
		return nil, fmt.Errorf("rewrite: empty transfer map %q", s)
	}
	t := &Transfer{}
	items := strings.Split(s, ",")
	for _, item := range items {
		item = strings.TrimSpace(item)
		r, err := parseRoute(item)
		if err != nil {
			return nil, fmt.Errorf("rewrite: transfer item %q: %w", item, err)
		}
		for j, o := range t.routes {
			if o.sameOnline(r) {
				return nil, fmt.Errorf("rewrite: transfer items %q and %q both capture %s",
					strings.TrimSpace(items[j]), item, r.onlineString())
			}
		}
		t.routes = append(t.routes, r)
	}
	return t, nil
}

// NewTransfer builds a Transfer from routes, checked as ParseTransfer
// checks items.
func NewTransfer(routes ...Route) (*Transfer, error) {
	if len(routes) == 0 {
		return nil, errors.New("rewrite: transfer map without routes")
	}
	t := &Transfer{}
	for _, r := range routes {
		r.Online = netip.AddrPortFrom(normOnline(r.Online.Addr()), r.Online.Port())
		r.Target = netip.AddrPortFrom(r.Target.Addr().Unmap(), r.Target.Port())
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("rewrite: route %q: %w", r.String(), err)
		}
		for _, o := range t.routes {
			if o.sameOnline(r) {
				return nil, fmt.Errorf("rewrite: routes %q and %q both capture %s", o.String(), r.String(), r.onlineString())
			}
		}
		t.routes = append(t.routes, r)
	}
	return t, nil
}

func parseRoute(item string) (Route, error) {
	online, target, ok := cutRoute(item)
	if !ok || online == "" || target == "" {
		return Route{}, errors.New("want [onlineIP:]onlinePort-targetIP:targetPort")
	}
	var r Route
	var err error
	if online, r.OnlineMAC, err = cutMAC(online); err != nil {
		return Route{}, fmt.Errorf("online side: %w", err)
	}
	if target, r.TargetMAC, err = cutMAC(target); err != nil {
		return Route{}, fmt.Errorf("target side: %w", err)
	}
	if r.Online, err = parseOnline(online); err != nil {
		return Route{}, fmt.Errorf("online side %q: %w", online, err)
	}
	if r.Target, err = parseTarget(target); err != nil {
		return Route{}, fmt.Errorf("target side %q: %w", target, err)
	}
	return r, r.check()
}

// cutRoute splits an item at the dash between online and target. IP
// addresses and ports hold no dash; an online MAC written with dashes
// (02-00-5e-10-00-01) is 17 characters after its '@'.
func cutRoute(item string) (online, target string, ok bool) {
	i := strings.IndexByte(item, '-')
	if at := strings.IndexByte(item, '@'); at >= 0 && at < i && len(item) > at+18 && item[at+3] == '-' {
		i = at + 18
		if item[i] != '-' {
			return "", "", false
		}
	}
	if i < 0 {
		return "", "", false
	}
	return item[:i], item[i+1:], true
}

// cutMAC splits off TCPCopy's "@aa:bb:cc:dd:ee:ff" suffix.
func cutMAC(s string) (string, MAC, error) {
	s, m, ok := strings.Cut(s, "@")
	if !ok {
		return s, MAC{}, nil
	}
	hw, err := net.ParseMAC(m)
	if err != nil || len(hw) != 6 {
		return s, MAC{}, fmt.Errorf("MAC %q: want six hex bytes like 02:00:5e:10:00:01", m)
	}
	return s, MAC(hw), nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number in 1..65535", s)
	}
	if p == 0 {
		return 0, errors.New("port 0")
	}
	return uint16(p), nil
}

func parseOnline(s string) (netip.AddrPort, error) {
	if isDigits(s) {
		p, err := parsePort(s)
		return netip.AddrPortFrom(netip.Addr{}, p), err
	}
	ap, err := parseAddrPort(s)
	if err != nil {
		return ap, err
	}
	return netip.AddrPortFrom(normOnline(ap.Addr()), ap.Port()), nil
}

func parseTarget(s string) (netip.AddrPort, error) {
	if isDigits(s) {
		return netip.AddrPort{}, errors.New("target address missing: want targetIP:targetPort")
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return netip.AddrPort{}, errors.New("IPv6 addresses go in brackets, and the port is required: [address]:port")
	}
	bare := s
	if in, ok := strings.CutPrefix(s, "["); ok {
		bare, _ = strings.CutSuffix(in, "]")
		if bare == in {
			bare = "" // "[addr]:port", or no closing bracket
		}
	}
	if _, err := netip.ParseAddr(bare); err == nil {
		return netip.AddrPort{}, errors.New("target port missing: want targetIP:targetPort")
	}
	return parseAddrPort(s)
}

// parseAddrPort parses ip:port or [ipv6]:port with errors a person can act
// on.
func parseAddrPort(s string) (netip.AddrPort, error) {
	host, port, ok := splitHostPort(s)
	if !ok {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return netip.AddrPort{}, errors.New("IPv6 addresses go in brackets: [address]:port")
		}
		return netip.AddrPort{}, errors.New("want IP:port")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address", host)
	}
	if a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("address %q has a zone; zones are not supported", host)
	}
	if a.Is6() && !a.Is4In6() && !strings.HasPrefix(s, "[") {
		return netip.AddrPort{}, errors.New("IPv6 addresses go in brackets: [address]:port")
	}
	p, err := parsePort(port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a.Unmap(), p), nil
}

// splitHostPort splits "host:port" and "[host]:port".
func splitHostPort(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 || len(s) < end+2 || s[end+1] != ':' {
			return "", "", false
		}
		return s[1:end], s[end+2:], true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.IndexByte(s, ':') != i {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// normOnline makes an unspecified online address mean "any address", as
// TCPCopy's 0 did.
func normOnline(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func (r Route) check() error {
	ta := r.Target.Addr()
	switch {
	case r.Online.Port() == 0 || r.Target.Port() == 0:
		return errors.New("port 0")
	case !ta.IsValid() || ta.IsUnspecified():
		return errors.New("target address missing")
	case ta.Zone() != "" || r.Online.Addr().Zone() != "":
		return errors.New("zones are not supported")
	case ta.IsMulticast() || ta == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("target %s is not a unicast address", ta)
	case r.Online.Addr().IsMulticast():
		return fmt.Errorf("online %s is not a unicast address", r.Online.Addr())
	}
	if a := r.Online.Addr(); a.IsValid() && a.Is4() != ta.Is4() {
		return errors.New("online and target are of different address families")
	}
	return nil
}

// sameOnline reports whether r and o capture the same packets: the same
// online endpoint, or both any-address routes for one port and family.
func (r Route) sameOnline(o Route) bool {
	if r.Online.Port() != o.Online.Port() || r.Online.Addr() != o.Online.Addr() {
		return false
	}
	return r.Online.Addr().IsValid() || r.Target.Addr().Is4() == o.Target.Addr().Is4()
}

func (r Route) onlineString() string {
	if !r.Online.Addr().IsValid() {
		fam := "IPv4"
		if !r.Target.Addr().Is4() {
			fam = "IPv6"
		}
		return "port " + strconv.Itoa(int(r.Online.Port())) + " of any " + fam + " address"
	}
	return r.Online.String()
}

// String formats r in the syntax ParseTransfer reads.
func (r Route) String() string {
	var b strings.Builder
	if r.Online.Addr().IsValid() {
		b.WriteString(r.Online.String())
	} else {
		b.WriteString(strconv.Itoa(int(r.Online.Port())))
	}
	if !r.OnlineMAC.IsZero() {
		b.WriteString("@" + r.OnlineMAC.String())
	}
	b.WriteString("-" + r.Target.String())
	if !r.TargetMAC.IsZero() {
		b.WriteString("@" + r.TargetMAC.String())
	}
	return b.String()
}

// String formats the map in the syntax ParseTransfer reads.
func (t *Transfer) String() string {
	s := make([]string, len(t.routes))
	for i, r := range t.routes {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// Routes returns a copy of the routes, in the order given.
func (t *Transfer) Routes() []Route { return append([]Route(nil), t.routes...) }

// Targets returns the distinct target addresses, in the order of the
// routes: the addresses a client pool must never use (ParseClientPool's
// exclude).
func (t *Transfer) Targets() []netip.Addr {
	var out []netip.Addr
next:
	for _, r := range t.routes {
		for _, a := range out {
			if a == r.Target.Addr() {
				continue next
			}
		}
		out = append(out, r.Target.Addr())
	}
	return out
}

// Match returns the route for packets to dst:port, if any. A route for
// dst itself wins over one for any address.
func (t *Transfer) Match(dst netip.Addr, port uint16) (Route, bool) {
	i := t.match(dst, port)
	if i < 0 {
		return Route{}, false
	}
	return t.routes[i], true
}

func (t *Transfer) match(dst netip.Addr, port uint16) int {
	wild := -1
	for i := range t.routes {
		r := &t.routes[i]
		if r.Online.Port() != port {
			continue
		}
		if a := r.Online.Addr(); a.IsValid() {
			if a == dst {
				return i
			}
			continue
		}
		if wild < 0 && r.Target.Addr().Is4() == dst.Is4() {
			wild = i
		}
	}
	return wild
}

// Rewrite implements Rewriter: destination to the route's target.
func (t *Transfer) Rewrite(p *capture.Packet) bool {
	i := t.match(p.Dst(), p.DstPort())
	if i < 0 || p.SetDst(t.routes[i].Target.Addr()) != nil {
		t.unmapped.Add(1)
		return false
	}
	p.SetDstPort(t.routes[i].Target.Port())
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
