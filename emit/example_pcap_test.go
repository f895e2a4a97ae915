package emit_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
)

// Write a dry run to a pcap file and read it back.
func ExamplePcapWriter() {
	syn, _ := capture.AppendSegment(nil, &capture.Segment{
		Src:   netip.MustParseAddrPort("198.18.0.1:40000"),
		Dst:   netip.MustParseAddrPort("198.19.0.80:80"),
		Seq:   1000,
		Flags: capture.FlagSYN,
	})
	var file bytes.Buffer
	w, err := emit.NewPcapWriter(&file, &emit.PcapWriterConfig{
		Nanosecond: true,
		Now:        func() time.Time { return time.Unix(1700000000, 5).UTC() },
	})
	if err != nil {
		panic(err)
	}
	_ = w.Emit([][]byte{syn})
	_ = w.Close()

	r, err := capture.NewFileReader(&file, "dry-run.pcap", nil)
	if err != nil {
		panic(err)
	}
	pkts := make([]capture.Packet, 4)
	n, _ := r.ReadPackets(pkts)
	for _, p := range pkts[:n] {
		fmt.Println(p.Time.UTC().Format(time.RFC3339Nano), p.Flow(), "SYN:", p.HasFlags(capture.FlagSYN))
	}
	// Output:
	// 2023-11-14T22:13:20.000000005Z 198.18.0.1:40000->198.19.0.80:80 SYN: true
}
