package mysql

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
	"github.com/shadowcopy/tcpcopy/session"
)

// Config configures a Protocol. Every zero value is documented.
type Config struct {
	// Users maps MySQL user names to their passwords on the target (see
	// ParseUsers for TCPCopy's -u syntax). A session whose user has no
	// entry is skipped with a log line naming the user. Zero (nil): no
	// users, which is only useful with SkipGrantTables.
	Users map[string]string
	// PasswordFile, if set, is read by New for more users, one
	// user@password a line (see ReadPasswordFile); an entry also in Users
	// is an error.
	PasswordFile string
	// SkipGrantTables is for a target started with --skip-grant-tables:
	// logins are sent as captured and need no password; the round trips
	// the online server took beyond the target's are still dropped. Zero
	// (false): logins are re-scrambled with the passwords of Users.
	SkipGrantTables bool
	// DefaultUser and DefaultDatabase log in a session captured mid-stream
	// when no login from its client address has been seen yet (its own
	// login happened before the copier started). Zero: such a session is
	// skipped (counted as NoLogin) until a login from its address is seen.
	DefaultUser, DefaultDatabase string
	// MaxStoredConns bounds the connections whose login and prepared
	// statements are kept for rebuilding sessions (least recently used go
	// first). Zero: 65536.
	MaxStoredConns int
	// MaxStoredBytes bounds the bytes those records take. Zero: 64 MiB.
	MaxStoredBytes int64
	// MaxPrepares bounds the COM_STMT_PREPARE packets kept per connection.
	// Zero: 4096.
	MaxPrepares int
	// Logger receives session-level events: skipped sessions (at Warn, the
	// first time for each user, client address or reason; later ones at
	// Debug) and rebuilt sessions (Debug). Nil discards.
	Logger *slog.Logger
}

// Stats counts what the module did, over all sessions. Skipped sessions
// are counted once, under one reason; the session table also counts them
// (session.Stats.SkippedByProtocol).
type Stats struct {
	Sessions         uint64 // sessions opened (the table asked for a Conn)
	Logins           uint64 // captured logins sent on (re-scrambled unless SkipGrantTables)
	ChangeUsers      uint64 // COM_CHANGE_USER packets sent on
	AuthSwitches     uint64 // auth-switch requests of the target answered by the module
	AuthOK           uint64 // logins and user changes the target accepted
	Injected         uint64 // resumed or mid-stream sessions rebuilt from a stored login
	InjectedDefault  uint64 // of Injected: logged in as DefaultUser
	InjectedPrepares uint64 // COM_STMT_PREPARE packets replayed into rebuilt sessions
	DroppedAuth      uint64 // client authentication packets dropped (round trips the target did not take)
	StmtIDsMapped    uint64 // statement ids rewritten from the online server's numbering to the target's
	StmtIDsUnmapped  uint64 // statement ids sent as they were: the target's numbering was not learned yet

	StoredConns       uint64 // connections whose login is stored now
	StoredBytes       uint64 // bytes those records take now
	Evicted           uint64 // stored connections evicted over MaxStoredConns or MaxStoredBytes
	PreparesNotStored uint64 // COM_STMT_PREPARE packets not kept (over MaxPrepares, or over 64 KiB)

	// Sessions skipped, by reason.
	TLS             uint64 // the client asked for TLS (SSL request)
	UnknownUser     uint64 // no password for the user in Users
	NoLogin         uint64 // rebuilt session without a stored login
	UnsupportedAuth uint64 // an auth plugin or protocol the module cannot answer
	AuthFailed      uint64 // the target refused the login (ERR)
	BadGreeting     uint64 // the target's greeting missing, refused or cut short (PayloadLimit)
	Malformed       uint64 // a client packet the module could not parse
	Overflow        uint64 // too much client data while the target authenticated
	// SkippedAgain counts later packets of a skipped session that the
	// table took for a new mid-stream session, skipped again at once.
	SkippedAgain uint64
}

type counters struct {
	sessions, logins, changeUsers, authSwitches, authOK      atomic.Uint64
	injected, injectedDefault, injectedPrepares, droppedAuth atomic.Uint64
	tls, unknownUser, noLogin, unsupportedAuth, authFailed   atomic.Uint64
	badGreeting, malformed, overflow, skippedAgain           atomic.Uint64
	stmtMapped, stmtUnmapped                                 atomic.Uint64
}

// Protocol is the MySQL protocol module: a session.Protocol to set as
// session.Config.Protocol (one Protocol may serve every shard's table). It
// is safe for concurrent use; each Conn it opens belongs to one session
// and is used from that session's goroutine.
type Protocol struct {
	cfg   Config
	users map[string]string
	store *store
	c     counters
	log   *slog.Logger

	warnMu  sync.Mutex
	warned  map[string]struct{}
	skipped map[capture.Endpoint]struct{} // clients of skipped sessions (under warnMu)
}

