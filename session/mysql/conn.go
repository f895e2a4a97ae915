package mysql

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/shadowcopy/tcpcopy/capture"
)

type phase uint8

const (
	phaseInvalid     phase = iota
	phaseGreeting          // waiting for the target's greeting; client bytes held
	phaseLogin             // waiting for the client's login
	phaseAuth              // a login or COM_CHANGE_USER is with the target; client bytes held
	phaseCommand           // authenticated: commands pass
	phasePassthrough       // compressed protocol after the login: bytes pass unparsed
	phaseReplay            // stored prepares replayed; client bytes held until their ids are known
)

func (p phase) String() string {
	switch p {
	case phaseGreeting:
		return "greeting"
	case phaseLogin:
		return "login"
	case phaseAuth:
		return "auth"
	case phaseCommand:
		return "command"
	case phasePassthrough:
		return "passthrough"
	case phaseReplay:
		return "replay"
	}
	return "invalid"
}

// action is what happens to the bytes of the client packet under way.
type action uint8

const (
	actPass   action = iota // sent on as they come
	actStore                // sent on, and kept whole (COM_STMT_PREPARE and friends)
	actBuffer               // kept whole, then rewritten (logins, COM_CHANGE_USER)
	actDrop                 // not sent (authentication round trips the target does not take)
)

const (
	// maxHeld bounds the client bytes held while the target authenticates.
	maxHeld = 4 << 20
	// maxStored bounds a command packet kept whole for the store.
	maxStored = 64 << 10
	// maxServerPacket bounds what is kept of one target packet; greetings,
	// auth switches, OK and ERR packets are far smaller.
	maxServerPacket = 1024
)

// conn is the module's state for one session. Client bytes are parsed as
// a stream of MySQL packets (header: 3-byte length, 1-byte sequence id), so
// packets split across segments or sharing one are alike; output may lag
// input (a header, or a whole login, is kept until complete), and the
// session table shifts TCP sequence numbers by the difference.
type conn struct {
	p              *Protocol
	client, target capture.Endpoint
	resumed        bool
	phase          phase
	skip           bool

	injected bool   // a stored login went out before the greeting
	replay   []byte // prepares to send once the injected login is accepted
	login    *login // the session's login as stored (auth response dropped)
	user     string
	password string
	caps     uint32 // the client's capabilities (how it encodes its packets)
	tcaps    uint32 // the capabilities the target was told
	compress bool
	dropAuth bool   // drop client packets with sequence id > 0 until a command
	held     []byte // client bytes that came while the target authenticated
	scramble []byte // the target's current scramble

	// Client stream.
	hdr     [headerLen + 1 + 4]byte // header, command byte and statement id of the next packet
	nhdr    int
	inPkt   bool
	remain  int // payload bytes of the current packet still to come
	act     action
	cmd     int // command byte of the current packet, -1 for none
	seq     uint8
	cont    bool // the next packet continues a maximum-size one
	pkt     []byte
	pktKeep bool // pkt is being kept (it fits)

	// Target stream, parsed only while a greeting or an authentication
	// answer is awaited.
	rsync   bool // the parser is at a known position in the stream
	rhdr    [headerLen]byte
	rnhdr   int
	rin     bool
	rremain int
	rseq    uint8
	rpkt    []byte
	rtrunc  bool // part of rpkt was not reported (PayloadLimit)

	// Prepared statement ids. Servers number a connection's statements
	// consecutively in prepare order, failed prepares included, but not
	// from 1 (MariaDB 10.11 gives a new connection a finished one's counter).
	// So the online server's ids are obase+1, obase+2, ... and the
	// target's tbase+1, ...; the module learns tbase from the target's
	// first PREPARE_OK and obase from the ids the client uses, and adds
	// tbase-obase to every statement id the client sends.
	nprep     uint32 // statements prepared on this target connection (replayed ones included)
	obase     uint32 // the online server's base as known so far (the smallest consistent)
	tbase     uint32
	tknown    bool
	awaitPrep uint32   // ordinal of the prepare whose PREPARE_OK would teach tbase
	closeOrd  []uint32 // replayed placeholders to close once tbase is known
	stmtOrd   uint32   // ordinal of the statement a COM_STMT_CLOSE under way names
}

func (c *conn) ready() bool {
	return !c.skip && (c.phase == phaseLogin || c.phase == phaseCommand || c.phase == phasePassthrough)
}

// Ready implements session.Conn: client data waits for the target's
// greeting and for the end of each authentication exchange.
func (c *conn) Ready() bool { return c.ready() || c.skip }

