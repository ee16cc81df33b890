package oauth

import (
	"github.com/gatehouse-gw/gatehouse/internal/home"

	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// provider reads the server's metadata document with go-oidc's
// ProviderConfig and returns a verifier of access tokens that fetches the
// JWKS document (refetching it on an unknown kid).
func provider(t *testing.T, e *env) (*oidc.IDTokenVerifier, map[string]any) {
	t.Helper()
	resp, err := e.http.Client().Get(e.issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var pc oidc.ProviderConfig
	var raw map[string]any
	if err := json.Unmarshal(b, &pc); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &raw)
	if pc.IssuerURL != e.issuer || pc.JWKSURL != e.issuer+"/oauth/jwks" || pc.TokenURL != e.issuer+"/oauth/token" {
		t.Fatalf("metadata: got %+v", pc)
	}
	ctx := oidc.ClientContext(context.Background(), e.http.Client())
	p := pc.NewProvider(ctx)
	return p.Verifier(&oidc.Config{ClientID: e.issuer, SupportedSigningAlgs: []string{"ES256"}, Now: e.clock.Now}), raw
}

func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func TestJWTAccessTokensAndRotation(t *testing.T) {
	e := newEnv(t, jwtFormat)
	ctx := oidc.ClientContext(context.Background(), e.http.Client())
	verifier, _ := provider(t, e)
	tok1 := ccToken(t, e, "svc", svcSecret)
	h := header(t, tok1)
	kid1, _ := e.keys.Current()
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != kid1 {
		t.Errorf("header: got %v, want typ at+jwt, alg ES256, kid %s", h, kid1)
	}
	idt, err := verifier.Verify(ctx, tok1)
	if err != nil {
		t.Fatalf("go-oidc: %v", err)
	}
	var claims map[string]any
	idt.Claims(&claims)
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} {
		if claims[k] == nil {
			t.Errorf("claim %s is missing: %v", k, claims)
		}
	}
	if claims["client_id"] != "svc" || claims["sub"] != "svc" || claims["scope"] != "read write" {
		t.Errorf("claims: got %v", claims)
	}

	// Rotate: new tokens carry the new kid; the old key still verifies.
	kid2, err := e.keys.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	tok2 := ccToken(t, e, "svc", svcSecret)
	if header(t, tok2)["kid"] != kid2 || kid2 == kid1 {
		t.Errorf("after rotation: kid %v, want %s", header(t, tok2)["kid"], kid2)
	}
	for i, tk := range []string{tok1, tok2} {
		if _, err := verifier.Verify(ctx, tk); err != nil {
			t.Errorf("go-oidc, token %d after rotation: %v", i+1, err)
		}
		if _, err := e.srv.Verify(context.Background(), tk); err != nil {
			t.Errorf("Verify, token %d after rotation: %v", i+1, err)
		}
	}
	// Prune keeps the old key while its tokens may live.
	if removed, err := e.keys.Prune(time.Hour); err != nil || len(removed) != 0 {
		t.Errorf("early Prune: removed %v, %v", removed, err)
	}
	e.clock.Advance(time.Hour)
	removed, err := e.keys.Prune(time.Hour)
	if err != nil || !slices.Equal(removed, []string{kid1}) {
		t.Errorf("Prune after the lifetime: removed %v, %v; want [%s]", removed, err, kid1)
	}
	if _, err := os.Stat(filepath.Join(e.keys.dir, kid1+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pruned key's file: %v", err)
	}
	set := e.keys.JWKS()
	if len(set.Keys) != 1 || set.Keys[0].KeyID != kid2 || !set.Keys[0].IsPublic() {
		t.Errorf("JWKS after prune: %+v", set)
	}
	if _, err := e.srv.Verify(context.Background(), tok1); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token of a pruned key: got %v, want ErrInvalidToken", err)
	}

	// Another process rotates in the same directory: its tokens verify
	// here after a reload on the unknown kid.
	ks2, err := LoadKeySet(home.Home{}, e.keys.dir, "", e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := ks2.Current(); k != kid2 {
		t.Errorf("the second KeySet's current key: got %s, want %s", k, kid2)
	}
	e.clock.Advance(time.Second)
	kid3, err := ks2.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := New(context.Background(), Options{Config: e.srv.cfg, Store: e.store, HashKey: testHashKey, Clients: e.clients, Keys: ks2, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// A new key is published before it signs: until PublishDelay has
	// passed, the previous key signs (the other instances may not know
	// the new one yet).
	if k, _ := ks2.Current(); k != kid2 {
		t.Errorf("just after the rotation: signing with %s, want %s (the new key is only published)", k, kid2)
	}
	e.clock.Advance(PublishDelay - time.Millisecond)
	if k, _ := ks2.Current(); k != kid2 {
		t.Errorf("a millisecond before PublishDelay: signing with %s, want %s", k, kid2)
	}
	e.clock.Advance(time.Millisecond)
	tok3, err := srv2.signAccess(grantInfo{clientID: "svc", scopes: []string{"read"}}, e.clock.Now(), e.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if header(t, tok3)["kid"] != kid3 {
		t.Fatal("srv2 does not sign with its new key")
	}
	e.clock.Advance(reloadInterval)
	if _, err := e.srv.Verify(context.Background(), tok3); err != nil {
		t.Errorf("a token of a key made by another process: %v", err)
	}

	// And this process signs with it too.
	if k, _ := e.keys.Current(); k != kid3 {
		t.Errorf("after another process rotated: current key %s, want %s", k, kid3)
	}
	if h := header(t, ccToken(t, e, "svc", svcSecret)); h["kid"] != kid3 {
		t.Errorf("after another process rotated: signed with %v, want %s", h["kid"], kid3)
	}
	// A directory emptied behind its back: the keys held stay.
	for _, k := range []string{kid2, kid3} {
		os.Remove(filepath.Join(e.keys.dir, k+".json"))
	}
	if err := e.keys.Reload(); err == nil {
		t.Error("Reload of an empty directory: no error")
	}
	if _, err := e.srv.Verify(context.Background(), tok3); err != nil {
		t.Errorf("after an empty reload: %v", err)
	}

	// Files: one per key, 0600, in a 0700 directory.
	st, _ := os.Stat(e.keys.dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode: got %o, want 700", st.Mode().Perm())
	}
	if _, err := ks2.Rotate(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(e.keys.dir)
	if len(ents) != 1 {
		t.Errorf("%d files in the key directory, want 1", len(ents))
	}
	for _, en := range ents {
		fi, _ := en.Info()
		if fi.Mode().Perm() != 0o600 || !strings.HasSuffix(en.Name(), ".json") {
			t.Errorf("key file %s: mode %o", en.Name(), fi.Mode().Perm())
		}
	}
}

func TestJWTRefused(t *testing.T) {
	e := newEnv(t, jwtFormat)
	good := ccToken(t, e, "svc", svcSecret)
	k := e.keys.current()
	ecKey := k.private.(*ecdsa.PrivateKey)
	now := e.clock.Now()
	base := jwtClaims{Claims: jwt.Claims{Issuer: e.issuer, Subject: "svc", Audience: jwt.Audience{e.issuer},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), ID: "j1"}, ClientID: "svc", Scope: "read"}
	sign := func(key any, alg jose.SignatureAlgorithm, kid, typ string, c jwtClaims) string {
		opts := &jose.SignerOptions{}
		if typ != "" {
			opts.WithType(jose.ContentType(typ))
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mod := func(f func(c *jwtClaims)) jwtClaims {
		c := base
		f(&c)
		return c
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubJSON, _ := k.public.MarshalJSON()
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+e.issuer+`","sub":"admin","aud":"`+e.issuer+`","client_id":"svc","exp":9999999999,"iat":1}`)) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+k.kid+`"}`)) + "." + parts[1] + "."
	if _, err := e.srv.Verify(context.Background(), sign(ecKey, jose.ES256, k.kid, "at+jwt", base)); err != nil {
		t.Fatalf("the control token: %v", err)
	}
	cases := map[string]string{
		"alg none":                 none,
		"HMAC with the public key": sign(pubJSON, jose.HS256, k.kid, "at+jwt", base),
		"tampered payload":         tampered,
		"typ JWT":                  sign(ecKey, jose.ES256, k.kid, "JWT", base),
		"no typ":                   sign(ecKey, jose.ES256, k.kid, "", base),
		"unknown kid":              sign(ecKey, jose.ES256, "nope", "at+jwt", base),
		"another key, same kid":    sign(stranger, jose.ES256, k.kid, "at+jwt", base),
		"wrong issuer":             sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.Issuer = "https://evil.example" })),
		"wrong audience":           sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.Audience = jwt.Audience{"https://api.other"} })),
		"expired":                  sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })),
		"no exp":                   sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.Expiry = nil })),
		"issued in the future":     sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"no client_id":             sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.ClientID = "" })),
		"an unknown grant":         sign(ecKey, jose.ES256, k.kid, "at+jwt", mod(func(c *jwtClaims) { c.FamilyID = "nofamily" })),
		"two dots, not a JWT":      "x.y.z",
	}
	for name, tok := range cases {
		if _, err := e.srv.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
		}
		if e.active(tok) {
			t.Errorf("%s: active at introspection", name)
		}
	}
	// An opaque-format server does not take JWTs it did not sign either.
	e2 := newEnv(t)
	if _, err := e2.srv.Verify(context.Background(), good); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("another group's JWT: got %v, want ErrInvalidToken", err)
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	_, m := provider(t, e)
	want := map[string]any{
		"issuer":                           e.issuer,
		"token_endpoint":                   e.issuer + "/oauth/token",
		"introspection_endpoint":           e.issuer + "/oauth/introspect",
		"revocation_endpoint":              e.issuer + "/oauth/revoke",
		"jwks_uri":                         e.issuer + "/oauth/jwks",
		"grant_types_supported":            []any{"client_credentials", "refresh_token"},
		"code_challenge_methods_supported": []any{"S256"},
		"response_types_supported":         []any{},
		"scopes_supported":                 []any{"read", "write", "profile", "admin"},
	}
	for k, v := range want {
		got, _ := json.Marshal(m[k])
		w, _ := json.Marshal(v)
		if string(got) != string(w) {
			t.Errorf("%s: got %s, want %s", k, got, w)
		}
	}
	if _, ok := m["authorization_endpoint"]; ok {
		t.Error("the metadata lists an authorization endpoint that does not exist")
	}
	for _, k := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported"} {
		l, _ := m[k].([]any)
		if len(l) == 0 {
			t.Errorf("%s is empty", k)
		}
		for _, a := range l {
			if a == "none" && k != "token_endpoint_auth_methods_supported" || a == "HS256" {
				t.Errorf("%s lists %v", k, a)
			}
		}
	}
	// With an authorization endpoint (a later part), the code flow is listed.
	e2 := newEnv(t, func(o *Options) {
		o.Authorize = func(_ context.Context, r *Request) *Response {
			// What the hook gets from HTTPHandler.
			if !r.RemoteAddr.IsLoopback() || r.TLS || r.RawQuery != "response_type=code" || r.Method != "GET" {
				return &Response{Status: 500}
			}
			return &Response{Status: 200}
		}
		o.Config.PathPrefix = "/as"
	})
	_, m = provider2(t, e2)
	if m["authorization_endpoint"] != e2.issuer+"/as/authorize" || m["token_endpoint"] != e2.issuer+"/as/token" {
		t.Errorf("with authorize: got %v", m)
	}
	if g, _ := json.Marshal(m["grant_types_supported"]); string(g) != `["authorization_code","client_credentials","refresh_token"]` {
		t.Errorf("grant types with authorize: %s", g)
	}
	resp, _ := e2.do(mustReq(t, "GET", e2.issuer+"/as/authorize?response_type=code"))
	if resp.StatusCode != 200 {
		t.Errorf("the authorize hook: got %d", resp.StatusCode)
	}
	// An issuer with a path: the well-known suffix follows RFC 8414 §3.
	e3 := newEnv(t, func(o *Options) { o.Config.Issuer += "/tenant1" })
	resp, _ = e3.do(mustReq(t, "GET", e3.http.URL+"/.well-known/oauth-authorization-server/tenant1"))
	if resp.StatusCode != 200 {
		t.Errorf("metadata of an issuer with a path: got %d", resp.StatusCode)
	}
	// HEAD works, without a body.
	resp, _ = e.do(mustReq(t, "HEAD", e.issuer+"/oauth/jwks"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("HEAD jwks: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func provider2(t *testing.T, e *env) (any, map[string]any) {
	t.Helper()
	resp, err := e.http.Client().Get(e.issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return nil, m
}

// TestJWTCache: a token verified once is served from the cache, and the
// cache still refuses it once expired, once its key is gone and once its
// grant is revoked.
func TestJWTCache(t *testing.T) {
	e := newEnv(t, jwtFormat)
	ctx := context.Background()
	tok := ccToken(t, e, "svc", svcSecret)
	if _, err := e.srv.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.srv.jwts.get(tok); !ok {
		t.Fatal("a verified token is not cached")
	}
	e.clock.Advance(time.Hour + jwtLeeway)
	if _, err := e.srv.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a cached token after its expiry: got %v, want ErrInvalidToken", err)
	}
	// A key removed from the directory (a compromised key deleted by hand).
	tok = ccToken(t, e, "svc", svcSecret)
	if _, err := e.srv.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	kid, _ := e.keys.Current()
	if _, err := e.keys.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.keys.dir, kid+".json")); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a cached token of a removed key: got %v, want ErrInvalidToken", err)
	}
	// Garbage is not cached.
	e.srv.Verify(ctx, "a.b.c")
	if _, ok := e.srv.jwts.get("a.b.c"); ok {
		t.Error("a refused token was cached")
	}
}

