package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestServerEdges: the configuration in use, the JWKS path without a key
// set, Error's text, a body that cannot be read, a grant without scopes.
func TestServerEdges(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Keys = nil })
	if c := e.srv.Config(); c.PathPrefix != "/oauth" || c.Issuer != e.issuer {
		t.Errorf("Config: %+v", c)
	}
	resp, ok := e.srv.Handle(context.Background(), &Request{Method: "GET", Path: "/oauth/jwks"})
	if !ok || resp.Status != 404 {
		t.Errorf("the JWKS without a key set: %v %+v", ok, resp)
	}
	if _, err := e.srv.Verify(context.Background(), "a.b.c"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a JWT-shaped token without a key set: %v", err)
	}
	if s := (&Error{Code: "invalid_grant", Description: "used"}).Error(); s != "invalid_grant: used" {
		t.Errorf("Error: %q", s)
	}
	w := httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(w, httptest.NewRequest("POST", "/oauth/token", io.NopCloser(errReader{})))
	if w.Code != 400 || w.Body.String() != "reading the request body failed\n" {
		t.Errorf("a body that cannot be read: %d %q", w.Code, w.Body.String())
	}
	// A client without scopes: a token with none, stored and active.
	e.clients.Put(Client{ID: "bare", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, svcSecret)}, GrantTypes: []string{GrantClientCredentials}})
	st, _, m := e.tokenAs("bare", svcSecret, url.Values{"grant_type": {"client_credentials"}})
	tok, _ := m["access_token"].(string)
	if st != 200 || m["scope"] != "" || !e.active(tok) {
		t.Errorf("a token without scopes: %d %v", st, m)
	}
}

// TestHasherVerify: stored hashes of another length or not hex are
// skipped; any one matching is enough.
func TestHasherVerify(t *testing.T) {
	h := newHasher(testHashKey)
	good := HashSecret(testHashKey, "s3cret")
	for _, c := range []struct {
		stored []string
		want   bool
	}{
		{[]string{good}, true},
		{[]string{good[:63], strings.Repeat("z", 64), good}, true},
		{[]string{good, good}, true},
		{[]string{good[:63], strings.Repeat("z", 64)}, false},
		{nil, false},
	} {
		if got := h.verify("s3cret", c.stored); got != c.want {
			t.Errorf("verify against %q: %v", c.stored, got)
		}
	}
	if printable(strings.Repeat("k", 64)) != strings.Repeat("k", 64) || printable(strings.Repeat("k", 65)) != "(unprintable)" || printable("a\x01") != "(unprintable)" {
		t.Error("printable")
	}
}

// TestAdminStoreFaults: the management functions with the store failing
// at each step: an error (an outage), never a partial success reported as
// done; a token deleted meanwhile is not counted.
func TestAdminStoreFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a listing that never ends fails
	defer cancel()
	e, f := faultyEnv(t)
	setup := func() {
		t.Helper()
		f.set()
		code, verifier := e.code("web", redirectURI, "read")
		if st, _, m := e.tokenAs("web", webSecret, redeemForm(code, verifier)); st != 200 {
			t.Fatalf("redemption: %d %v", st, m)
		}
		e.code("web", redirectURI, "read") // pending
	}
	setup()
	f.set(&fault{op: "query", table: TokensTable, err: errDown})
	if _, _, err := ListClientTokens(ctx, f, "web", kps.Page{}); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("ListClientTokens, tokens unlistable: %v", err)
	}
	for _, c := range []struct {
		what string
		f    *fault
	}{
		{"families unlistable", &fault{op: "query", table: FamiliesTable, err: errDown}},
		{"a family unreadable", &fault{op: "get", table: FamiliesTable, err: errDown}},
		{"one family unreadable", &fault{op: "get", table: FamiliesTable, times: 1, err: errDown}},
		{"codes unlistable", &fault{op: "query", table: CodesTable, err: errDown}},
		{"a pending code's family unwritable", &fault{op: "insert", table: FamiliesTable, err: errDown}},
		{"tokens unlistable", &fault{op: "query", table: TokensTable, err: errDown}},
		{"a token undeletable", &fault{op: "delete", table: TokensTable, err: errDown}},
	} {
		setup()
		ccToken(t, e, "svc", svcSecret)
		f.set(c.f)
		client := "web"
		if c.what == "a token undeletable" || c.what == "tokens unlistable" {
			client = "svc"
		}
		if _, err := RevokeClient(ctx, f, client, e.clock.Now()); !errors.Is(err, kps.ErrUnavailable) {
			t.Errorf("RevokeClient, %s: %v", c.what, err)
		}
	}
	// A token deleted meanwhile: not counted.
	f.set()
	ccToken(t, e, "svc", svcSecret)
	f.set(&fault{op: "delete", table: TokensTable, err: fmt.Errorf("%w: gone", kps.ErrNotFound)})
	if r, err := RevokeClient(ctx, f, "svc", e.clock.Now()); err != nil || r.Tokens != 0 {
		t.Errorf("RevokeClient, tokens deleted meanwhile: %+v %v", r, err)
	}
	f.set(&fault{op: "get", table: FamiliesTable, err: errDown})
	if err := RevokeGrant(ctx, f, "web", "some-family"); !errors.Is(err, kps.ErrUnavailable) || errors.Is(err, ErrNoGrant) {
		t.Errorf("RevokeGrant, families unreadable: %v", err)
	}
}

// TestConfigLimits: each lifetime accepted at both ends of its range and
// refused one nanosecond outside; an issuer with a fragment or user refused.
func TestConfigLimits(t *testing.T) {
	base := Config{Issuer: "https://gw.example.com"}.WithDefaults()
	for _, c := range []struct {
		what     string
		set      func(*Config, time.Duration)
		min, max time.Duration
	}{
		{"accessTokenLifetime", func(c *Config, d time.Duration) { c.AccessTokenLifetime = d }, time.Minute, 24 * time.Hour},
		{"refreshTokenLifetime", func(c *Config, d time.Duration) { c.RefreshTokenLifetime = d }, time.Hour, 8760 * time.Hour},
		{"codeLifetime", func(c *Config, d time.Duration) { c.CodeLifetime = d }, 10 * time.Second, 10 * time.Minute},
		{"clientAssertionMaxAge", func(c *Config, d time.Duration) { c.ClientAssertionMaxAge = d }, 10 * time.Second, time.Hour},
	} {
		for d, ok := range map[time.Duration]bool{c.min: true, c.max: true, c.min - 1: false, c.max + 1: false} {
			cfg := base
			c.set(&cfg, d)
			if err := cfg.Validate(); (err == nil) != ok {
				t.Errorf("%s %v: %v", c.what, d, err)
			}
		}
	}
	for _, iss := range []string{"https://gw.example.com#f", "https://u@gw.example.com", "https://gw.example.com?q=1", "https://", "ftp://gw.example.com"} {
		cfg := base
		cfg.Issuer = iss
		if err := cfg.Validate(); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
}
