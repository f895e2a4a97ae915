package tcpcopy_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"

	"github.com/shadowcopy/tcpcopy"
	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/intercept"
	"github.com/shadowcopy/tcpcopy/internal/netlab"
	"github.com/shadowcopy/tcpcopy/rewrite"
	"github.com/shadowcopy/tcpcopy/session"
	"github.com/shadowcopy/tcpcopy/session/mysql"
)

// The MySQL lab: the copying topology of lab_linux_test.go with a MariaDB
// server (Debian's mariadb-server) in the online and in the target
// namespace, each with its own data directory, socket, general query log
// and error log, and intercept reporting 256 bytes of response payload:
//
//	client 198.18.0.1 -- 198.18.0.2 online 198.18.1.1 -- 198.18.1.2 target
//
// Users on both servers (unless the target skips grant tables):
const (
	appUser, appPass         = "app", "app-pw"     // mysql_native_password
	app2User, app2Pass       = "app2", "second pw" // mysql_native_password, for COM_CHANGE_USER
	edUser, edPass           = "edu", "ed-pw"      // ed25519: unsupported on the target
	strangerUser, strangerPw = "stranger", "x-pw"  // not given to the module
	tlsUser, tlsPass         = "tlsu", "tls-pw"    // connects with TLS
)

// mysqlLabUsers is what the module is told (-u).
const mysqlLabUsers = appUser + "@" + appPass + "," + app2User + "@" + app2Pass + "," + edUser + "@" + edPass + "," + tlsUser + "@" + tlsPass

func requireMariaDB(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mariadbd", "mariadb-install-db", "mariadb", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("mysql lab: %s not found in PATH (apt-get install mariadb-server mariadb-client iptables): skipping", tool)
		}
	}
}

// mariaDB is one server started by the test.
type mariaDB struct {
	t                 *testing.T
	ns                *netlab.NS
	name              string
	dir, sock         string
	general, errorLog string
	addr              netip.AddrPort
	admin             *sql.DB
}

type mariaOptions struct {
	skipGrant bool
	tls       bool
}

// startMariaDB installs a data directory in a temporary directory and
// starts mariadbd in ns on addr:3306. The lab stops it (SIGTERM, then
// SIGKILL, by pid) and the directory is removed when the test ends.
func startMariaDB(t *testing.T, ns *netlab.NS, name string, addr netip.Addr, o mariaOptions) *mariaDB {
	t.Helper()
	dir := t.TempDir()
	m := &mariaDB{
		t: t, ns: ns, name: name, dir: dir, sock: filepath.Join(dir, "sock"),
		general: filepath.Join(dir, "general.log"), errorLog: filepath.Join(dir, "error.log"),
		addr: netip.AddrPortFrom(addr, 3306),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+filepath.Join(dir, "data"),
		"--auth-root-authentication-method=normal", "--user=root", "--skip-test-db")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("%s: mariadb-install-db: %v\n%s", name, err, out)
	}
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--socket=" + m.sock,
		"--port=3306", "--bind-address=" + addr.String(), "--user=root",
		"--pid-file=" + filepath.Join(dir, "pid"), "--log-error=" + m.errorLog,
		"--general-log=1", "--general-log-file=" + m.general, "--log-warnings=4",
		"--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--max-connections=200"}
	if o.skipGrant {
		args = append(args, "--skip-grant-tables")
	}
	if o.tls {
		cert, key := writeTestCert(t, dir)
		args = append(args, "--ssl-cert="+cert, "--ssl-key="+key)
	}
	ns.Start("mariadbd", args...)
	cfg := mysqldrv.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.MultiStatements = "root", "unix", m.sock, true
	conn, err := mysqldrv.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.admin = sql.OpenDB(conn)
	t.Cleanup(func() { m.admin.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := m.admin.Ping()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(m.errorLog)
			t.Fatalf("%s: mariadbd not ready after 60 s: %v\n%s", name, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return m
}

// exec runs statements as root over the socket.
func (m *mariaDB) exec(stmts ...string) {
	m.t.Helper()
	for _, s := range stmts {
		if _, err := m.admin.Exec(s); err != nil {
			m.t.Fatalf("%s: %s: %v", m.name, s, err)
		}
	}
}

// setupSchema creates the app database and table; with users, the users.
func (m *mariaDB) setup(users bool) {
	m.t.Helper()
	m.exec("CREATE DATABASE app",
		"CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(64), v INT)")
	if !users {
		return
	}
	m.exec("INSTALL SONAME 'auth_ed25519'")
	for _, u := range [][2]string{{appUser, appPass}, {app2User, app2Pass}, {strangerUser, strangerPw}, {tlsUser, tlsPass}} {
		m.exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s')", u[0], u[1]),
			fmt.Sprintf("GRANT ALL ON app.* TO '%s'@'%%'", u[0]))
	}
	m.exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED VIA ed25519 USING PASSWORD('%s')", edUser, edPass),
		fmt.Sprintf("GRANT ALL ON app.* TO '%s'@'%%'", edUser))
}

