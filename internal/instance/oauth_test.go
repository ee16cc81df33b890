package instance

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// TestOAuthEndToEnd: a group with its authorization server and an API
// behind the oauth policy, driven by golang.org/x/oauth2 through a real
// instance: a client_credentials token opens the API with the scope it
// needs, the authorization code flow (login, consent, PKCE) gives a user's
// token and a refresh token, a revoked token stops working.
func TestOAuthEndToEnd(t *testing.T) {
	be := policyBackend(t)
	p := newPorts(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", p.traffic)
	ti := startInstance(t, quickstartYAML(p, fmt.Sprintf(`
kps: {cache: {ttl: 300ms, negativeTTL: 300ms}}
oauth:
  enabled: true
  issuer: %s
  scopes: [orders:read, orders:write]
backends:
  - name: be
    url: %s
apis:
  - name: orders
    pathPrefix: /orders
    backend: be
    policies:
      - oauth: {scopes: [orders:read], methodScopes: {POST: [orders:write]}, tokenCacheTtl: 100ms}
`, issuer, be.URL)))
	ctx := context.Background()
	store, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: sqlite.GroupPath(ti.home, groupID)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hk, err := apps.GroupHashKey(ctx, ti.home, groupID, store)
	if err != nil {
		t.Fatal(err)
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		t.Fatal(err)
	}
	const cb = "http://127.0.0.1:9/cb"
	app, err := m.CreateApp(ctx, apps.App{Name: "Shop", Enabled: true, OAuth: &apps.OAuthClient{
		GrantTypes: []string{"client_credentials", "authorization_code", "refresh_token"}, RedirectURIs: []string{cb}, Scopes: []string{"orders:read", "orders:write"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, sec, err := m.CreateClientSecret(ctx, app.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	users, _ := authorize.NewUsers(ctx, store)
	alice, err := users.Create(ctx, "alice", "Alice", secret.FromString("correct horse battery"))
	if err != nil {
		t.Fatal(err)
	}

	// The metadata names this issuer and its endpoints.
	r := do(t, nil, "GET", issuer+"/.well-known/oauth-authorization-server", nil)
	var meta map[string]any
	if r.status != 200 || json.Unmarshal([]byte(r.body), &meta) != nil || meta["issuer"] != issuer || meta["token_endpoint"] != issuer+"/oauth/token" || meta["authorization_endpoint"] != issuer+"/oauth/authorize" {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}

	// client_credentials with x/oauth2.
	cc := clientcredentials.Config{ClientID: app.ID, ClientSecret: sec.RevealString(), TokenURL: issuer + "/oauth/token", Scopes: []string{"orders:read"}}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	bad := clientcredentials.Config{ClientID: app.ID, ClientSecret: "gcs_wrong", TokenURL: issuer + "/oauth/token"}
	if _, err := bad.Token(ctx); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("a wrong secret: %v", err)
	}
	if r := do(t, nil, "GET", issuer+"/orders/1", nil); r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer realm="gatehouse"` {
		t.Errorf("no token: %d %v", r.status, r.header)
	}
	if r := do(t, nil, "GET", issuer+"/orders/1", http.Header{"Authorization": {"Bearer not-a-token"}}); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a bad token: %d %v", r.status, r.header)
	}
	auth := http.Header{"Authorization": {"Bearer " + tok.AccessToken}, "X-Gatehouse-Client-Id": {"spoofed"}}
	r = do(t, nil, "GET", issuer+"/orders/1", auth)
	if r.status != 200 || !strings.Contains(r.body, app.ID) || strings.Contains(r.body, "spoofed") {
		t.Fatalf("with the token: %d %s", r.status, r.body)
	}
	if r := do(t, nil, "POST", issuer+"/orders/1", auth); r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("POST without orders:write: %d %v", r.status, r.header)
	}

	// The authorization code flow, with PKCE, through the login and consent pages.
	conf := oauth2.Config{ClientID: app.ID, ClientSecret: sec.RevealString(), RedirectURL: cb, Scopes: []string{"orders:read", "orders:write"},
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/oauth/authorize", TokenURL: issuer + "/oauth/token"}}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := get(t, browser, conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier)))
	page = post(t, browser, issuer+"/oauth/authorize", url.Values{"flow": {flowOf(t, page)}, "username": {"alice"}, "password": {"correct horse battery"}})
	resp := postResp(t, browser, issuer+"/oauth/authorize", url.Values{"flow": {flowOf(t, page)}, "decision": {"allow"}})
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 303 || err != nil || loc.Query().Get("state") != "st-1" || loc.Query().Get("iss") != issuer || loc.Query().Get("code") == "" {
		t.Fatalf("after consent: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	utok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || utok.RefreshToken == "" {
		t.Fatalf("exchange: %+v %v", utok, err)
	}
	r = do(t, nil, "POST", issuer+"/orders/1", http.Header{"Authorization": {"Bearer " + utok.AccessToken}})
	if r.status != 200 || !strings.Contains(r.body, alice.ID) {
		t.Errorf("the user's token: %d %s", r.status, r.body)
	}
	// A refresh rotates the refresh token.
	rtok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: utok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
	if err != nil || rtok.RefreshToken == utok.RefreshToken || rtok.AccessToken == utok.AccessToken {
		t.Fatalf("refresh: %+v %v", rtok, err)
	}
	if _, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("the code used twice: %v", err)
	}
	// The replayed code revoked what it gave, refreshed tokens too: refused
	// within the caches' lifetimes.
	waitStatus(t, issuer+"/orders/1", "Bearer "+utok.AccessToken, 401)
	waitStatus(t, issuer+"/orders/1", "Bearer "+rtok.AccessToken, 401)

	// Revocation (RFC 7009) of the client_credentials token.
	form := url.Values{"token": {tok.AccessToken}}
	req, _ := http.NewRequest("POST", issuer+"/oauth/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(app.ID), url.QueryEscape(sec.RevealString()))
	rr, err := http.DefaultClient.Do(req)
	if err != nil || rr.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", rr, err)
	}
	rr.Body.Close()
	waitStatus(t, issuer+"/orders/1", "Bearer "+tok.AccessToken, 401)
}

// waitStatus polls url with the Authorization value until it answers
// status, failing after 3 s (the policy's and the store cache's lifetimes
// are 100 ms and 300 ms here).
func waitStatus(t *testing.T, url, authz string, status int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", authz)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still not %d after 3 s (last: %v %v)", url, status, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var flowRE = regexp.MustCompile(`name="flow" value="([^"]+)"`)

func flowOf(t *testing.T, page string) string {
	t.Helper()
	m := flowRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in the page: %s", page)
	}
	return html.UnescapeString(m[1])
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) string {
	t.Helper()
	resp := postResp(t, c, u, form)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

func postResp(t *testing.T, c *http.Client, u string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
