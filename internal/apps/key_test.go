package apps

import (
	"strings"
	"testing"
)

func TestNewKeyForm(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		id, key := NewKey()
		k := key.RevealString()
		if len(k) != KeyLength || !strings.HasPrefix(k, id+"_") || len(id) != len(KeyPrefix)+idChars {
			t.Fatalf("key %q id %q: wrong form", k, id)
		}
		got, err := ParseKey(k)
		if err != nil || got != id {
			t.Fatalf("ParseKey(%q): %q %v, want %q", k, got, err, id)
		}
		if seen[id] || seen[k] {
			t.Fatalf("key repeated after %d: %q", i, k)
		}
		seen[id], seen[k] = true, true
		if strings.Contains(key.String(), k[len(id):]) {
			t.Fatalf("the key prints itself: %v", key)
		}
	}
}

// TestKeyRandomness: every position of the secret part takes many
// values over many keys (a constant or biased part would show).
func TestKeyRandomness(t *testing.T) {
	const n = 2000
	counts := make([]map[byte]int, KeyLength)
	for i := range counts {
		counts[i] = map[byte]int{}
	}
	for i := 0; i < n; i++ {
		_, key := NewKey()
		for j, c := range []byte(key.RevealString()) {
			counts[j][c]++
		}
	}
	for j := len(KeyPrefix); j < KeyLength; j++ {
		if j == len(KeyPrefix)+idChars {
			continue
		}
		// The last character of a 5-bit group at the end may carry fewer
		// bits; every other position sees all 32 symbols in 2000 keys.
		if len(counts[j]) < 16 {
			t.Errorf("position %d takes only %d values", j, len(counts[j]))
		}
	}
}

func TestParseKeyRefuses(t *testing.T) {
	_, key := NewKey()
	good := key.RevealString()
	for _, bad := range []string{
		"", "gk_", good[:KeyLength-1], good + "a", "gx_" + good[3:], strings.ToUpper(good),
		good[:len(KeyPrefix)+idChars] + "-" + good[len(KeyPrefix)+idChars+1:],
		good[:KeyLength-1] + "1", good[:KeyLength-1] + "8", good[:5] + "\x00" + good[6:], good[:5] + "é"[:1] + good[6:],
	} {
		if _, err := ParseKey(bad); err != ErrMalformed {
			t.Errorf("ParseKey(%q): got %v, want ErrMalformed", bad, err)
		}
	}
}

func TestHashVerify(t *testing.T) {
	k1 := []byte(strings.Repeat("k", HashKeyBytes))
	k2 := []byte(strings.Repeat("j", HashKeyBytes))
	_, key := NewKey()
	h := Hash(k1, key.RevealString())
	if len(h) != 64 || strings.Contains(h, key.RevealString()) {
		t.Fatalf("hash %q", h)
	}
	if !Verify(k1, key.RevealString(), h) {
		t.Error("Verify: the key does not match its own hash")
	}
	v1 := NewVerifier(k1)
	for i := 0; i < 3; i++ { // the pooled state is reset between uses
		if !v1.Verify(key.RevealString(), h) {
			t.Error("Verifier: the key does not match its own hash")
		}
	}
	_, other := NewKey()
	for _, c := range []struct {
		name, key, stored string
		hashKey           []byte
	}{
		{"another key", other.RevealString(), h, k1},
		{"another hashing key", key.RevealString(), h, k2},
		{"stored not hex", key.RevealString(), "zz" + h[2:], k1},
		{"stored too short", key.RevealString(), h[:62], k1},
		{"stored empty", key.RevealString(), "", k1},
	} {
		if Verify(c.hashKey, c.key, c.stored) {
			t.Errorf("%s: verified", c.name)
		}
		if NewVerifier(c.hashKey).Verify(c.key, c.stored) {
			t.Errorf("%s: verified by a Verifier", c.name)
		}
	}
	if Hash(k1, key.RevealString()) != h || Hash(k2, key.RevealString()) == h {
		t.Error("Hash is not a function of the hashing key and the key")
	}
}

func FuzzParseKey(f *testing.F) {
	_, key := NewKey()
	f.Add(key.RevealString())
	f.Add("")
	f.Add("gk_")
	f.Add(key.RevealString()[:KeyLength-1])
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseKey(s)
		if err != nil {
			return
		}
		if len(s) != KeyLength || !strings.HasPrefix(s, id+"_") || strings.ContainsAny(s[3:], "01890ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("ParseKey(%q) accepted a value of another form (id %q)", s, id)
		}
	})
}