// tableSummary is the app table's content as one comparable string.
func (m *mariaDB) tableSummary() string {
	m.t.Helper()
	rows, err := m.admin.Query("SELECT k, v FROM app.t ORDER BY k, v")
	if err != nil {
		m.t.Fatalf("%s: %v", m.name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		var v int
		if err := rows.Scan(&k, &v); err != nil {
			m.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(out, " ")
}

// logEntry is one line of a general query log.
type logEntry struct {
	conn      string
	user      string // from the connection's Connect (or Change user) line
	cmd, arg  string
	fromLocal bool // a connection over the socket (the test's own)
}

var generalLine = regexp.MustCompile(`^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2})?\s+(\d+)\s([A-Z][a-z]+(?: [a-zA-Z]+)?)\t(.*)$`)

// generalLog parses the server's general query log.
func (m *mariaDB) generalLog() []logEntry {
	m.t.Helper()
	f, err := os.Open(m.general)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	users := map[string]string{}
	local := map[string]bool{}
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		g := generalLine.FindStringSubmatch(sc.Text())
		if g == nil {
			continue
		}
		e := logEntry{conn: g[1], cmd: g[2], arg: g[3]}
		if e.cmd == "Connect" || e.cmd == "Change user" {
			if u, _, ok := strings.Cut(e.arg, "@"); ok {
				users[e.conn] = u
			}
			if strings.Contains(e.arg, "@localhost") {
				local[e.conn] = true
			}
		}
		e.user, e.fromLocal = users[e.conn], local[e.conn]
		out = append(out, e)
	}
	return out
}

// statements returns the client statements of the general log (queries,
// prepares, executes, database changes) of the given users (all users if
// none), as "Command\targument", sorted.
func statements(entries []logEntry, users ...string) []string {
	var out []string
	for _, e := range entries {
		if e.fromLocal || len(users) > 0 && !slices.Contains(users, e.user) {
			continue
		}
		switch e.cmd {
		case "Query", "Prepare", "Execute", "Init DB":
			out = append(out, e.cmd+"\t"+e.arg)
		}
	}
	slices.Sort(out)
	return out
}

// accessDenied returns the lines of the general and error logs that speak
// of a denied login.
func (m *mariaDB) accessDenied() []string {
	var out []string
	for _, p := range []string{m.general, m.errorLog} {
		b, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "Access denied") {
				out = append(out, line)
			}
		}
	}
	return out
}

// writeTestCert writes a self-signed certificate and key for the server's
// TLS, so a client can ask for TLS.
func writeTestCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tcpcopy-lab"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

type mysqlLabOptions struct {
	module    mysql.Config // Users and Logger are filled in unless set
	skipGrant bool         // the target runs with --skip-grant-tables
	onlineTLS bool         // the online server offers TLS
	noCopier  bool         // the test starts the copier itself
	session   session.Config
	programs  bool // run the built tcpcopy --mysql and intercept binaries instead of the library
}

type mysqlLab struct {
	t                      *testing.T
	opts                   mysqlLabOptions
	client, online, target *netlab.NS
	onlineDB, targetDB     *mariaDB
	mod                    *mysql.Protocol
	tables                 []*session.Table
	copier                 *tcpcopy.Copier
	copierDone             chan struct{}
	stopCopier             context.CancelFunc
	ic                     *intercept.Client
	ctx                    context.Context
	goRun                  func(name string, f func() error)
}

