package mysql

import (
	"net/netip"
	"sync"

	"github.com/shadowcopy/tcpcopy/capture"
)

// store keeps the logins and prepared statements of client connections,
// for sessions that must be rebuilt. It is bounded in connections and
// bytes: the least recently used connection goes first. Safe for
// concurrent use (the copier's shards share one Protocol).
//
// Keys. A connection's own record is keyed by its client endpoint as the
// target sees it (address and port, after rewriting): a session the target
// reset comes back on the same endpoint and finds its own login, database
// and prepared statements. A session captured mid-stream never showed its
// login; its port's record (an earlier connection on the same port, or the
// same connection seen by an earlier run sharing this Protocol) is used if
// there is one, else the latest login from the same client address, whose
// user and database a pooled client's other connections almost always
// share. The user is no key: a mid-stream session's user is unknown.
type store struct {
	mu          sync.Mutex
	conns       map[capture.Endpoint]*record
	addrs       map[netip.Addr]*login
	head        *record // most recently used
	tail        *record
	bytes       int64
	maxConns    int
	maxBytes    int64
	maxPrepares int
	evicted     uint64
	notStored   uint64
}

// record is one connection's login and COM_STMT_PREPARE packets in order;
// a nil packet is a statement closed since (its id is still taken).
type record struct {
	key        capture.Endpoint
	login      *login // never modified once stored: replaced
	prepares   [][]byte
	base       uint32 // the online server's statement id base, as learned
	bytes      int64
	prev, next *record
}

func newStore(maxConns int, maxBytes int64, maxPrepares int) *store {
	return &store{
		conns: make(map[capture.Endpoint]*record), addrs: make(map[netip.Addr]*login),
		maxConns: maxConns, maxBytes: maxBytes, maxPrepares: maxPrepares,
	}
}

func (s *store) unlink(r *record) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		s.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		s.tail = r.prev
	}
	r.prev, r.next = nil, nil
}

func (s *store) pushFront(r *record) {
	r.next = s.head
	if s.head != nil {
		s.head.prev = r
	}
	s.head = r
	if s.tail == nil {
		s.tail = r
	}
}

func (s *store) touch(r *record) {
	if s.head != r {
		s.unlink(r)
		s.pushFront(r)
	}
}

func (s *store) remove(r *record) {
	s.unlink(r)
	delete(s.conns, r.key)
	s.bytes -= r.bytes
}

func (s *store) grow(r *record, n int64) {
	r.bytes += n
	s.bytes += n
	for (s.bytes > s.maxBytes || len(s.conns) > s.maxConns) && s.tail != nil && s.tail != r {
		s.remove(s.tail)
		s.evicted++
	}
}

// putLogin starts the record of a connection that logged in (or was
// rebuilt with login l): its earlier prepared statements are forgotten.
func (s *store) putLogin(key capture.Endpoint, l *login) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.conns[key]; old != nil {
		s.remove(old)
	}
	r := &record{key: key, login: l}
	s.conns[key] = r
	s.pushFront(r)
	s.grow(r, int64(l.size()))
	if _, ok := s.addrs[key.Addr()]; !ok && len(s.addrs) >= s.maxConns {
		for a := range s.addrs { // an arbitrary one gives way
			delete(s.addrs, a)
			break
		}
	}
	s.addrs[key.Addr()] = l
}

// setLogin replaces a connection's login (COM_INIT_DB, COM_CHANGE_USER);
// closeAll also closes its prepared statements (COM_CHANGE_USER and
// COM_RESET_CONNECTION drop them on the server).
func (s *store) setLogin(key capture.Endpoint, l *login, closeAll bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.conns[key]
	if r == nil {
		return
	}
	s.touch(r)
	if l != nil {
		d := int64(l.size() - r.login.size())
		r.login = l
		if s.addrs[key.Addr()] != nil {
			s.addrs[key.Addr()] = l
		}
		s.grow(r, d)
	}
	if closeAll {
		var freed int64
		for i, p := range r.prepares {
			freed += int64(len(p))
			r.prepares[i] = nil
		}
		s.grow(r, -freed)
	}
}

// addPrepare appends a COM_STMT_PREPARE packet (header included).
func (s *store) addPrepare(key capture.Endpoint, pkt []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.conns[key]
	if r == nil {
		return
	}
	s.touch(r)
	if len(r.prepares) >= s.maxPrepares {
		s.notStored++
		return
	}
	r.prepares = append(r.prepares, append([]byte(nil), pkt...))
	s.grow(r, int64(len(pkt))+24)
}

// notePrepareTooLarge counts a prepare too large to keep. Its statement
// id is still taken on the server: a placeholder keeps the count.
func (s *store) notePrepareTooLarge(key capture.Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notStored++
	if r := s.conns[key]; r != nil && len(r.prepares) < s.maxPrepares {
		r.prepares = append(r.prepares, nil)
		s.grow(r, 24)
	}
}

// closeStmt marks the ord'th statement prepared on the connection closed.
func (s *store) closeStmt(key capture.Endpoint, ord uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.conns[key]
	if r == nil || ord == 0 || uint64(ord) > uint64(len(r.prepares)) {
		return
	}
	p := r.prepares[ord-1]
	r.prepares[ord-1] = nil
	s.grow(r, -int64(len(p)))
}

// setBase records the online server's statement id base of a connection.
func (s *store) setBase(key capture.Endpoint, base uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.conns[key]; r != nil {
		r.base = base
	}
}

// lookup returns a connection's own login, prepares (copied) and statement
// id base, or else the latest login from its address (no prepares: they
// belong to another connection). fromConn tells which.
func (s *store) lookup(key capture.Endpoint) (l *login, prepares [][]byte, base uint32, fromConn bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.conns[key]; r != nil {
		s.touch(r)
		return r.login, append([][]byte(nil), r.prepares...), r.base, true
	}
	return s.addrs[key.Addr()], nil, 0, false
}

func (s *store) usage() (conns int, bytes int64, evicted, notStored uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), s.bytes, s.evicted, s.notStored
}
