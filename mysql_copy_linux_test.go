package tcpcopy_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/emit"
	"github.com/shadowcopy/tcpcopy/session/mysql"
)

// These lab tests hold the MySQL module (issue 8) against real MariaDB
// servers: in each, the target's general query log shows the statements of
// the copied sessions that the online server's log shows, and the target
// denied no login. Sessions that cannot be copied (TLS, a user without a
// password, an ed25519 account) are skipped and counted, not retried.

// cliOpts keeps the mariadb client off TLS: the online server of some
// tests offers it.
var cliOpts = []string{"--skip-ssl"}

// goWorkload runs prepared statements through go-sql-driver/mysql on one
// connection: server-side COM_STMT_PREPARE/EXECUTE/CLOSE.
func goWorkload(t *testing.T, db *sql.DB, tag string, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ins, err := conn.PrepareContext(ctx, "INSERT INTO t (k, v) VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := ins.Exec(fmt.Sprintf("%s-%d", tag, i), i); err != nil {
			t.Fatal(err)
		}
	}
	ins.Close()
	var count int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM t WHERE k LIKE ?", tag+"-%").Scan(&count); err != nil || count != n {
		t.Fatalf("online: %d rows of %s, err %v", count, tag, err)
	}
}

// rawWorkload exercises packet framing: a login larger than one segment,
// several commands in one segment, a command split over three, and
// COM_CHANGE_USER.
func rawWorkload(l *mysqlLab, tag string) {
	r := l.rawConnect(appUser, appPass, "app", 3000) // about 3 KB: three segments
	r.pipelined(
		fmt.Sprintf("INSERT INTO t (k, v) VALUES ('%s-pipe', 1)", tag),
		fmt.Sprintf("INSERT INTO t (k, v) VALUES ('%s-pipe', 2)", tag),
		fmt.Sprintf("SELECT '%s pipelined'", tag))
	if got := r.split(fmt.Sprintf("SELECT '%s split across segments'", tag)); !strings.Contains(got, "split") {
		l.t.Errorf("split query answered %q", got)
	}
	r.changeUser(app2User, app2Pass, "app")
	r.query(fmt.Sprintf("INSERT INTO t (k, v) VALUES ('%s-changed-user', 3)", tag))
	r.changeUser(appUser, appPass, "app")
	r.query(fmt.Sprintf("SELECT '%s back as app'", tag))
	r.close()
}

func TestMySQLCopyLive(t *testing.T) {
	l := newMySQLLab(t, mysqlLabOptions{onlineTLS: true})

	l.cli(appUser, appPass, cliOpts, "INSERT INTO t (k, v) VALUES ('cli', 1); SELECT COUNT(*) FROM t; UPDATE t SET v = v + 1 WHERE k = 'cli'; SELECT k, v FROM t WHERE k = 'cli'")
	goWorkload(t, l.db(appUser, appPass, nil), "go", 10)
	// A pool of four connections, each preparing lazily: statement ids
	// that differ between the servers (MariaDB reuses counters).
	pool := l.db(appUser, appPass, nil)
	pool.SetMaxOpenConns(4)
	parallel(40, 4, func(i int) {
		if _, err := pool.Exec("INSERT INTO t (k, v) VALUES (?, ?)", fmt.Sprintf("pool-%d", i), i); err != nil {
			t.Errorf("pool insert: %v", err)
		}
	})
	pool.Close()
	rawWorkload(l, "raw")
	// The compressed protocol: the login is re-scrambled, then bytes pass.
	zdb := l.db(appUser, appPass, func(c *mysqldrv.Config) { c.Apply(mysqldrv.EnableCompression(true)) })
	if _, err := zdb.Exec("INSERT INTO t (k, v) VALUES ('compressed', 5)"); err != nil {
		t.Fatal(err)
	}
	var zn int
	if err := zdb.QueryRow("SELECT COUNT(*) FROM t WHERE k = 'compressed'").Scan(&zn); err != nil || zn != 1 {
		t.Fatalf("compressed session: %d rows, %v", zn, err)
	}
	zdb.Close()
	if _, err := exec.LookPath("mariadb-slap"); err == nil {
		out, err := l.client.RunErr("timeout", "60", "mariadb-slap", "--no-defaults", "-h", l.onlineDB.addr.Addr().String(),
			"-u", appUser, "-p"+appPass, "--skip-ssl", "--create-schema=app", "--no-drop", "--concurrency=3", "--iterations=2",
			"--query=INSERT INTO t (k, v) VALUES ('slap', 7); SELECT COUNT(*) FROM t WHERE k = 'slap'", "--delimiter=;")
		if err != nil {
			t.Fatalf("mariadb-slap: %v\n%s", err, out)
		}
	}

	// Sessions the module must skip, with a clear log line each.
	l.cli(edUser, edPass, cliOpts, "SELECT 'ed25519 user'")
	l.cli(strangerUser, strangerPw, cliOpts, "SELECT 'user without a password'")
	tlsDB := l.db(tlsUser, tlsPass, func(c *mysqldrv.Config) { c.TLS = &tls.Config{InsecureSkipVerify: true} })
	if _, err := tlsDB.Exec("SELECT 'over TLS'"); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	tlsDB.Close()

	l.compareStatements(appUser, app2User)
	if got := statements(l.targetDB.generalLog(), edUser, strangerUser, tlsUser); len(got) > 0 {
		t.Errorf("skipped sessions ran statements on the target: %q", got)
	}
	if on, tg := l.onlineDB.tableSummary(), l.targetDB.tableSummary(); on != tg {
		t.Errorf("table contents differ:\n online %s\n target %s", on, tg)
	}
	l.checkNoAccessDenied()
	st := l.mod.Stats()
	if st.TLS != 1 || st.UnknownUser != 1 || st.UnsupportedAuth != 1 || st.ChangeUsers != 2 || st.AuthFailed != 0 {
		t.Errorf("module stats: %+v", st)
	}
	if ss := l.stats(); ss.SkippedByProtocol < 3 || ss.SkippedByProtocol != 3+st.SkippedAgain {
		t.Errorf("sessions skipped by the module: %d, want 3 (TLS, unknown user, ed25519) and %d skipped again", ss.SkippedByProtocol, st.SkippedAgain)
	}
}