func newMySQLLab(t *testing.T, opts mysqlLabOptions) *mysqlLab {
	lab := netlab.New(t)
	requireMariaDB(t)
	l := &mysqlLab{
		t: t, opts: opts,
		client: lab.Namespace("client"),
		online: lab.Namespace("online"),
		target: lab.Namespace("target"),
	}
	clientP, onlineP := netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24")
	routerP, targetP := netip.MustParsePrefix("198.18.1.1/24"), netip.MustParsePrefix("198.18.1.2/24")
	lab.Link(l.client, clientP, l.online, onlineP)
	lab.Link(l.online, routerP, l.target, targetP)
	l.target.AddRoute(netip.MustParsePrefix("198.18.0.0/24"), routerP.Addr())
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		l.target.Sysctl(k, "0")
	}
	l.target.Run("iptables", "-I", "OUTPUT", "-p", "tcp", "--sport", "3306", "-j", "NFQUEUE", "--queue-num", "7")

	l.onlineDB = startMariaDB(t, l.online, "online", onlineP.Addr(), mariaOptions{tls: opts.onlineTLS})
	l.targetDB = startMariaDB(t, l.target, "target", targetP.Addr(), mariaOptions{skipGrant: opts.skipGrant})
	l.onlineDB.setup(true)
	l.targetDB.setup(!opts.skipGrant)

	if opts.programs {
		l.startPrograms()
		return l
	}
	mc := opts.module
	if mc.Users == nil && !mc.SkipGrantTables {
		users, err := mysql.ParseUsers(mysqlLabUsers)
		if err != nil {
			t.Fatal(err)
		}
		mc.Users = users
	}
	if mc.Logger == nil {
		mc.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var err error
	if l.mod, err = mysql.New(&mc); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	l.ctx = ctx
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	l.goRun = func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}

	// The greeting is about 110 bytes; 256 leaves room for auth switches
	// and error messages.
	interceptAddr := netip.AddrPortFrom(targetP.Addr(), 36524).String()
	var srv *intercept.Server
	l.ic, srv, _ = interceptPair(t, ctx, cancel, l.goRun, l.target, l.online, "tcp4", interceptAddr, 256,
		func(pkts []capture.Packet) {
			if c := l.copier; c != nil {
				c.Responses(pkts)
			}
		})
	if !opts.noCopier {
		l.startCopier(nil)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range []*mariaDB{l.onlineDB, l.targetDB} {
				for _, p := range []string{m.general, m.errorLog} {
					b, _ := os.ReadFile(p)
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("%s %s (last lines):\n%s", m.name, filepath.Base(p), strings.Join(lines[max(0, len(lines)-80):], "\n"))
				}
			}
		}
		t.Logf("mysql module stats: %+v", l.mod.Stats())
		t.Logf("session stats: %+v", l.stats())
		if l.copier != nil {
			t.Logf("copier stats: %+v", l.copier.Stats())
		}
		t.Logf("intercept server: %+v", srv.Stats())
	})
	return l
}

// startPrograms builds examples/tcpcopy and examples/intercept and runs
// them as a user would: intercept on the target reading the lab's NFQUEUE
// (with payload reports, which MySQL mode needs), tcpcopy --mysql on the
// online host. It returns once tcpcopy logs that it is ready.
func (l *mysqlLab) startPrograms() {
	t := l.t
	dir := t.TempDir()
	for _, name := range []string{"tcpcopy", "intercept"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./examples/"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, out)
		}
	}
	l.target.Start(filepath.Join(dir, "intercept"), "--queue-num", "7", "--payload", "256",
		"-b", "198.18.1.2", "--stats-interval", "0")
	var out syncLog
	tc := l.online.Command(filepath.Join(dir, "tcpcopy"), "-x", "198.18.0.2:3306-198.18.1.2:3306", "-s", "198.18.1.2",
		"--mysql", "-u", mysqlLabUsers, "--stats-interval", "0", "--log-level", "debug")
	tc.Stdout, tc.Stderr = &out, &out
	l.online.StartCmd(tc)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tcpcopy's log:\n%s", out.String())
		}
	})
	if !waitFor(15*time.Second, func() bool { return strings.Contains(out.String(), "msg=ready") }) {
		t.Fatalf("tcpcopy did not become ready:\n%s", out.String())
	}
}

