package secret

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// maxTerminalLine bounds a passphrase typed on a terminal.
const maxTerminalLine = 4096

// readNoEcho reads one line from terminal fd with echo off (the terminal
// edits the line: backspace works), and puts the terminal back as it was.
// It is x/term's ReadPassword but for the end: a terminal that hangs up
// makes read(2) return 0 bytes and no error, which x/term's loop takes
// for "nothing yet" and spins on at full CPU; here it is io.EOF.
func readNoEcho(fd int) ([]byte, error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	t.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	line := make([]byte, 0, maxTerminalLine) // never grown: no copy of the secret left behind
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			clear(line)
			return nil, err
		case n == 0:
			clear(line)
			return nil, io.EOF
		}
		switch b[0] {
		case '\n':
			return line, nil
		case '\r':
		case '\b':
			if len(line) > 0 {
				line = line[:len(line)-1]
			}
		default:
			if len(line) == maxTerminalLine {
				clear(line)
				return nil, fmt.Errorf("a line longer than %d bytes", maxTerminalLine)
			}
			line = append(line, b[0])
		}
	}
}
