// Package capture defines Packet, the unit every stage of the copier
// handles, and the Capturers that produce packets: raw IP sockets, AF_PACKET,
// pcap files, and memory for tests.
//
// A Packet is an allocation-free view of one IP datagram (IPv4 or IPv6)
// carrying TCP, with accessors and checksum-preserving setters. Seq is the
// wrap-around-safe sequence number type; Endpoint and Flow are packed,
// comparable keys for maps and sharding.
package capture
