package rewrite

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

func anyPort(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }

func TestParseTransfer(t *testing.T) {
	ap := netip.MustParseAddrPort
	mac := MAC{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}
	for _, tc := range []struct {
		in   string
		want []Route
		str  string // String() when not the input
	}{
		{in: "80-198.18.1.2:8080", want: []Route{{Online: anyPort(80), Target: ap("198.18.1.2:8080")}}},
		{in: "198.18.0.2:80-198.18.1.2:80, 3306-198.18.1.3:3306",
			want: []Route{
				{Online: ap("198.18.0.2:80"), Target: ap("198.18.1.2:80")},
				{Online: anyPort(3306), Target: ap("198.18.1.3:3306")}},
			str: "198.18.0.2:80-198.18.1.2:80,3306-198.18.1.3:3306"},
		{in: "[fd00:198:18::2]:80-[fd00:198:18:1::2]:80",
			want: []Route{{Online: ap("[fd00:198:18::2]:80"), Target: ap("[fd00:198:18:1::2]:80")}}},
		{in: "443-[fd00:198:18:1::2]:8443", want: []Route{{Online: anyPort(443), Target: ap("[fd00:198:18:1::2]:8443")}}},
		// An unspecified online address is TCPCopy's "any" (its 0).
		{in: "0.0.0.0:80-198.18.1.2:80", want: []Route{{Online: anyPort(80), Target: ap("198.18.1.2:80")}}, str: "80-198.18.1.2:80"},
		{in: "[::]:80-[fd00:198:18:1::2]:80", want: []Route{{Online: anyPort(80), Target: ap("[fd00:198:18:1::2]:80")}}, str: "80-[fd00:198:18:1::2]:80"},
		// IPv4-mapped addresses are IPv4.
		{in: "[::ffff:198.18.0.2]:80-198.18.1.2:80", want: []Route{{Online: ap("198.18.0.2:80"), Target: ap("198.18.1.2:80")}}, str: "198.18.0.2:80-198.18.1.2:80"},
		// One port to targets of both families: not a duplicate.
		{in: "80-198.18.1.2:80,80-[fd00:198:18:1::2]:80", want: []Route{
			{Online: anyPort(80), Target: ap("198.18.1.2:80")},
			{Online: anyPort(80), Target: ap("[fd00:198:18:1::2]:80")}}},
		// A specific address and "any" for one port: the specific wins.
		{in: "80-198.18.1.2:80,198.18.0.2:80-198.18.1.3:80", want: []Route{
			{Online: anyPort(80), Target: ap("198.18.1.2:80")},
			{Online: ap("198.18.0.2:80"), Target: ap("198.18.1.3:80")}}},
		// TCPCopy's link-layer suffixes, colon or dash notation.
		{in: "80@02:00:5e:10:00:01-198.18.1.2:80@02:00:5e:10:00:01",
			want: []Route{{Online: anyPort(80), Target: ap("198.18.1.2:80"), OnlineMAC: mac, TargetMAC: mac}}},
		{in: "198.18.0.2:80@02-00-5E-10-00-01-198.18.1.2:80",
			want: []Route{{Online: ap("198.18.0.2:80"), Target: ap("198.18.1.2:80"), OnlineMAC: mac}},
			str:  "198.18.0.2:80@02:00:5e:10:00:01-198.18.1.2:80"},
	} {
		tr, err := ParseTransfer(tc.in)
		if err != nil {
			t.Errorf("ParseTransfer(%q): %v", tc.in, err)
			continue
		}
		if got := tr.Routes(); !slices.Equal(got, tc.want) {
			t.Errorf("ParseTransfer(%q) = %v, want %v", tc.in, got, tc.want)
		}
		str := tc.str
		if str == "" {
			str = tc.in
		}
		if got := tr.String(); got != str {
			t.Errorf("ParseTransfer(%q).String() = %q, want %q", tc.in, got, str)
		}
	}
}

