// Package cli holds what the example programs share: TCPCopy-style flags
// with short and long names, logging, PID files, daemon mode, periodic
// statistics and the Prometheus endpoint. It is plumbing between flags and
// the library's Config structs; the copying logic lives in the library.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // a runtime failure
	ExitUsage = 2 // a bad flag or value
)

// UsageError is a bad command line: the program prints it as one line and
// exits with ExitUsage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ErrVersion is returned by Parse for -v.
var ErrVersion = errors.New("version requested")

// FlagSet is a flag.FlagSet whose flags have a short (TCPCopy) and a long
// (GNU-style) name; both may be written with one or two dashes.
type FlagSet struct {
	Prog    string
	fs      *flag.FlagSet
	entries []entry
	help    bool
	version bool
}

type entry struct {
	short, long, arg, help string
	def                    string
}

// NewFlagSet returns a FlagSet with -h/--help and -v/--version.
func NewFlagSet(prog string) *FlagSet {
	f := &FlagSet{Prog: prog, fs: flag.NewFlagSet(prog, flag.ContinueOnError)}
	f.fs.SetOutput(io.Discard)
	f.fs.Usage = func() {}
	f.Bool(&f.help, "h", "help", "print this help and exit")
	f.Bool(&f.version, "v", "version", "print the version and exit")
	return f
}

// Var registers v under short (may be empty) and long. def is shown in the
// usage text ("" for none).
func (f *FlagSet) Var(v flag.Value, short, long, arg, def, help string) {
	if short != "" {
		f.fs.Var(v, short, help)
	}
	if long != "" {
		f.fs.Var(v, long, help)
	}
	f.entries = append(f.entries, entry{short: short, long: long, arg: arg, help: help, def: def})
}

type boolValue struct{ p *bool }

func (b boolValue) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}
func (b boolValue) IsBoolFlag() bool { return true }
func (b boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*b.p = v
	return nil
}

// Bool registers a switch.
func (f *FlagSet) Bool(p *bool, short, long, help string) {
	f.Var(boolValue{p}, short, long, "", "", help)
}

type funcValue struct {
	set func(string) error
	cur func() string
}

func (v funcValue) String() string {
	if v.cur == nil {
		return ""
	}
	return v.cur()
}
func (v funcValue) Set(s string) error { return v.set(s) }

// Func registers a flag whose value set checks and stores.
func (f *FlagSet) Func(short, long, arg, def, help string, set func(string) error) {
	f.Var(funcValue{set: set}, short, long, arg, def, help)
}

// String registers a string flag.
func (f *FlagSet) String(p *string, short, long, arg, help string) {
	def := ""
	if *p != "" {
		def = *p
	}
	f.Func(short, long, arg, def, help, func(s string) error { *p = s; return nil })
}

// Int registers an integer flag limited to [lo, hi].
func (f *FlagSet) Int(p *int, short, long, arg, help string, lo, hi int) {
	def := ""
	if *p != 0 {
		def = strconv.Itoa(*p)
	}
	f.Func(short, long, arg, def, help, func(s string) error {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not an integer")
		}
		if v < lo || v > hi {
			return fmt.Errorf("must be in [%d, %d]", lo, hi)
		}
		*p = v
		return nil
	})
}

// Float registers a number limited to [lo, hi].
func (f *FlagSet) Float(p *float64, short, long, arg, help string, lo, hi float64) {
	f.Func(short, long, arg, strconv.FormatFloat(*p, 'g', -1, 64), help, func(s string) error {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(v) {
			return errors.New("not a number")
		}
		if v < lo || v > hi {
			return fmt.Errorf("must be in [%g, %g]", lo, hi)
		}
		*p = v
		return nil
	})
}

