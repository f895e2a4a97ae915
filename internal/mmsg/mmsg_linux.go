package mmsg

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Recv reads up to len(hdrs) datagrams from the non-blocking socket fd
// with one recvmmsg, retrying on EINTR. It returns how many came, or the
// error; wait reports EAGAIN (nothing queued), on which a syscall.RawConn
// Read callback returns false to park in the poller.
func Recv(fd uintptr, hdrs []unix.Mmsghdr) (n int, errno unix.Errno, wait bool) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
		switch e {
		case 0:
			return int(r), 0, false
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, 0, true
		default:
			return 0, e, false
		}
	}
}
