// Package examples_test tests the example programs as users run them: the
// binaries are built with go build, then run with their command lines.
// TestFlags needs no privileges; the end-to-end tests in
// e2e_linux_test.go build network namespaces and skip when not root.
package examples_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds tcpcopy, intercept and demo once per test process and
// returns the directory holding them.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "tcpcopy-e2e-"); buildErr != nil {
			return
		}
		for _, name := range []string{"tcpcopy", "intercept", "demo"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "./"+name)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = errors.Join(buildErr, errors.New("go build "+name+": "+err.Error()+"\n"+string(out)))
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// runProg runs a built program and returns its exit code, stdout, stderr.
func runProg(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestFlags: unknown and malformed flags and values give one line on
// stderr naming the flag and the value, and exit code 2; -h and -v exit 0.
func TestFlags(t *testing.T) {
	bad := []struct {
		prog string
		args []string
		want []string // substrings of the one line
	}{
		{"tcpcopy", []string{"-z"}, []string{"-z", "not defined"}},
		{"tcpcopy", []string{"--no-such-flag"}, []string{"no-such-flag"}},
		{"tcpcopy", []string{"-n", "abc"}, []string{"-n", `"abc"`}},
		{"tcpcopy", []string{"-n", "2000", "-x", "80-198.18.1.2:80", "-s", "198.18.1.2"}, []string{"-n", `"2000"`}},
		{"tcpcopy", []string{"--copies=0"}, []string{"--copies", `"0"`}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2"}, []string{"-x", `"80-198.18.1.2"`}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2:99999"}, []string{"-s", "99999"}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "-r", "0"}, []string{"-r", `"0"`}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "-t", "soon"}, []string{"-t", `"soon"`}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "-c", "not-an-address"}, []string{"-c", `"not-an-address"`}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "-F", "udp port 53"}, []string{"-F", `"udp port 53"`}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80"}, []string{"-s"}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "--raw-capture", "-i", "veth0"}, []string{"--raw-capture", "-i"}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "-a", "2"}, []string{"-a", "-i"}},
		{"tcpcopy", []string{"-x", "80-198.18.1.2:80", "-s", "198.18.1.2", "extra"}, []string{`"extra"`}},
		{"tcpcopy", []string{"-x", "3306-198.18.1.2:3306", "-s", "198.18.1.2", "-u", "app@pw"}, []string{"--mysql-users", "--mysql"}},
		{"tcpcopy", []string{"-x", "3306-198.18.1.2:3306", "-s", "198.18.1.2", "--mysql", "-u", "nopassword"}, []string{"-u", `"nopassword"`}},
		{"tcpcopy", []string{"-x", "3306-198.18.1.2:3306", "-s", "198.18.1.2", "--mysql", "--mysql-password-file", "/nonexistent/pw"}, []string{"/nonexistent/pw"}},
		{"intercept", []string{"-q"}, []string{"-q"}},
		{"intercept", []string{"-p", "http"}, []string{"-p", `"http"`}},
		{"intercept", []string{"-b", "example.com"}, []string{"-b", `"example.com"`}},
		{"intercept", []string{"-x", "198.18.0.0/99"}, []string{"-x", `"198.18.0.0/99"`}},
		{"intercept", []string{"--rules", "80,x"}, []string{"--rules", `"80,x"`}},
		{"intercept", []string{"-i", "eth0", "-F", "tcp and dst port 80"}, []string{"-F", `"tcp and dst port 80"`}},
		{"intercept", []string{"-i", "eth0"}, []string{"-i", "-F"}},
	}
	for _, c := range bad {
		t.Run(c.prog+" "+strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runProg(t, c.prog, c.args...)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if code != 2 || len(lines) != 1 || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q: want exit 2 and one line on stderr", code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("error line %q does not name %s", lines[0], w)
				}
			}
		})
	}
	for _, prog := range []string{"tcpcopy", "intercept"} {
		code, stdout, stderr := runProg(t, prog, "-h")
		if code != 0 || !strings.Contains(stdout, "Examples:") || !strings.Contains(stdout, "-x") || stderr != "" {
			t.Errorf("%s -h: exit %d, stderr %q, usage:\n%s", prog, code, stderr, stdout)
		}
		code, stdout, _ = runProg(t, prog, "--version")
		if code != 0 || !strings.HasPrefix(stdout, prog+" ") {
			t.Errorf("%s --version: exit %d, %q", prog, code, stdout)
		}
	}
}
