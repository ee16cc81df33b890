package jwt

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// TestPolicyEdges: the token's size limit at its edge, the fields and
// variables of a token without subject or client, a configured client id
// claim absent or not a string, a method's scopes without duplicates, a
// policy with the real clock.
func TestPolicyEdges(t *testing.T) {
	rs1, _, _ := testKeys(t)
	good := signer{"k", jose.RS256, rs1}
	clk := newClock()
	tok := mint(t, good, claimsAt(clk.Now(), nil))
	s := testSpec()
	s.MaxTokenBytes = len(tok)
	p, _ := New(s, staticOf(good), Options{Now: clk.Now})
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 0)
	s.MaxTokenBytes = len(tok) - 1
	p, _ = New(s, staticOf(good), Options{Now: clk.Now})
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 401)

	// The variables of a good token.
	p, _ = New(testSpec(), staticOf(good), Options{Now: clk.Now})
	ex := request("GET", "Authorization", "Bearer "+tok)
	wantStatus(t, p.Apply(ex), 0)
	for k, want := range map[string]string{"jwt.sub": "user-42", "jwt.clientId": "shop-app", "jwt.scope": "orders:read profile"} {
		if v, _ := ex.Var(k); v != want {
			t.Errorf("%s: %q, want %q", k, v, want)
		}
	}
	// Neither subject nor client: no field (and the client's removed).
	ex = request("GET", "Authorization", "Bearer "+mint(t, good, claimsAt(clk.Now(), map[string]any{"sub": nil, "client_id": nil})),
		"X-Gatehouse-Subject", "spoofed", "X-Gatehouse-Client-Id", "spoofed")
	wantStatus(t, p.Apply(ex), 0)
	if ex.R.Header.Has("X-Gatehouse-Subject") || ex.R.Header.Has("X-Gatehouse-Client-Id") || ex.Application != "" {
		t.Errorf("a token without sub or client id: fields %v, application %q", ex.R.Header, ex.Application)
	}
	// A client id with a line break is refused.
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, good, claimsAt(clk.Now(), map[string]any{"client_id": "a\nb"})))), 401)

	// A configured client id claim: absent is no client id; not a string is refused.
	s = testSpec()
	s.ClientIDClaim = "cid"
	p, _ = New(s, staticOf(good), Options{Now: clk.Now})
	ex = request("GET", "Authorization", "Bearer "+tok)
	wantStatus(t, p.Apply(ex), 0)
	if ex.R.Header.Has("X-Gatehouse-Client-Id") {
		t.Errorf("cid absent: client id field %q (client_id is not the configured claim)", ex.R.Header.Get("X-Gatehouse-Client-Id"))
	}
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, good, claimsAt(clk.Now(), map[string]any{"cid": 7})))), 401)

	// A method's scopes listing a base scope again: each named once.
	s = testSpec()
	s.MethodScopes = map[string][]string{"POST": {"orders:read", "orders:write"}}
	p, _ = New(s, staticOf(good), Options{Now: clk.Now})
	pe := wantStatus(t, p.Apply(request("POST", "Authorization", "Bearer "+tok)), 403)
	if got := authField(pe); got != `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read orders:write"` {
		t.Errorf("POST: %q", got)
	}

	// Types: a token without typ is refused whatever the list.
	s = testSpec()
	s.Types = []string{"application/"}
	p, _ = New(s, staticOf(good), Options{Now: clk.Now})
	noTyp := func() string {
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rs1}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := sig.Sign([]byte(fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":%d,"scope":"orders:read"}`, testIssuer, clk.Now().Add(time.Minute).Unix())))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := b.CompactSerialize()
		return c
	}()
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+noTyp)), 401)

	// The real clock when none is given.
	p, _ = New(testSpec(), staticOf(good), Options{})
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, good, claimsAt(time.Now(), nil)))), 0)

	// A bearer verifier's client id with a control character.
	b, _ := NewBearer("oauth", groupconf.JWTPolicy{}, func(context.Context, string) (Token, error) {
		return Token{Subject: "a", ClientID: "c\x7f", ExpiresAt: clk.Now().Add(time.Hour)}, nil
	}, Options{Now: clk.Now})
	wantStatus(t, b.Apply(request("GET", "Authorization", "Bearer x")), 401)
}

