// Package emit defines Emitter, the last stage of the copier, and its
// implementations: a raw IP socket (IP_HDRINCL for IPv4, header-included raw
// IPv6), and a Recorder that keeps what it is given, for tests and dry runs.
package emit
