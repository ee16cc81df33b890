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
	"github.com/gatehouse-gw/gatehouse/internal/secret"
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
	f.set(&fault{op: "get", table: FamiliesTable, times: 1, err: errDown})
	if err := RevokeGrant(ctx, f, "web", "some-family"); !errors.Is(err, kps.ErrUnavailable) || errors.Is(err, ErrNoGrant) {
		t.Errorf("RevokeGrant, the family unreadable: %v", err)
	}
	// A store error that names no key is not "no table".
	f.set(&fault{op: "query", table: TokensTable, err: &kps.Error{Op: "query", Err: fmt.Errorf("%w: connection refused", kps.ErrUnavailable)}})
	if _, _, err := ListClientTokens(ctx, f, "web", kps.Page{}); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("ListClientTokens, a kps.Error of an outage: %v", err)
	}
	f.set()
}

// TestRevokeClientLastBucket: a code of the longest lifetime (10 min),
// issued at the moment of the revocation, is in the last bucket scanned.
func TestRevokeClientLastBucket(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Config.CodeLifetime = 10 * time.Minute })
	e.code("web", redirectURI, "read")
	r, err := RevokeClient(context.Background(), e.store, "web", e.clock.Now())
	if err != nil || r.Codes != 1 {
		t.Errorf("a code of 10 minutes: %+v %v", r, err)
	}
}

// TestHasherCorruptHash: a stored hash whose last pair is not hex matches
// nothing, even when the secret's hash ends in 00 (what a decoder stopped
// short would leave).
func TestHasherCorruptHash(t *testing.T) {
	h := newHasher(testHashKey)
	for i := 0; ; i++ {
		sec := fmt.Sprint("secret-", i)
		good := HashSecret(testHashKey, sec)
		if !strings.HasSuffix(good, "00") {
			continue
		}
		if h.verify(sec, []string{good[:62] + "zz"}) {
			t.Errorf("a corrupt stored hash matched %q", sec)
		}
		if h.verify(sec, []string{good + "0000"}) || !h.verify(sec, []string{good + "0000", good}) {
			t.Error("a stored hash of 68 characters")
		}
		return
	}
}

// TestPurgeBucketLimit: up to 2,000 buckets to catch up on are queried one
// by one; more, and the tables are scanned.
func TestPurgeBucketLimit(t *testing.T) {
	e, f := faultyEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a purge that never ends fails (2,000 buckets of queries take seconds under -race on a loaded machine)
	defer cancel()
	if _, err := e.srv.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	f.set(&fault{op: "list", table: TokensTable, err: errDown})
	e.clock.Advance(2000 * 10 * time.Minute)
	if _, err := e.srv.Purge(ctx); err != nil {
		t.Errorf("2,000 buckets behind: %v (scanned?)", err)
	}
	e.clock.Advance(2001 * 10 * time.Minute)
	if _, err := e.srv.Purge(ctx); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("2,001 buckets behind: %v (not scanned?)", err)
	}
	// The watermark unreadable: nothing deleted, and said so.
	f.set(&fault{op: "get", table: MetaTable, err: errDown})
	if n, err := e.srv.Purge(ctx); n != 0 || !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("the watermark unreadable: %d deleted, %v", n, err)
	}
	f.set()
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

// TestFormLimits: ParseForm's limits at their edges and its refusals.
func TestFormLimits(t *testing.T) {
	const ct = "application/x-www-form-urlencoded"
	params := func(n int) string {
		p := make([]string, n)
		for i := range p {
			p[i] = fmt.Sprintf("p%d=v", i)
		}
		return strings.Join(p, "&")
	}
	for _, c := range []struct {
		what, ctype, body string
		ok                bool
	}{
		{"64 parameters", ct, params(64), true},
		{"65 parameters", ct, params(65), false},
		{"a body of 64 KiB", ct, "a=" + strings.Repeat("x", 64<<10-2), true},
		{"a body of 64 KiB + 1", ct, "a=" + strings.Repeat("x", 64<<10-1), false},
		{"another media type", "application/json", "a=b", false},
		{"an empty pair", ct, "a=1&&b=2", true},
		{"invalid UTF-8", ct, "a=%FF", false},
		{"a control character first", ct, "%01a=b", false},
		{"US (0x1f)", ct, "a=b%1F", false},
		{"DEL", ct, "a=b%7F", false},
		{"a space and a tilde", ct, "a=b+c~", true},
	} {
		_, oe := ParseForm(c.ctype, []byte(c.body))
		if (oe == nil) != c.ok {
			t.Errorf("%s: %v", c.what, oe)
		}
	}
}

