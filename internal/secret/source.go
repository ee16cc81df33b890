package secret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
)

// How a passphrase reaches a process: never an environment variable or a
// command-line argument (both are readable in /proc by other users of the
// host, and end up in shell histories and service definitions).
//
//   - FromTerminal: typed on a terminal without echo (-P).
//   - FromExec: the standard output of a program (a vault's client, a
//     hardware module's tool), named in the node manager's configuration.
//   - FromFile: a file readable only by its owner, who must be the user the
//     process runs as (systemd's LoadCredential= makes such a file).
//   - FromReader on an inherited file descriptor: how a node manager hands
//     the passphrase to the instances it starts (a pipe: never on disk, never
//     in ps).

// MaxPassphraseBytes bounds what a source may return.
const MaxPassphraseBytes = 4 << 10

// FromReader reads a passphrase from r: up to the first newline or the
// end, at most MaxPassphraseBytes; one trailing "\n" or "\r\n" is dropped.
// An empty passphrase is an error.
func FromReader(r io.Reader, what string) (Value, error) {
	// mutate:equivalent const one byte more than the limit tells an over-long input; two would too
	b, err := io.ReadAll(io.LimitReader(r, MaxPassphraseBytes+1))
	if err != nil {
		return Value{}, fmt.Errorf("passphrase from %s: %w", what, err)
	}
	if len(b) > MaxPassphraseBytes {
		clear(b) // mutate:equivalent delete-stmt wiping a buffer no one reads again: hygiene, not observable
		return Value{}, fmt.Errorf("passphrase from %s: longer than %d bytes", what, MaxPassphraseBytes)
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		if len(bytes.TrimSpace(b[i:])) > 0 {
			clear(b) // mutate:equivalent delete-stmt wiping a buffer no one reads again: hygiene, not observable
			return Value{}, fmt.Errorf("passphrase from %s: more than one line", what)
		}
		b = bytes.TrimSuffix(b[:i], []byte("\r"))
	}
	if len(b) == 0 {
		return Value{}, fmt.Errorf("passphrase from %s: empty", what)
	}
	return New(b), nil
}

// FromFile reads a passphrase from path, which must be a regular file
// owned by the user this process runs as and readable by no one else
// (mode 0600 or 0400): anything more open is refused, naming the mode.
func FromFile(path string) (Value, error) {
	f, err := os.Open(path)
	if err != nil {
		return Value{}, fmt.Errorf("passphrase file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		// mutate:equivalent * fstat of a file just opened does not fail
		return Value{}, fmt.Errorf("passphrase file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return Value{}, fmt.Errorf("passphrase file %s: not a regular file (%s)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return Value{}, fmt.Errorf("passphrase file %s: mode %04o lets others read it; it must be readable by its owner only (chmod 600)", path, perm)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return Value{}, fmt.Errorf("passphrase file %s: owned by uid %d, not by this process's user (uid %d)", path, sys.Uid, os.Geteuid())
	}
	return FromReader(f, "file "+path)
}

// FromExec runs argv (no shell) and takes its standard output as the
// passphrase. It must exit 0 within timeout; its standard error (at most
// 1 KiB) is quoted in the error when it fails. The program inherits no
// standard input and the environment of this process.
func FromExec(ctx context.Context, argv []string, timeout time.Duration) (Value, error) {
	if len(argv) == 0 || argv[0] == "" {
		return Value{}, errors.New("passphraseExec: no program given")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out limitedBuffer
	var stderr limitedBuffer
	// mutate:equivalent const one byte more than the limit tells an over-long answer; two would too
	out.max, stderr.max = MaxPassphraseBytes+1, 1<<10
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	defer clear(out.b)
	if ctx.Err() != nil {
		return Value{}, fmt.Errorf("passphraseExec %s: no answer within %s", argv[0], timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(string(stderr.b))
		if msg != "" {
			msg = ": " + msg
		}
		return Value{}, fmt.Errorf("passphraseExec %s: %v%s", argv[0], err, msg)
	}
	v, err := FromReader(bytes.NewReader(out.b), "passphraseExec "+argv[0])
	if err != nil {
		return Value{}, err
	}
	// A copy: out.b is wiped on return.
	return New(bytes.Clone(v.Reveal())), nil
}

// limitedBuffer keeps the first max bytes written to it and notes more.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 { // mutate:equivalent boundary with no room, p[:0] adds nothing
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// FromTerminal asks for the passphrase on the terminal f without echo,
// writing prompt to w. confirm asks twice and refuses a mismatch (to set a
// passphrase). f must be a terminal.
func FromTerminal(f *os.File, w io.Writer, prompt string, confirm bool) (Value, error) {
	fd := int(f.Fd())
	if !term.IsTerminal(fd) {
		return Value{}, fmt.Errorf("-P: standard input is not a terminal; give the passphrase with --passphrase_file or passphraseExec instead")
	}
	read := func(p string) ([]byte, error) {
		fmt.Fprint(w, p)
		b, err := readNoEcho(fd)
		fmt.Fprintln(w)
		return b, err
	}
	b, err := read(prompt)
	if err != nil {
		return Value{}, fmt.Errorf("reading the passphrase: %w", err)
	}
	if confirm {
		again, err := read("Again: ")
		if err != nil {
			clear(b) // mutate:equivalent delete-stmt wiping a buffer no one reads again: hygiene, not observable
			return Value{}, fmt.Errorf("reading the passphrase: %w", err)
		}
		same := bytes.Equal(b, again)
		clear(again) // mutate:equivalent delete-stmt wiping a buffer no one reads again: hygiene, not observable
		if !same {
			clear(b) // mutate:equivalent delete-stmt wiping a buffer no one reads again: hygiene, not observable
			return Value{}, errors.New("the two passphrases differ")
		}
	}
	if len(b) == 0 {
		return Value{}, errors.New("empty passphrase")
	}
	return New(b), nil
}
