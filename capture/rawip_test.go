package capture_test

import (
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
)

func TestRawIPConfigErrors(t *testing.T) {
	for _, cfg := range []capture.RawIPConfig{
		{Network: "udp"},
		{Network: "ip"},
		{Batch: -1},
		{Batch: 5000},
		{SnapLen: 20},
		{SnapLen: 70000},
		{RecvBuffer: -1},
	} {
		if c, err := capture.NewRawIP(&cfg); err == nil {
			c.Close()
			t.Errorf("NewRawIP(%+v) succeeded", cfg)
		}
	}
}
