// Package netlab is a network-namespace lab for privileged tests: it builds
// namespaces, veth links, addresses and routes with the ip(8) tool, runs
// commands and Go code inside them, and tears everything down through
// t.Cleanup, also when the test fails.
//
// # Safety
//
// The lab never configures the host's (root) network namespace. Namespaces are
// created with "ip netns add", veth pairs are created directly inside them
// ("ip -n A link add ... peer ... netns B"), so no interface ever exists in the
// root namespace, and every later change runs in a namespace the lab made.
// Deleting a namespace removes its veths; processes started with [NS.Start]
// are stopped by PID (SIGTERM, then SIGKILL) and reaped. Sysctls are limited to
// the per-namespace "net." tree.
//
// Only these addresses are accepted; any other address, prefix, route
// destination or gateway fails the test:
//
//   - IPv4: 198.18.0.0/15, the benchmarking range of RFC 2544 (RFC 6890).
//   - IPv6: fd00:198:18::/48, a unique local prefix (RFC 4193) the project
//     reserves for this lab; its digits echo the IPv4 range. Addresses are
//     added with "nodad" so they are usable as soon as the link is up.
//
// # Names
//
// A namespace is named "tcn<pidns>.<pid>.<n>-<role>", for example
// "tcn1ulajuk.4821.3-client": the pid namespace (its inode, base 36), the pid
// and a per-process counter keep names unique across test binaries that
// "go test" runs in parallel. The first [New] of a process deletes namespaces
// so named whose process is gone (left behind by a crashed run); it leaves
// alone those of live processes and those of other pid namespaces. Veth ends are
// named "veth0", "veth1", ... per namespace; names only need to be unique
// inside a namespace because the lab never creates them in the root one.
//
// # Typical use
//
//	lab := netlab.New(t) // skips unless root with the ip tool
//	a, b := lab.Namespace("client"), lab.Namespace("server")
//	lab.Link(a, netip.MustParsePrefix("198.18.0.1/24"),
//		b, netip.MustParsePrefix("198.18.0.2/24"))
//	ln := b.Listen("tcp", "198.18.0.2:8080")
//	c := a.Dial("tcp", "198.18.0.2:8080")
//
// Sockets created inside [NS.Do] (and by [NS.Listen], [NS.ListenPacket],
// [NS.Dial]) belong to the namespace for their whole life and may be used from
// any goroutine afterwards.
//
// # Kernel behaviour worth knowing
//
// With net.core.devconf_inherit_init_net at its default (0), a new namespace
// inherits the host's IPv4 conf/all and conf/default settings (forwarding,
// rp_filter, ...) while IPv6 settings start from kernel defaults. Tests that
// depend on such a setting set it explicitly with [NS.Sysctl].
//
// The kernel finishes bringing a link up asynchronously (linkwatch and
// addrconf work, both behind the RTNL lock, so slower when other tests are
// busy with namespaces): until then a veth drops what it sends, and IPv6
// addresses stay tentative, which loses the first neighbour solicitation and
// delays a connection by the 1 s retransmit. [Lab.Link] and [NS.AddAddr]
// therefore wait until the link and its addresses are usable, and
// [Lab.Namespace] turns IPv6 duplicate address detection off, also for
// link-local addresses, which a router needs as the source of its neighbour
// solicitations.
//
// On platforms other than Linux, [New] skips the test.
package netlab
