package emit_test

import (
	"testing"

	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/internal/statstest"
)

func TestStatsAddCoversEveryField(t *testing.T) {
	statstest.AddCoversEveryField(t, emit.Stats.Add)
}
