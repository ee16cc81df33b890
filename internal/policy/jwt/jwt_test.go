package jwt

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

const testIssuer = "https://id.example.com/realms/shop"

// claimsAt are good claims for a token issued at now.
func claimsAt(now time.Time, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": testIssuer, "aud": []string{"other", "orders"}, "sub": "user-42", "client_id": "shop-app",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "scope": "orders:read profile",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func testSpec() groupconf.JWTPolicy {
	return groupconf.JWTPolicy{Issuer: testIssuer, Audience: "orders", JWKSURL: "https://id.example.com/keys",
		Scopes: []string{"orders:read"}, MethodScopes: map[string][]string{"POST": {"orders:write"}}, TokenCacheTTL: groupconf.Duration(time.Nanosecond)}
}

// wantStatus checks err: 0 means through.
func wantStatus(t *testing.T, err error, status int) *policy.Error {
	t.Helper()
	var pe *policy.Error
	switch {
	case status == 0 && err != nil:
		t.Fatalf("got %v, want the request through", err)
	case status == 0:
		return nil
	case !errors.As(err, &pe) || pe.Status != status:
		t.Fatalf("got %v, want %d", err, status)
	}
	return pe
}

func authField(pe *policy.Error) string {
	for _, f := range pe.Fields {
		if f[0] == "WWW-Authenticate" {
			return f[1]
		}
	}
	return ""
}