// TestJWTCacheLimits: the verified-JWT cache holds up to 100,000 tokens; a
// put into a full one drops the expired, then others down to half.
func TestJWTCacheLimits(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var c jwtCache
	for i := range 99_999 {
		c.put(fmt.Sprint(i), cachedJWT{exp: now.Add(time.Hour)}, now)
	}
	c.put("one more", cachedJWT{exp: now.Add(time.Hour)}, now)
	if len(c.m) != 100_000 {
		t.Fatalf("%d cached after 100,000 puts", len(c.m))
	}
	c.put("overflow", cachedJWT{exp: now.Add(time.Hour)}, now)
	if _, ok := c.get("overflow"); len(c.m) != 50_000 || !ok {
		t.Errorf("%d cached after a put into a full cache, want 50,000", len(c.m))
	}
	small := jwtCache{max: 100}
	for i := range 100 {
		exp := now.Add(time.Hour)
		if i < 60 {
			exp = now // expired at now
		}
		small.put(fmt.Sprint(i), cachedJWT{exp: exp}, now)
	}
	small.put("new", cachedJWT{exp: now.Add(time.Hour)}, now)
	if len(small.m) != 41 {
		t.Errorf("%d cached after a put into a full cache with 60 expired, want 41", len(small.m))
	}
	if _, ok := small.get("99"); !ok {
		t.Error("an unexpired token was dropped")
	}
}

// TestNewEdges: the hash key needs 32 bytes; without a clock the real one
// is used; HEAD of the metadata has its length and no body.
func TestNewEdges(t *testing.T) {
	ctx := context.Background()
	for n, ok := range map[int]bool{31: false, 32: true} {
		_, err := New(ctx, Options{Config: Config{Issuer: "https://gw.example.com"}, Store: openStore(t), HashKey: secret.FromString(strings.Repeat("k", n)), Clients: NewMemClients()})
		if (err == nil) != ok {
			t.Errorf("a hash key of %d bytes: %v", n, err)
		}
	}
	e := newEnv(t, func(o *Options) { o.Now = nil })
	tok := ccToken(t, e, "svc", svcSecret)
	if _, err := e.srv.Verify(ctx, tok); err != nil {
		t.Errorf("with the real clock: %v", err)
	}
	resp, ok := e.srv.Handle(ctx, &Request{Method: "HEAD", Path: "/.well-known/oauth-authorization-server"})
	if !ok || resp.Status != 200 || resp.Body != nil || resp.Header.Get("Content-Length") == "" || resp.Header.Get("Content-Length") == "0" {
		t.Errorf("HEAD of the metadata: %v %+v", ok, resp)
	}
}

// TestMetadataWithAuthorize: with the authorization endpoint, the metadata
// lists response type code.
func TestMetadataWithAuthorize(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Authorize = func(context.Context, *Request) *Response { return &Response{Status: 200} }
	})
	resp, ok := e.srv.Handle(context.Background(), &Request{Method: "GET", Path: "/.well-known/oauth-authorization-server"})
	if !ok || !strings.Contains(string(resp.Body), `"response_types_supported":["code"]`) {
		t.Errorf("metadata: %v %s", ok, resp.Body)
	}
}

// TestFirstPurgeScan: the first purge of a store (a scan) deletes the rows
// expired by now, exactly at their expiry included, and nothing else.
func TestFirstPurgeScan(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old := ccToken(t, e, "svc", svcSecret)
	e.clock.Advance(time.Hour) // old expires exactly now
	fresh := ccToken(t, e, "svc", svcSecret)
	n, err := e.srv.Purge(ctx)
	if err != nil || n != 1 {
		t.Errorf("the first purge: %d deleted, %v; want 1", n, err)
	}
	if _, err := e.store.Get(ctx, TokensTable, e.srv.hash.hash(old)); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("a token expired at the purge: %v", err)
	}
	if !e.active(fresh) {
		t.Error("the first purge deleted an unexpired token")
	}
}
