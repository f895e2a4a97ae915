package header

import "encoding/binary"

// TCP is a view of a TCP header (RFC 9293) including its options.
type TCP []byte

// TCP option kinds (RFC 9293, RFC 7323, RFC 2018).
const (
	OptEnd           = 0
	OptNOP           = 1
	OptMSS           = 2
	OptWindowScale   = 3
	OptSACKPermitted = 4
	OptSACK          = 5
	OptTimestamps    = 8
)

func (b TCP) SrcPort() uint16      { return binary.BigEndian.Uint16(b[0:]) }
func (b TCP) DstPort() uint16      { return binary.BigEndian.Uint16(b[2:]) }
func (b TCP) Seq() uint32          { return binary.BigEndian.Uint32(b[4:]) }
func (b TCP) Ack() uint32          { return binary.BigEndian.Uint32(b[8:]) }
func (b TCP) DataOffset() int      { return int(b[12]>>4) * 4 }
func (b TCP) Flags() uint8         { return b[13] }
func (b TCP) Window() uint16       { return binary.BigEndian.Uint16(b[14:]) }
func (b TCP) Checksum() uint16     { return binary.BigEndian.Uint16(b[16:]) }
func (b TCP) Urgent() uint16       { return binary.BigEndian.Uint16(b[18:]) }
func (b TCP) Options() []byte      { return b[TCPMinLen:b.DataOffset()] }
func (b TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[16:], c) }

// Set16 stores v at offset off and returns the old value, for setters that
// then adjust the checksum.
func (b TCP) Set16(off int, v uint16) uint16 {
	old := binary.BigEndian.Uint16(b[off:])
	binary.BigEndian.PutUint16(b[off:], v)
	return old
}

// Set32 stores v at offset off and returns the old value.
func (b TCP) Set32(off int, v uint32) uint32 {
	old := binary.BigEndian.Uint32(b[off:])
	binary.BigEndian.PutUint32(b[off:], v)
	return old
}

// Option finds option kind in opts and returns its value bytes (without kind
// and length). It stops at End or at a malformed length.
func Option(opts []byte, kind uint8) ([]byte, bool) {
	for i := 0; i < len(opts); {
		k := opts[i]
		switch k {
		case OptEnd:
			return nil, false
		case OptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return nil, false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return nil, false
		}
		if k == kind {
			return opts[i+2 : i+l], true
		}
		i += l
	}
	return nil, false
}

// ValidOptions reports whether opts is a well-formed option list.
func ValidOptions(opts []byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case OptEnd:
			return true
		case OptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return false
		}
		i += l
	}
	return true
}
