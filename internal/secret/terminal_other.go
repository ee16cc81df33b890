//go:build !linux

package secret

import "golang.org/x/term"

func readNoEcho(fd int) ([]byte, error) { return term.ReadPassword(fd) }
