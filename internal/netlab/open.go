package netlab

import (
	"io"
	"testing"
)

// Open calls open inside ns (NS.Do), so a socket it makes lives there,
// fails tb on an error, and closes what it returned when tb ends.
func Open[T io.Closer](tb testing.TB, ns *NS, open func() (T, error)) T {
	tb.Helper()
	var v T
	if err := ns.Do(func() (err error) {
		v, err = open()
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}
