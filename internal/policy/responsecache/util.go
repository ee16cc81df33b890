package responsecache

import "unsafe"

// b2s views b as a string without copying; b must not change afterwards.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b views s as bytes, never written through.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// equalFold compares ASCII without case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
