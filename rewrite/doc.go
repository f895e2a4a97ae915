// Package rewrite holds the stateless per-packet rewriters that sit between
// capture and the session table: the transfer map (TCPCopy's -x), the client
// address pool (-c), port shifts for copies (-n, -f), sampling (-r) and the
// segmentation of oversize (GRO) packets.
package rewrite
