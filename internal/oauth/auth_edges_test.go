package oauth

import (
	"net/url"
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
	f.set(&fault{op: "insert", table: AssertionsTable, err: errDown})
	if st, ec, m := e.tokenAs("", "", assertion(key, "pkj", time.Minute)); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("the jti not storable: %d %v", st, m)
	}
	f.set()
	e.srv.clients = failingClients{}
	if st, ec, m := e.tokenAs("", "", url.Values{"grant_type": {"authorization_code"}, "client_id": {"spa"}, "code": {"x"}, "code_verifier": {"y"}}); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("a public client with the registry down: %d %v", st, m)
	}
}
