// Package mmsg wraps recvmmsg(2) for the sockets that read in batches (raw
// IP capture, NFQUEUE). It is empty off Linux.
package mmsg
