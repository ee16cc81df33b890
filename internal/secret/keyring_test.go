package secret

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKDF is cheap: the tests make many keyrings.
var testKDF = KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: minMemoryKiB, Threads: 1}

// TestKeyringUnlock: the passphrase that made a keyring opens its data
// key; any other is ErrWrongPassphrase; what the data key sealed opens with
// the unlocked key.
func TestKeyringUnlock(t *testing.T) {
	pass := FromString("correct horse battery")
	r, dk, err := NewKeyring("group group-1", pass, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	sealed := Seal(dk, Binding{Purpose: "p", Name: "n"}, []byte("api secret"))
	got, err := r.Unlock(FromString("correct horse battery"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Open(got, Binding{Purpose: "p", Name: "n"}, sealed); err != nil || string(pt) != "api secret" {
		t.Errorf("the unlocked key opens: %q %v", pt, err)
	}
	for _, wrong := range []string{"correct horse batterx", "correct horse battery ", "", "Correct horse battery"} {
		if _, err := r.Unlock(FromString(wrong)); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Unlock(%q): got %v, want ErrWrongPassphrase", wrong, err)
		}
	}
	// The data key is bound to the scope: a keyring whose scope was edited
	// does not open.
	moved := *r
	moved.Scope = "group group-2"
	if _, err := moved.Unlock(pass); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("a keyring moved to another scope: got %v", err)
	}
	if strings.Contains(r.DataKey, string(dk.b[:])) {
		t.Error("the data key is in the keyring in clear")
	}
}

// TestKeyringRewrap: a new passphrase opens the same data key; the old one
// does not open the new keyring; the salt is new.
func TestKeyringRewrap(t *testing.T) {
	r, dk, _ := NewKeyring("nodemanagers", FromString("old passphrase 1"), testKDF)
	n, err := r.Rewrap(FromString("new passphrase 2"), dk, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.Unlock(FromString("new passphrase 2"))
	if err != nil || got.b != dk.b {
		t.Fatalf("the new passphrase: %v, same key %v", err, err == nil && got.b == dk.b)
	}
	if _, err := n.Unlock(FromString("old passphrase 1")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("the old passphrase opens the new keyring: %v", err)
	}
	if string(n.KDF.Salt) == string(r.KDF.Salt) || n.Scope != r.Scope {
		t.Error("a rewrap keeps the salt or changes the scope")
	}
	if _, err := r.Rewrap(FromString("short"), dk, testKDF); err == nil || !strings.Contains(err.Error(), "at least 10") {
		t.Errorf("a short new passphrase: %v", err)
	}
}

// TestCheckNewPassphrase: the length bounds at their edges, in characters.
func TestCheckNewPassphrase(t *testing.T) {
	for _, c := range []struct {
		p  string
		ok bool
	}{
		{strings.Repeat("a", 9), false},
		{strings.Repeat("a", 10), true},
		{strings.Repeat("é", 10), true}, // 20 bytes, 10 characters
		{strings.Repeat("é", 9), false},
		{strings.Repeat("a", 1024), true},
		{strings.Repeat("a", 1025), false},
		{"abcdefghij\xff", false},
	} {
		if err := CheckNewPassphrase(FromString(c.p)); (err == nil) != c.ok {
			t.Errorf("%d bytes: got %v, want ok=%v", len(c.p), err, c.ok)
		}
	}
	if _, _, err := NewKeyring("s", FromString("short"), testKDF); err == nil {
		t.Error("NewKeyring with a short passphrase: no error")
	}
}

// TestKeyringBounds: parameters out of bounds are refused, not obeyed (a
// keyring altered to ask for terabytes of memory), at their edges.
func TestKeyringBounds(t *testing.T) {
	r, _, _ := NewKeyring("s", FromString("a passphrase 1"), testKDF)
	for _, c := range []struct {
		name string
		edit func(*Keyring)
		ok   bool
	}{
		{"as made", func(*Keyring) {}, true},
		{"scrypt", func(k *Keyring) { k.KDF.Algorithm = "scrypt" }, false},
		{"time 0", func(k *Keyring) { k.KDF.Time = 0 }, false},
		// the documented bounds (docs/passphrase.md): t 1-64, 8 MiB-4 GiB, a salt of 16-64 bytes
		{"time 1", func(k *Keyring) { k.KDF.Time = 1 }, true},
		{"time 64", func(k *Keyring) { k.KDF.Time = 64 }, true},
		{"time 65", func(k *Keyring) { k.KDF.Time = 65 }, false},
		{"memory 8 MiB", func(k *Keyring) { k.KDF.MemoryKiB = 8192 }, true},
		{"memory 8 MiB - 1 KiB", func(k *Keyring) { k.KDF.MemoryKiB = 8191 }, false},
		{"memory 4 GiB", func(k *Keyring) { k.KDF.MemoryKiB = 4 << 20 }, true},
		{"memory 4 GiB + 1 KiB", func(k *Keyring) { k.KDF.MemoryKiB = 4<<20 + 1 }, false},
		{"threads 0", func(k *Keyring) { k.KDF.Threads = 0 }, false},
		{"threads 1", func(k *Keyring) { k.KDF.Threads = 1 }, true},
		{"salt 16", func(k *Keyring) { k.KDF.Salt = k.KDF.Salt[:16] }, true},
		{"salt 15", func(k *Keyring) { k.KDF.Salt = k.KDF.Salt[:15] }, false},
		{"salt 64", func(k *Keyring) { k.KDF.Salt = make([]byte, 64) }, true},
		{"salt 65", func(k *Keyring) { k.KDF.Salt = make([]byte, 65) }, false},
		{"version 2", func(k *Keyring) { k.Version = 2 }, false},
		{"another format", func(k *Keyring) { k.Format = "x" }, false},
		{"no data key", func(k *Keyring) { k.DataKey = "" }, false},
	} {
		k := *r
		k.KDF.Salt = append([]byte(nil), r.KDF.Salt...)
		c.edit(&k)
		b, _ := json.Marshal(&k)
		_, err := ParseKeyring(b)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrCorrupt)) {
			t.Errorf("%s: got %v, want ok=%v (else ErrCorrupt)", c.name, err, c.ok)
		}
	}
	if _, err := ParseKeyring([]byte("{")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("broken JSON: %v", err)
	}
	// A keyring file is at most 64 KiB: one of exactly that (white space
	// after the JSON) is read, one byte more is refused for its length.
	good, _ := json.Marshal(r)
	padded := append(good, bytes.Repeat([]byte(" "), 64<<10-len(good))...)
	if _, err := ParseKeyring(padded); err != nil {
		t.Errorf("a keyring of 64 KiB: %v", err)
	}
	if _, err := ParseKeyring(append(padded, ' ')); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a keyring of 64 KiB + 1: %v", err)
	}
	// Something after the JSON object is not a keyring, even if the object is one.
	if _, err := ParseKeyring(append(good, 'x')); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a keyring with trailing garbage: %v", err)
	}
	// A data key whose seal is damaged is ErrCorrupt, not a wrong passphrase.
	damaged := *r
	damaged.DataKey = SealedPrefix + "!!!!"
	if _, err := damaged.Unlock(FromString("a passphrase 1")); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "keyring of s: sealed value damaged: illegal base64") {
		t.Errorf("a damaged data key: %v", err)
	}
	// A field of the wrong type is not a keyring, even if the rest is one.
	var m map[string]any
	json.Unmarshal(good, &m)
	m["scope"] = 5
	typed, _ := json.Marshal(m)
	if _, err := ParseKeyring(typed); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a scope that is a number: %v", err)
	}
	// Unlock checks the parameters too, before deriving anything: a
	// keyring altered in memory (or built by hand) asking for 1 TiB is
	// refused at once.
	greedy := *r
	greedy.KDF.MemoryKiB = 1 << 30
	if _, err := greedy.Unlock(FromString("a passphrase 1")); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "memory") {
		t.Errorf("Unlock of a keyring asking for 1 TiB: %v", err)
	}
	// A sealed data key of the wrong length is refused after opening.
	kek := r.KDF.derive(FromString("a passphrase 1"))
	short := *r
	short.DataKey = Seal(kek, r.binding(), make([]byte, 31))
	if _, err := short.Unlock(FromString("a passphrase 1")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a data key of 31 bytes: %v", err)
	}
}

