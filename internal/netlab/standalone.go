//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Reporter receives what a standalone lab says: the lines a test's t.Logf
// would get (stale namespaces swept, processes that ignored SIGTERM,
// errors during cleanup).
type Reporter interface {
	Logf(format string, args ...any)
}

// Standalone is a Lab for a program rather than a test (the demo): the
// same namespaces, links and processes, with the same address checks, but
// where a test would fail, the lab panics with an error that [Standalone.Try]
// turns back into a returned error, and what a test would clean up at its
// end is cleaned up by [Standalone.Close]. Methods that fail must be called
// inside Try, on the goroutine that calls Try.
type Standalone struct {
	*Lab
	tb *programTB
}

// labFailure is the panic value of a failure inside Try.
type labFailure struct{ err error }

// NewStandalone returns a lab for a program. Like [New] it requires root
// with CAP_SYS_ADMIN and CAP_NET_ADMIN and the ip tool, and the first lab
// of a process deletes the namespaces of crashed earlier runs; it reports
// what is missing as an error instead of skipping a test.
func NewStandalone(r Reporter) (s *Standalone, err error) {
	tb := &programTB{r: r}
	s = &Standalone{tb: tb}
	err = s.Try(func() { s.Lab = New(tb) })
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Try runs f and returns the failure, if any, that a method of the lab (or
// of one of its namespaces) reported during f; what f set up so far stays
// registered for Close. Other panics go on unchanged.
func (s *Standalone) Try(f func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			lf, ok := p.(labFailure)
			if !ok {
				panic(p)
			}
			err = lf.err
		}
	}()
	f()
	return nil
}

// Close stops the processes the lab started, deletes its namespaces and
// runs every other cleanup, last registered first, and returns the errors
// they reported. It is idempotent and may be called from any goroutine.
func (s *Standalone) Close() error {
	return s.tb.cleanup()
}

// programTB is the testing.TB that a standalone Lab is given. It embeds a
// nil testing.TB only to have the interface's unexported method; every
// method the lab calls is defined here (the others panic with a clear
// message rather than through the nil interface).
type programTB struct {
	testing.TB
	r Reporter

	mu       sync.Mutex
	cleanups []func()
	errs     []error
	failed   bool
	closed   bool
}

var _ testing.TB = (*programTB)(nil)

func (p *programTB) fail(err error) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(labFailure{err})
}

func (p *programTB) Helper()                         {}
func (p *programTB) Name() string                    { return "netlab-standalone" }
func (p *programTB) Log(args ...any)                 { p.r.Logf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }
func (p *programTB) Logf(format string, args ...any) { p.r.Logf(format, args...) }
func (p *programTB) Fatal(args ...any) {
	p.fail(errors.New(strings.TrimSuffix(fmt.Sprintln(args...), "\n")))
}
func (p *programTB) Fatalf(format string, args ...any) { p.fail(fmt.Errorf(format, args...)) }
func (p *programTB) FailNow()                          { p.fail(errors.New("netlab: failed")) }
func (p *programTB) Skip(args ...any)                  { p.Fatal(args...) }
func (p *programTB) Skipf(format string, args ...any)  { p.Fatalf(format, args...) }
func (p *programTB) SkipNow()                          { p.fail(errors.New("netlab: requirement missing")) }
func (p *programTB) Skipped() bool                     { return false }
func (p *programTB) Context() context.Context          { return context.Background() }
func (p *programTB) Output() io.Writer                 { return os.Stderr }
func (p *programTB) Attr(key, value string)            {}
func (p *programTB) ArtifactDir() string               { panic("netlab: ArtifactDir in a standalone lab") }
func (p *programTB) TempDir() string                   { panic("netlab: TempDir in a standalone lab") }
func (p *programTB) Setenv(key, value string)          { panic("netlab: Setenv in a standalone lab") }
func (p *programTB) Chdir(dir string)                  { panic("netlab: Chdir in a standalone lab") }

func (p *programTB) Fail() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

func (p *programTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Error and Errorf (used by cleanups) record the error and go on.
func (p *programTB) Error(args ...any) {
	p.record(errors.New(strings.TrimSuffix(fmt.Sprintln(args...), "\n")))
}

func (p *programTB) Errorf(format string, args ...any) { p.record(fmt.Errorf(format, args...)) }

func (p *programTB) record(err error) {
	p.mu.Lock()
	p.failed = true
	p.errs = append(p.errs, err)
	p.mu.Unlock()
	p.r.Logf("%v", err)
}

func (p *programTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		// Registered after Close: run at once rather than leak.
		defer f()
		return
	}
	p.cleanups = append(p.cleanups, f)
}

// cleanup runs the cleanups, last first; a lab failure inside one is
// recorded and the others still run.
func (p *programTB) cleanup() error {
	p.mu.Lock()
	fs := slices.Clone(p.cleanups)
	p.cleanups, p.closed = nil, true
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					if lf, ok := r.(labFailure); ok {
						p.record(lf.err)
						return
					}
					p.record(fmt.Errorf("netlab: cleanup panicked: %v", r))
				}
			}()
			fs[i]()
		}()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err := errors.Join(p.errs...)
	p.errs = nil
	return err
}