// Seconds registers a duration written as TCPCopy does, in whole units of
// unit (seconds, milliseconds), or as a Go duration ("90s", "2m").
func (f *FlagSet) Seconds(p *time.Duration, short, long, arg, help string, unit time.Duration) {
	def := ""
	if *p != 0 {
		def = strconv.FormatInt(int64(*p/unit), 10)
	}
	f.Func(short, long, arg, def, help, func(s string) error {
		d, err := ParseDuration(s, unit)
		if err != nil {
			return err
		}
		*p = d
		return nil
	})
}

// ParseDuration reads n (in unit) or a Go duration; negative is an error.
func ParseDuration(s string, unit time.Duration) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(math.MaxInt64/unit) {
			return 0, errors.New("out of range")
		}
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (a number, or like 90s, 2m)")
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

var longFlag = regexp.MustCompile(`flag -([a-zA-Z][a-zA-Z0-9-]+)`)

// Parse parses args. It returns flag.ErrHelp for -h, ErrVersion for -v,
// and a UsageError (one line naming the flag and value) for anything wrong.
func (f *FlagSet) Parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		// The flag package writes every name with one dash; long names are
		// documented with two.
		return &UsageError{Msg: longFlag.ReplaceAllString(err.Error(), "flag --$1")}
	}
	if f.help {
		return flag.ErrHelp
	}
	if f.version {
		return ErrVersion
	}
	if f.fs.NArg() > 0 {
		return Usagef("unexpected argument %q", f.fs.Arg(0))
	}
	return nil
}

// Set reports whether the flag (by either name) was given.
func (f *FlagSet) Set(name string) bool {
	set := false
	var names []string
	for _, e := range f.entries {
		if e.short == name || e.long == name {
			names = []string{e.short, e.long}
		}
	}
	f.fs.Visit(func(fl *flag.Flag) {
		for _, n := range names {
			if n != "" && fl.Name == n {
				set = true
			}
		}
	})
	return set
}

// PrintUsage writes the usage text: synopsis, the flags table, then more
// (examples, notes).
func (f *FlagSet) PrintUsage(w io.Writer, synopsis, more string) {
	fmt.Fprintf(w, "%s\n\nOptions:\n", strings.TrimSpace(synopsis))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, e := range f.entries {
		var names []string
		if e.short != "" {
			names = append(names, "-"+e.short)
		}
		if e.long != "" {
			names = append(names, "--"+e.long)
		}
		name := strings.Join(names, ", ")
		if e.arg != "" {
			name += " " + e.arg
		}
		help := e.help
		if e.def != "" {
			help += " (default " + e.def + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, help)
	}
	tw.Flush()
	if more != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(more))
	}
}

// Version returns the module version and VCS revision of the binary.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if len(s.Value) > 12 {
				v += " " + s.Value[:12]
			} else {
				v += " " + s.Value
			}
		case "vcs.modified":
			if s.Value == "true" {
				v += "+dirty"
			}
		}
	}
	return v + " (" + bi.GoVersion + ")"
}

// ParseList splits a comma-separated list, dropping empty items.
func ParseList(s string) []string {
	var out []string
	for _, it := range strings.Split(s, ",") {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// ParsePrefixes reads a comma-separated list of addresses (as /32 or /128)
// and prefixes.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, it := range ParseList(s) {
		if a, err := netip.ParseAddr(it); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(it)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or prefix", it)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParsePorts reads a comma-separated list of ports.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, it := range ParseList(s) {
		n, err := strconv.ParseUint(it, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port", it)
		}
		out = append(out, uint16(n))
	}
	if len(out) == 0 {
		return nil, errors.New("no port")
	}
	return out, nil
}

// ReadSecret returns the shared secret from a flag value, a file or the
// environment variable env, in that order (a file or the environment keep
// it out of the process list).
func ReadSecret(flagValue, file, env string) ([]byte, error) {
	switch {
	case flagValue != "":
		return []byte(flagValue), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	case os.Getenv(env) != "":
		return []byte(os.Getenv(env)), nil
	}
	return nil, nil
}
