// Package capture defines Packet, the unit every stage of the copier
// handles, and the Capturers that produce packets:
//
//   - RawIP: a raw IP socket (IPv4 or IPv6) that sees the TCP datagrams the
//     host delivers to itself, read in batches with recvmmsg.
//   - AFPacket: an AF_PACKET socket with a TPACKET_V3 ring, on one, several
//     or all interfaces, both directions, with a kernel BPF filter compiled
//     from a Filter (or brought by the user), PACKET_FANOUT to split flows
//     among readers, and the kernel's own drop count.
//   - File: pcap and pcapng files (and streams) in the link types that carry
//     IP, with capture timestamps and directions.
//   - Memory: datagrams pushed in by tests and harnesses.
//
// Every Capturer counts what it passes over (Stats): truncated, malformed,
// non-TCP, IP fragments (counted, not reassembled) and kernel drops, so no
// loss is silent.
//
// A Packet is an allocation-free view of one IP datagram (IPv4 or IPv6)
// carrying TCP, with accessors and checksum-preserving setters, the capture
// time and, where the source records it, the direction. Seq is the
// wrap-around-safe sequence number type; Endpoint and Flow are packed,
// comparable keys for maps and sharding.
package capture
