// Package netns runs code inside a Linux network namespace (Do). It is
// empty elsewhere.
package netns
