//go:build !unix

package h1

// peekSocket cannot look at the socket here: only the buffered bytes are
// checked.
func peekSocket(fd uintptr, b []byte) int { return -1 }

// canPark: without peekSocket, an idle connection waits where it was served.
const canPark = false