// Skip implements session.Conn.
func (c *conn) Skip() bool { return c.skip }

// fail marks the session skipped, counts it under ctr and logs once per
// key at Warn.
func (c *conn) fail(ctr *atomic.Uint64, key, msg string, args ...any) {
	if c.skip {
		return
	}
	c.skip = true
	ctr.Add(1)
	c.p.markSkipped(c.client)
	c.p.warn(key, msg, append([]any{"client", c.client, "target", c.target}, args...)...)
}

// Inject implements session.Conn. A resumed or mid-stream session gets a
// stored login, claiming a client plugin no server has (pluginResume), so
// the target asks for an auth switch with a fresh scramble that the
// module answers; the stored prepares follow once the target accepts.
func (c *conn) Inject(dst []byte) []byte {
	if !c.resumed || c.skip {
		return dst
	}
	p := c.p
	l, prepares, base, own := p.store.lookup(c.client)
	isDefault := false
	if l == nil && p.cfg.DefaultUser != "" {
		l = &login{
			caps: clientProtocol41 | clientSecureConn | clientPluginAuth | clientLongFlags |
				clientTransactions | clientMultiResults | clientPSMultiResults,
			maxPacket: 1 << 24, charset: 45, user: p.cfg.DefaultUser, db: p.cfg.DefaultDatabase,
		}
		isDefault = true
	}
	if l == nil {
		return dst // the client's own login may still come; else NoLogin
	}
	if !p.cfg.SkipGrantTables {
		pw, ok := p.users[l.user]
		if !ok {
			c.fail(&p.c.unknownUser, "user "+l.user, "mysql: no password for user of rebuilt session: session skipped; give it with -u USER@PASSWORD or the password file",
				"user", l.user)
			return dst
		}
		c.password = pw
	}
	c.user, c.login, c.caps = l.user, l, l.caps
	c.tcaps = loginCaps(l, pluginResume, 0)
	c.compress = l.caps&clientCompress != 0
	dst = appendLogin(dst, l, 1, nil, pluginResume)
	c.injected = true
	if !own {
		p.store.putLogin(c.client, l) // this connection's own record from now on
	}
	if !c.compress && own {
		for i, pkt := range prepares {
			if pkt == nil {
				// A statement closed since: its id must still be taken,
				// and it is closed once the target's ids are known.
				c.replay = appendPlaceholder(c.replay)
				c.closeOrd = append(c.closeOrd, uint32(i+1))
				continue
			}
			c.replay = append(c.replay, pkt...)
		}
		c.nprep, c.obase = uint32(len(prepares)), base
		p.c.injectedPrepares.Add(uint64(len(prepares)))
	}
	p.c.injected.Add(1)
	if isDefault {
		p.c.injectedDefault.Add(1)
	}
	p.log.Debug("mysql: rebuilding session with a stored login", "client", c.client, "user", l.user,
		"db", l.db, "own_login", own, "default", isDefault, "prepares", len(prepares))
	return dst
}

// appendPlaceholder appends a prepare that takes the id of a statement
// closed since, so a rebuilt connection numbers its statements as the
// original did.
func appendPlaceholder(dst []byte) []byte {
	const q = "SELECT 1"
	dst = appendHeader(dst, 1+len(q), 0)
	return append(append(dst, comStmtPrepare), q...)
}

// Client implements session.Conn.
func (c *conn) Client(dst, payload []byte) []byte {
	switch {
	case c.skip:
		return dst
	case c.phase == phasePassthrough && len(c.held) == 0:
		return append(dst, payload...)
	case !c.ready():
		return c.hold(dst, payload)
	}
	return c.feed(dst, payload)
}

// hold keeps client bytes until the target has authenticated: the table
// sends captured data while Ready is false within one batch, and the
// target would read a command as authentication data.
func (c *conn) hold(dst, data []byte) []byte {
	if len(c.held)+len(data) > maxHeld {
		c.fail(&c.p.c.overflow, "overflow", "mysql: client sent more than 4 MiB while the target authenticated: session skipped")
		return dst
	}
	c.held = append(c.held, data...)
	return dst
}

