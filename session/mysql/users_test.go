package mysql

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseUsers(t *testing.T) {
	got, err := ParseUsers("app@pw,report@p@ss,empty@")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["app"] != "pw" || got["report"] != "p@ss" || got["empty"] != "" {
		t.Errorf("got %q", got)
	}
	if got, err := ParseUsers(" "); err != nil || len(got) != 0 {
		t.Errorf("empty list: %v %v", got, err)
	}
	for _, bad := range []string{"nopassword", "@pw", "a@1,a@2", "a@1,,b@2"} {
		_, err := ParseUsers(bad)
		if err == nil {
			t.Errorf("ParseUsers(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "@1") {
			t.Errorf("error shows a password: %v", err)
		}
	}
}

func TestPasswordFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("# users\napp@pw, with comma\r\n\nreport@x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPasswordFile(path)
	if err != nil || got["app"] != "pw, with comma" || got["report"] != "x" || len(got) != 2 {
		t.Fatalf("got %q, %v", got, err)
	}
	p, err := New(&Config{Users: map[string]string{"other": "o"}, PasswordFile: path})
	if err != nil || len(p.users) != 3 {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(&Config{Users: map[string]string{"app": "o"}, PasswordFile: path}); err == nil {
		t.Error("a user both in Users and in the file accepted")
	}
	if _, err := New(&Config{PasswordFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing password file accepted")
	}
	if _, err := New(&Config{DefaultUser: "nobody"}); err == nil {
		t.Error("a default user without a password accepted")
	}
	if _, err := New(nil); err != nil {
		t.Error(err)
	}
}
