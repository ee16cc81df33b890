package oauth

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func count(t *testing.T, s kps.Store, table string) int64 {
	t.Helper()
	n, err := s.Count(context.Background(), table)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPurge(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a purge that never ends fails
	defer cancel()
	// The first purge of a store scans; later ones query buckets.
	if n, err := e.srv.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("first purge of an empty store: %d, %v", n, err)
	}
	short := ccToken(t, e, "svc", svcSecret)
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	rt := m["refresh_token"].(string)
	e.code("web", redirectURI) // never redeemed
	if got := count(t, e.store, TokensTable); got != 3 {
		t.Fatalf("tokens: got %d, want 3", got)
	}
	// Nothing has expired yet.
	if n, err := e.srv.Purge(ctx); err != nil || n != 0 {
		t.Errorf("purge before any expiry: %d, %v", n, err)
	}
	// 2 hours on: the access tokens and the codes are gone, the refresh
	// token and its family stay.
	e.clock.Advance(2 * time.Hour)
	n, err := e.srv.Purge(ctx)
	if err != nil || n != 4 {
		t.Errorf("purge after 2 h: deleted %d, %v; want 4 (2 access tokens, 2 codes)", n, err)
	}
	if count(t, e.store, TokensTable) != 1 || count(t, e.store, CodesTable) != 0 || count(t, e.store, FamiliesTable) != 1 {
		t.Errorf("after purge: tokens %d codes %d families %d; want 1 0 1", count(t, e.store, TokensTable), count(t, e.store, CodesTable), count(t, e.store, FamiliesTable))
	}
	if !e.activeTo(rt, "web", webSecret) || e.active(short) {
		t.Error("purge took the wrong rows")
	}
	// 31 days on: everything is gone, through the background loop.
	e.clock.Advance(31 * 24 * time.Hour)
	tick := make(chan time.Time)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.srv.runPurges(runCtx, tick) }()
	tick <- time.Time{}
	tick <- time.Time{} // the first tick's purge has finished when the second is taken
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if count(t, e.store, TokensTable) != 0 || count(t, e.store, FamiliesTable) != 0 {
		t.Errorf("after 31 days: tokens %d families %d; want 0 0", count(t, e.store, TokensTable), count(t, e.store, FamiliesTable))
	}
	// The watermark moved; a store left unpurged for long is scanned.
	row, err := e.store.Get(ctx, MetaTable, "purgedBelow")
	if err != nil || num(row, "value") != bucketOf(ms(e.clock.Now())) {
		t.Errorf("watermark: %v, %v", row.Values, err)
	}
	ccToken(t, e, "svc", svcSecret)
	e.clock.Advance(2000 * 24 * time.Hour)
	if n, err := e.srv.Purge(ctx); err != nil || n != 1 {
		t.Errorf("purge after a long pause: %d, %v; want 1", n, err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Issuer: "https://gw.example.com"}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if good.PathPrefix != "/oauth" || good.AccessTokenFormat != "opaque" || good.AccessTokenLifetime != time.Hour ||
		good.RefreshTokenLifetime != 720*time.Hour || good.CodeLifetime != time.Minute || good.Audience != good.Issuer {
		t.Errorf("defaults: got %+v", good)
	}
	bad := map[string]func(c *Config){
		"no issuer":            func(c *Config) { c.Issuer = "" },
		"http issuer":          func(c *Config) { c.Issuer = "http://gw.example.com" },
		"issuer with query":    func(c *Config) { c.Issuer = "https://gw.example.com/?a=b" },
		"issuer with fragment": func(c *Config) { c.Issuer = "https://gw.example.com/#x" },
		"relative prefix":      func(c *Config) { c.PathPrefix = "oauth" },
		"prefix ending in /":   func(c *Config) { c.PathPrefix = "/oauth/" },
		"format":               func(c *Config) { c.AccessTokenFormat = "paseto" },
		"access lifetime":      func(c *Config) { c.AccessTokenLifetime = 48 * time.Hour },
		"refresh lifetime":     func(c *Config) { c.RefreshTokenLifetime = time.Minute },
		"code lifetime":        func(c *Config) { c.CodeLifetime = time.Hour },
		"assertion age":        func(c *Config) { c.ClientAssertionMaxAge = time.Second },
		"scope with space":     func(c *Config) { c.Scopes = []string{"a b"} },
		"scope twice":          func(c *Config) { c.Scopes = []string{"a", "a"} },
		"empty scope":          func(c *Config) { c.Scopes = []string{""} },
	}
	for name, f := range bad {
		c := good
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	edge := good
	edge.Scopes = []string{"!", "~", "a:b/c", "#[]{}", strings.Repeat("s", 128)}
	if err := edge.Validate(); err != nil {
		t.Errorf("scopes at the edges of the grammar: %v", err)
	}
	edge.Scopes = []string{strings.Repeat("s", 129)}
	if err := edge.Validate(); err == nil {
		t.Error("a scope of 129 characters accepted")
	}
	for _, sc := range []string{"a\\b", "\x7f", "é", "a\tb"} {
		edge.Scopes = []string{sc}
		if err := edge.Validate(); err == nil {
			t.Errorf("scope %q accepted", sc)
		}
	}
	loop := Config{Issuer: "http://127.0.0.1:8080"}.WithDefaults()
	if err := loop.Validate(); err != nil {
		t.Errorf("http on loopback: %v", err)
	}
	if _, err := New(context.Background(), Options{Config: Config{Issuer: "https://x.example", AccessTokenFormat: FormatJWT}, Store: openStore(t), HashKey: testHashKey, Clients: NewMemClients()}); err == nil {
		t.Error("New took the jwt format without keys")
	}
	if _, err := New(context.Background(), Options{Config: Config{Issuer: "https://x.example"}, Store: openStore(t), HashKey: secret.FromString("short"), Clients: NewMemClients()}); err == nil {
		t.Error("New took a short hash key")
	}
}
