package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The only address ranges the lab accepts.
const (
	// IPv4Range is 198.18.0.0/15, reserved for benchmarking (RFC 2544, RFC 6890).
	IPv4Range = "198.18.0.0/15"
	// IPv6Range is a unique local prefix (RFC 4193) reserved for this lab.
	IPv6Range = "fd00:198:18::/48"
)

var (
	v4Range = netip.MustParsePrefix(IPv4Range)
	v6Range = netip.MustParsePrefix(IPv6Range)
)

// LinkConfig describes a veth link for [Lab.LinkWith].
type LinkConfig struct {
	// AAddrs are assigned to the end in the first namespace, BAddrs to the end
	// in the second; IPv4 and IPv6 may be mixed. Nil assigns no address.
	AAddrs, BAddrs []netip.Prefix
	// MTU is set on both ends; zero keeps the veth default (1500).
	MTU int
}

// checkPrefix reports whether p may be given to the lab: an address or
// prefix inside [IPv4Range] or [IPv6Range], no wider than the range itself.
func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("netlab: invalid prefix %v", p)
	}
	r, err := labRange(p.Addr())
	if err != nil {
		return fmt.Errorf("netlab: prefix %v: %w", p, err)
	}
	if p.Bits() < r.Bits() {
		return fmt.Errorf("netlab: prefix %v is wider than the lab range %v", p, r)
	}
	return nil
}

// checkAddr reports whether a may be given to the lab (a gateway, say).
func checkAddr(a netip.Addr) error {
	if _, err := labRange(a); err != nil {
		return fmt.Errorf("netlab: address %v: %w", a, err)
	}
	return nil
}

// labRange returns the lab range holding a, or why there is none.
func labRange(a netip.Addr) (netip.Prefix, error) {
	switch {
	case !a.IsValid():
		return netip.Prefix{}, errors.New("invalid address")
	case a.Zone() != "":
		return netip.Prefix{}, errors.New("zoned addresses are not allowed")
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("IPv4-mapped; write it as plain IPv4 in %s", IPv4Range)
	case a.Is4() && v4Range.Contains(a):
		return v4Range, nil
	case a.Is6() && v6Range.Contains(a):
		return v6Range, nil
	}
	return netip.Prefix{}, fmt.Errorf("outside the lab ranges %s and %s", IPv4Range, IPv6Range)
}

// checkRole reports whether role is usable in a namespace name.
func checkRole(role string) error {
	if role == "" || len(role) > 32 {
		return fmt.Errorf("netlab: role %q must have 1 to 32 characters", role)
	}
	for _, c := range role {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("netlab: role %q: only letters, digits, '-' and '_' are allowed", role)
		}
	}
	return nil
}

// nsPrefix starts every namespace name the lab makes.
const nsPrefix = "tcn"

// owner identifies the process that made a namespace: its pid and, because
// pids mean something only within one pid namespace (and /var/run/netns may be
// shared between containers), the inode of its pid namespace.
type owner struct {
	pidNS uint64
	pid   int
}

// nsName returns the name of the seq'th namespace made by o, for example
// "tcn1ulajuk.4821.3-client".
func nsName(o owner, seq uint64, role string) string {
	return nsPrefix + strconv.FormatUint(o.pidNS, 36) + "." + strconv.Itoa(o.pid) + "." +
		strconv.FormatUint(seq, 10) + "-" + role
}

// nsOwner returns the owner encoded in a namespace name made by [nsName].
func nsOwner(name string) (owner, bool) {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return owner{}, false
	}
	id, role, ok := strings.Cut(rest, "-")
	if !ok || checkRole(role) != nil {
		return owner{}, false
	}
	f := strings.Split(id, ".")
	if len(f) != 3 {
		return owner{}, false
	}
	pidNS, err1 := strconv.ParseUint(f[0], 36, 64)
	pid, err2 := strconv.Atoi(f[1])
	seq, err3 := strconv.ParseUint(f[2], 10, 64)
	o := owner{pidNS: pidNS, pid: pid}
	// Accept only the canonical spelling nsName produces.
	if err1 != nil || err2 != nil || err3 != nil || pid <= 0 || nsName(o, seq, role) != name {
		return owner{}, false
	}
	return o, true
}

// sysctlPath maps a sysctl key ("net.ipv4.ip_forward" or the slash form
// "net/ipv4/conf/eth0.1/rp_filter") to its /proc/sys file. Only the "net."
// tree is accepted: most of it is per namespace, and what is not is absent
// from a non-initial namespace, so a write can never reach host settings.
func sysctlPath(key string) (string, error) {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	if !strings.HasPrefix(p, "net/") {
		return "", fmt.Errorf("netlab: sysctl %q: only keys under net. are allowed", key)
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("netlab: malformed sysctl key %q", key)
		}
	}
	return "/proc/sys/" + p, nil
}
