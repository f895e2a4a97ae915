package capture

import "errors"

// Sentinel errors that callers branch on. Decode errors match one of
// ErrTruncated, ErrMalformed, ErrNotTCP or ErrFragment through errors.Is
// and carry a more precise message.
var (
	ErrTruncated    = errors.New("capture: truncated packet")
	ErrMalformed    = errors.New("capture: malformed packet")
	ErrNotTCP       = errors.New("capture: not a TCP packet")
	ErrFragment     = errors.New("capture: IP fragment")
	ErrClosed       = errors.New("capture: closed")
	ErrNotSupported = errors.New("capture: not supported on this platform")
	ErrFamily       = errors.New("capture: address family does not match the packet")
)

// decodeError is a preallocated, precise decode error that still matches its
// sentinel, so decoding reports detail without allocating.
type decodeError struct {
	kind error
	msg  string
}

func (e *decodeError) Error() string        { return e.msg }
func (e *decodeError) Is(target error) bool { return target == e.kind }
func (e *decodeError) Unwrap() error        { return e.kind }

var (
	errEmpty         = &decodeError{ErrTruncated, "capture: empty packet"}
	errBadVersion    = &decodeError{ErrMalformed, "capture: IP version is neither 4 nor 6"}
	errShortIPv4     = &decodeError{ErrTruncated, "capture: shorter than an IPv4 header"}
	errBadIHL        = &decodeError{ErrMalformed, "capture: IPv4 header length (IHL) below 5"}
	errShortIPv4Opts = &decodeError{ErrTruncated, "capture: IPv4 options run past the captured bytes"}
	errTotalLen      = &decodeError{ErrMalformed, "capture: IPv4 total length below header length"}
	errTotalLenLies  = &decodeError{ErrTruncated, "capture: IP length field is larger than the captured datagram"}
	errShortIPv6     = &decodeError{ErrTruncated, "capture: shorter than an IPv6 header"}
	errExtHeader     = &decodeError{ErrMalformed, "capture: IPv6 extension header runs past the payload length"}
	errExtCut        = &decodeError{ErrTruncated, "capture: IPv6 extension header runs past the captured bytes"}
	errExtUnwalkable = &decodeError{ErrNotTCP, "capture: IPv6 extension header that cannot be walked (ESP or no next header)"}
	errJumbo         = &decodeError{ErrMalformed, "capture: IPv6 jumbogram or zero payload length"}
	errFragment4     = &decodeError{ErrFragment, "capture: IPv4 fragment"}
	errFragment6     = &decodeError{ErrFragment, "capture: IPv6 fragment"}
	errNotTCP        = &decodeError{ErrNotTCP, "capture: upper-layer protocol is not TCP"}
	errShortTCP      = &decodeError{ErrTruncated, "capture: shorter than a TCP header"}
	errBadDataOffset = &decodeError{ErrMalformed, "capture: TCP data offset below 5 or past the IP length"}
	errShortTCPOpts  = &decodeError{ErrTruncated, "capture: TCP options run past the captured bytes"}
	errBadTCPOptions = &decodeError{ErrMalformed, "capture: TCP options are malformed"}
)
