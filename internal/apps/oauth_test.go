package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

const testJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`

func TestOAuthClientSettings(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	ok := func(o OAuthClient) *OAuthClient { return &o }
	web := OAuthClient{RedirectURIs: []string{"https://app.example.com/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}, Scopes: []string{"orders:read"}}
	for name, o := range map[string]*OAuthClient{
		"no grant":                 ok(OAuthClient{}),
		"implicit":                 ok(OAuthClient{GrantTypes: []string{"implicit"}}),
		"password":                 ok(OAuthClient{GrantTypes: []string{"password"}}),
		"code without redirect":    ok(OAuthClient{GrantTypes: []string{"authorization_code"}}),
		"public machine":           ok(OAuthClient{Public: true, GrantTypes: []string{"client_credentials"}}),
		"http redirect":            ok(OAuthClient{GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"http://app.example.com/cb"}}),
		"relative redirect":        ok(OAuthClient{GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"/cb"}}),
		"fragment":                 ok(OAuthClient{GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://a.example.com/cb#x"}}),
		"user info":                ok(OAuthClient{GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://u@a.example.com/cb"}}),
		"custom scheme":            ok(OAuthClient{GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"javascript://a.example.com/cb"}}),
		"too many redirects":       ok(OAuthClient{GrantTypes: []string{"client_credentials"}, RedirectURIs: strings.Split(strings.Repeat("https://a.example.com/cb,", MaxRedirectURIs+1), ",")[:MaxRedirectURIs+1]}),
		"bad scope":                ok(OAuthClient{GrantTypes: []string{"client_credentials"}, Scopes: []string{"a b"}}),
		"unknown auth method":      ok(OAuthClient{GrantTypes: []string{"client_credentials"}, AuthMethod: "tls_client_auth"}),
		"none for confidential":    ok(OAuthClient{GrantTypes: []string{"client_credentials"}, AuthMethod: "none"}),
		"secret for public":        ok(OAuthClient{Public: true, GrantTypes: []string{"authorization_code"}, RedirectURIs: web.RedirectURIs, AuthMethod: "client_secret_basic"}),
		"private key without keys": ok(OAuthClient{GrantTypes: []string{"client_credentials"}, AuthMethod: "private_key_jwt"}),
		"keys not a set":           ok(OAuthClient{GrantTypes: []string{"client_credentials"}, JWKS: json.RawMessage(`{"keys":[]}`)}),
		"keys for public":          ok(OAuthClient{Public: true, GrantTypes: []string{"authorization_code"}, RedirectURIs: web.RedirectURIs, JWKS: json.RawMessage(testJWKS)}),
	} {
		if _, err := m.CreateApp(ctx, App{Name: "x-" + name, Enabled: true, OAuth: o}); !errors.Is(err, kps.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	native := OAuthClient{Public: true, GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"http://127.0.0.1:8765/cb", "http://[::1]/cb", "http://localhost/cb"}, AuthMethod: "none"}
	keyed := OAuthClient{GrantTypes: []string{"client_credentials"}, AuthMethod: "private_key_jwt", JWKS: json.RawMessage(testJWKS)}
	for name, o := range map[string]OAuthClient{"web": web, "native": native, "keyed": keyed} {
		a, err := m.CreateApp(ctx, App{Name: name, Enabled: true, OAuth: &o})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := m.App(ctx, a.ID)
		if got.OAuth == nil || got.OAuth.Public != o.Public || strings.Join(got.OAuth.RedirectURIs, " ") != strings.Join(o.RedirectURIs, " ") ||
			strings.Join(got.OAuth.GrantTypes, " ") != strings.Join(o.GrantTypes, " ") || got.OAuth.AuthMethod != o.AuthMethod || (len(got.OAuth.JWKS) > 0) != (len(o.JWKS) > 0) {
			t.Errorf("%s read back: %+v", name, got.OAuth)
		}
	}
	plain, _ := m.CreateApp(ctx, App{Name: "plain", Enabled: true})
	if got, _ := m.App(ctx, plain.ID); got.OAuth != nil {
		t.Errorf("an application without OAuth settings read back with %+v", got.OAuth)
	}
}

func TestClientSecretsAndRegistry(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	web, _ := m.CreateApp(ctx, App{Name: "web", Enabled: true, OAuth: &OAuthClient{RedirectURIs: []string{"https://app.example.com/cb"},
		GrantTypes: []string{"authorization_code", "client_credentials"}, Scopes: []string{"orders:read"}, JWKS: json.RawMessage(testJWKS)}})
	native, _ := m.CreateApp(ctx, App{Name: "native", Enabled: true, OAuth: &OAuthClient{Public: true, GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"http://127.0.0.1/cb"}}})
	plain, _ := m.CreateApp(ctx, App{Name: "plain", Enabled: true})

	if _, _, err := m.CreateClientSecret(ctx, native.ID, time.Time{}); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("a public client's secret: %v", err)
	}
	if _, _, err := m.CreateClientSecret(ctx, plain.ID, time.Time{}); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("a secret for an application that is not a client: %v", err)
	}
	if _, _, err := m.CreateClientSecret(ctx, "nobody", time.Time{}); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("an unknown application: %v", err)
	}
	if _, _, err := m.CreateClientSecret(ctx, web.ID, c.t); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("an expiry now: %v", err)
	}
	cs1, sec1, err := m.CreateClientSecret(ctx, web.ID, time.Time{})
	if err != nil || !strings.HasPrefix(sec1.RevealString(), "gcs_") || cs1.ID == "" || cs1.AppID != web.ID {
		t.Fatalf("secret: %+v %v", cs1, err)
	}
	_, sec2, _ := m.CreateClientSecret(ctx, web.ID, c.t.Add(time.Hour))
	if r, _ := s.Get(ctx, ClientSecretsTable, cs1.ID); strings.Contains(r.Values["hash"].(string), sec1.RevealString()) || r.Values["hash"] != oauth.HashSecret(OAuthHashKey(testHashKey), sec1.RevealString()) {
		t.Errorf("stored: %v (want the keyed hash only)", r.Values)
	}
	for range MaxClientSecrets - 2 {
		m.CreateClientSecret(ctx, web.ID, time.Time{})
	}
	if _, _, err := m.CreateClientSecret(ctx, web.ID, time.Time{}); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("one secret too many: %v", err)
	}
	list, _ := m.ClientSecrets(ctx, web.ID)
	if len(list) != MaxClientSecrets {
		t.Errorf("%d secrets listed", len(list))
	}

	reg := NewRegistry(kps.NewCache(s, kps.CacheOptions{Now: c.now}), s)
	reg.now = c.now
	oc, err := reg.Client(ctx, web.ID)
	if err != nil || oc.ID != web.ID || oc.Name != "web" || !oc.Enabled || oc.Public || len(oc.SecretHashes) != MaxClientSecrets || oc.JWKS == nil || len(oc.JWKS.Keys) != 1 ||
		strings.Join(oc.GrantTypes, " ") != "authorization_code client_credentials" || oc.Scopes[0] != "orders:read" {
		t.Fatalf("registry client: %+v %v", oc, err)
	}
	hash2 := oauth.HashSecret(OAuthHashKey(testHashKey), sec2.RevealString())
	c.t = c.t.Add(time.Hour)
	oc, _ = reg.Client(ctx, web.ID)
	for _, h := range oc.SecretHashes {
		if h == hash2 {
			t.Error("an expired secret is still offered")
		}
	}
	if len(oc.SecretHashes) != MaxClientSecrets-1 {
		t.Errorf("%d secrets after one expired", len(oc.SecretHashes))
	}
	if err := m.DeleteClientSecret(ctx, native.ID, cs1.ID); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("deleting a secret through another application: %v", err)
	}
	if err := m.DeleteClientSecret(ctx, web.ID, cs1.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.ClientSecrets(ctx, web.ID); len(list) != MaxClientSecrets-1 {
		t.Errorf("%d after a delete", len(list))
	}
	ac, err := reg.AuthorizeClient(ctx, native.ID)
	if err != nil || ac.ID != native.ID || !ac.AllowsCode || ac.RedirectURIs[0] != "http://127.0.0.1/cb" {
		t.Errorf("authorize client: %+v %v", ac, err)
	}
	if nc, _ := reg.Client(ctx, native.ID); !nc.Public || len(nc.SecretHashes) != 0 {
		t.Errorf("public client: %+v", nc)
	}
	for _, id := range []string{plain.ID, "nobody"} {
		if _, err := reg.Client(ctx, id); !errors.Is(err, oauth.ErrUnknownClient) {
			t.Errorf("%s: %v, want ErrUnknownClient", id, err)
		}
		if _, err := reg.AuthorizeClient(ctx, id); !errors.Is(err, authorize.ErrUnknownClient) {
			t.Errorf("%s: %v, want authorize.ErrUnknownClient", id, err)
		}
	}
	// Deleting the application deletes its secrets.
	if err := m.DeleteApp(ctx, web.ID, kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, ClientSecretsTable); n != 0 {
		t.Errorf("%d secrets left after the application was deleted", n)
	}
	// A store that cannot answer is not an unknown client.
	s.Close()
	if _, err := NewRegistry(kps.NewCache(s, kps.CacheOptions{}), s).Client(ctx, native.ID); err == nil || errors.Is(err, oauth.ErrUnknownClient) {
		t.Errorf("store closed: %v", err)
	}
	if _, err := NewRegistry(kps.NewCache(s, kps.CacheOptions{}), s).AuthorizeClient(ctx, native.ID); err == nil || errors.Is(err, authorize.ErrUnknownClient) {
		t.Errorf("store closed (authorize): %v", err)
	}
}

func TestDerivedKeys(t *testing.T) {
	a, b := OAuthHashKey(testHashKey), AuthorizeSigningKey(testHashKey)
	if len(a.Reveal()) != 32 || len(b.Reveal()) != 32 || a.Equal(b) || a.Equal(testHashKey) || !a.Equal(OAuthHashKey(testHashKey)) {
		t.Error("derived keys: want 32 bytes each, distinct, stable")
	}
	if OAuthHashKey(secret.FromString(strings.Repeat("x", 32))).Equal(a) {
		t.Error("another group key derives the same OAuth key")
	}
}

// TestRegistryReuse: a client's answer is reused for RegistryTTL, never
// past its application row's cache entry nor a secret's expiry; the
// remembered clients are bounded.
func TestRegistryReuse(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	a, _ := m.CreateApp(ctx, App{Name: "svc", Enabled: true, OAuth: &OAuthClient{GrantTypes: []string{"client_credentials"}}})
	m.CreateClientSecret(ctx, a.ID, time.Time{})
	reg := NewRegistry(kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, Now: c.now}), s)
	first, err := reg.Client(ctx, a.ID)
	if err != nil || len(first.SecretHashes) != 1 {
		t.Fatalf("first: %+v %v", first, err)
	}
	// A second secret: not seen within RegistryTTL, seen after it.
	m.CreateClientSecret(ctx, a.ID, c.t.Add(RegistryTTL+500*time.Millisecond))
	c.t = c.t.Add(RegistryTTL - time.Millisecond)
	if got, _ := reg.Client(ctx, a.ID); len(got.SecretHashes) != 1 {
		t.Errorf("within RegistryTTL: %d secrets, want the 1 remembered", len(got.SecretHashes))
	}
	c.t = c.t.Add(time.Millisecond)
	got, _ := reg.Client(ctx, a.ID)
	if len(got.SecretHashes) != 2 {
		t.Fatalf("after RegistryTTL: %d secrets, want 2", len(got.SecretHashes))
	}
	// The second secret expires 500 ms later: the answer is not reused past it.
	c.t = c.t.Add(500 * time.Millisecond)
	if got, _ := reg.Client(ctx, a.ID); len(got.SecretHashes) != 1 {
		t.Errorf("after a secret's expiry: %d secrets, want 1", len(got.SecretHashes))
	}
	// Bounded: a full table is emptied before a new client is kept.
	reg.mu.Lock()
	for i := range maxRegistered {
		reg.clients[fmt.Sprint("c", i)] = registered{until: c.t.Add(time.Hour)}
	}
	reg.mu.Unlock()
	c.t = c.t.Add(2 * RegistryTTL)
	if _, err := reg.Client(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(reg.clients); n != 1 {
		t.Errorf("%d clients remembered after a full table, want 1", n)
	}
	// The application row's cache entry bounds it too: a cache whose TTL
	// is shorter than RegistryTTL.
	short := NewRegistry(kps.NewCache(s, kps.CacheOptions{TTL: 100 * time.Millisecond, Now: c.now}), s)
	short.Client(ctx, a.ID)
	a2, _ := m.App(ctx, a.ID)
	a2.Enabled = false
	m.UpdateApp(ctx, a2)
	c.t = c.t.Add(100 * time.Millisecond)
	if got, _ := short.Client(ctx, a.ID); got.Enabled {
		t.Error("a disabled application is still enabled after its row's cache entry expired")
	}
}

// TestRegistryBound: at most 10,000 clients are remembered: the 10,000th
// is kept beside the others, the next one empties the table first.
func TestRegistryBound(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	cc := &OAuthClient{GrantTypes: []string{"client_credentials"}}
	a, _ := m.CreateApp(ctx, App{Name: "a", Enabled: true, OAuth: cc})
	b, _ := m.CreateApp(ctx, App{Name: "b", Enabled: true, OAuth: cc})
	reg := NewRegistry(kps.NewCache(s, kps.CacheOptions{Now: c.now}), s)
	reg.now = c.now
	for i := range 9999 {
		reg.clients[fmt.Sprint("c", i)] = registered{until: c.t.Add(time.Hour)}
	}
	if _, err := reg.Client(ctx, a.ID); err != nil || len(reg.clients) != 10000 {
		t.Errorf("the 10,000th client: %d remembered, %v", len(reg.clients), err)
	}
	if _, err := reg.Client(ctx, b.ID); err != nil || len(reg.clients) != 1 {
		t.Errorf("the 10,001st client: %d remembered, %v", len(reg.clients), err)
	}
}

// TestRegistrySecretExpiry: a client's answer is not reused past the first
// expiry of its secrets, whatever their order (a secret that never expires
// read after one that does).
func TestRegistrySecretExpiry(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	a, _ := m.CreateApp(ctx, App{Name: "svc", Enabled: true, OAuth: &OAuthClient{GrantTypes: []string{"client_credentials"}}})
	for _, cs := range []struct {
		id  string
		exp time.Time
	}{{"s1", c.t.Add(500 * time.Millisecond)}, {"s2", time.Time{}}, {"s3", c.t.Add(800 * time.Millisecond)}} {
		var exp int64
		if !cs.exp.IsZero() {
			exp = cs.exp.UnixMilli()
		}
		if _, err := s.Insert(ctx, ClientSecretsTable, map[string]any{"id": cs.id, "appId": a.ID, "hash": "h-" + cs.id, "createdAt": c.t.UnixMilli(), "expiresAt": exp}); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry(kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, Now: c.now}), s)
	reg.now = c.now
	if got, err := reg.Client(ctx, a.ID); err != nil || strings.Join(got.SecretHashes, " ") != "h-s1 h-s2 h-s3" {
		t.Fatalf("first: %v %v", got.SecretHashes, err)
	}
	c.t = c.t.Add(500 * time.Millisecond)
	if got, _ := reg.Client(ctx, a.ID); strings.Join(got.SecretHashes, " ") != "h-s2 h-s3" {
		t.Errorf("at the first secret's expiry: %v, want h-s2 h-s3", got.SecretHashes)
	}
	c.t = c.t.Add(300 * time.Millisecond)
	if got, _ := reg.Client(ctx, a.ID); strings.Join(got.SecretHashes, " ") != "h-s2" {
		t.Errorf("at the third secret's expiry: %v, want h-s2", got.SecretHashes)
	}
}