// feed parses client bytes and appends what to send.
func (c *conn) feed(dst, data []byte) []byte {
	for len(data) > 0 && !c.skip {
		if c.phase == phasePassthrough {
			return append(dst, data...)
		}
		if !c.ready() {
			return c.hold(dst, data)
		}
		if !c.inPkt {
			for c.nhdr < c.need() && len(data) > 0 {
				c.hdr[c.nhdr] = data[0]
				c.nhdr++
				data = data[1:]
			}
			if c.nhdr < c.need() {
				return dst // the rest of the header comes with the next segment
			}
			dst = c.start(dst)
			if c.inPkt && c.remain == 0 {
				dst = c.end(dst)
			}
			continue
		}
		n := min(c.remain, len(data))
		chunk := data[:n]
		data = data[n:]
		c.remain -= n
		switch c.act {
		case actPass:
			dst = append(dst, chunk...)
		case actStore:
			dst = append(dst, chunk...)
			c.keep(chunk)
		case actBuffer:
			c.keep(chunk)
		}
		if c.remain == 0 {
			dst = c.end(dst)
		}
	}
	return dst
}

// need is how many header bytes to gather before deciding on a packet: the
// header, and the command byte of a packet that may be a command.
func (c *conn) need() int {
	if c.nhdr < headerLen {
		return headerLen
	}
	n, seq := header(c.hdr[:headerLen])
	if n == 0 || c.cont {
		return headerLen
	}
	if c.nhdr > headerLen && n >= 5 && seq == 0 && hasStmtID(c.hdr[headerLen]) && c.phase == phaseCommand {
		return headerLen + 5
	}
	return headerLen + 1
}

// hasStmtID reports whether command cmd starts with a statement id.
func hasStmtID(cmd byte) bool {
	switch cmd {
	case comStmtExecute, comStmtSendLongData, comStmtClose, comStmtReset, comStmtFetch, comStmtBulkExecute:
		return true
	}
	return false
}

func (c *conn) keep(b []byte) {
	if c.pktKeep {
		c.pkt = append(c.pkt, b...)
	}
}

// start decides what to do with the packet whose header was gathered.
func (c *conn) start(dst []byte) []byte {
	n, seq := header(c.hdr[:headerLen])
	c.seq, c.cmd, c.stmtOrd = seq, -1, 0
	if c.nhdr > headerLen {
		c.cmd = int(c.hdr[headerLen])
	}
	cont := c.cont
	c.cont = n == maxPayload
	hdr := c.hdr[:c.nhdr]
	c.nhdr = 0
	c.inPkt, c.remain = true, n-(len(hdr)-headerLen)
	switch {
	case cont:
		if c.act != actDrop {
			c.act = actPass // a continuation of a large command is never kept
		}
	case c.phase == phaseLogin:
		if seq == 0 {
			// A command first: this session's login was never seen.
			c.fail(&c.p.c.noLogin, "nologin "+c.client.Addr().String(),
				"mysql: session captured mid-stream and no login from its client address seen yet: session skipped (set a default user to rebuild such sessions)")
			return dst
		}
		if n > maxAuthPacket {
			c.fail(&c.p.c.malformed, "big login", "mysql: login packet too large: session skipped", "bytes", n)
			return dst
		}
		c.act = actBuffer
	case c.dropAuth && seq != 0:
		c.act = actDrop
		c.p.c.droppedAuth.Add(1)
	case seq != 0:
		c.act = actPass // LOAD DATA LOCAL contents, say
	default:
		c.dropAuth = false
		c.act = actPass
		switch c.cmd {
		case comChangeUser:
			if n > maxAuthPacket {
				c.fail(&c.p.c.malformed, "big change user", "mysql: COM_CHANGE_USER too large: session skipped", "bytes", n)
				return dst
			}
			c.act = actBuffer
		case comStmtPrepare, comStmtClose, comInitDB, comResetConnection:
			c.act = actStore
		}
		switch {
		case c.cmd == comStmtPrepare:
			c.nprep++
			if !c.tknown {
				c.awaitPrep = c.nprep
			}
		case len(hdr) == headerLen+5:
			c.mapStmtID(hdr[headerLen+1:])
		}
	}
	c.pkt = append(c.pkt[:0], hdr...)
	c.pktKeep = c.act == actBuffer || c.act == actStore && n <= maxStored
	if c.act == actPass || c.act == actStore {
		dst = append(dst, hdr...)
	}
	return dst
}

// end finishes the current client packet.
func (c *conn) end(dst []byte) []byte {
	c.inPkt = false
	switch c.act {
	case actBuffer:
		if c.phase == phaseLogin {
			return c.onLogin(dst, c.pkt)
		}
		return c.onChangeUser(dst, c.pkt)
	case actStore:
		c.onStored(c.pkt)
	}
	return dst
}