func TestParseTransferErrors(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"", `empty transfer map ""`},
		{" , ", `empty transfer map`},
		{"80", `item "80": want [onlineIP:]onlinePort-targetIP:targetPort`},
		{"80-", `item "80-": want`},
		{"-198.18.1.2:80", `item "-198.18.1.2:80": want`},
		{"x-198.18.1.2:80", `online side "x": want IP:port`},
		{"host:80-198.18.1.2:80", `online side "host:80": "host" is not an IP address`},
		{"80-198.18.1.2", `target side "198.18.1.2": target port missing`},
		{"80-[fd00:198:18::2]", `target side "[fd00:198:18::2]": target port missing`},
		{"80-8080", `target side "8080": target address missing`},
		{"0-198.18.1.2:80", `online side "0": port 0`},
		{"80-198.18.1.2:0", `target side "198.18.1.2:0": port 0`},
		{"80-198.18.1.2:65536", `port "65536" is not a number in 1..65535`},
		{"80-198.18.1.2:http", `port "http"`},
		{"80-0.0.0.0:80", `item "80-0.0.0.0:80": target address missing`},
		{"80-224.0.0.1:80", `target 224.0.0.1 is not a unicast address`},
		{"80-255.255.255.255:80", `not a unicast address`},
		{"198.18.0.2:80-[fd00:198:18::1]:80", `different address families`},
		{"80-fd00:198:18::2:80", `IPv6 addresses go in brackets`},
		{"fd00:198:18::2:80-[fd00:198:18::3]:80", `online side "fd00:198:18::2:80": IPv6 addresses go in brackets`},
		{"[fd00:198:18::2:80-[fd00:198:18::3]:80", `online side "[fd00:198:18::2:80": want IP:port`},
		{"80-[fd00:198:18::2%eth0]:80", `zones are not supported`},
		{"80-198.18.1.2:80,bad", `item "bad"`},
		{"80-198.18.1.2:80,", `item "": want`},
		{"80-198.18.1.2:80,,443-198.18.1.2:443", `item "": want`},
		{"80-198.18.1.2:80, 80-198.18.1.3:80", `items "80-198.18.1.2:80" and "80-198.18.1.3:80" both capture port 80 of any IPv4 address`},
		{"198.18.0.2:80-198.18.1.2:80,198.18.0.2:80-198.18.1.3:80", `both capture 198.18.0.2:80`},
		{"80@zz-198.18.1.2:80", `online side: MAC "zz"`},
		{"80-198.18.1.2:80@02:00:5e:10:00", `target side: MAC "02:00:5e:10:00"`},
	} {
		tr, err := ParseTransfer(tc.in)
		if err == nil {
			t.Errorf("ParseTransfer(%q) = %v, want an error containing %q", tc.in, tr, tc.err)
			continue
		}
		if !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "rewrite: ") {
			t.Errorf("ParseTransfer(%q) error %q, want it to contain %q", tc.in, err, tc.err)
		}
	}
}

func TestNewTransfer(t *testing.T) {
	ap := netip.MustParseAddrPort
	tr, err := NewTransfer(Route{Online: ap("0.0.0.0:80"), Target: ap("[::ffff:198.18.1.2]:80")})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.String(); got != "80-198.18.1.2:80" {
		t.Errorf("normalised to %q", got)
	}
	for _, rs := range [][]Route{
		nil,
		{{Online: anyPort(80)}},
		{{Online: anyPort(80), Target: ap("198.18.1.2:80")}, {Online: anyPort(80), Target: ap("198.18.1.3:80")}},
	} {
		if _, err := NewTransfer(rs...); err == nil {
			t.Errorf("NewTransfer(%v) accepted", rs)
		}
	}
}

func TestTransferTargets(t *testing.T) {
	tr, err := ParseTransfer("80-198.18.1.2:80,443-198.18.1.2:443,22-[fd00:198:18:1::2]:22")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("fd00:198:18:1::2")}
	if got := tr.Targets(); !slices.Equal(got, want) {
		t.Errorf("Targets() = %v, want %v", got, want)
	}
}

func TestTransferRewrite(t *testing.T) {
	tr, err := ParseTransfer("443-198.18.1.3:443,198.18.0.2:80-198.18.1.2:8080,80-198.18.1.4:80,80-[fd00:198:18:1::2]:8080")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst, want string
	}{
		{"198.18.0.2:80", "198.18.1.2:8080"}, // specific before the any route listed earlier
		{"198.18.0.9:80", "198.18.1.4:80"},   // any address
		{"198.18.0.9:443", "198.18.1.3:443"},
		{"198.18.0.2:22", ""},
		{"[fd00:198:18::80]:80", "[fd00:198:18:1::2]:8080"},
		{"[fd00:198:18::80]:443", ""}, // the 443 route is IPv4
	} {
		dst := netip.MustParseAddrPort(tc.dst)
		src := cli4
		if dst.Addr().Is6() {
			src = cli6
		}
		p := packet(t, src, dst, capture.FlagACK|capture.FlagPSH, "x")
		ok := tr.Rewrite(p)
		if ok != (tc.want != "") {
			t.Errorf("%s: Rewrite = %v", tc.dst, ok)
			continue
		}
		if !ok {
			continue
		}
		if got := p.DstEndpoint().String(); got != tc.want {
			t.Errorf("%s: rewritten to %s, want %s", tc.dst, got, tc.want)
		}
		if p.SrcEndpoint().AddrPort() != src {
			t.Errorf("%s: source changed to %s", tc.dst, p.SrcEndpoint())
		}
		if !p.ChecksumsValid() {
			t.Errorf("%s: checksums wrong after rewrite", tc.dst)
		}
	}
	if st := tr.Stats(); st.Mapped != 4 || st.Unmapped != 2 {
		t.Errorf("stats %+v, want 4 mapped, 2 unmapped", st)
	}
}