// syncLog collects a program's output.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCopier starts copying from capt, or from a raw IP socket in the
// online namespace when capt is nil.
func (l *mysqlLab) startCopier(capt capture.Capturer) {
	t := l.t
	var em *emit.RawIP
	if err := l.online.Do(func() (err error) {
		if capt == nil {
			if capt, err = capture.NewRawIP(nil); err != nil {
				return err
			}
		}
		em, err = emit.NewRawIP(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	transfer, err := rewrite.ParseTransfer(l.onlineDB.addr.String() + "-" + l.targetDB.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := l.opts.session
	tmpl.Protocol = l.mod
	l.copier, err = tcpcopy.NewCopier(&tcpcopy.Config{
		Capturer: capt,
		Rewriter: transfer,
		NewTable: newTables(t, tmpl, em, l.ic, &l.tables),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(l.ctx)
	l.stopCopier = cancel
	l.copierDone = make(chan struct{})
	l.goRun("copier", func() error {
		defer close(l.copierDone)
		return l.copier.Run(ctx)
	})
}

func (l *mysqlLab) stats() session.Stats {
	var st session.Stats
	for _, t := range l.tables {
		st = st.Add(t.Stats())
	}
	return st
}

// cli runs the mariadb command-line client in the client namespace against
// the online server and returns its output.
func (l *mysqlLab) cli(user, pass string, extra []string, sqlText string) string {
	l.t.Helper()
	args := append([]string{"--no-defaults", "-h", l.onlineDB.addr.Addr().String(), "-P", "3306",
		"-u", user, "-p" + pass, "--batch", "--skip-column-names"}, extra...)
	args = append(args, "app", "-e", sqlText)
	out, err := l.client.RunErr("timeout", append([]string{"60", "mariadb"}, args...)...)
	if err != nil {
		l.t.Fatalf("mariadb client as %s: %v\n%s", user, err, out)
	}
	return out
}

// db opens a go-sql-driver/mysql pool whose connections are dialled in the
// client namespace.
func (l *mysqlLab) db(user, pass string, tweak func(*mysqldrv.Config)) *sql.DB {
	cfg := mysqldrv.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pass, "tcp", l.onlineDB.addr.String(), "app"
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 10*time.Second, 30*time.Second, 30*time.Second
	cfg.DialFunc = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = l.client.Do(func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
			return err
		})
		return c, err
	}
	if tweak != nil {
		tweak(cfg)
	}
	conn, err := mysqldrv.NewConnector(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	l.t.Cleanup(func() { db.Close() })
	return db
}

// waitStatements waits (bounded) until the target's log holds at least
// want client statements of users, then returns them.
func (l *mysqlLab) waitStatements(want int, users ...string) []string {
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := statements(l.targetDB.generalLog(), users...)
		if len(got) >= want || time.Now().After(deadline) {
			time.Sleep(300 * time.Millisecond) // and no more than want
			return statements(l.targetDB.generalLog(), users...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// compareStatements checks that the target executed exactly the online
// statements of users, and reports both lists.
func (l *mysqlLab) compareStatements(users ...string) (online, target []string) {
	l.t.Helper()
	online = statements(l.onlineDB.generalLog(), users...)
	target = l.waitStatements(len(online), users...)
	l.logStatements(online, target)
	if !slices.Equal(online, target) {
		l.t.Errorf("target statements differ from online ones:\n%s", diffLists(online, target))
	}
	return online, target
}

func (l *mysqlLab) logStatements(online, target []string) {
	l.t.Logf("statements online: %d, on the target: %d", len(online), len(target))
	for _, s := range online {
		mark := "  "
		if !slices.Contains(target, s) {
			mark = "- "
		}
		l.t.Logf("  online %s%q", mark, s)
	}
	for _, s := range target {
		if !slices.Contains(online, s) {
			l.t.Logf("  target + %q", s)
		}
	}
}

// diffLists shows the lines of a missing from b and the lines of b not in a.
func diffLists(a, b []string) string {
	var sb strings.Builder
	for _, s := range a {
		if !slices.Contains(b, s) {
			fmt.Fprintf(&sb, "  missing on the target: %q\n", s)
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			fmt.Fprintf(&sb, "  only on the target:    %q\n", s)
		}
	}
	if sb.Len() == 0 {
		fmt.Fprintf(&sb, "  same statements, different counts: %d online, %d target\n", len(a), len(b))
	}
	return sb.String()
}

// checkNoAccessDenied fails if the target logged a denied login.
func (l *mysqlLab) checkNoAccessDenied() {
	l.t.Helper()
	if lines := l.targetDB.accessDenied(); len(lines) > 0 {
		l.t.Errorf("the target denied logins:\n%s", strings.Join(lines, "\n"))
	}
}

// waitFor polls cond (bounded) and reports whether it became true.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// holdOpen is a Capturer that reads a file and then, instead of ending
// the copy with io.EOF, waits until released, so the sessions can finish
// with the target.
type holdOpen struct {
	capture.Capturer
	release chan struct{}
	once    sync.Once
}

func (h *holdOpen) ReadPackets(pkts []capture.Packet) (int, error) {
	n, err := h.Capturer.ReadPackets(pkts)
	if err == io.EOF {
		if n > 0 {
			return n, nil
		}
		<-h.release
	}
	return n, err
}

func (h *holdOpen) Close() error {
	h.once.Do(func() { close(h.release) })
	return h.Capturer.Close()
}
