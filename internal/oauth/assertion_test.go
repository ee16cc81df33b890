package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

type assertionKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newAssertionKey(t *testing.T, kid string) assertionKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return assertionKey{k, kid}
}

func (k assertionKey) sign(t *testing.T, c jwt.Claims) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPrivateKeyJWT(t *testing.T) {
	e := newEnv(t)
	key := newAssertionKey(t, "k1")
	e.clients.Put(Client{ID: "pkj", Enabled: true, AuthMethod: AuthPrivateKey, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"},
		JWKS:         &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}},
		SecretHashes: []string{HashSecret(testHashKey, svcSecret)}})
	now := e.clock.Now()
	claims := func(mut func(*jwt.Claims)) jwt.Claims {
		c := jwt.Claims{Issuer: "pkj", Subject: "pkj", Audience: jwt.Audience{e.issuer + "/oauth/token"},
			Expiry: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: random("")[:20]}
		if mut != nil {
			mut(&c)
		}
		return c
	}
	// With the real client library: the assertion as endpoint parameters.
	assertion := key.sign(t, claims(nil))
	cc := clientcredentials.Config{ClientID: "pkj", TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{"client_assertion_type": {JWTBearerAssertion}, "client_assertion": {assertion}}}
	tok, err := cc.Token(oauthCtx(e))
	if err != nil {
		t.Fatal(err)
	}
	if !e.active(tok.AccessToken) {
		t.Error("the token is not active")
	}
	// The same assertion again: its jti was used.
	_, err = cc.Token(oauthCtx(e))
	if re := retrieveErr(t, err); re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
		t.Errorf("a replayed assertion: got %s %d, want invalid_client 401", re.ErrorCode, re.Response.StatusCode)
	}
	other := newAssertionKey(t, "k1")
	hmacTok := func() string {
		// An HMAC signature made with the public key's bytes as secret.
		pub, _ := jose.JSONWebKey{Key: &key.priv.PublicKey}.MarshalJSON()
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub}, nil)
		tk, _ := jwt.Signed(s).Claims(claims(nil)).Serialize()
		return tk
	}
	noneTok := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`))
		p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"pkj","sub":"pkj","aud":"` + e.issuer + `","exp":` + strconv.FormatInt(now.Add(time.Minute).Unix(), 10) + `,"jti":"n1"}`))
		return h + "." + p + "."
	}
	cases := []struct {
		name   string
		tok    string
		typ    string
		id     string
		status int
		err    string
	}{
		{name: "aud the issuer", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Audience = jwt.Audience{e.issuer} })), status: 200},
		{name: "wrong aud", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://other.example"} })), status: 401, err: "invalid_client"},
		{name: "expired", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })), status: 401, err: "invalid_client"},
		{name: "no exp", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Expiry = nil })), status: 401, err: "invalid_client"},
		{name: "exp too far", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(time.Hour)) })), status: 401, err: "invalid_client"},
		{name: "no jti", tok: key.sign(t, claims(func(c *jwt.Claims) { c.ID = "" })), status: 401, err: "invalid_client"},
		{name: "sub differs", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Subject = "svc" })), status: 401, err: "invalid_client"},
		{name: "unknown iss", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Issuer, c.Subject = "nobody", "nobody" })), status: 401, err: "invalid_client"},
		{name: "iss without keys", tok: key.sign(t, claims(func(c *jwt.Claims) { c.Issuer, c.Subject = "svc", "svc" })), status: 401, err: "invalid_client"},
		{name: "another key", tok: other.sign(t, claims(nil)), status: 401, err: "invalid_client"},
		{name: "HMAC with the public key", tok: hmacTok(), status: 401, err: "invalid_client"},
		{name: "alg none", tok: noneTok(), status: 401, err: "invalid_client"},
		{name: "garbage", tok: "a.b.c", status: 401, err: "invalid_client"},
		{name: "wrong type", tok: key.sign(t, claims(nil)), typ: "urn:ietf:params:oauth:client-assertion-type:saml2-bearer", status: 400, err: "invalid_request"},
		{name: "client_id differs", tok: key.sign(t, claims(nil)), id: "svc", status: 400, err: "invalid_request"},
		{name: "client_id matches", tok: key.sign(t, claims(nil)), id: "pkj", status: 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ := c.typ
			if typ == "" {
				typ = JWTBearerAssertion
			}
			form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {typ}, "client_assertion": {c.tok}}
			if c.id != "" {
				form.Set("client_id", c.id)
			}
			resp, m := e.post("/oauth/token", form, "", "")
			if resp.StatusCode != c.status || c.err != "" && m["error"] != c.err {
				t.Errorf("got %d %v, want %d %s", resp.StatusCode, m, c.status, c.err)
			}
		})
	}
	// A key of the client's set marked for encryption does not sign.
	e.clients.Put(Client{ID: "enc", Enabled: true, GrantTypes: []string{GrantClientCredentials},
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.priv.PublicKey, KeyID: "k1", Use: "enc"}}}})
	encTok := key.sign(t, jwt.Claims{Issuer: "enc", Subject: "enc", Audience: jwt.Audience{e.issuer}, Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "e1"})
	if resp, m := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {JWTBearerAssertion}, "client_assertion": {encTok}}, "", ""); resp.StatusCode != 401 {
		t.Errorf("an assertion signed with a use:enc key: got %d %v, want 401", resp.StatusCode, m)
	}
	// A client limited to private_key_jwt may not use its secret.
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "pkj", svcSecret)
	if resp.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Errorf("a secret for a private_key_jwt client: got %d %v, want invalid_client", resp.StatusCode, m)
	}
	// An assertion also authenticates at the introspection endpoint, with
	// that endpoint as its aud.
	e.clients.Put(Client{ID: "rs2", Enabled: true, JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.priv.PublicKey, KeyID: "k1"}}}})
	a := key.sign(t, jwt.Claims{Issuer: "rs2", Subject: "rs2", Audience: jwt.Audience{e.issuer + "/oauth/introspect"},
		Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "x1"})
	resp, m = e.post("/oauth/introspect", url.Values{"token": {tok.AccessToken}, "client_assertion_type": {JWTBearerAssertion}, "client_assertion": {a}}, "", "")
	if resp.StatusCode != 200 || m["active"] != true {
		t.Errorf("introspection with an assertion: got %d %v", resp.StatusCode, m)
	}
}
