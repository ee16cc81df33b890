package tools

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/term"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// passphraseSource is where a tool takes a passphrase from (docs/passphrase.md):
// -P asks on the terminal without echo; --passphrase_file reads a file that
// only its owner can read (systemd's LoadCredential=); --passphrase_fd reads
// an inherited descriptor (how startinstance -d and the node manager hand
// it to the process they start). Never an argument or an environment
// variable: both show in /proc.
type passphraseSource struct {
	prompt bool
	file   string
	fd     int
	hasFD  bool
}

func newPassphraseSource() passphraseSource { return passphraseSource{} }

// given reports whether a source was named on the command line.
func (p passphraseSource) given() bool { return p.prompt || p.file != "" || p.hasFD }

// passphraseFlagsHelp is the help text of the three options.
const passphraseFlagsHelp = `  -P                   ask for the passphrase on the terminal (no echo)
  --passphrase_file F  read it from file F (mode 0600 or 0400, owned by you)
  --passphrase_fd N    read it from inherited file descriptor N (a pipe)`

// parse consumes the option at args[*i] when it is one of the three,
// reporting whether it was. A value that looks like a passphrase given on
// the command line is refused by the callers' "unknown argument" errors.
func (p *passphraseSource) parse(tool string, args []string, i *int) (bool, error) {
	a := args[*i]
	val := func() (string, error) {
		if *i+1 >= len(args) {
			return "", usagef(tool, "%s needs a value", a)
		}
		*i++
		return args[*i], nil
	}
	switch a {
	case "-P":
		p.prompt = true
	case "--passphrase_file":
		v, err := val()
		if err != nil {
			return true, err
		}
		p.file = v
	case "--passphrase_fd":
		v, err := val()
		if err != nil {
			return true, err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return true, usagef(tool, "--passphrase_fd needs a file descriptor number, got %q", v)
		}
		p.fd, p.hasFD = n, true
	default:
		return false, nil
	}
	if n := btoi(p.prompt) + btoi(p.file != "") + btoi(p.hasFD); n > 1 {
		return true, usagef(tool, "-P, --passphrase_file and --passphrase_fd exclude each other")
	}
	return true, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// get reads the passphrase of what ("group group-2") from the source. With
// no source named, it asks on the terminal when standard input is one, and
// otherwise says how to give it.
func (p passphraseSource) get(env *Env, what string) (secret.Value, error) {
	switch {
	case p.file != "":
		return secret.FromFile(p.file)
	case p.hasFD:
		f := os.NewFile(uintptr(p.fd), "passphrase")
		if f == nil {
			return secret.Value{}, fmt.Errorf("--passphrase_fd %d: not an open file descriptor", p.fd)
		}
		defer f.Close()
		return secret.FromReader(f, fmt.Sprintf("file descriptor %d", p.fd))
	}
	in, ok := env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		if p.prompt {
			return secret.Value{}, errors.New("-P: standard input is not a terminal; give the passphrase with --passphrase_file or --passphrase_fd instead")
		}
		return secret.Value{}, fmt.Errorf("the %s has a passphrase: give it with -P (on a terminal), --passphrase_file FILE or --passphrase_fd N (docs/passphrase.md)", what)
	}
	return secret.FromTerminal(in, env.Stderr, fmt.Sprintf("Passphrase of the %s: ", what), false)
}

// unlockScope opens scope s of h for this process when it has a
// passphrase, taking it from src: a wrong passphrase is an error that
// says so (and nothing is changed). A scope without a passphrase needs
// nothing; a source named for it anyway is read and dropped (so a pipe's
// writer is not left blocked) with a note.
func unlockScope(env *Env, h home.Home, s secret.Scope, src passphraseSource) (secret.Value, error) {
	if !s.Protected(h) {
		if src.hasFD || src.file != "" {
			if v, err := src.get(env, string(s)); err == nil {
				v.Wipe()
			}
		}
		if src.given() {
			fmt.Fprintf(env.Stderr, "Note: the %s has no passphrase; the one given is not used.\n", s)
		}
		return secret.Value{}, nil
	}
	p, err := src.get(env, string(s))
	if err != nil {
		return secret.Value{}, err
	}
	start := time.Now()
	if err := secret.Unlock(h, s, p); err != nil {
		p.Wipe()
		if errors.Is(err, secret.ErrWrongPassphrase) {
			// Each try costs the KDF's time; a wrong one costs at least a second more.
			time.Sleep(time.Second - min(time.Since(start), time.Second))
			return secret.Value{}, fmt.Errorf("wrong passphrase for the %s: nothing was started or changed", s)
		}
		return secret.Value{}, err
	}
	return p, nil
}

// passphrasePipe returns the read end of a pipe holding p, for a child
// process (--passphrase_fd): never on disk, never in its arguments or
// environment. The caller closes it once the child started.
func passphrasePipe(p secret.Value) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	// A pipe holds 64 KiB; a passphrase at most 4 KiB: the writes never block.
	if _, err := w.Write(p.Reveal()); err != nil {
		r.Close()
		return nil, err
	}
	if _, err := w.Write([]byte("\n")); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
