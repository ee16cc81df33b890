package tools

import (
	"bytes"
	"os"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readPasswordNoEcho reads one line from the terminal f with echo off,
// restoring the terminal state afterwards. (golang.org/x/term does the same;
// x/sys, already a dependency, is enough for Linux.)
func readPasswordNoEcho(f *os.File) (secret.Value, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return secret.Value{}, err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return secret.Value{}, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	var buf []byte
	b := make([]byte, 1)
	for {
		n, err := f.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			buf = append(buf, b[0])
			continue
		}
		if err != nil {
			if len(buf) > 0 {
				break
			}
			return secret.Value{}, err
		}
	}
	return secret.New(bytes.TrimRight(buf, "\r")), nil
}