// TestPolicyChecks: every check of a token, each on its own.
func TestPolicyChecks(t *testing.T) {
	rs1, rs2, ec := testKeys(t)
	good := signer{"rsa-1", jose.RS256, rs1}
	ecs := signer{"ec-1", jose.ES256, ec}
	stranger := signer{"rsa-1", jose.RS256, rs2} // same kid, another key
	keys := staticOf(good, ecs)
	clk := newClock()
	p, err := New(testSpec(), keys, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "jwt" {
		t.Errorf("Name: %q", p.Name())
	}
	now := clk.Now()
	leeway := groupconf.DefaultJWTLeeway
	pubDER, _ := x509.MarshalPKIXPublicKey(&rs1.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	tok := func(s signer, extra map[string]any) string { return mint(t, s, claimsAt(now, extra)) }
	const (
		none    = `Bearer realm="gatehouse"`
		invalid = `Bearer realm="gatehouse", error="invalid_token"`
	)
	tests := []struct {
		name   string
		method string
		fields []string
		status int
		auth   string
	}{
		{"RS256", "GET", []string{"Authorization", "Bearer " + tok(good, nil)}, 0, ""},
		{"ES256", "GET", []string{"Authorization", "Bearer " + tok(ecs, nil)}, 0, ""},
		{"lowercase scheme", "GET", []string{"authorization", "bearer " + tok(good, nil)}, 0, ""},
		{"upper case scheme, two spaces", "GET", []string{"Authorization", "BEARER  " + tok(good, nil)}, 0, ""},
		{"no field", "GET", nil, 401, none},
		{"another scheme", "GET", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, none},
		{"scheme glued to the token", "GET", []string{"Authorization", "Bearer" + tok(good, nil)}, 401, none},
		{"empty token", "GET", []string{"Authorization", "Bearer "}, 401, invalid},
		{"repeated field", "GET", []string{"Authorization", "Bearer " + tok(good, nil), "Authorization", "Bearer " + tok(good, nil)}, 401, invalid},
		{"oversize token", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"pad": strings.Repeat("x", 8<<10)})}, 401, invalid},
		{"garbage", "GET", []string{"Authorization", "Bearer abc.def.ghi"}, 401, invalid},
		{"alg none", "GET", []string{"Authorization", "Bearer " + unsigned(claimsAt(now, nil), "rsa-1")}, 401, invalid},
		{"HMAC with the public key (PEM)", "GET", []string{"Authorization", "Bearer " + hmacWith(t, pubPEM, "rsa-1", claimsAt(now, nil))}, 401, invalid},
		{"HMAC with the public key (DER)", "GET", []string{"Authorization", "Bearer " + hmacWith(t, pubDER, "rsa-1", claimsAt(now, nil))}, 401, invalid},
		{"another key with a known kid", "GET", []string{"Authorization", "Bearer " + tok(stranger, nil)}, 401, invalid},
		{"unknown kid", "GET", []string{"Authorization", "Bearer " + tok(signer{"rsa-9", jose.RS256, rs2}, nil)}, 401, invalid},
		{"kid of an EC key, RS256", "GET", []string{"Authorization", "Bearer " + tok(signer{"ec-1", jose.RS256, rs1}, nil)}, 401, invalid},
		{"no kid, one key for the algorithm", "GET", []string{"Authorization", "Bearer " + tok(signer{"", jose.RS256, rs1}, nil)}, 0, ""},
		{"RS384 not allowed", "GET", []string{"Authorization", "Bearer " + tok(signer{"rsa-1", jose.RS384, rs1}, nil)}, 401, invalid},
		{"wrong iss", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"iss": testIssuer + "/"})}, 401, invalid},
		{"no iss", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"iss": nil})}, 401, invalid},
		{"wrong aud", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"aud": "billing"})}, 401, invalid},
		{"aud as a string", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"aud": "orders"})}, 0, ""},
		{"no aud", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"aud": nil})}, 401, invalid},
		{"no exp", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"exp": nil})}, 401, invalid},
		{"expired", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"exp": now.Add(-time.Hour).Unix()})}, 401, invalid},
		{"expired within the leeway", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"exp": now.Add(-leeway + time.Second).Unix()})}, 0, ""},
		{"expired at the leeway's end", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"exp": now.Add(-leeway).Unix()})}, 401, invalid},
		{"nbf in the future", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"nbf": now.Add(time.Hour).Unix()})}, 401, invalid},
		{"nbf within the leeway", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"nbf": now.Add(leeway).Unix()})}, 0, ""},
		{"nbf just past the leeway", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"nbf": now.Add(leeway + time.Second).Unix()})}, 401, invalid},
		{"iat in the future", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"iat": now.Add(leeway + time.Second).Unix()})}, 401, invalid},
		{"iat within the leeway", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"iat": now.Add(leeway).Unix()})}, 0, ""},
		{"exp not a number", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"exp": "tomorrow"})}, 401, invalid},
		{"scope missing", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"scope": "profile"})}, 403, `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read"`},
		{"no scope claim", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"scope": nil})}, 403, `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read"`},
		{"method scope missing", "POST", []string{"Authorization", "Bearer " + tok(good, nil)}, 403, `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read orders:write"`},
		{"method scope there", "POST", []string{"Authorization", "Bearer " + tok(good, map[string]any{"scope": "orders:write orders:read"})}, 0, ""},
		{"embedded jwk header", "GET", []string{"Authorization", "Bearer " + embedded(t, rs2, claimsAt(now, nil))}, 401, invalid},
		{"scp list", "POST", []string{"Authorization", "Bearer " + tok(good, map[string]any{"scope": nil, "scp": []string{"orders:read", "orders:write"}})}, 0, ""},
		{"scope a prefix of the needed one", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"scope": "orders:rea orders"})}, 403, `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read"`},
		{"scope not a string", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"scope": 7})}, 401, invalid},
		{"sub with a line break", "GET", []string{"Authorization", "Bearer " + tok(good, map[string]any{"sub": "a\r\nX-Evil: 1"})}, 401, invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := request(tt.method, append(tt.fields, "X-Gatehouse-Subject", "spoofed", "X-Gatehouse-Client-Id", "spoofed")...)
			err := p.Apply(ex)
			pe := wantStatus(t, err, tt.status)
			if pe != nil {
				if got := authField(pe); got != tt.auth {
					t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.auth)
				}
				for _, f := range tt.fields {
					if len(f) > 40 && (strings.Contains(pe.Message, f[7:]) || strings.Contains(pe.Error(), f[7:])) {
						t.Errorf("the token is echoed: %v", pe)
					}
				}
				return
			}
			r := ex.R
			if got := string(r.Header.Get("X-Gatehouse-Subject")); got != "user-42" || r.Header.Count("X-Gatehouse-Subject") != 1 {
				t.Errorf("subject field: got %q (%d), want user-42", got, r.Header.Count("X-Gatehouse-Subject"))
			}
			if got := string(r.Header.Get("X-Gatehouse-Client-Id")); got != "shop-app" || r.Header.Count("X-Gatehouse-Client-Id") != 1 {
				t.Errorf("client id field: got %q, want shop-app", got)
			}
			if !r.Header.Has("Authorization") {
				t.Error("the Authorization field was removed; it is forwarded by default")
			}
			if v, _ := ex.Var("jwt.sub"); v != "user-42" || ex.Application != "shop-app" {
				t.Errorf("exchange: jwt.sub %q, application %q", v, ex.Application)
			}
		})
	}
}

// TestPolicyNoKid: a token without kid is refused when several keys are
// for its algorithm.
func TestPolicyNoKid(t *testing.T) {
	rs1, rs2, _ := testKeys(t)
	clk := newClock()
	p, _ := New(testSpec(), staticOf(signer{"a", jose.RS256, rs1}, signer{"b", jose.RS256, rs2}), Options{Now: clk.Now})
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, signer{"", jose.RS256, rs1}, claimsAt(clk.Now(), nil)))), 401)
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, signer{"a", jose.RS256, rs1}, claimsAt(clk.Now(), nil)))), 0)
}