// TestFieldSafe: up to 1024 bytes, no C0 control or DEL; spaces and
// non-ASCII are passed on.
func TestFieldSafe(t *testing.T) {
	for s, want := range map[string]bool{
		strings.Repeat("a", 1024): true,
		strings.Repeat("a", 1025): false,
		"user 42":                 true,
		"a\x1fb":                  false,
		"a\x7fb":                  false,
		"~":                       true,
		"À":                       true, // 0xC3 0x80
		"":                        true,
		"\nabc":                   false,
	} {
		if got := fieldSafe(s); got != want {
			t.Errorf("fieldSafe(%.20q…): %v", s, got)
		}
	}
	for _, v := range []string{"Bearerx", "Digest abc", "Beaver abc", "bearez abc"} {
		if tok, ok := bearer([]byte(v)); ok {
			t.Errorf("%s: %q is a bearer token", v, tok)
		}
	}
}

// TestTokenCacheBound: the cache holds up to 10,000 tokens; a put into a
// full cache drops the expired ones, or all of them if none had expired.
func TestTokenCacheBound(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	key := func(i int) [32]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }
	c := &tokenCache{m: map[[32]byte]*verified{}, ttl: time.Minute}
	for i := range 9999 {
		c.put(key(i), &verified{until: now.Add(time.Hour)}, now)
	}
	c.put(key(-1), &verified{until: now.Add(time.Hour)}, now)
	if len(c.m) != 10000 {
		t.Fatalf("%d cached after 10,000 puts", len(c.m))
	}
	c.put(key(-2), &verified{until: now.Add(time.Hour)}, now)
	if len(c.m) != 1 || c.get(key(-2), now) == nil {
		t.Errorf("%d cached after a put into a full cache without expired tokens, want 1", len(c.m))
	}
	clear(c.m)
	for i := range 10000 {
		c.put(key(i), &verified{until: now.Add(time.Duration(i%2) * time.Second)}, now)
	}
	// Half have an until of now: expired at now.
	c.put(key(-3), &verified{until: now.Add(time.Hour)}, now)
	if len(c.m) != 5001 || c.get(key(1), now) == nil {
		t.Errorf("%d cached after a put into a full cache with 5,000 expired, want 5,001 (the unexpired kept)", len(c.m))
	}
	if v := c.get(key(-3), now); v == nil || !v.until.Equal(now.Add(time.Minute)) {
		t.Errorf("cached until %v, want the cache's minute", v)
	}
}

// TestPolicyEmptyAndTinyTokens: an empty bearer token is refused as such,
// a one-character one as a token that does not parse; a cache of 1 ns
// still serves a second request at the same instant.
func TestPolicyEmptyAndTinyTokens(t *testing.T) {
	rs1, _, _ := testKeys(t)
	good := signer{"k", jose.RS256, rs1}
	clk := newClock()
	keys := staticOf(good)
	p, _ := New(testSpec(), keys, Options{Now: clk.Now})
	for tok, want := range map[string]string{"": "empty bearer token", "x": "parsing the token"} {
		pe := wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 401)
		if pe.Err == nil || !strings.Contains(pe.Err.Error(), want) {
			t.Errorf("token %q: %v, want %q", tok, pe.Err, want)
		}
	}
	tok := mint(t, good, claimsAt(clk.Now(), nil))
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 0)
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 0)
	if n := keys.hits.Load(); n != 1 {
		t.Errorf("two requests at the same instant with a cache of 1 ns: %d key look-ups, want 1", n)
	}
}

// TestPolicyBadSignature: a token signed by another key with a known kid
// is refused for its signature.
func TestPolicyBadSignature(t *testing.T) {
	rs1, rs2, _ := testKeys(t)
	clk := newClock()
	p, _ := New(testSpec(), staticOf(signer{"k", jose.RS256, rs1}), Options{Now: clk.Now})
	pe := wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, signer{"k", jose.RS256, rs2}, claimsAt(clk.Now(), nil)))), 401)
	if pe.Err == nil || !strings.HasPrefix(pe.Err.Error(), `signature (kid "k", RS256)`) {
		t.Errorf("another key: %v", pe.Err)
	}
}