// TestMySQLCopyProgram runs the built programs: tcpcopy --mysql -u ... and
// intercept --payload 256, with a real client workload.
func TestMySQLCopyProgram(t *testing.T) {
	l := newMySQLLab(t, mysqlLabOptions{programs: true})
	l.cli(appUser, appPass, nil, "INSERT INTO t (k, v) VALUES ('program', 1); SELECT COUNT(*) FROM t")
	goWorkload(t, l.db(appUser, appPass, nil), "program", 5)
	online, _ := l.compareStatements(appUser)
	if len(online) < 5 {
		t.Errorf("only %d statements ran online", len(online))
	}
	l.checkNoAccessDenied()
}

func TestMySQLSkipGrantTables(t *testing.T) {
	l := newMySQLLab(t, mysqlLabOptions{skipGrant: true, module: mysql.Config{SkipGrantTables: true}})
	l.cli(appUser, appPass, nil, "INSERT INTO t (k, v) VALUES ('cli', 1); SELECT COUNT(*) FROM t")
	// The online server makes the ed25519 user take an auth switch round
	// trip the skip-grant-tables target does not: the client's answer to
	// it must be dropped.
	l.cli(edUser, edPass, nil, "INSERT INTO t (k, v) VALUES ('ed25519', 2); SELECT 'ed25519 user'")
	goWorkload(t, l.db(appUser, appPass, nil), "go", 5)
	rawWorkload(l, "raw")

	l.compareStatements(appUser, app2User, edUser)
	if on, tg := l.onlineDB.tableSummary(), l.targetDB.tableSummary(); on != tg {
		t.Errorf("table contents differ:\n online %s\n target %s", on, tg)
	}
	l.checkNoAccessDenied()
	st := l.mod.Stats()
	if st.DroppedAuth < 1 || st.AuthSwitches != 0 || st.UnsupportedAuth != 0 || l.stats().SkippedByProtocol != 0 {
		t.Errorf("module stats: %+v", st)
	}
}

// TestMySQLMidStream starts the copier while two client connections are
// open and idle. The first to speak has no login from its address stored
// yet and logs in as the default user; then a new connection logs in (and
// is stored), and the second idle one is rebuilt with that login.
func TestMySQLMidStream(t *testing.T) {
	l := newMySQLLab(t, mysqlLabOptions{noCopier: true,
		module: mysql.Config{DefaultUser: appUser, DefaultDatabase: "app"}})
	a := l.rawConnect(appUser, appPass, "app", 0)
	c := l.rawConnect(app2User, app2Pass, "app", 0)
	a.query("SELECT 'a before the copier'")
	c.query("SELECT 'c before the copier'")
	l.startCopier(nil)
	time.Sleep(200 * time.Millisecond) // the capture socket is open

	a.query("INSERT INTO t (k, v) VALUES ('mid-a-after', 1)")
	a.query("SELECT COUNT(*) FROM t WHERE k = 'mid-a-after'")
	b := l.rawConnect(app2User, app2Pass, "app", 0)
	b.query("SELECT 'b after, a fresh login'")
	time.Sleep(100 * time.Millisecond)
	c.query("INSERT INTO t (k, v) VALUES ('mid-c-after', 2)")
	c.query("SELECT 'c after'")
	for _, r := range []*rawMySQL{a, b, c} {
		r.close()
	}

	online := filterStatements(statements(l.onlineDB.generalLog()), "after")
	target := l.waitStatements(len(online))
	l.logStatements(online, target)
	if !slices.Equal(online, target) {
		t.Errorf("target statements differ:\n%s", diffLists(online, target))
	}
	l.checkNoAccessDenied()
	if st := l.mod.Stats(); st.Injected != 2 || st.InjectedDefault != 1 || st.AuthSwitches != 2 {
		t.Errorf("module stats: %+v", st)
	}
	if st := l.stats(); st.Forged != 2 {
		t.Errorf("want 2 forged sessions: %+v", st)
	}
}

