// Package header holds byte-level views of IPv4, IPv6 and TCP headers and the
// Internet checksum, full and incremental (RFC 1071, RFC 1624).
//
// Views are byte slices with methods. They do no bounds checking beyond what
// Go does: callers validate lengths first (capture.Packet does), so the views
// stay small enough to inline on the per-packet path.
package header