// onLogin rewrites the client's handshake response.
func (c *conn) onLogin(dst, pkt []byte) []byte {
	p := c.p
	l, err := parseLogin(pkt[headerLen:])
	if l != nil && l.caps&clientSSL != 0 {
		c.fail(&p.c.tls, "tls "+c.client.Addr().String(),
			"mysql: client asked for TLS (SSL request): TLS sessions cannot be copied: session skipped", "user", l.user)
		return dst
	}
	if err != nil {
		c.fail(&p.c.malformed, "bad login", "mysql: cannot parse the client's login: session skipped", "err", err)
		return dst
	}
	_, seq := header(pkt)
	plugin := ""
	if l.caps&clientPluginAuth != 0 {
		plugin = l.plugin
		if plugin == "" {
			plugin = pluginNative
		}
	}
	if p.cfg.SkipGrantTables {
		dst = append(dst, pkt...)
		c.tcaps = l.caps
	} else {
		pw, ok := p.users[l.user]
		if !ok {
			c.fail(&p.c.unknownUser, "user "+l.user,
				"mysql: no password for user: session skipped; give it with -u USER@PASSWORD or the password file", "user", l.user)
			return dst
		}
		c.password = pw
		name := plugin
		if name == "" {
			name = pluginNative
		}
		auth, ok := scrambleFor(name, c.scramble, pw)
		if !ok {
			// Another client plugin (dialog, ed25519, clear text): offer
			// mysql_native_password; a target whose account wants another
			// plugin asks for it with an auth switch.
			auth = NativePassword(c.scramble, pw)
			if plugin != "" {
				plugin = pluginNative
			}
		}
		dst = appendLogin(dst, l, seq, auth, plugin)
		c.tcaps = loginCaps(l, plugin, len(auth))
	}
	l.auth = nil
	c.login, c.user, c.caps = l, l.user, l.caps
	c.compress = l.caps&clientCompress != 0
	p.store.putLogin(c.client, l)
	p.c.logins.Add(1)
	c.phase = phaseAuth
	return dst
}

// onChangeUser re-scrambles a COM_CHANGE_USER like a login.
func (c *conn) onChangeUser(dst, pkt []byte) []byte {
	p := c.p
	cu, err := parseChangeUser(pkt[headerLen:], c.caps)
	if err != nil {
		c.fail(&p.c.malformed, "bad change user", "mysql: cannot parse COM_CHANGE_USER: session skipped", "err", err)
		return dst
	}
	if p.cfg.SkipGrantTables {
		dst = append(dst, pkt...)
	} else {
		pw, ok := p.users[cu.user]
		if !ok {
			c.fail(&p.c.unknownUser, "user "+cu.user,
				"mysql: no password for user (COM_CHANGE_USER): session skipped; give it with -u USER@PASSWORD or the password file", "user", cu.user)
			return dst
		}
		c.password = pw
		name := pluginNative
		if cu.hasPlug && cu.plugin != "" {
			name = cu.plugin
		}
		auth, ok := scrambleFor(name, c.scramble, pw)
		if !ok {
			auth, cu.plugin = NativePassword(c.scramble, pw), pluginNative
		} else {
			cu.plugin = name
		}
		dst = appendChangeUser(dst, cu, c.seq, c.tcaps, auth, cu.plugin)
	}
	c.user = cu.user
	if c.login != nil {
		l := *c.login
		l.user, l.db = cu.user, cu.db
		if cu.hasPlug {
			l.plugin = cu.plugin
		}
		c.login = &l
		p.store.setLogin(c.client, &l, true)
	}
	p.c.changeUsers.Add(1)
	c.phase = phaseAuth
	c.rsync = false // the answer starts the next response segment
	return dst
}

// onStored records a command that rebuilding a session needs.
func (c *conn) onStored(pkt []byte) {
	st := c.p.store
	if !c.pktKeep {
		if c.cmd == comStmtPrepare {
			st.notePrepareTooLarge(c.client)
		}
		return
	}
	body := pkt[headerLen:]
	switch c.cmd {
	case comStmtPrepare:
		st.addPrepare(c.client, pkt)
	case comStmtClose:
		if c.stmtOrd > 0 {
			st.closeStmt(c.client, c.stmtOrd)
		}
	case comInitDB:
		if c.login != nil {
			l := *c.login
			l.db = string(body[1:])
			c.login = &l
			st.setLogin(c.client, &l, false)
		}
	case comResetConnection:
		st.setLogin(c.client, nil, true)
	}
}

