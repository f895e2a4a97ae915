package capture_test

import (
	"testing"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/internal/statstest"
)

func TestStatsAddCoversEveryField(t *testing.T) {
	statstest.AddCoversEveryField(t, capture.Stats.Add)
}
