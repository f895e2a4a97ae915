package replay

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

// Positioner is implemented by sources that know how far into their input
// they are, for progress reports; the Capturers of FileOpener do.
type Positioner interface {
	// Position returns the bytes read of the input and its size (zero
	// when unknown).
	Position() (read, size int64)
}

// FileOpener returns an Open function for Config that opens the pcap or
// pcapng file at path as a capture.File (with cfg) each time it is called.
// The Capturers it returns are Positioners: the position is the bytes the
// reader took from the file, which runs ahead of the packets handed out by
// at most the read buffer (capture.FileConfig.ReadBuffer, 256 KiB by
// default), since capture.File does not tell its own offset.
func FileOpener(path string, cfg *capture.FileConfig) func() (capture.Capturer, error) {
	return func() (capture.Capturer, error) { return openFile(path, cfg) }
}

// fileSource is a capture.File reading through a counting reader.
type fileSource struct {
	*capture.File
	osf  *os.File
	size int64
	read atomic.Int64
}

var (
	_ capture.Capturer = (*fileSource)(nil)
	_ Positioner       = (*fileSource)(nil)
)

func openFile(path string, cfg *capture.FileConfig) (*fileSource, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, err // "open PATH: ..."
	}
	s := &fileSource{osf: osf}
	if fi, err := osf.Stat(); err == nil && fi.Mode().IsRegular() {
		s.size = fi.Size()
	}
	s.File, err = capture.NewFileReader(countingReader{osf, &s.read}, path, cfg)
	if err != nil {
		osf.Close()
		return nil, err
	}
	return s, nil
}

// Position implements Positioner. Should capture.File come to tell the
// offset of the next record (an Offset method), that exact figure is used.
func (s *fileSource) Position() (read, size int64) {
	if o, ok := any(s.File).(interface{ Offset() int64 }); ok {
		return o.Offset(), s.size
	}
	return s.read.Load(), s.size
}

// Close closes the capture.File and the file under it; it is idempotent.
func (s *fileSource) Close() error {
	err := s.File.Close()
	if cerr := s.osf.Close(); cerr != nil && err == nil && !errors.Is(cerr, os.ErrClosed) {
		err = fmt.Errorf("replay: close %s: %w", s.Name(), cerr)
	}
	return err
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
