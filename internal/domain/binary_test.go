package domain

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// script is an executable that answers "version" like a gatehouse binary.
func script(version string) []byte {
	return []byte("#!/bin/sh\necho \"" + version + "\"\n")
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestReplaceBinary(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	bin := h.BinDir()
	os.MkdirAll(bin, 0o755)
	v1, v2 := script("gatehouse 1.0"), script("gatehouse 2.0")
	os.WriteFile(filepath.Join(bin, "gatehouse"), v1, 0o755)

	// A damaged transfer, a file that is not a gatehouse binary, one that
	// does not run: refused, nothing changed.
	if _, err := ReplaceBinary(t.Context(), h, bytes.NewReader(v2), shaOf(v1)); err == nil || !strings.Contains(err.Error(), "damaged on the way") {
		t.Errorf("a wrong checksum: %v", err)
	}
	other := script("nginx version: 1.22")
	if _, err := ReplaceBinary(t.Context(), h, bytes.NewReader(other), shaOf(other)); err == nil || !strings.Contains(err.Error(), "not a gatehouse binary") {
		t.Errorf("another program: %v", err)
	}
	junk := []byte("\x7fELF not really")
	if _, err := ReplaceBinary(t.Context(), h, bytes.NewReader(junk), shaOf(junk)); err == nil || !strings.Contains(err.Error(), "does not run") {
		t.Errorf("a file that does not run: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(bin, "gatehouse")); !bytes.Equal(got, v1) {
		t.Fatal("a refused binary changed posix/bin/gatehouse")
	}
	if _, err := os.Stat(filepath.Join(bin, PreviousBinary)); !os.IsNotExist(err) {
		t.Fatal("a refused binary made a previous one")
	}
	if ents, _ := filepath.Glob(filepath.Join(bin, ".gatehouse.new-*")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}

	info, err := ReplaceBinary(t.Context(), h, bytes.NewReader(v2), strings.ToUpper(shaOf(v2)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "gatehouse 2.0" || info.SHA256 != shaOf(v2) || info.Previous != shaOf(v1) {
		t.Errorf("info: %+v", info)
	}
	cur, _ := os.ReadFile(filepath.Join(bin, "gatehouse"))
	prev, _ := os.ReadFile(filepath.Join(bin, PreviousBinary))
	if !bytes.Equal(cur, v2) || !bytes.Equal(prev, v1) {
		t.Fatalf("after the upgrade: current %q, previous %q", cur, prev)
	}
	if fi, _ := os.Stat(filepath.Join(bin, "gatehouse")); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
	// The same binary again keeps the previous one.
	if _, err := ReplaceBinary(t.Context(), h, bytes.NewReader(v2), shaOf(v2)); err != nil {
		t.Fatal(err)
	}
	if prev, _ := os.ReadFile(filepath.Join(bin, PreviousBinary)); !bytes.Equal(prev, v1) {
		t.Errorf("installing the same binary twice lost the previous one: %q", prev)
	}

	// Back, and back again.
	back, err := RestorePreviousBinary(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	if back.Version != "gatehouse 1.0" || back.Previous != shaOf(v2) {
		t.Errorf("restore: %+v", back)
	}
	cur, _ = os.ReadFile(filepath.Join(bin, "gatehouse"))
	prev, _ = os.ReadFile(filepath.Join(bin, PreviousBinary))
	if !bytes.Equal(cur, v1) || !bytes.Equal(prev, v2) {
		t.Fatalf("after the restore: current %q, previous %q", cur, prev)
	}
	if _, err := RestorePreviousBinary(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if cur, _ = os.ReadFile(filepath.Join(bin, "gatehouse")); !bytes.Equal(cur, v2) {
		t.Errorf("restoring twice: %q", cur)
	}
	// Too large.
	big := bytes.NewReader(make([]byte, MaxBinaryBytes+1))
	if _, err := ReplaceBinary(t.Context(), h, big, "00"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a binary too large: %v", err)
	}
}

func TestNoPreviousBinary(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	os.MkdirAll(h.BinDir(), 0o755)
	if _, err := RestorePreviousBinary(t.Context(), h); !errors.Is(err, ErrNoPreviousBinary) {
		t.Errorf("no previous binary: %v", err)
	}
}
