package oauth

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestAuthEdges: an assertion's lifetime up to clientAssertionMaxAge
// exactly, an assertion without kid checked with the client's keys, one
// without iss refused, its jti not storable a 503; a public client with the
// registry down a 503.
func TestAuthEdges(t *testing.T) {
	e, f := faultyEnv(t)
	key := newAssertionKey(t, "k1")
	e.clients.Put(Client{ID: "pkj", Enabled: true, AuthMethod: AuthPrivateKey, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"},
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}})
	now := e.clock.Now()
	n := 0
	assertion := func(signer assertionKey, iss string, exp time.Duration) url.Values {
		n++
		c := jwt.Claims{Issuer: iss, Subject: "pkj", Audience: jwt.Audience{e.issuer}, Expiry: jwt.NewNumericDate(now.Add(exp)), ID: "jti-" + string(rune('a'+n))}
		return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {JWTBearerAssertion}, "client_assertion": {signer.sign(t, c)}}
	}
	for _, c := range []struct {
		what   string
		form   url.Values
		status int
		code   string
	}{
		{"exp exactly 5 min ahead", assertion(key, "pkj", 5*time.Minute), 200, ""},
		{"exp 5 min and 1 s ahead", assertion(key, "pkj", 5*time.Minute+time.Second), 401, ErrCodeInvalidClient},
		{"no kid", assertion(assertionKey{key.priv, ""}, "pkj", time.Minute), 200, ""},
		{"no iss", assertion(key, "", time.Minute), 401, ErrCodeInvalidClient},
	} {
		if st, ec, m := e.tokenAs("", "", c.form); st != c.status || ec != c.code {
			t.Errorf("%s: %d %v", c.what, st, m)
		}
	}
	for what, c := range map[string]struct {
		form url.Values
		desc string
	}{
		"no iss":      {assertion(key, "", time.Minute), "client_assertion has no iss"},
		"another key": {assertion(newAssertionKey(t, "k1"), "pkj", time.Minute), "client authentication failed"},
	} {
		if _, _, m := e.tokenAs("", "", c.form); m["error_description"] != c.desc {
			t.Errorf("%s: %v, want %q", what, m, c.desc)
		}
	}
	// A key restricted to another algorithm does not verify, though it could.
	es := newAssertionKey(t, "k384")
	e.clients.Put(Client{ID: "pk3", Enabled: true, GrantTypes: []string{GrantClientCredentials},
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &es.priv.PublicKey, KeyID: "k384", Algorithm: "ES384"}}}})
	a3 := es.sign(t, jwt.Claims{Issuer: "pk3", Subject: "pk3", Audience: jwt.Audience{e.issuer}, Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "p3"})
	if st, _, m := e.tokenAs("", "", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {JWTBearerAssertion}, "client_assertion": {a3}}); st != 401 {
		t.Errorf("an ES256 assertion and a key for ES384: %d %v", st, m)
	}
	// A private key registered by mistake verifies with its public part.
	priv := newAssertionKey(t, "kp")
	e.clients.Put(Client{ID: "pk2", Enabled: true, GrantTypes: []string{GrantClientCredentials},
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.priv, KeyID: "kp"}}}})
	a := priv.sign(t, jwt.Claims{Issuer: "pk2", Subject: "pk2", Audience: jwt.Audience{e.issuer}, Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "p1"})
	if st, _, m := e.tokenAs("", "", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {JWTBearerAssertion}, "client_assertion": {a}}); st != 200 {
		t.Errorf("a client's JWKS with a private key: %d %v", st, m)
	}
	f.set(&fault{op: "insert", table: AssertionsTable, err: errDown})
	if st, ec, m := e.tokenAs("", "", assertion(key, "pkj", time.Minute)); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("the jti not storable: %d %v", st, m)
	}
	f.set()
	e.srv.clients = failingClients{}
	if st, ec, m := e.tokenAs("", "", url.Values{"grant_type": {"authorization_code"}, "client_id": {"spa"}, "code": {"x"}, "code_verifier": {"y"}}); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("a public client with the registry down: %d %v", st, m)
	}
	if st, ec, m := e.tokenAs("", "", assertion(key, "pkj", time.Minute)); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("an assertion with the registry down: %d %v", st, m)
	}
}

// TestBasicCredentials: each malformed Basic field is refused for what it
// is (the description says which rule), never read in part; an assertion
// without its type still counts as a second method.
func TestBasicCredentials(t *testing.T) {
	e := newEnv(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		authz, extra, desc string
		status             int
	}{
		{"Bearer xyz", "", "the token endpoint takes Basic authentication only", 401},
		{"Basic " + b64("svc:"+svcSecret) + "!", "", "malformed Basic credentials", 401}, // a valid prefix, then garbage
		{"Basic " + b64("svc"), "", "malformed Basic credentials", 401},
		{"Basic " + b64(":"+svcSecret), "", "malformed Basic credentials", 401},
		{"Basic " + b64("svc%zz:"+svcSecret), "", "malformed Basic credentials", 401},
		{"Basic " + b64("svc:%zz"), "", "malformed Basic credentials", 401},
		{"Basic " + b64("svc:"+svcSecret), "&client_assertion=a.b.c", "more than one client authentication method (RFC 6749 §2.3)", 400},
	} {
		req, _ := http.NewRequest("POST", e.http.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials"+c.extra))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", c.authz)
		resp, m := e.do(req)
		if resp.StatusCode != c.status || m["error_description"] != c.desc {
			t.Errorf("%s %s: %d %v, want %d %q", c.authz, c.extra, resp.StatusCode, m, c.status, c.desc)
		}
	}
}

// TestAssertionLeeway: an assertion expired up to 30 s ago is accepted
// (clock skew), not 31 s.
func TestAssertionLeeway(t *testing.T) {
	e := newEnv(t)
	key := newAssertionKey(t, "k1")
	e.clients.Put(Client{ID: "pkj", Enabled: true, AuthMethod: AuthPrivateKey, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"},
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}})
	now := e.clock.Now()
	for ago, status := range map[time.Duration]int{30 * time.Second: 200, 31 * time.Second: 401} {
		a := key.sign(t, jwt.Claims{Issuer: "pkj", Subject: "pkj", Audience: jwt.Audience{e.issuer}, Expiry: jwt.NewNumericDate(now.Add(-ago)), ID: ago.String()})
		if st, _, m := e.tokenAs("", "", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {JWTBearerAssertion}, "client_assertion": {a}}); st != status {
			t.Errorf("an assertion expired %v ago: %d %v", ago, st, m)
		}
	}
}
