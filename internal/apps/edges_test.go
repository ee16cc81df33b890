package apps

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
)

// TestMain fails the package's tests if they hang (a listing loop that
// never ends must fail, not time out).
func TestMain(m *testing.M) {
	stop := time.AfterFunc(3*time.Minute, func() { panic("internal/apps tests still running after 3 minutes: a loop that never ends?") })
	code := m.Run()
	stop.Stop()
	os.Exit(code)
}

// TestKeyForm: the documented form of a key, gk_ + 12 + _ + 26 lower-case
// base32 characters (42 in all), and a 32-byte hashing key.
func TestKeyForm(t *testing.T) {
	if KeyLength != 42 || HashKeyBytes != 32 || KeyPrefix != "gk_" {
		t.Fatalf("KeyLength %d, HashKeyBytes %d, KeyPrefix %q: the documented form is gk_ + 12 + _ + 26 (42) and a 32-byte hashing key", KeyLength, HashKeyBytes, KeyPrefix)
	}
	for range 20 {
		id, key := NewKey()
		k := key.RevealString()
		if len(id) != 15 || len(k) != 42 || !strings.HasPrefix(k, id+"_") || strings.Trim(k[16:], "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("NewKey: id %q, key %q", id, k)
		}
		if got, err := ParseKey(k); err != nil || got != id {
			t.Fatalf("ParseKey(%q): %q %v", k, got, err)
		}
	}
	// A stored hash of another length is refused without a panic.
	v := NewVerifier(testHashKey.Reveal())
	_, key := NewKey()
	for _, stored := range []string{"", "ab", strings.Repeat("a", 66), strings.Repeat("z", 64)} {
		if v.Verify(key.RevealString(), stored) || Verify(testHashKey.Reveal(), key.RevealString(), stored) {
			t.Errorf("stored %q verified", stored)
		}
	}
	good := Hash(testHashKey.Reveal(), key.RevealString())
	if !v.Verify(key.RevealString(), good) || !Verify(testHashKey.Reveal(), key.RevealString(), good) {
		t.Error("the right hash does not verify")
	}
}

// TestCheckerEdges: what a malformed key is told, the verified keys'
// share of the cache, a rotation without grace, the hashing key's
// directory.
func TestCheckerEdges(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	cache := kps.NewCache(s, kps.CacheOptions{MaxBytes: 16 << 20, Now: c.now})
	ck := NewChecker(cache, testHashKey)
	// docs/kps.md: a quarter of maxBytes, 320 bytes counted per entry.
	if want := (16 << 20) / 4 / 320 / verifiedShards; ck.verified.max != want {
		t.Errorf("verified keys per shard: %d, want %d (a quarter of maxBytes)", ck.verified.max, want)
	}
	if _, err := ck.Check(ctx, "hello"); !errors.Is(err, apikey.ErrInvalidKey) || !strings.Contains(err.Error(), "not a Gatehouse API key") {
		t.Errorf("a malformed key: %v", err)
	}
	a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true})
	k, _, _ := m.CreateKey(ctx, a.ID, time.Time{})
	old, fresh, _, err := m.RotateKey(ctx, k.ID, 0)
	if err != nil || !old.ExpiresAt.Equal(c.t) || fresh.ID == k.ID {
		t.Errorf("a rotation without grace: old expires %v, %v", old.ExpiresAt, err)
	}
	h := home.Home{Dir: t.TempDir()}
	if _, err := LoadOrCreateHashKey(h, "group-9"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(HashKeyFile(h, "group-9"))); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the hashing key's directory: %v %v, want 0700", fi.Mode(), err)
	}
}