func TestJWTCacheBound(t *testing.T) {
	var big jwtCache // the server's: jwtCacheMax
	for i := range 1000 {
		big.put(fmt.Sprint("tok", i), cachedJWT{exp: time.Unix(2000, 0)}, time.Unix(1000, 0))
	}
	if len(big.m) != 1000 {
		t.Errorf("the default cache holds %d of 1,000 entries", len(big.m))
	}
	c := jwtCache{max: 8}
	now := time.Unix(1000, 0)
	for i := range 20 {
		exp := now.Add(time.Hour)
		if i < 4 {
			exp = now.Add(-time.Second) // expired: dropped first
		}
		c.put(fmt.Sprint("tok", i), cachedJWT{exp: exp}, now)
		if len(c.m) > 8 {
			t.Fatalf("after %d puts: %d entries, bound 8", i+1, len(c.m))
		}
	}
	if _, ok := c.get("tok19"); !ok {
		t.Error("the newest entry is not there")
	}
	if len(c.m) < 4 {
		t.Errorf("the cache emptied itself: %d entries", len(c.m))
	}
}

func TestKeySetErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKeySet(home.Home{}, dir, "HS256", nil); err == nil {
		t.Error("LoadKeySet took HS256")
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := LoadKeySet(home.Home{}, file, "", nil); err == nil {
		t.Error("LoadKeySet took a file as its directory")
	}
	kd := filepath.Join(dir, "keys")
	ks, err := LoadKeySet(home.Home{}, kd, "EdDSA", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, alg := ks.Current(); alg != "EdDSA" {
		t.Errorf("alg: got %s, want EdDSA", alg)
	}
	for name, content := range map[string]string{
		"garbage":     "not json",
		"public key":  publicKeyFile(t),
		"kid differs": `{"kid":"a","alg":"EdDSA","created":"2026-01-01T00:00:00Z","jwk":{"kty":"OKP","crv":"Ed25519","kid":"b","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}}`,
	} {
		path := filepath.Join(kd, "bad.json")
		os.WriteFile(path, []byte(content), 0o600)
		if err := ks.Reload(); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Reload: got %v, want an error naming the file", name, err)
		}
		if _, err := LoadKeySet(home.Home{}, kd, "EdDSA", nil); err == nil {
			t.Errorf("%s: LoadKeySet: no error", name)
		}
		os.Remove(path)
	}
	// Every algorithm makes keys that sign and verify.
	for _, alg := range signingAlgs {
		ks, err := LoadKeySet(home.Home{}, filepath.Join(dir, alg), alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		k := ks.current()
		tok, err := jwt.Signed(k.signer).Claims(jwt.Claims{Subject: "x"}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jwt.ParseSigned(tok, ks.algs())
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		var c jwt.Claims
		if err := parsed.Claims(k.public.Key, &c); err != nil || c.Subject != "x" {
			t.Errorf("%s: %v", alg, err)
		}
		// A second LoadKeySet reads the key back.
		ks2, err := LoadKeySet(home.Home{}, filepath.Join(dir, alg), alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := ks.Current(); a != func() string { k, _ := ks2.Current(); return k }() {
			t.Errorf("%s: the key did not read back", alg)
		}
	}
}

// publicKeyFile is a key file holding a public key only.
func publicKeyFile(t *testing.T) string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, err := jose.JSONWebKey{Key: &k.PublicKey, KeyID: "p"}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return `{"kid":"p","alg":"ES256","created":"2026-01-01T00:00:00Z","jwk":` + string(jwk) + `}`
}
