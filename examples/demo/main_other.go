//go:build !linux

// Command demo runs the classic pair in network namespaces: Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "demo: network namespaces are Linux only")
	os.Exit(1)
}
