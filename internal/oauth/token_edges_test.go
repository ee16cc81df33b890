package oauth

import (
	"context"
	"net/url"
	"strings"
	"testing"
)

// TestPKCEChars: RFC 7636's unreserved characters, each range at its
// edges, and nothing else.
func TestPKCEChars(t *testing.T) {
	if all := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"; !pkceChars(all) {
		t.Errorf("the unreserved characters refused")
	}
	for _, c := range "@[`{/:+ !%\"\\\x00\x7f\xc3" {
		for _, s := range []string{"abc" + string(c), string(c) + "abc"} {
			if pkceChars(s) {
				t.Errorf("%q accepted", s)
			}
		}
	}
}

// TestScopeRequests: a scope asked twice is granted once; a grant
// family's id is 26 characters (130 random bits).
func TestScopeRequests(t *testing.T) {
	e := newEnv(t)
	_, _, m := e.tokenAs("svc", svcSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read write read"}})
	if m["scope"] != "read write" {
		t.Errorf("scope read write read: %v", m)
	}
	code, _ := e.code("web", redirectURI, "read")
	row, err := e.store.Get(context.Background(), CodesTable, e.srv.hash.hash(code))
	if err != nil || len(str(row, "familyId")) != 26 {
		t.Errorf("the code's family id %q: %v", str(row, "familyId"), err)
	}
}

// TestClientCredentialsEdges: a public client is refused the grant even
// when its settings list it; the default scope leaves out the client's
// scopes the server does not know.
func TestClientCredentialsEdges(t *testing.T) {
	e := newEnv(t)
	e.clients.Put(Client{ID: "pubcc", Enabled: true, Public: true, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}})
	if st, ec, m := e.tokenAs("", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"pubcc"}}); st != 400 || ec != ErrCodeUnauthorizedClient {
		t.Errorf("a public client allowed client_credentials: %d %v", st, m)
	}
	e.clients.Put(Client{ID: "legacy", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, svcSecret)},
		GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"old:scope", "read"}})
	if _, _, m := e.tokenAs("legacy", svcSecret, url.Values{"grant_type": {"client_credentials"}}); m["scope"] != "read" {
		t.Errorf("the default scope of a client with a scope the server does not know: %v", m)
	}
}

// TestScopeTokenRefused: a scope that is not a scope token (RFC 6749 §3.3)
// is refused as such, before it is looked up.
func TestScopeTokenRefused(t *testing.T) {
	e := newEnv(t)
	st, ec, m := e.tokenAs("svc", svcSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {`read a"b`}})
	if d, _ := m["error_description"].(string); st != 400 || ec != ErrCodeInvalidScope || !strings.HasSuffix(d, "is not a valid scope token") {
		t.Errorf("a scope with a quote: %d %v", st, m)
	}
}
