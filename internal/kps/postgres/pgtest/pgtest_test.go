package pgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinDir(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"9", "15", "13"} {
		os.MkdirAll(filepath.Join(dir, v, "bin"), 0o755)
		os.WriteFile(filepath.Join(dir, v, "bin", "initdb"), nil, 0o755)
	}
	old := binGlob
	t.Cleanup(func() { binGlob = old })
	binGlob = filepath.Join(dir, "*", "bin", "initdb")
	got, err := BinDir()
	if want := filepath.Join(dir, "15", "bin"); err != nil || got != want {
		t.Errorf("BinDir: got %q, %v, want the newest, %q", got, err, want)
	}
	// Missing: an error that says what to install (the tests then fail).
	binGlob = filepath.Join(dir, "none", "*", "initdb")
	_, err = BinDir()
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("BinDir without PostgreSQL: got %v, want what to install", err)
	}
	if _, err := start(); err == nil || !strings.Contains(err.Error(), "postgresql") {
		t.Errorf("start without PostgreSQL: got %v", err)
	}
}
