package oauth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

var testHashKey = secret.FromString(strings.Repeat("k", 32))

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(t testing.TB) kps.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Client secrets of the test clients.
const (
	svcSecret = "gcs_servicesecretservicesecretservicesecretservicesecr"
	webSecret = "gcs_websecretwebsecretwebsecretwebsecretwebsecretwebse"
	rsSecret  = "gcs_resourceserverresourceserverresourceserverresourc"
)

const redirectURI = "https://app.example.com/callback"

// env is a server under test behind a real HTTP server.
type env struct {
	t       testing.TB
	srv     *Server
	http    *httptest.Server
	store   kps.Store
	clients *MemClients
	clock   *clock
	keys    *KeySet
	issuer  string
}

type envOpt func(*Options)

func jwtFormat(o *Options) { o.Config.AccessTokenFormat = FormatJWT }

// newEnv starts a server with the clients
//
//	svc  confidential, client_credentials, scopes read write
//	web  confidential, authorization_code + refresh_token, its redirect URI
//	spa  public, authorization_code + refresh_token
//	rs   confidential (a resource server that introspects), no grant
//	off  disabled
func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, store: openStore(t), clock: newClock()}
	var h http.Handler
	e.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.http.Close)
	e.issuer = e.http.URL
	var err error
	e.keys, err = LoadKeySet(home.Home{}, filepath.Join(t.TempDir(), "keys"), "", e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Config: Config{Issuer: e.issuer, Scopes: []string{"read", "write", "profile", "admin"}},
		Store:  e.store, HashKey: testHashKey, Keys: e.keys, Now: e.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	hk := o.HashKey
	e.clients = NewMemClients(
		Client{ID: "svc", Name: "Service", Enabled: true, SecretHashes: []string{HashSecret(hk, "old-secret"), HashSecret(hk, svcSecret)},
			GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read", "write"}},
		Client{ID: "web", Name: "Web app", Enabled: true, SecretHashes: []string{HashSecret(hk, webSecret)},
			GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scopes: []string{"read", "write", "profile"},
			RedirectURIs: []string{redirectURI}},
		Client{ID: "spa", Name: "Single page app", Enabled: true, Public: true,
			GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scopes: []string{"read"},
			RedirectURIs: []string{"http://127.0.0.1/cb"}},
		Client{ID: "rs", Name: "Resource server", Enabled: true, SecretHashes: []string{HashSecret(hk, rsSecret)}},
		Client{ID: "off", Name: "Disabled", Enabled: false, SecretHashes: []string{HashSecret(hk, svcSecret)},
			GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}},
	)
	if o.Clients == nil {
		o.Clients = e.clients
	}
	e.srv, err = New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	h = e.srv.HTTPHandler()
	return e
}

// post sends a form to path with optional Basic credentials.
func (e *env) post(path string, form url.Values, user, pass string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (*http.Response, map[string]any) {
	e.t.Helper()
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &m); err != nil {
			e.t.Fatalf("answer %q is not JSON: %v", b, err)
		}
	}
	return resp, m
}

// introspect asks, as the resource server, about tok.
func (e *env) introspect(tok string) map[string]any {
	e.t.Helper()
	resp, m := e.post("/oauth/introspect", url.Values{"token": {tok}}, "rs", rsSecret)
	if resp.StatusCode != 200 {
		e.t.Fatalf("introspection: status %d %v", resp.StatusCode, m)
	}
	return m
}

func (e *env) active(tok string) bool {
	e.t.Helper()
	return e.activeTo(tok, "rs", rsSecret)
}

// activeTo asks as the given client (a refresh token is active only to its
// own client).
func (e *env) activeTo(tok, client, sec string) bool {
	e.t.Helper()
	resp, m := e.post("/oauth/introspect", url.Values{"token": {tok}}, client, sec)
	if resp.StatusCode != 200 {
		e.t.Fatalf("introspection: status %d %v", resp.StatusCode, m)
	}
	a, _ := m["active"].(bool)
	if !a && len(m) != 1 {
		e.t.Errorf("an inactive token's introspection: got %v, want only active false", m)
	}
	return a
}

// code issues a code for client with a fresh PKCE verifier.
func (e *env) code(client, redirect string, scopes ...string) (code, verifier string) {
	e.t.Helper()
	verifier = strings.Repeat("v", 20) + random("")[:30]
	code, err := e.srv.IssueCode(context.Background(), CodeGrant{ClientID: client, UserID: "alice", RedirectURI: redirect,
		Scopes: scopes, CodeChallenge: S256Challenge(verifier), CodeChallengeMethod: "S256"})
	if err != nil {
		e.t.Fatal(err)
	}
	return code, verifier
}
