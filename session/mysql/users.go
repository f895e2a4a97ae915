package mysql

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// ParseUsers parses TCPCopy's -u list, "user@password,user2@password2":
// entries are split at commas, each at its first '@' (so a password may
// hold '@' but not ','; use a password file for those). "user@" is a user
// with an empty password. An empty string gives an empty map.
func ParseUsers(s string) (map[string]string, error) {
	users := make(map[string]string)
	if strings.TrimSpace(s) == "" {
		return users, nil
	}
	for _, e := range strings.Split(s, ",") {
		if err := addUser(users, e); err != nil {
			return nil, err
		}
	}
	return users, nil
}

func addUser(users map[string]string, e string) error {
	user, pw, ok := strings.Cut(e, "@")
	if !ok || user == "" {
		return fmt.Errorf("mysql: user entry %q is not user@password", redact(e))
	}
	if _, dup := users[user]; dup {
		return fmt.Errorf("mysql: user %q given twice", user)
	}
	users[user] = pw
	return nil
}

// redact hides the password part of a malformed entry in messages.
func redact(e string) string {
	if user, _, ok := strings.Cut(e, "@"); ok {
		return user + "@..."
	}
	if len(e) > 2 {
		return e[:2] + "..."
	}
	return e
}

// ReadPasswordFile reads users and passwords from a file: one user@password
// a line (split at the first '@', the rest of the line is the password,
// commas included); blank lines and lines starting with '#' are skipped.
func ReadPasswordFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mysql: read password file: %w", err)
	}
	users := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if err := addUser(users, line); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mysql: read password file %s: %w", path, err)
	}
	return users, nil
}
