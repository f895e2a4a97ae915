package capture

import "strconv"

// Direction is the way a packet crossed the interface it was captured on,
// seen from the capturing host.
type Direction uint8

const (
	// DirUnknown: the source does not record a direction (the zero value).
	DirUnknown Direction = iota
	// DirIn: received by the host, including broadcast, multicast and,
	// in promiscuous mode, frames for other hosts.
	DirIn
	// DirOut: sent by the host.
	DirOut
)

var dirNames = [...]string{"unknown", "in", "out"}

func (d Direction) String() string {
	if int(d) < len(dirNames) {
		return dirNames[d]
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// dirOfPktType maps a Linux packet type (sll_pkttype, packet(7)) to a
// Direction; PACKET_LOOPBACK (multicast looped back to the sender) and
// PACKET_OUTGOING are the host's own.
func dirOfPktType(t int) Direction {
	switch t {
	case 0, 1, 2, 3: // PACKET_HOST, BROADCAST, MULTICAST, OTHERHOST
		return DirIn
	case 4, 5: // PACKET_OUTGOING, PACKET_LOOPBACK
		return DirOut
	}
	return DirUnknown
}
