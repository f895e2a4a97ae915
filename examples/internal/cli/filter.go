package cli

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/shadowcopy/tcpcopy/capture"
)

// ParseFilter reads the subset of pcap filter syntax that capture.Filter
// can express, as TCPCopy's -F takes it ("tcp and src port 8080"):
//
//	[tcp and] TERM [and TERM]...
//	TERM := PRIM | PRIM or PRIM ... | ( PRIM or PRIM ... )
//	PRIM := [src|dst] port N | [src|dst] host ADDR | [src|dst] net PREFIX
//
// The primitives joined by "or" must be of one kind (say, all "src port"),
// and each kind may appear in one term only: capture.Filter matches any
// element of a field and every field.
func ParseFilter(expr string) (*capture.Filter, error) {
	toks := strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ").Replace(expr))
	if len(toks) == 0 {
		return nil, fmt.Errorf("filter %q is empty", expr)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("filter %q: %s (supported: tcp, [src|dst] port N, [src|dst] host ADDR, [src|dst] net PREFIX, and, or, parentheses)",
			expr, fmt.Sprintf(format, args...))
	}
	f := &capture.Filter{}
	seen := map[string]bool{}
	i := 0
	// prim reads one primitive at toks[i], returning its kind and value.
	prim := func() (kind string, ports []uint16, nets []netip.Prefix, err error) {
		dir := ""
		if i < len(toks) && (toks[i] == "src" || toks[i] == "dst") {
			dir = toks[i] + " "
			i++
		}
		if i+1 >= len(toks) {
			return "", nil, nil, bad("incomplete primitive")
		}
		what, val := toks[i], toks[i+1]
		i += 2
		switch what {
		case "port":
			n, err := strconv.ParseUint(val, 10, 16)
			if err != nil || n == 0 {
				return "", nil, nil, bad("bad port %q", val)
			}
			return dir + "port", []uint16{uint16(n)}, nil, nil
		case "host":
			a, err := netip.ParseAddr(val)
			if err != nil {
				return "", nil, nil, bad("bad host %q (an IP address)", val)
			}
			return dir + "net", nil, []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
		case "net":
			p, err := netip.ParsePrefix(val)
			if err != nil {
				return "", nil, nil, bad("bad net %q (a prefix like 198.18.0.0/15)", val)
			}
			return dir + "net", nil, []netip.Prefix{p.Masked()}, nil
		}
		return "", nil, nil, bad("unsupported token %q", what)
	}
	for i < len(toks) {
		if toks[i] == "tcp" {
			i++
		} else {
			paren := toks[i] == "("
			if paren {
				i++
			}
			kind, ports, nets, err := prim()
			if err != nil {
				return nil, err
			}
			for i < len(toks) && toks[i] == "or" {
				i++
				k2, p2, n2, err := prim()
				if err != nil {
					return nil, err
				}
				if k2 != kind {
					return nil, bad("%q or %q: alternatives must be of one kind", kind, k2)
				}
				ports, nets = append(ports, p2...), append(nets, n2...)
			}
			if paren {
				if i >= len(toks) || toks[i] != ")" {
					return nil, bad("missing )")
				}
				i++
			}
			if seen[kind] {
				return nil, bad("%q appears in two terms joined by and", kind)
			}
			seen[kind] = true
			switch kind {
			case "port":
				f.Ports = ports
			case "src port":
				f.SrcPorts = ports
			case "dst port":
				f.DstPorts = ports
			case "net":
				f.Nets = nets
			case "src net":
				f.SrcNets = nets
			case "dst net":
				f.DstNets = nets
			}
		}
		if i < len(toks) {
			if toks[i] != "and" && toks[i] != "&&" {
				return nil, bad("expected and, found %q", toks[i])
			}
			i++
			if i == len(toks) {
				return nil, bad("and at the end")
			}
		}
	}
	return f, nil
}