// TestPolicyRuntimeAlgorithmCheck: even with HS256 or none slipped into
// the list the parser is given, such a token is refused (two checks, not
// one).
func TestPolicyRuntimeAlgorithmCheck(t *testing.T) {
	rs1, _, _ := testKeys(t)
	clk := newClock()
	p, _ := New(testSpec(), staticOf(signer{"rsa-1", jose.RS256, rs1}), Options{Now: clk.Now})
	p.algs = append(p.algs, jose.HS256, "none")
	pubDER, _ := x509.MarshalPKIXPublicKey(&rs1.PublicKey)
	for _, tok := range []string{hmacWith(t, pubDER, "rsa-1", claimsAt(clk.Now(), nil)), unsigned(claimsAt(clk.Now(), nil), "rsa-1")} {
		wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 401)
	}
}

// TestPolicyHeadScopes: HEAD takes GET's scopes unless it has its own.
func TestPolicyHeadScopes(t *testing.T) {
	rs1, _, _ := testKeys(t)
	good := signer{"k", jose.RS256, rs1}
	clk := newClock()
	s := testSpec()
	s.Scopes = nil
	s.MethodScopes = map[string][]string{"GET": {"orders:list"}}
	p, _ := New(s, staticOf(good), Options{Now: clk.Now})
	tok := mint(t, good, claimsAt(clk.Now(), map[string]any{"scope": "profile"}))
	for _, m := range []string{"GET", "HEAD"} {
		pe := wantStatus(t, p.Apply(request(m, "Authorization", "Bearer "+tok)), 403)
		if got := authField(pe); got != `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:list"` {
			t.Errorf("%s: %q", m, got)
		}
	}
	wantStatus(t, p.Apply(request("DELETE", "Authorization", "Bearer "+tok)), 0)
	s.MethodScopes["HEAD"] = []string{"orders:head"}
	p, _ = New(s, staticOf(good), Options{Now: clk.Now})
	pe := wantStatus(t, p.Apply(request("HEAD", "Authorization", "Bearer "+tok)), 403)
	if got := authField(pe); !strings.Contains(got, `scope="orders:head"`) {
		t.Errorf("HEAD with its own scopes: %q", got)
	}
}

// TestPolicyTypes: with types set, the typ header must be one of them
// (without case, with or without application/); without, it is not read.
func TestPolicyTypes(t *testing.T) {
	rs1, _, _ := testKeys(t)
	good := signer{"k", jose.RS256, rs1}
	clk := newClock()
	s := testSpec()
	s.Types = []string{"at+jwt"}
	p, _ := New(s, staticOf(good), Options{Now: clk.Now})
	withTyp := func(typ string) string {
		opts := (&jose.SignerOptions{}).WithHeader("kid", "k")
		if typ != "" {
			opts = opts.WithType(jose.ContentType(typ))
		}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rs1}, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := josejwt.Signed(sig).Claims(claimsAt(clk.Now(), nil)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, c := range []struct {
		typ    string
		status int
	}{{"at+jwt", 0}, {"AT+JWT", 0}, {"application/at+jwt", 0}, {"JWT", 401}, {"", 401}, {"application/", 401}} {
		wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+withTyp(c.typ))), c.status)
	}
	s.Types = nil
	p, _ = New(s, staticOf(good), Options{Now: clk.Now})
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+withTyp("JWT"))), 0)
}

// TestPolicyAlgorithmsRefused: none and HMAC cannot be configured past
// validation, and New refuses them too.
func TestPolicyAlgorithmsRefused(t *testing.T) {
	for _, alg := range []string{"none", "HS256", "HS512", "rs256"} {
		s := testSpec()
		s.Algorithms = []string{"RS256", alg}
		if _, err := New(s, staticOf(), Options{}); err == nil {
			t.Errorf("algorithm %s: got no error", alg)
		}
	}
}

