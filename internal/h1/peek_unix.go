//go:build unix

package h1

import "syscall"

// peekSocket looks at the socket fd without consuming or waiting: 1 when a
// byte is readable, 0 at EOF (or on an error, which makes the connection
// unusable as well), -1 when nothing has arrived.
func peekSocket(fd uintptr, b []byte) int {
	for {
		n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return -1
		case err != nil:
			return 0
		case n > 0:
			return 1
		}
		return 0
	}
}

// canPark: an idle connection can wait in park (which needs peekSocket).
const canPark = true
