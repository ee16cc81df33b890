package responsecache

import "unsafe"

// b2s views b as a string without copying; b must not change afterwards.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b views s as bytes, never written through.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