var _ session.Protocol = (*Protocol)(nil)

// New returns a Protocol configured by cfg (nil: defaults, which skip
// every session for want of passwords unless SkipGrantTables is set). It
// reads cfg.PasswordFile, if set.
func New(cfg *Config) (*Protocol, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	users := make(map[string]string, len(c.Users))
	for u, pw := range c.Users {
		users[u] = pw
	}
	if c.PasswordFile != "" {
		more, err := ReadPasswordFile(c.PasswordFile)
		if err != nil {
			return nil, err
		}
		for u, pw := range more {
			if _, dup := users[u]; dup {
				return nil, fmt.Errorf("mysql: user %q is both in Users and in %s", u, c.PasswordFile)
			}
			users[u] = pw
		}
	}
	if c.DefaultUser != "" && !c.SkipGrantTables {
		if _, ok := users[c.DefaultUser]; !ok {
			return nil, fmt.Errorf("mysql: DefaultUser %q has no password in Users", c.DefaultUser)
		}
	}
	if c.MaxStoredConns < 0 || c.MaxStoredBytes < 0 || c.MaxPrepares < 0 {
		return nil, fmt.Errorf("mysql: negative store limit")
	}
	if c.MaxStoredConns == 0 {
		c.MaxStoredConns = 65536
	}
	if c.MaxStoredBytes == 0 {
		c.MaxStoredBytes = 64 << 20
	}
	if c.MaxPrepares == 0 {
		c.MaxPrepares = 4096
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Protocol{
		cfg: c, users: users, log: log,
		store:  newStore(c.MaxStoredConns, c.MaxStoredBytes, c.MaxPrepares),
		warned: make(map[string]struct{}), skipped: make(map[capture.Endpoint]struct{}),
	}, nil
}

// Open implements session.Protocol.
//
// The session table forgets a skipped session, so the rest of its client
// packets would open a mid-stream session each; a resumed session on the
// endpoint of a skipped one is skipped at once (counted as SkippedAgain)
// until a new connection (a SYN) takes the endpoint.
func (p *Protocol) Open(client, target capture.Endpoint, resumed bool) session.Conn {
	p.c.sessions.Add(1)
	c := &conn{p: p, client: client, target: target, resumed: resumed, phase: phaseGreeting}
	p.warnMu.Lock()
	_, skipped := p.skipped[client]
	if skipped && !resumed {
		delete(p.skipped, client)
	}
	p.warnMu.Unlock()
	if skipped && resumed {
		c.skip = true
		p.c.skippedAgain.Add(1)
	}
	return c
}

// maxSkipped bounds the remembered clients of skipped sessions.
const maxSkipped = 65536

func (p *Protocol) markSkipped(client capture.Endpoint) {
	p.warnMu.Lock()
	if len(p.skipped) >= maxSkipped {
		clear(p.skipped)
	}
	p.skipped[client] = struct{}{}
	p.warnMu.Unlock()
}

// Stats returns a snapshot of the counters.
func (p *Protocol) Stats() Stats {
	c := &p.c
	conns, bytes, evicted, notStored := p.store.usage()
	return Stats{
		Sessions: c.sessions.Load(), Logins: c.logins.Load(), ChangeUsers: c.changeUsers.Load(),
		AuthSwitches: c.authSwitches.Load(), AuthOK: c.authOK.Load(),
		Injected: c.injected.Load(), InjectedDefault: c.injectedDefault.Load(),
		InjectedPrepares: c.injectedPrepares.Load(), DroppedAuth: c.droppedAuth.Load(),
		StoredConns: uint64(conns), StoredBytes: uint64(bytes), Evicted: evicted, PreparesNotStored: notStored,
		TLS: c.tls.Load(), UnknownUser: c.unknownUser.Load(), NoLogin: c.noLogin.Load(),
		UnsupportedAuth: c.unsupportedAuth.Load(), AuthFailed: c.authFailed.Load(),
		BadGreeting: c.badGreeting.Load(), Malformed: c.malformed.Load(), Overflow: c.overflow.Load(),
		SkippedAgain: c.skippedAgain.Load(), StmtIDsMapped: c.stmtMapped.Load(), StmtIDsUnmapped: c.stmtUnmapped.Load(),
	}
}

// maxWarned bounds the keys remembered for once-only warnings.
const maxWarned = 4096

// warn logs msg at Warn the first time key is seen, at Debug after.
func (p *Protocol) warn(key, msg string, args ...any) {
	p.warnMu.Lock()
	_, seen := p.warned[key]
	if !seen {
		if len(p.warned) >= maxWarned {
			clear(p.warned)
		}
		p.warned[key] = struct{}{}
	}
	p.warnMu.Unlock()
	level := slog.LevelWarn
	if seen {
		level = slog.LevelDebug
	}
	p.log.Log(context.Background(), level, msg, args...)
}
