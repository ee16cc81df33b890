package secret

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestFromReader: one line, its newline dropped; empty, several lines and
// over-long input refused.
func TestFromReader(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{"pass phrase\n", "pass phrase", ""},
		{"pass phrase\r\n", "pass phrase", ""},
		{"pass phrase", "pass phrase", ""},
		{"pass phrase\n\n", "pass phrase", ""},
		{" spaces kept \n", " spaces kept ", ""},
		{"", "", "empty"},
		{"\n", "", "empty"},
		{"first\nsecond\n", "", "more than one line"},
		{"first\nt", "", "more than one line"},
		{strings.Repeat("a", 4096), strings.Repeat("a", 4096), ""}, // 4 KiB at most
		{strings.Repeat("a", 4097), "", "longer than 4096 bytes"},
	} {
		v, err := FromReader(strings.NewReader(c.in), "test")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "first") {
				t.Errorf("%.20q: got %v, want %q (and no passphrase in it)", c.in, err, c.err)
			}
			continue
		}
		if err != nil || v.RevealString() != c.want {
			t.Errorf("%.20q: got %.20q %v", c.in, v.RevealString(), err)
		}
	}
}

// TestFromReaderError: a read error is the passphrase's error.
func TestFromReaderError(t *testing.T) {
	_, err := FromReader(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errors.New("pipe broke"))), "fd 3")
	if err == nil || !strings.Contains(err.Error(), "passphrase from fd 3: pipe broke") {
		t.Errorf("got %v", err)
	}
}

// TestFromFile: only a regular file of this user readable by no one else.
func TestFromFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pass")
	os.WriteFile(p, []byte("from a file 123\n"), 0o600)
	if v, err := FromFile(p); err != nil || v.RevealString() != "from a file 123" {
		t.Errorf("0600: %q %v", v.RevealString(), err)
	}
	os.Chmod(p, 0o400)
	if _, err := FromFile(p); err != nil {
		t.Errorf("0400: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o610, 0o601} {
		os.Chmod(p, mode)
		if _, err := FromFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: got %v, want refused", mode, err)
		}
	}
	if _, err := FromFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	if _, err := FromFile(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing file: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(p, 0o600)
		os.Chown(p, 12345, 12345)
		if _, err := FromFile(p); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Errorf("another owner: %v", err)
		}
	}
}

// TestFromExec: the program's standard output, its failure with its
// standard error, a timeout, no program.
func TestFromExec(t *testing.T) {
	ctx := context.Background()
	if v, err := FromExec(ctx, []string{"printf", "from a vault 1\n"}, 5*time.Second); err != nil || v.RevealString() != "from a vault 1" {
		t.Errorf("printf: %q %v", v.RevealString(), err)
	}
	_, err := FromExec(ctx, []string{"sh", "-c", "echo vault sealed >&2; exit 3"}, 5*time.Second)
	if err == nil || err.Error() != "passphraseExec sh: exit status 3: vault sealed" {
		t.Errorf("a failing program: %v", err)
	}
	_, err = FromExec(ctx, []string{"sh", "-c", "exit 4"}, 5*time.Second)
	if err == nil || err.Error() != "passphraseExec sh: exit status 4" {
		t.Errorf("a failing program that says nothing: %v", err)
	}
	// Its standard error is quoted up to 1 KiB.
	_, err = FromExec(ctx, []string{"sh", "-c", "head -c 3000 /dev/zero | tr '\\0' e >&2; exit 1"}, 5*time.Second)
	if err == nil || strings.Count(err.Error(), "e") != 1024+strings.Count("passphraseExec sh: exit status 1: ", "e") {
		t.Errorf("a long standard error: %d e's in the error", strings.Count(fmt.Sprint(err), "e"))
	}
	start := time.Now()
	_, err = FromExec(ctx, []string{"sleep", "30"}, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "passphraseExec sleep: no answer within 200ms") || time.Since(start) > 10*time.Second {
		t.Errorf("a program that does not answer: %v after %v", err, time.Since(start))
	}
	if _, err := FromExec(ctx, nil, time.Second); err == nil {
		t.Error("no program: no error")
	}
	if _, err := FromExec(ctx, []string{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("an over-long answer: %v", err)
	}
	// 4 KiB is the most; one byte more is refused.
	if v, err := FromExec(ctx, []string{"sh", "-c", "head -c 4096 /dev/zero | tr '\\0' a"}, 5*time.Second); err != nil || len(v.Reveal()) != 4096 {
		t.Errorf("an answer of 4 KiB: %d bytes, %v", len(v.Reveal()), err)
	}
	if _, err := FromExec(ctx, []string{"sh", "-c", "head -c 4097 /dev/zero | tr '\\0' a"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("an answer of 4 KiB + 1: %v", err)
	}
	// The same, the last byte written on its own.
	if _, err := FromExec(ctx, []string{"sh", "-c", "head -c 4096 /dev/zero | tr '\\0' a; sleep 0.05; printf b"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("an answer of 4 KiB + 1 in two writes: %v", err)
	}
	if _, err := FromExec(ctx, []string{"true"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty answer: %v", err)
	}
}

// TestFromTerminalNeedsATerminal: -P without a terminal says what to use.
func TestFromTerminalNeedsATerminal(t *testing.T) {
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	if _, err := FromTerminal(f, os.Stderr, "Passphrase: ", false); err == nil || !strings.Contains(err.Error(), "not a terminal") {
		t.Errorf("got %v", err)
	}
}