// TestPolicySettings: configured claim names and fields, the
// Authorization field removed, azp as client id, a realm, an application
// named by an earlier policy kept.
func TestPolicySettings(t *testing.T) {
	rs1, _, _ := testKeys(t)
	good := signer{"k", jose.PS256, rs1}
	clk := newClock()
	s := testSpec()
	s.Algorithms = []string{"PS256"}
	s.Scopes, s.MethodScopes = nil, nil
	s.SubjectClaim, s.ClientIDClaim = "email", "cid"
	s.SubjectHeader, s.ClientIDHeader = "X-User", "X-Client"
	s.RemoveAuthorization = true
	s.Realm = "orders"
	p, err := New(s, staticOf(good), Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ex := request("DELETE", "Authorization", "Bearer "+mint(t, good, claimsAt(clk.Now(), map[string]any{"email": "a@example.com", "cid": "c-1"})), "x-user", "spoofed")
	ex.Application = "from-api-key"
	if err := p.Apply(ex); err != nil {
		t.Fatal(err)
	}
	r := ex.R
	if string(r.Header.Get("X-User")) != "a@example.com" || string(r.Header.Get("X-Client")) != "c-1" || r.Header.Has("Authorization") || r.Header.Count("X-User") != 1 {
		t.Errorf("fields: %v", r.Header)
	}
	if ex.Application != "from-api-key" {
		t.Errorf("application: %q", ex.Application)
	}
	ex = request("GET", "Authorization", "Bearer "+mint(t, good, claimsAt(clk.Now(), map[string]any{"email": 7})))
	if pe := wantStatus(t, p.Apply(ex), 401); authField(pe) != `Bearer realm="orders", error="invalid_token"` {
		t.Errorf("realm: %v", pe.Fields)
	}
	// Defaults: client_id, else azp.
	s = testSpec()
	s.Scopes, s.MethodScopes = nil, nil
	p, _ = New(s, staticOf(signer{"k", jose.RS256, rs1}), Options{Now: clk.Now})
	ex = request("GET", "Authorization", "Bearer "+mint(t, signer{"k", jose.RS256, rs1}, claimsAt(clk.Now(), map[string]any{"client_id": nil, "azp": "web"})))
	if err := p.Apply(ex); err != nil || string(ex.R.Header.Get("X-Gatehouse-Client-Id")) != "web" {
		t.Errorf("azp: %v %v", err, ex.R.Header)
	}
}

// TestPolicyKeysUnavailable: keys that cannot be had are 503 with
// Retry-After, never 401 and never through.
func TestPolicyKeysUnavailable(t *testing.T) {
	rs1, _, _ := testKeys(t)
	clk := newClock()
	keys := &staticKeys{err: fmt.Errorf("fetching: %w", ErrKeysUnavailable)}
	p, _ := New(testSpec(), keys, Options{Now: clk.Now})
	pe := wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+mint(t, signer{"k", jose.RS256, rs1}, claimsAt(clk.Now(), nil)))), http.StatusServiceUnavailable)
	if len(pe.Fields) != 1 || pe.Fields[0] != [2]string{"Retry-After", "1"} {
		t.Errorf("fields: %v", pe.Fields)
	}
}

// TestPolicyTokenCache: a verified token is not verified again within the
// cache's lifetime, and never past its exp; a token that differs by one
// byte is verified.
func TestPolicyTokenCache(t *testing.T) {
	rs1, _, _ := testKeys(t)
	good := signer{"k", jose.RS256, rs1}
	clk := newClock()
	keys := staticOf(good)
	s := testSpec()
	s.TokenCacheTTL = groupconf.Duration(time.Minute)
	p, _ := New(s, keys, Options{Now: clk.Now})
	tok := mint(t, good, claimsAt(clk.Now(), map[string]any{"exp": clk.Now().Add(90 * time.Second).Unix()}))
	apply := func(tok string, status int) {
		t.Helper()
		wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), status)
	}
	apply(tok, 0)
	apply(tok, 0)
	if n := keys.hits.Load(); n != 1 {
		t.Errorf("key look-ups after two requests: got %d, want 1", n)
	}
	apply(alter(tok), 401)
	clk.Add(61 * time.Second) // past the cache's lifetime: verified again
	apply(tok, 0)
	if n := keys.hits.Load(); n != 3 {
		t.Errorf("key look-ups: got %d, want 3", n)
	}
	clk.Add(30*time.Second + groupconf.DefaultJWTLeeway) // past exp + leeway: the cache does not keep it alive
	apply(tok, 401)
	// The scopes of a cached token are checked on every request.
	apply(mint(t, good, claimsAt(clk.Now(), map[string]any{"scope": "orders:read"})), 0)
	wantStatus(t, p.Apply(request("POST", "Authorization", "Bearer "+mint(t, good, claimsAt(clk.Now(), map[string]any{"scope": "orders:read"})))), 403)
}

// TestBearer: the scheme without case, one or more spaces.
func TestBearer(t *testing.T) {
	for _, c := range []struct {
		in, tok string
		ok      bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"bEaReR   abc", "abc", true},
		{"Bearer", "", true},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"Bear", "", false},
		{"", "", false},
	} {
		tok, ok := bearer([]byte(c.in))
		if string(tok) != c.tok || ok != c.ok {
			t.Errorf("bearer(%q): got %q %v, want %q %v", c.in, tok, ok, c.tok, c.ok)
		}
	}
}

// alter changes one character in the middle of tok's signature (the last
// characters of a base64url signature may hold padding bits a decoder
// ignores: "AA" there could leave the signature as it was).
func alter(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
