package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// TestTokenEndpointErrors sends hand-made requests for every refusal of
// the token endpoint and checks the status, the error code, the fields RFC
// 6749 §5.2 asks for and that nothing is cached.
func TestTokenEndpointErrors(t *testing.T) {
	e := newEnv(t)
	basic := func(id, sec string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+sec))
	}
	cc := "grant_type=client_credentials"
	cases := []struct {
		name     string
		method   string
		path     string
		ctype    string
		authz    []string
		body     string
		status   int
		err      string
		wwwAuthn bool
	}{
		{name: "ok basic", authz: []string{basic("svc", svcSecret)}, body: cc, status: 200},
		{name: "ok post", body: cc + "&client_id=svc&client_secret=" + svcSecret, status: 200},
		{name: "ok with charset", ctype: "application/x-www-form-urlencoded; charset=UTF-8", authz: []string{basic("svc", svcSecret)}, body: cc, status: 200},
		{name: "basic with the same client_id", authz: []string{basic("svc", svcSecret)}, body: cc + "&client_id=svc", status: 200},
		{name: "GET", method: "GET", authz: []string{basic("svc", svcSecret)}, status: 405},
		{name: "query", path: "/oauth/token?client_secret=x", authz: []string{basic("svc", svcSecret)}, body: cc, status: 400, err: "invalid_request"},
		{name: "json body", ctype: "application/json", authz: []string{basic("svc", svcSecret)}, body: `{"grant_type":"client_credentials"}`, status: 400, err: "invalid_request"},
		{name: "other charset", ctype: "application/x-www-form-urlencoded; charset=latin1", authz: []string{basic("svc", svcSecret)}, body: cc, status: 400, err: "invalid_request"},
		{name: "no content type", ctype: "-", authz: []string{basic("svc", svcSecret)}, body: cc, status: 400, err: "invalid_request"},
		{name: "repeated parameter", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=read&scope=write", status: 400, err: "invalid_request"},
		{name: "repeated empty parameter", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=&scope=", status: 400, err: "invalid_request"},
		{name: "repeated grant_type", authz: []string{basic("svc", svcSecret)}, body: cc + "&" + cc, status: 400, err: "invalid_request"},
		{name: "bad escape", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=%zz", status: 400, err: "invalid_request"},
		{name: "control character", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=read%00", status: 400, err: "invalid_request"},
		{name: "body too large", authz: []string{basic("svc", svcSecret)}, body: cc + "&x=" + strings.Repeat("a", MaxBodyBytes), status: 413, err: "invalid_request"},
		{name: "no grant_type", authz: []string{basic("svc", svcSecret)}, body: "scope=read", status: 400, err: "invalid_request"},
		{name: "empty grant_type", authz: []string{basic("svc", svcSecret)}, body: "grant_type=", status: 400, err: "invalid_request"},
		{name: "password grant", authz: []string{basic("svc", svcSecret)}, body: "grant_type=password&username=a&password=b", status: 400, err: "unsupported_grant_type"},
		{name: "no client", body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "unknown client basic", authz: []string{basic("nobody", svcSecret)}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "wrong secret basic", authz: []string{basic("svc", webSecret)}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "empty secret basic", authz: []string{basic("svc", "")}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "wrong secret post", body: cc + "&client_id=svc&client_secret=" + webSecret, status: 401, err: "invalid_client"},
		{name: "disabled client", authz: []string{basic("off", svcSecret)}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "secret without id", body: cc + "&client_secret=" + svcSecret, status: 400, err: "invalid_request"},
		{name: "malformed basic", authz: []string{"Basic !!!"}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "basic without colon", authz: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("svc"))}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "basic user badly escaped", authz: []string{basic("svc%zz", svcSecret)}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "basic secret badly escaped", authz: []string{basic("svc", "%zz")}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "basic without user", authz: []string{basic("", svcSecret)}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "bearer scheme", authz: []string{"Bearer xyz"}, body: cc, status: 401, err: "invalid_client", wwwAuthn: true},
		{name: "two authorization fields", authz: []string{basic("svc", svcSecret), basic("svc", svcSecret)}, body: cc, status: 400, err: "invalid_request"},
		{name: "basic and post", authz: []string{basic("svc", svcSecret)}, body: cc + "&client_id=svc&client_secret=" + svcSecret, status: 400, err: "invalid_request"},
		{name: "basic and another client_id", authz: []string{basic("svc", svcSecret)}, body: cc + "&client_id=web", status: 400, err: "invalid_request"},
		{name: "basic and an assertion", authz: []string{basic("svc", svcSecret)}, body: cc + "&client_assertion_type=" + url.QueryEscape(JWTBearerAssertion) + "&client_assertion=a.b.c", status: 400, err: "invalid_request"},
		{name: "assertion type without assertion", body: cc + "&client_assertion_type=" + url.QueryEscape(JWTBearerAssertion), status: 400, err: "invalid_request"},
		{name: "too many parameters", authz: []string{basic("svc", svcSecret)}, body: cc + strings.Repeat("&p", 1) + manyParams(64), status: 400, err: "invalid_request"},
		{name: "as many parameters as allowed", authz: []string{basic("svc", svcSecret)}, body: cc + manyParams(63), status: 200},
		{name: "grant not allowed", authz: []string{basic("web", webSecret)}, body: cc, status: 400, err: "unauthorized_client"},
		{name: "client with no grants", authz: []string{basic("rs", rsSecret)}, body: cc, status: 400, err: "unauthorized_client"},
		{name: "unknown scope", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=read+nope", status: 400, err: "invalid_scope"},
		{name: "scope not allowed", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=admin", status: 400, err: "invalid_scope"},
		{name: "malformed scope", authz: []string{basic("svc", svcSecret)}, body: cc + "&scope=a%22b", status: 400, err: "invalid_scope"},
		{name: "refresh without token", authz: []string{basic("web", webSecret)}, body: "grant_type=refresh_token", status: 400, err: "invalid_request"},
		{name: "unknown refresh token", authz: []string{basic("web", webSecret)}, body: "grant_type=refresh_token&refresh_token=grt_x", status: 400, err: "invalid_grant"},
		{name: "refresh not allowed", authz: []string{basic("svc", svcSecret)}, body: "grant_type=refresh_token&refresh_token=grt_x", status: 400, err: "unauthorized_client"},
		{name: "code not allowed", authz: []string{basic("svc", svcSecret)}, body: "grant_type=authorization_code&code=x&code_verifier=" + strings.Repeat("a", 43), status: 400, err: "unauthorized_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method, path, ctype := c.method, c.path, c.ctype
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/oauth/token"
			}
			if ctype == "" {
				ctype = "application/x-www-form-urlencoded"
			}
			req, err := http.NewRequest(method, e.http.URL+path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if ctype != "-" {
				req.Header.Set("Content-Type", ctype)
			}
			for _, a := range c.authz {
				req.Header.Add("Authorization", a)
			}
			resp, m := e.do(req)
			if resp.StatusCode != c.status {
				t.Fatalf("status: got %d (%v), want %d", resp.StatusCode, m, c.status)
			}
			if c.status == 405 {
				if resp.Header.Get("Allow") != "POST" {
					t.Errorf("Allow: got %q, want POST", resp.Header.Get("Allow"))
				}
				return
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type: got %q, want application/json", got)
			}
			if c.status == 200 {
				if m["access_token"] == nil || m["token_type"] != "Bearer" {
					t.Errorf("got %v, want a token", m)
				}
				return
			}
			if m["error"] != c.err {
				t.Errorf("error: got %v, want %s", m["error"], c.err)
			}
			if d, _ := m["error_description"].(string); d == "" {
				t.Error("no error_description")
			}
			if got := resp.Header.Get("WWW-Authenticate") != ""; got != c.wwwAuthn && c.wwwAuthn {
				t.Errorf("WWW-Authenticate: got %q", resp.Header.Get("WWW-Authenticate"))
			}
			if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("a 401 without a Basic challenge: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestPaths(t *testing.T) {
	e := newEnv(t)
	for path, want := range map[string]int{
		"/oauth/authorize": 404, // reserved for the authorization endpoint
		"/oauth/jwks":      200,
		"/oauth/tokens":    404,
		"/.well-known/oauth-authorization-server": 200,
		"/.well-known/openid-configuration":       404,
	} {
		resp, _ := e.do(mustReq(t, "GET", e.http.URL+path))
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, _ := e.do(mustReq(t, "POST", e.http.URL+"/oauth/jwks"))
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /oauth/jwks: got %d %q, want 405 with Allow", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if _, ok := e.srv.Handle(t.Context(), &Request{Method: "GET", Path: "/api/things"}); ok {
		t.Error("Handle took a path that is not the server's")
	}
}

func mustReq(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "&p%d=x", i)
	}
	return b.String()
}

// TestMisconfiguredClients: what a registry may hold by mistake does not
// widen what the server gives.
func TestMisconfiguredClients(t *testing.T) {
	e := newEnv(t)
	// A scope the client was given that this server does not know (any more).
	e.clients.Put(Client{ID: "legacy", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, svcSecret)},
		GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read", "retired"}})
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"retired"}}, "legacy", svcSecret)
	if resp.StatusCode != 400 || m["error"] != "invalid_scope" {
		t.Errorf("an unknown scope the client holds: got %d %v, want invalid_scope", resp.StatusCode, m)
	}
	resp, m = e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "legacy", svcSecret)
	if resp.StatusCode != 200 || m["scope"] != "read" {
		t.Errorf("the default scope leaves out the unknown one: got %d %v", resp.StatusCode, m)
	}
	// A public client listing client_credentials.
	e.clients.Put(Client{ID: "pub", Enabled: true, Public: true, GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}})
	resp, m = e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"pub"}}, "", "")
	if resp.StatusCode != 400 || m["error"] != "unauthorized_client" {
		t.Errorf("a public client with client_credentials: got %d %v, want unauthorized_client", resp.StatusCode, m)
	}
	// A public client that also has a secret hash cannot use it.
	e.clients.Put(Client{ID: "pub2", Enabled: true, Public: true, SecretHashes: []string{HashSecret(testHashKey, svcSecret)}, GrantTypes: []string{GrantAuthorizationCode}})
	resp, m = e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "code_verifier": {strings.Repeat("a", 43)}}, "pub2", svcSecret)
	if resp.StatusCode != 401 {
		t.Errorf("a public client with a secret: got %d %v, want 401", resp.StatusCode, m)
	}
	// A registry answering a client under another id.
	e.clients.Put(Client{ID: "other", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, svcSecret)}, GrantTypes: []string{GrantClientCredentials}})
	e.clients.mu.Lock()
	e.clients.m["alias"] = e.clients.m["other"]
	e.clients.mu.Unlock()
	resp, m = e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "alias", svcSecret)
	if resp.StatusCode != 401 {
		t.Errorf("a client answered under another id: got %d %v, want 401", resp.StatusCode, m)
	}
}

// defineFails is a store whose Define fails.
type defineFails struct{ kps.Store }

func (defineFails) Define(context.Context, ...kps.Table) error {
	return fmt.Errorf("%w: disk full", kps.ErrUnavailable)
}

func TestNewRefusals(t *testing.T) {
	cfg := Config{Issuer: "https://gw.example.com"}
	st := openStore(t)
	for name, o := range map[string]Options{
		"no store":     {Config: cfg, HashKey: testHashKey, Clients: NewMemClients()},
		"no clients":   {Config: cfg, Store: st, HashKey: testHashKey},
		"bad config":   {Config: Config{}, Store: st, HashKey: testHashKey, Clients: NewMemClients()},
		"define fails": {Config: cfg, Store: defineFails{st}, HashKey: testHashKey, Clients: NewMemClients()},
	} {
		if _, err := New(context.Background(), o); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
	if _, err := New(context.Background(), Options{Config: cfg, Store: defineFails{st}, HashKey: testHashKey, Clients: NewMemClients()}); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("Define failing: got %v, want kps.ErrUnavailable", err)
	}
}
