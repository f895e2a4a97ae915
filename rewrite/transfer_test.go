package rewrite

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

func TestParseTransfer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Route
		err  string
	}{
		{in: "80-198.18.1.2:8080", want: []Route{{
			Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("198.18.1.2:8080")}}},
		{in: "198.18.0.2:80-198.18.1.2:80, 3306-198.18.1.3:3306", want: []Route{
			{Online: netip.MustParseAddrPort("198.18.0.2:80"), Target: netip.MustParseAddrPort("198.18.1.2:80")},
			{Online: netip.AddrPortFrom(netip.Addr{}, 3306), Target: netip.MustParseAddrPort("198.18.1.3:3306")}}},
		{in: "[fd00:198:18::2]:80-[fd00:198:18:1::2]:80", want: []Route{{
			Online: netip.MustParseAddrPort("[fd00:198:18::2]:80"), Target: netip.MustParseAddrPort("[fd00:198:18:1::2]:80")}}},
		{in: "", err: "empty transfer map"},
		{in: "80", err: `"80"`},
		{in: "80-", err: `"80-"`},
		{in: "x-198.18.1.2:80", err: `online side "x"`},
		{in: "80-198.18.1.2", err: `target side "198.18.1.2"`},
		{in: "0-198.18.1.2:80", err: "port 0"},
		{in: "80-0.0.0.0:80", err: "target address missing"},
		{in: "198.18.0.2:80-[fd00:198:18::1]:80", err: "different address families"},
		{in: "80-198.18.1.2:80,bad", err: `item "bad"`},
	} {
		tr, err := ParseTransfer(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTransfer(%q) error %v, want it to contain %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTransfer(%q): %v", tc.in, err)
			continue
		}
		got := tr.Routes()
		if len(got) != len(tc.want) {
			t.Errorf("ParseTransfer(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParseTransfer(%q)[%d] = %v, want %v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestTransferRewrite(t *testing.T) {
	tr, err := ParseTransfer("198.18.0.2:80-198.18.1.2:8080,443-198.18.1.3:443")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst, want string
		ok        bool
	}{
		{"198.18.0.2:80", "198.18.1.2:8080", true},
		{"198.18.0.9:80", "", false},               // other address
		{"198.18.0.9:443", "198.18.1.3:443", true}, // any address
		{"198.18.0.2:22", "", false},
	} {
		b, err := capture.AppendSegment(nil, &capture.Segment{
			Src: netip.MustParseAddrPort("198.18.0.1:5000"), Dst: netip.MustParseAddrPort(tc.dst),
			Flags: capture.FlagSYN, Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		var p capture.Packet
		if err := p.Decode(b); err != nil {
			t.Fatal(err)
		}
		if ok := tr.Rewrite(&p); ok != tc.ok {
			t.Errorf("%s: Rewrite = %v", tc.dst, ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if got := p.DstEndpoint().String(); got != tc.want {
			t.Errorf("%s: rewritten to %s, want %s", tc.dst, got, tc.want)
		}
		if !p.ChecksumsValid() {
			t.Errorf("%s: checksums wrong after rewrite", tc.dst)
		}
	}
	if st := tr.Stats(); st.Mapped != 2 || st.Unmapped != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestTransferRewriteAllocs(t *testing.T) {
	tr, _ := ParseTransfer("80-198.18.1.2:80")
	b, _ := capture.AppendSegment(nil, &capture.Segment{
		Src: netip.MustParseAddrPort("198.18.0.1:5000"), Dst: netip.MustParseAddrPort("198.18.0.2:80")})
	var p capture.Packet
	if n := testing.AllocsPerRun(100, func() {
		_ = p.Decode(b)
		tr.Rewrite(&p)
	}); n != 0 {
		t.Errorf("Rewrite allocates %v times per packet", n)
	}
}