// TestKeyringSaveLoad: saved with mode 0600, loaded back equal; a missing
// file is fs.ErrNotExist; a damaged one names the file.
func TestKeyringSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.json")
	r, _, _ := NewKeyring("ca", FromString("a passphrase 1"), testKDF)
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadKeyring(path)
	if err != nil || got.DataKey != r.DataKey || got.Scope != "ca" || string(got.KDF.Salt) != string(r.KDF.Salt) {
		t.Fatalf("loaded %+v %v", got, err)
	}
	if _, err := got.Unlock(FromString("a passphrase 1")); err != nil {
		t.Error(err)
	}
	if _, err := LoadKeyring(filepath.Join(dir, "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	os.WriteFile(path, []byte("{}"), 0o600)
	if _, err := LoadKeyring(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("damaged: %v", err)
	}
}

// TestDefaultKDF: the documented parameters, within the bounds.
func TestDefaultKDF(t *testing.T) {
	k := DefaultKDF
	k.Salt = make([]byte, 32)
	if err := k.check(); err != nil || k.Time != 3 || k.MemoryKiB != 64<<10 || k.Threads != 4 {
		t.Errorf("DefaultKDF %+v: %v", DefaultKDF, err)
	}
	r, _, err := NewKeyring("s", FromString("a passphrase 1"), testKDF)
	if err != nil || len(r.KDF.Salt) != 32 {
		t.Errorf("a new keyring's salt: %d bytes (%v), want 32", len(r.KDF.Salt), err)
	}
	bad := testKDF
	bad.MemoryKiB = 1
	if _, _, err := NewKeyring("s", FromString("a passphrase 1"), bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("NewKeyring with parameters out of bounds: %v", err)
	}
	if _, err := r.Rewrap(FromString("a passphrase 2"), NewKey(), bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Rewrap with parameters out of bounds: %v", err)
	}
}