// Response implements session.Conn: it reads the target's greeting and its
// answers to logins, answers auth switches, and when the target accepted,
// sends the replayed prepares and the client bytes held meanwhile.
func (c *conn) Response(dst, payload []byte, full int) []byte {
	switch {
	case c.skip:
		return dst
	case c.phase == phaseCommand && c.awaitPrep > 0:
		return c.learnPrepare(dst, payload)
	case c.phase == phaseReplay:
		// The first answer after the login is the first replayed
		// prepare's; whatever it is, the client's commands go on.
		dst = c.learnPrepare(dst, payload)
		c.phase = phaseCommand
		held := c.held
		c.held = nil
		return c.feed(dst, held)
	}
	if c.skip || c.phase != phaseGreeting && c.phase != phaseAuth {
		return dst
	}
	if len(payload) > full {
		payload = payload[:full]
	}
	if !c.rsync {
		c.rsync, c.rnhdr, c.rin, c.rremain = true, 0, false, 0
	}
	for off := 0; off < full && !c.skip && (c.phase == phaseGreeting || c.phase == phaseAuth); {
		if !c.rin {
			for c.rnhdr < headerLen && off < full {
				if off >= len(payload) {
					// Headers beyond what intercept reported: find the next
					// packet at the start of a later segment.
					c.rsync = false
					return dst
				}
				c.rhdr[c.rnhdr] = payload[off]
				c.rnhdr++
				off++
			}
			if c.rnhdr < headerLen {
				return dst
			}
			c.rremain, c.rseq = header(c.rhdr[:])
			c.rnhdr, c.rin = 0, true
			c.rpkt, c.rtrunc = c.rpkt[:0], false
		}
		k := min(c.rremain, full-off)
		if off < len(payload) {
			e := min(off+k, len(payload))
			take := min(e-off, maxServerPacket-len(c.rpkt))
			c.rpkt = append(c.rpkt, payload[off:off+take]...)
			c.rtrunc = c.rtrunc || e < off+k
		} else if k > 0 {
			c.rtrunc = true
		}
		off += k
		c.rremain -= k
		if c.rremain == 0 {
			c.rin = false
			dst = c.onServer(dst, c.rpkt)
		}
	}
	if c.phase != phaseGreeting && c.phase != phaseAuth {
		c.rsync = false
	}
	return dst
}

// onServer handles one whole target packet of the greeting or an
// authentication exchange.
func (c *conn) onServer(dst, pkt []byte) []byte {
	p := c.p
	if c.phase == phaseGreeting {
		if len(pkt) > 0 && pkt[0] == 0xff {
			code, msg := parseErr(pkt)
			c.fail(&p.c.badGreeting, "refused "+msg, "mysql: the target refused the connection: session skipped",
				"code", code, "error", msg)
			return dst
		}
		g, err := parseGreeting(pkt)
		if err != nil {
			hint := ""
			if c.rtrunc || len(pkt) < 64 {
				hint = " (does intercept report enough response payload? set its PayloadLimit to 128 or more)"
			}
			c.fail(&p.c.badGreeting, "greeting", "mysql: cannot read the target's greeting"+hint+": session skipped", "err", err)
			return dst
		}
		c.scramble = append(c.scramble[:0], g.scramble...)
		if c.injected {
			c.phase = phaseAuth
		} else {
			c.phase = phaseLogin
		}
		return dst
	}
	if len(pkt) == 0 {
		c.fail(&p.c.malformed, "empty auth answer", "mysql: empty answer from the target to a login: session skipped")
		return dst
	}
	switch pkt[0] {
	case 0x00: // OK
		p.c.authOK.Add(1)
		c.phase = phaseCommand
		if c.compress {
			c.phase = phasePassthrough
		}
		c.dropAuth = true
		if len(c.replay) > 0 && c.phase == phaseCommand {
			// The client's commands wait for the first replayed prepare's
			// answer, which tells how the target numbers statements.
			dst = append(dst, c.replay...)
			c.replay = nil
			if !c.tknown {
				c.awaitPrep, c.phase = 1, phaseReplay
				return dst
			}
		}
		held := c.held
		c.held = nil
		return c.feed(dst, held)
	case 0xff: // ERR
		code, msg := parseErr(pkt)
		c.fail(&p.c.authFailed, "denied "+c.user, "mysql: the target refused the login: session skipped",
			"user", c.user, "code", code, "error", msg)
		return dst
	case 0xfe: // auth switch
		sw, err := parseAuthSwitch(pkt)
		if err != nil {
			c.fail(&p.c.unsupportedAuth, "old auth "+c.user, "mysql: the target asks for the pre-4.1 password protocol: session skipped", "user", c.user)
			return dst
		}
		if c.rtrunc {
			c.fail(&p.c.badGreeting, "switch cut", "mysql: the target's auth switch was cut short (raise intercept's PayloadLimit): session skipped")
			return dst
		}
		c.scramble = append(c.scramble[:0], sw.data...)
		if p.cfg.SkipGrantTables {
			c.fail(&p.c.unsupportedAuth, "skip-grant "+sw.plugin,
				"mysql: the target asks for authentication in skip-grant-tables mode (is it running with --skip-grant-tables?): session skipped",
				"user", c.user, "plugin", sw.plugin)
			return dst
		}
		auth, ok := scrambleFor(sw.plugin, sw.data, c.password)
		if !ok {
			c.fail(&p.c.unsupportedAuth, "plugin "+c.user+" "+sw.plugin,
				fmt.Sprintf("mysql: the target wants authentication plugin %q, which the MySQL module cannot answer (it answers %s and %s): session skipped",
					sw.plugin, pluginNative, pluginCachingSHA2), "user", c.user, "plugin", sw.plugin)
			return dst
		}
		p.c.authSwitches.Add(1)
		dst = appendHeader(dst, len(auth), c.rseq+1)
		return append(dst, auth...)
	case 0x01: // more data
		if bytes.Equal(pkt, []byte{0x01, 0x03}) {
			return dst // caching_sha2_password fast path: OK follows
		}
		what := "more authentication data"
		if bytes.Equal(pkt, []byte{0x01, 0x04}) {
			what = "caching_sha2_password full authentication (needs TLS or the server's RSA key)"
		}
		c.fail(&p.c.unsupportedAuth, "more "+c.user+" "+what, "mysql: the target asks for "+what+", which the module cannot answer: session skipped",
			"user", c.user)
		return dst
	}
	c.fail(&p.c.malformed, "auth answer", "mysql: unexpected answer from the target to a login: session skipped",
		"user", c.user, "first_byte", pkt[0])
	return dst
}

