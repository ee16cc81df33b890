package secret

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustKey(t testing.TB) *Key {
	t.Helper()
	return NewKey()
}

// TestSealRoundTrip: what is sealed opens with the same key and binding,
// and only then; the text has the documented form and no plaintext.
func TestSealRoundTrip(t *testing.T) {
	k := mustKey(t)
	b := Binding{Purpose: "private key", Name: "groups/certs/private/domainkey.pem"}
	for _, pt := range [][]byte{nil, []byte("x"), []byte("-----BEGIN PRIVATE KEY-----\nsecret material\n"), make([]byte, 1<<20)} {
		s := Seal(k, b, pt)
		if !strings.HasPrefix(s, SealedPrefix) || !IsSealed(s) || (len(pt) > 8 && strings.Contains(s, string(pt))) { // a short plaintext may occur in base64 by chance
			t.Fatalf("sealed text %.60q: want the prefix and no plaintext", s)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s[len(SealedPrefix):])
		if err != nil || len(raw) != 24+len(pt)+16 {
			t.Errorf("sealed %d bytes: %d raw bytes (%v), want nonce 24 + %d + tag 16", len(pt), len(raw), err, len(pt))
		}
		got, err := Open(k, b, s+"\n") // a file's final newline
		if err != nil || string(got) != string(pt) {
			t.Errorf("open: %v, %d bytes, want %d", err, len(got), len(pt))
		}
	}
	// Two seals of the same value differ (random nonces).
	s1 := Seal(k, b, []byte("same"))
	s2 := Seal(k, b, []byte("same"))
	if s1 == s2 {
		t.Error("two seals of the same value are equal: the nonce is not random")
	}
}

// TestSealBinding: a sealed value opens only where it was bound: not with
// another key, purpose or name, nor when altered anywhere.
func TestSealBinding(t *testing.T) {
	k := mustKey(t)
	b := Binding{Purpose: "private key", Name: "a.pem"}
	s := Seal(k, b, []byte("secret"))
	for _, c := range []struct {
		name string
		k    *Key
		b    Binding
	}{
		{"another key", mustKey(t), b},
		{"another purpose", k, Binding{Purpose: "session key", Name: "a.pem"}},
		{"another name", k, Binding{Purpose: "private key", Name: "b.pem"}},
		// lengths in the associated data: moving a byte between purpose and name changes it
		{"purpose and name shifted", k, Binding{Purpose: "private key" + "a", Name: ".pem"}},
	} {
		if _, err := Open(c.k, c.b, s); !errors.Is(err, ErrNotOpened) {
			t.Errorf("%s: got %v, want ErrNotOpened", c.name, err)
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(s[len(SealedPrefix):])
	for i := range raw {
		alt := append([]byte(nil), raw...)
		alt[i] ^= 1
		if _, err := Open(k, b, SealedPrefix+base64.RawURLEncoding.EncodeToString(alt)); !errors.Is(err, ErrNotOpened) {
			t.Fatalf("byte %d altered: got %v, want ErrNotOpened", i, err)
		}
	}
}

// TestOpenRefuses: text that is not sealed, or not well formed, is named
// as such before any decryption.
func TestOpenRefuses(t *testing.T) {
	k := mustKey(t)
	b := Binding{Purpose: "p", Name: "n"}
	for _, c := range []struct {
		in   string
		want error
	}{
		{"", ErrNotSealed},
		{"-----BEGIN PRIVATE KEY-----", ErrNotSealed},
		{"gh-sealed:2:AAAA", ErrNotSealed},
		{SealedPrefix, ErrCorrupt},
		{SealedPrefix + "!!!!", ErrCorrupt},
		{SealedPrefix + "AAAA====", ErrCorrupt},
		{SealedPrefix + base64.RawURLEncoding.EncodeToString(make([]byte, 39)), ErrCorrupt},
		{SealedPrefix + base64.RawURLEncoding.EncodeToString(make([]byte, 40)), ErrNotOpened},
		{SealedPrefix + strings.Repeat("A", MaxSealed), ErrCorrupt},
		// base64 broken after enough good text to pass for a nonce and a tag
		{SealedPrefix + strings.Repeat("A", 100) + "!" + strings.Repeat("A", 3), ErrCorrupt},
	} {
		if _, err := Open(k, b, c.in); !errors.Is(err, c.want) {
			t.Errorf("Open(%.40q): got %v, want %v", c.in, err, c.want)
		}
	}
	// The most a sealed value holds, 1 MiB, opens; its text is MaxSealed
	// long; one character more is refused before decoding.
	biggest := Seal(k, b, make([]byte, 1<<20))
	if len(biggest) != MaxSealed {
		t.Errorf("a sealed MiB is %d characters, MaxSealed %d", len(biggest), MaxSealed)
	}
	if pt, err := Open(k, b, biggest); err != nil || len(pt) != 1<<20 {
		t.Errorf("open a sealed MiB: %d bytes, %v", len(pt), err)
	}
	if _, err := Open(k, b, biggest+"A"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("one character more: %v, want refused for its length", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Seal of 1 MiB + 1 did not panic")
			}
		}()
		Seal(k, b, make([]byte, 1<<20+1))
	}()
	if IsSealed("gh-sealed:1") || !IsSealed("  "+SealedPrefix) {
		t.Error("IsSealed: wrong on the prefix's edges")
	}
}

// TestKeyNeverPrints: a key formats as [REDACTED].
func TestKeyNeverPrints(t *testing.T) {
	k := mustKey(t)
	out := fmt.Sprintf("%v %+v %s %#v", k, k, k, k)
	if strings.Count(out, Redacted) != 4 {
		t.Errorf("a key printed as %q", out)
	}
	k.Wipe()
	if k.b != [32]byte{} {
		t.Error("Wipe left key bytes")
	}
}

// FuzzOpen: the decoder of sealed values never panics, and accepts only
// what Seal made with the same key and binding.
func FuzzOpen(f *testing.F) {
	k := NewKey()
	b := Binding{Purpose: "fuzz", Name: "n"}
	good := Seal(k, b, []byte("plaintext"))
	for _, s := range []string{good, "", SealedPrefix, SealedPrefix + "A", SealedPrefix + "AA", SealedPrefix + "AAA", good[:len(good)-1], good + "A", " " + good + "\n", "gh-sealed:1:" + strings.Repeat("_", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pt, err := Open(k, b, s)
		if err == nil && strings.TrimSpace(s) != good {
			t.Fatalf("opened a value Seal did not make: %q -> %q", s, pt)
		}
		if err == nil && string(pt) != "plaintext" {
			t.Fatalf("opened to %q", pt)
		}
	})
}