// TestOAuthClientEdges: the limits of an OAuth client's settings at their
// edges, and the characters of a scope.
func TestOAuthClientEdges(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	n := 0
	create := func(o OAuthClient) error {
		n++
		_, err := m.CreateApp(ctx, App{Name: strings.Repeat("a", n), Enabled: true, OAuth: &o})
		return err
	}
	cc := []string{"client_credentials"}
	uris := func(k int) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = "https://a.example.com/cb" + strings.Repeat("x", i)
		}
		return out
	}
	long := "https://a.example.com/" + strings.Repeat("p", 2048-len("https://a.example.com/"))
	padded := func(size int) json.RawMessage {
		return json.RawMessage(testJWKS + strings.Repeat(" ", size-len(testJWKS)))
	}
	private := `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}`
	for _, tc := range []struct {
		what string
		o    OAuthClient
		ok   bool
	}{
		{"20 redirect URIs", OAuthClient{GrantTypes: cc, RedirectURIs: uris(20)}, true},
		{"21 redirect URIs", OAuthClient{GrantTypes: cc, RedirectURIs: uris(21)}, false},
		{"a redirect URI of 2048 bytes", OAuthClient{GrantTypes: cc, RedirectURIs: []string{long}}, true},
		{"a redirect URI of 2049 bytes", OAuthClient{GrantTypes: cc, RedirectURIs: []string{long + "p"}}, false},
		{"a redirect URI without host", OAuthClient{GrantTypes: cc, RedirectURIs: []string{"https:///cb"}}, false},
		{"a redirect URI that does not parse", OAuthClient{GrantTypes: cc, RedirectURIs: []string{"https://a.example.com/%zz"}}, false},
		{"a scope of 128 bytes", OAuthClient{GrantTypes: cc, Scopes: []string{strings.Repeat("s", 128)}}, true},
		{"a scope of 129 bytes", OAuthClient{GrantTypes: cc, Scopes: []string{strings.Repeat("s", 129)}}, false},
		{"an empty scope", OAuthClient{GrantTypes: cc, Scopes: []string{""}}, false},
		{"a scope of ! and ~", OAuthClient{GrantTypes: cc, Scopes: []string{"!a~"}}, true},
		{"a scope starting with a quote", OAuthClient{GrantTypes: cc, Scopes: []string{`"a`}}, false},
		{"a scope with a backslash", OAuthClient{GrantTypes: cc, Scopes: []string{`a\b`}}, false},
		{"a scope with DEL", OAuthClient{GrantTypes: cc, Scopes: []string{"a\x7f"}}, false},
		{"a scope with a space", OAuthClient{GrantTypes: cc, Scopes: []string{"a b"}}, false},
		{"keys of 64 KiB", OAuthClient{GrantTypes: cc, JWKS: padded(64 << 10)}, true},
		{"keys of 64 KiB + 1", OAuthClient{GrantTypes: cc, JWKS: padded(64<<10 + 1)}, false},
		{"a private key", OAuthClient{GrantTypes: cc, JWKS: json.RawMessage(private)}, false},
		{"keys of one byte", OAuthClient{GrantTypes: cc, JWKS: json.RawMessage("1")}, false},
	} {
		err := create(tc.o)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: refused: %v", tc.what, err)
		case !tc.ok && !errors.Is(err, kps.ErrInvalid):
			t.Errorf("%s: %v, want ErrInvalid", tc.what, err)
		}
	}
	// Five secrets at most, each with its creation time.
	a, _ := m.CreateApp(ctx, App{Name: "secrets", Enabled: true, OAuth: &OAuthClient{GrantTypes: cc}})
	for i := range 6 {
		_, _, err := m.CreateClientSecret(ctx, a.ID, time.Time{})
		if (err == nil) != (i < 5) {
			t.Errorf("secret %d: %v (five at most)", i+1, err)
		}
	}
	list, _ := m.ClientSecrets(ctx, a.ID)
	if len(list) != 5 || !list[0].CreatedAt.Equal(c.t) {
		t.Errorf("secrets: %+v", list)
	}
}

// TestAppWithoutAPIs: an application without APIs has an empty list, not
// none: the API answers "apis": [] (never null) for it.
func TestAppWithoutAPIs(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	m := newManager(t, s, &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)})
	a, err := m.CreateApp(ctx, App{Name: "none", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.App(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []App{a, got} {
		if b, _ := json.Marshal(a); a.APIs == nil || !strings.Contains(string(b), `"apis":[]`) {
			t.Errorf("an application without APIs: %s", b)
		}
	}
}

// TestCheckerRowPath: a key checked against its rows (not yet verified):
// a wrong secret for a known id, a stored hash that is damaged, an
// application that is gone are each an invalid key, and nothing of them is
// remembered as verified.
func TestCheckerRowPath(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	k, key, _ := m.CreateKey(ctx, a.ID, time.Time{})
	ck := NewChecker(kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, Now: c.now}), testHashKey)
	ck.now = c.now
	_, other := NewKey()
	forged := k.ID + other.RevealString()[len(k.ID):]
	if _, err := ck.Check(ctx, forged); !errors.Is(err, apikey.ErrInvalidKey) || !strings.Contains(err.Error(), "the secret part does not match") {
		t.Errorf("a known id with another secret: %v", err)
	}
	// A stored hash that does not decode, of the right length.
	r, _ := s.Get(ctx, KeysTable, k.ID)
	r.Values["hash"] = strings.Repeat("z", 64)
	if _, err := s.Update(ctx, KeysTable, r); err != nil {
		t.Fatal(err)
	}
	ck = NewChecker(kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, Now: c.now}), testHashKey)
	if _, err := ck.Check(ctx, key.RevealString()); !errors.Is(err, apikey.ErrInvalidKey) || !strings.Contains(err.Error(), "the secret part does not match") {
		t.Errorf("a damaged stored hash: %v", err)
	}
	// Its application deleted behind the Manager's back.
	k2, key2, _ := m.CreateKey(ctx, a.ID, time.Time{})
	if err := s.Delete(ctx, AppsTable, a.ID, kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	ck = NewChecker(kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, Now: c.now}), testHashKey)
	if _, err := ck.Check(ctx, key2.RevealString()); !errors.Is(err, apikey.ErrInvalidKey) || !strings.Contains(err.Error(), "key "+k2.ID+": its application "+a.ID+" is gone") {
		t.Errorf("its application gone: %v", err)
	}
	if n := ck.verified.len(); n != 0 {
		t.Errorf("%d keys remembered as verified, want none", n)
	}
}

// TestUpdateAppRefused: a change that breaks a limit is refused (400) and
// the application stays as it was.
func TestUpdateAppRefused(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	m := newManager(t, s, &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)})
	a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	for _, bad := range []App{{Name: ""}, {Name: "Shop", APIs: []string{""}}, {Name: "Shop", OAuth: &OAuthClient{}}} {
		bad.ID, bad.Version = a.ID, a.Version
		if _, err := m.UpdateApp(ctx, bad); !errors.Is(err, kps.ErrInvalid) {
			t.Errorf("UpdateApp(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	if got, err := m.App(ctx, a.ID); err != nil || got.Version != 1 || got.Name != "Shop" || len(got.APIs) != 1 || got.OAuth != nil {
		t.Errorf("after refused changes: %+v %v", got, err)
	}
}