// stmtLast is MariaDB's statement id for "the statement prepared last".
const stmtLast = 0xffffffff

// mapStmtID learns from and rewrites the statement id b (4 bytes, little
// endian) of a client command.
func (c *conn) mapStmtID(b []byte) {
	x := binary.LittleEndian.Uint32(b)
	c.stmtOrd = 0
	if x == stmtLast || x == 0 {
		return
	}
	// x = obase + k with 1 <= k <= nprep: obase is at least x - nprep. The
	// smallest consistent base is right when the online connection counted
	// from 0, and whenever the client first uses the statement it
	// prepared last (prepare-then-execute, as drivers do).
	if x > c.nprep && x-c.nprep > c.obase {
		c.obase = x - c.nprep
		c.p.store.setBase(c.client, c.obase)
	}
	if x > c.obase && x-c.obase <= c.nprep {
		c.stmtOrd = x - c.obase
	}
	if !c.tknown {
		c.p.c.stmtUnmapped.Add(1)
		return
	}
	if y := x - c.obase + c.tbase; y != x {
		binary.LittleEndian.PutUint32(b, y)
		c.p.c.stmtMapped.Add(1)
	}
}

// learnPrepare looks for the PREPARE_OK of prepare number awaitPrep at the
// start of a target segment (responses to one command start a segment,
// since the table paces commands) and learns the target's base from it.
// It returns the closes of replayed placeholders, due once ids are known.
func (c *conn) learnPrepare(dst, payload []byte) []byte {
	if len(payload) < headerLen+12 {
		return dst
	}
	n, seq := header(payload)
	body := payload[headerLen:]
	switch {
	case seq != 1:
		return dst
	case body[0] == 0xff:
		c.awaitPrep = 0 // that prepare failed; the next one will tell
		return dst
	case n != 12 || body[0] != 0x00 || body[9] != 0x00:
		return dst // not a PREPARE_OK: the tail of an earlier answer
	}
	id := binary.LittleEndian.Uint32(body[1:])
	if id < c.awaitPrep {
		return dst
	}
	c.tbase, c.tknown, c.awaitPrep = id-c.awaitPrep, true, 0
	for _, k := range c.closeOrd {
		dst = appendHeader(dst, 5, 0)
		dst = binary.LittleEndian.AppendUint32(append(dst, comStmtClose), c.tbase+k)
	}
	c.closeOrd = nil
	return dst
}
