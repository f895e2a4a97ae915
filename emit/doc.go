// Package emit defines Emitter, the last stage of the copier, and its
// implementations:
//
//   - RawIP: raw IP sockets (IP_HDRINCL for IPv4, header-included raw IPv6)
//     that send through the host's routing and netfilter, batched with
//     sendmmsg.
//   - AFPacket: link-layer injection on an Ethernet interface, with the next
//     hop's address given or resolved from the kernel's route and neighbour
//     tables; it bypasses routing and netfilter, and sends through a
//     PACKET_TX_RING (or sendmmsg).
//   - PcapWriter: writes what it is given to a pcap file (dry runs, tests,
//     debugging); capture.File reads it back.
//   - Recorder: keeps what it is given, for tests.
//
// Each counts every datagram it could not send under a Reason (Stats);
// single failures never end the program.
package emit
