package oauth

import (
	"github.com/gatehouse-gw/gatehouse/internal/home"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeySetEdges: another process's new key is seen 10 s after the last
// reload, not before; files that are not keys are left alone; a key file
// that does not parse, a directory that cannot be made or read, an
// algorithm not accepted are refused for what they are.
func TestKeySetEdges(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "keys")
	ks, err := LoadKeySet(home.Home{}, dir, "", clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := ks.Current()
	other, err := LoadKeySet(home.Home{}, dir, "", clk.Now) // another process
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second) // the new key is newer
	newKid, err := other.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	held := func() []string {
		ks.refresh()
		ks.mu.RLock()
		defer ks.mu.RUnlock()
		var kids []string
		for _, k := range ks.keys {
			kids = append(kids, k.kid)
		}
		return kids
	}
	clk.Advance(10*time.Second - time.Second - 1)
	if kids := held(); len(kids) != 1 || kids[0] != first {
		t.Errorf("1 ns before the reload interval: %v, want only %s", kids, first)
	}
	clk.Advance(1)
	if kids := held(); len(kids) != 2 || kids[1] != newKid {
		t.Errorf("at the reload interval: %v, want %s then %s", kids, first, newKid)
	}
	// Not keys: a directory, another suffix, a temporary file.
	os.Mkdir(filepath.Join(dir, "sub.json"), 0o700)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, ".tmp-123.json"), []byte("partial"), 0o600)
	if err := ks.Reload(); err != nil || len(ks.keys) != 2 {
		t.Errorf("a directory with files that are not keys: %v, %d keys", err, len(ks.keys))
	}
	for content, want := range map[string]string{"not json": "not a key file", `{"kid":"x","alg":"ES256","jwk":{"kty":"nope"}}`: "its jwk"} {
		bad := filepath.Join(dir, "bad.json")
		os.WriteFile(bad, []byte(content), 0o600)
		if err := ks.Reload(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a key file %q: %v, want %q", content, err, want)
		}
		os.Remove(bad)
	}
	if _, err := LoadKeySet(home.Home{}, dir, "HS256", clk.Now); err == nil || !strings.Contains(err.Error(), "signing algorithm") {
		t.Errorf("HS256: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := LoadKeySet(home.Home{}, filepath.Join(file, "keys"), "", clk.Now); err == nil || !strings.Contains(err.Error(), "creating the key directory") {
		t.Errorf("a key directory under a file: %v", err)
	}
	os.RemoveAll(dir)
	if err := ks.Reload(); err == nil || !strings.Contains(err.Error(), "reading the key directory") {
		t.Errorf("the key directory gone: %v", err)
	}
}

// TestKeySetRotation: a new key has a kid of 22 characters, is strictly
// newer than the keys held even when the clock has not moved, signs 20 s
// after it was made, not before; a key file that is not a private key with
// its kid and a known algorithm is refused; a directory gone or a key file
// that cannot be removed is an error.
func TestKeySetRotation(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "keys")
	ks, err := LoadKeySet(home.Home{}, dir, "", clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := ks.Current()
	kid, err := ks.Rotate()
	if err != nil || len(kid) != 22 {
		t.Fatalf("Rotate: %q %v", kid, err)
	}
	if len(ks.keys) != 2 || !ks.keys[1].created.After(ks.keys[0].created) || ks.keys[1].kid != kid {
		t.Errorf("a key made at the same instant: not strictly newer")
	}
	clk.Advance(20*time.Second + time.Millisecond - 1) // created 1 ms after the first key
	if k, _ := ks.Current(); k != first {
		t.Errorf("1 ns before the publish delay: signing with %s", k)
	}
	clk.Advance(1)
	if k, _ := ks.Current(); k != kid {
		t.Errorf("at the publish delay: signing with %s, want %s", k, kid)
	}
	// Key files that are not acceptable.
	b, _ := os.ReadFile(filepath.Join(dir, kid+".json"))
	for what, edit := range map[string]func(string) string{
		"a kid that differs": func(s string) string { return strings.Replace(s, `"kid":"`+kid+`"`, `"kid":"other"`, 1) },
		"another algorithm":  func(s string) string { return strings.Replace(s, `"alg":"ES256"`, `"alg":"HS256"`, 1) },
		"no kid":             func(s string) string { return strings.Replace(s, `"kid":"`+kid+`"`, `"kid":""`, 1) },
	} {
		bad := filepath.Join(dir, "bad.json")
		os.WriteFile(bad, []byte(edit(string(b))), 0o600)
		if err := ks.Reload(); err == nil {
			t.Errorf("a key file with %s: accepted", what)
		}
		os.Remove(bad)
	}
	// Prune: a retired key whose file cannot be removed (a directory with
	// something in it in its place).
	clk.Advance(time.Hour)
	os.Remove(filepath.Join(dir, first+".json"))
	os.MkdirAll(filepath.Join(dir, first+".json", "x"), 0o700)
	if _, err := ks.Prune(time.Minute); err == nil || !strings.Contains(err.Error(), "removing retired signing key") {
		t.Errorf("a retired key that cannot be removed: %v", err)
	}
	os.RemoveAll(dir)
	if _, err := ks.Rotate(); err == nil || !strings.Contains(err.Error(), "storing the signing key") {
		t.Errorf("Rotate with the directory gone: %v", err)
	}
}
