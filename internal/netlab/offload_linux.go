package netlab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// offloads are the features DisableOffloads turns off, as legacy ethtool
// ioctl commands. The kernel still serves them (net/ethtool/ioctl.c,
// ethtool_set_one_feature), so the ethtool tool is not needed.
var offloads = []struct {
	name     string
	get, set uint32
}{
	{"rx-checksum", unix.ETHTOOL_GRXCSUM, unix.ETHTOOL_SRXCSUM},
	{"tx-checksum", unix.ETHTOOL_GTXCSUM, unix.ETHTOOL_STXCSUM},
	{"scatter-gather", unix.ETHTOOL_GSG, unix.ETHTOOL_SSG},
	{"tso", unix.ETHTOOL_GTSO, unix.ETHTOOL_STSO},
	{"gso", unix.ETHTOOL_GGSO, unix.ETHTOOL_SGSO},
	{"gro", unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO},
}

// DisableOffloads turns off checksum offload, scatter-gather, TSO, GSO and
// GRO on ifname, so that packets seen by capture sockets carry complete
// checksums and wire-sized segments (a veth offloads TX checksums by
// default). A feature the device cannot change is logged, not fatal.
func (n *NS) DisableOffloads(ifname string) {
	n.lab.t.Helper()
	for _, o := range offloads {
		err := n.Do(func() error { _, err := ethtool(ifname, o.set, 0); return err })
		if err != nil {
			n.lab.t.Logf("netlab: %s: %s: turn off %s: %v", n.name, ifname, o.name, err)
		}
	}
}

// offload reports whether the named offload feature is on; for tests.
func (n *NS) offload(ifname, feature string) (bool, error) {
	for _, o := range offloads {
		if o.name != feature {
			continue
		}
		var v uint32
		err := n.Do(func() (err error) { v, err = ethtool(ifname, o.get, 0); return err })
		return v != 0, err
	}
	return false, fmt.Errorf("netlab: unknown offload %q", feature)
}

// ethtool issues a SIOCETHTOOL ioctl with a struct ethtool_value and returns
// the value's data field. It must run inside [NS.Do]: the socket's namespace
// selects the device.
func ethtool(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)

	val := struct{ cmd, data uint32 }{cmd, data} // struct ethtool_value
	// struct ifreq with ifr_data pointing at val; the padding keeps it at
	// least as large as the kernel's ifreq on every architecture.
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&val)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&val)
	if errno != 0 {
		return 0, fmt.Errorf("ioctl SIOCETHTOOL %#x: %w", cmd, errno)
	}
	return val.data, nil
}
