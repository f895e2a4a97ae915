// Package replay paces a file-fed Capturer by its capture timestamps for
// offline replay against a live target.
package replay
