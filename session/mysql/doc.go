// Package mysql is the MySQL protocol module of the session table
// (DESIGN.md section 6): it lets copied MySQL and MariaDB sessions log in
// and run on a target server whose random scramble differs from the online
// server's.
//
// A byte copy of a MySQL login fails, because the client's auth response
// is a hash over the online server's greeting scramble. The module, plugged
// into session.Config.Protocol, does per session:
//
//   - holds the client's bytes until the target's greeting has arrived
//     (intercept must report response payload: ServerConfig.PayloadLimit of
//     at least 128), and takes the target's 20-byte scramble from it;
//   - rewrites the captured login's auth response with the user's password
//     (Config.Users): mysql_native_password is
//     SHA1(pw) XOR SHA1(scramble || SHA1(SHA1(pw))), caching_sha2_password's
//     fast path SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || scramble);
//     logins with other client plugins are rewritten to
//     mysql_native_password;
//   - answers the target's auth-switch requests itself, and drops the
//     client's own extra authentication packets (MySQL sequence id above 0
//     before the first command), so the online and the target server may
//     take different numbers of round trips; the session table shifts TCP
//     sequence numbers by the bytes added or removed;
//   - re-scrambles COM_CHANGE_USER like a login;
//   - stores each connection's login and its COM_STMT_PREPARE packets, so a
//     connection the target reset, or one captured mid-stream, is rebuilt by
//     injecting the login (and, after the target accepted it, the prepares)
//     before the client's first command. The injected login goes out before
//     the target's greeting, so it claims a client plugin no server has
//     ("tcpcopy_resume") and an empty response: the target answers with an
//     auth-switch request carrying a fresh scramble, which the module
//     answers with the password;
//   - maps prepared statement ids: a server numbers a connection's
//     statements consecutively but not from 1 (MariaDB 10.11 hands a new
//     connection a finished one's counter), so the module learns the
//     target's numbering from its first PREPARE_OK and the online server's
//     from the ids the client uses, and rewrites the ids of
//     COM_STMT_EXECUTE, SEND_LONG_DATA, CLOSE, RESET, FETCH and MariaDB's
//     BULK_EXECUTE;
//   - skips (the table resets it and counts it) a session asking for TLS,
//     a user without a password, an authentication plugin it cannot answer,
//     and a login the target refused, with one clear log line.
//
// In skip-grant-tables mode (Config.SkipGrantTables, for a target started
// with --skip-grant-tables) no password is needed: logins pass unchanged and
// only the extra round trips are dropped.
//
// MySQL packets split across TCP segments, several in one segment, and
// logins larger than one segment are all handled: the module works on the
// byte stream, not on segments. After a login with CLIENT_COMPRESS the
// bytes pass unparsed (no COM_CHANGE_USER rewrite, no stored prepares).
//
// Which stored login rebuilds a session is described at type store: the
// connection's own (same client address and port), else the latest login
// from its client address, else Config.DefaultUser.
package mysql