func filterStatements(s []string, substr string) []string {
	var out []string
	for _, x := range s {
		if strings.Contains(x, substr) {
			out = append(out, x)
		}
	}
	return out
}

// TestMySQLTargetReset kills the copy of a connection on the target in the
// middle of a session: the session table reconnects, and the module rebuilds
// the connection with its stored login and prepared statements, so the
// client's later executes of statements prepared before the reset run.
func TestMySQLTargetReset(t *testing.T) {
	l := newMySQLLab(t, mysqlLabOptions{})
	ctx := context.Background()
	db := l.db(appUser, appPass, nil)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ins, err := conn.PrepareContext(ctx, "INSERT INTO t (k, v) VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	sel, err := conn.PrepareContext(ctx, "SELECT COUNT(*) FROM t WHERE k = ?")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := ins.Exec("reset-before", 1); err != nil {
		t.Fatal(err)
	}
	if err := sel.QueryRow("reset-before").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if !waitFor(20*time.Second, func() bool { return len(statements(l.targetDB.generalLog(), appUser)) >= 4 }) {
		t.Fatalf("the target did not run the first statements: %q", statements(l.targetDB.generalLog()))
	}
	var id int64
	if err := l.targetDB.admin.QueryRow("SELECT id FROM information_schema.processlist WHERE user = ?", appUser).Scan(&id); err != nil {
		t.Fatalf("find the copied connection on the target: %v", err)
	}
	l.targetDB.exec(fmt.Sprintf("KILL CONNECTION %d", id))
	time.Sleep(500 * time.Millisecond) // the target's FIN reaches the copier

	if _, err := ins.Exec("reset-after", 2); err != nil {
		t.Fatal(err)
	}
	if err := sel.QueryRow("reset-after").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO t (k, v) VALUES ('reset-query', 3)"); err != nil {
		t.Fatal(err)
	}
	ins.Close()
	sel.Close()
	conn.Close()

	online := statements(l.onlineDB.generalLog(), appUser)
	// The rebuilt connection prepared both statements again.
	want := slices.Sorted(slices.Values(append(slices.Clone(online),
		"Prepare\tINSERT INTO t (k, v) VALUES (?, ?)", "Prepare\tSELECT COUNT(*) FROM t WHERE k = ?")))
	target := l.waitStatements(len(want), appUser)
	l.logStatements(online, target)
	if !slices.Equal(want, target) {
		t.Errorf("target statements, want the online ones and two replayed prepares:\n%s", diffLists(want, target))
	}
	if on, tg := l.onlineDB.tableSummary(), l.targetDB.tableSummary(); on != tg {
		t.Errorf("table contents differ:\n online %s\n target %s", on, tg)
	}
	l.checkNoAccessDenied()
	if st := l.mod.Stats(); st.Injected != 1 || st.InjectedPrepares != 2 || st.AuthSwitches != 1 {
		t.Errorf("module stats: %+v", st)
	}
	if st := l.stats(); st.Resumed != 1 {
		t.Errorf("want one resumed session: %+v", st)
	}
}

// TestMySQLOffline records a MySQL workload's client packets to a pcap file
// (capture.RawIP -> emit.PcapWriter) with no copier running, then replays
// the file into the target through capture.File and the Copier.
func TestMySQLOffline(t *testing.T) {
	l := newMySQLLab(t, mysqlLabOptions{noCopier: true})
	path := filepath.Join(t.TempDir(), "mysql.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := emit.NewPcapWriter(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec *capture.RawIP
	if err := l.online.Do(func() (err error) { rec, err = capture.NewRawIP(nil); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		pkts := make([]capture.Packet, 64)
		written := 0
		for {
			n, err := rec.ReadPackets(pkts)
			for i := range pkts[:n] {
				if p := &pkts[i]; p.DstPort() == 3306 && w.WritePacket(p.Time, p.Data) == nil {
					written++
				}
			}
			if err != nil {
				done <- written
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	l.cli(appUser, appPass, nil, "INSERT INTO t (k, v) VALUES ('offline-cli', 1); SELECT COUNT(*) FROM t")
	goWorkload(t, l.db(appUser, appPass, nil), "offline-go", 5)
	rawWorkload(l, "offline-raw")
	time.Sleep(200 * time.Millisecond)
	rec.Close()
	written := <-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("recorded %d client packets to %s", written, path)
	if got := statements(l.targetDB.generalLog()); len(got) != 0 {
		t.Fatalf("the target ran statements before the replay: %q", got)
	}

	file, err := capture.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.startCopier(&holdOpen{Capturer: file, release: make(chan struct{})})
	l.compareStatements(appUser, app2User)
	if on, tg := l.onlineDB.tableSummary(), l.targetDB.tableSummary(); on != tg {
		t.Errorf("table contents differ:\n online %s\n target %s", on, tg)
	}
	l.checkNoAccessDenied()
}
