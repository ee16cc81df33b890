package anm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes (a logger's).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// groupAS is an authorization server on group-2's store as the ANM opened
// it, with the group's applications as its clients: what an instance of
// the group runs.
type groupAS struct {
	srv   *oauth.Server
	store kps.Store
	h     http.Handler
}

func newGroupAS(t *testing.T, e *apiEnv) *groupAS {
	t.Helper()
	ctx := context.Background()
	g, err := e.a.groupKPSOf("group-2")
	if err != nil {
		t.Fatal(err)
	}
	gs, release, err := e.a.kpsStores.get(ctx, "group-2", g.kps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	hk, err := apps.GroupHashKey(ctx, e.h, "group-2", gs.store)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := oauth.New(ctx, oauth.Options{Config: oauth.Config{Issuer: "https://gw.example.com", Scopes: []string{"read", "write"}},
		Store: gs.store, HashKey: apps.OAuthHashKey(hk), Clients: apps.NewRegistry(kps.NewCache(gs.store, kps.CacheOptions{}), gs.store)})
	if err != nil {
		t.Fatal(err)
	}
	return &groupAS{srv: srv, store: gs.store, h: srv.HTTPHandler()}
}

// token posts form to the token endpoint as client id with secret sec.
func (g *groupAS) token(t *testing.T, id, sec string, form url.Values) (int, string) {
	t.Helper()
	req := httptest.NewRequest("POST", "https://gw.example.com/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	w := httptest.NewRecorder()
	g.h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func field(t *testing.T, body, name string) string {
	t.Helper()
	i := strings.Index(body, `"`+name+`":"`)
	if i < 0 {
		t.Fatalf("no %q in %s", name, body)
	}
	rest := body[i+len(name)+4:]
	return rest[:strings.IndexByte(rest, '"')]
}

// TestOAuthClientsAPI: an application's oauth settings, its client
// secrets, its tokens and their revocation, through the API, with an
// authorization server on the same store.
func TestOAuthClientsAPI(t *testing.T) {
	e := appsEnv(t)
	var logBuf syncBuffer
	e.a.log = slog.New(slog.NewTextHandler(&logBuf, nil))

	// OAuth settings on create and update; their checks are 400s.
	a := e.do("POST", "/api/applications/group-2", `{"name":"Web","oauth":{"grantTypes":["authorization_code","refresh_token"],"redirectUris":["https://web.example.com/cb"],"scopes":["read"]}}`)
	a.MustCode(t, 201)
	var web apps.App
	a.Decode(t, &web)
	if web.OAuth == nil || web.OAuth.Public || len(web.OAuth.RedirectURIs) != 1 || len(web.OAuth.GrantTypes) != 2 {
		t.Fatalf("created with oauth: %s", a.Body)
	}
	for _, c := range []struct{ body, want string }{
		{`{"name":"B","oauth":{"grantTypes":["password"]}}`, `grant type "password"`},
		{`{"name":"B","oauth":{"grantTypes":["authorization_code"],"redirectUris":["http://web.example.com/cb"]}}`, "https, or http to a loopback address"},
		{`{"name":"B","oauth":{"grantTypes":["authorization_code"]}}`, "needs at least one redirect URI"},
		{`{"name":"B","oauth":{"grantTypes":["client_credentials"],"colour":"red"}}`, `"oauth": `},
		{`{"name":"B","oauth":"client"}`, `"oauth": `},
		{`{"name":"B","oauth":{"grantTypes":["client_credentials"],"authMethod":"private_key_jwt"}}`, "needs the client's public keys"},
	} {
		e.do("POST", "/api/applications/group-2", c.body).WantError(t, 400, c.want)
	}
	a = e.do("POST", "/api/applications/group-2", `{"name":"Svc","oauth":{"grantTypes":["client_credentials"],"scopes":["read","write"]}}`)
	a.MustCode(t, 201)
	var svc apps.App
	a.Decode(t, &svc)
	e.do("POST", "/api/applications/group-2", `{"name":"Plain"}`).MustCode(t, 201)
	e.do("PUT", "/api/applications/group-2/Plain", `{"oauth":{"public":true,"grantTypes":["client_credentials"]}}`).WantError(t, 400, "a public client cannot use client_credentials")
	a = e.do("PUT", "/api/applications/group-2/Plain", `{"oauth":{"public":true,"grantTypes":["authorization_code"],"redirectUris":["http://127.0.0.1/cb"]}}`)
	a.MustCode(t, 200)
	var plain apps.App
	a.Decode(t, &plain)
	if plain.OAuth == nil || !plain.OAuth.Public {
		t.Fatalf("oauth set by PUT: %s", a.Body)
	}
	e.do("POST", "/api/applications/group-2/Plain/secrets", "").WantError(t, 400, "public client")
	plain = apps.App{}
	e.do("PUT", "/api/applications/group-2/Plain", `{"description":"kept"}`).Decode(t, &plain)
	if plain.OAuth == nil {
		t.Error("a PUT without oauth removed the settings")
	}
	plain = apps.App{}
	a = e.do("PUT", "/api/applications/group-2/Plain", `{"oauth":null}`)
	a.Decode(t, &plain)
	if plain.OAuth != nil || strings.Contains(a.Body, `"oauth"`) {
		t.Errorf("oauth null: %s", a.Body)
	}

	// Client secrets: the value once, with no-store; lists without it.
	e.do("POST", "/api/applications/group-2/Plain/secrets", "").WantError(t, 400, "not an OAuth client")
	e.do("POST", "/api/applications/group-2/Nobody/secrets", "").WantError(t, 404, "Nobody")
	e.do("POST", "/api/applications/group-2/Svc/secrets", `{"expiresIn":"soon"}`).WantError(t, 400, "expiresIn")
	e.do("POST", "/api/applications/group-2/Svc/secrets", `{"enabled":true}`).WantError(t, 400, "enabled")
	a = e.do("POST", "/api/applications/group-2/Svc/secrets", "")
	a.MustCode(t, 201)
	var ns newSecret
	a.Decode(t, &ns)
	if !strings.HasPrefix(ns.Value, oauth.PrefixClientSecret) || ns.Secret.ID == "" || ns.Secret.AppID != svc.ID || !strings.Contains(ns.Note, "this once") {
		t.Fatalf("new secret: %s", a.Body)
	}
	if a.Header.Get("Cache-Control") != "no-store" || a.Header.Get("Location") != "/api/applications/group-2/"+svc.ID+"/secrets/"+ns.Secret.ID {
		t.Errorf("new secret's headers: %v", a.Header)
	}
	svcSecret := ns.Value
	a = e.do("POST", "/api/applications/group-2/"+svc.ID+"/secrets", `{"expiresIn":"720h"}`)
	a.MustCode(t, 201)
	var ns2 newSecret
	a.Decode(t, &ns2)
	if ns2.Secret.ExpiresAt.IsZero() {
		t.Errorf("expiresIn: %s", a.Body)
	}
	a = e.do("GET", "/api/applications/group-2/Svc/secrets", "")
	a.MustCode(t, 200)
	var sl secretsList
	a.Decode(t, &sl)
	if len(sl.Secrets) != 2 || strings.Contains(a.Body, svcSecret[len(oauth.PrefixClientSecret):]) || strings.Contains(a.Body, "hash") {
		t.Errorf("secrets: %s", a.Body)
	}
	e.do("DELETE", "/api/applications/group-2/Svc/secrets/nope", "").WantError(t, 404, `has no client secret "nope"`)
	e.do("DELETE", "/api/applications/group-2/Web/secrets/"+ns2.Secret.ID, "").WantError(t, 404, "has no client secret")
	e.do("DELETE", "/api/applications/group-2/Svc/secrets/"+ns2.Secret.ID, "").MustCode(t, 200)
	a = e.do("POST", "/api/applications/group-2/Web/secrets", "")
	a.MustCode(t, 201)
	a.Decode(t, &ns)
	webSecret := ns.Value

	// Tokens granted by the group's authorization server.
	as := newGroupAS(t, e)
	ctx := context.Background()
	code, body := as.token(t, svc.ID, svcSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	if code != 200 {
		t.Fatalf("client_credentials with the secret the API made: %d %s", code, body)
	}
	ccToken := field(t, body, "access_token")
	if code, body := as.token(t, svc.ID, ns2.Value, url.Values{"grant_type": {"client_credentials"}}); code != 401 {
		t.Errorf("a deleted secret: got %d %s, want 401", code, body)
	}
	grant := func() (access, refresh string) {
		t.Helper()
		verifier := strings.Repeat("v", 43)
		c, err := as.srv.IssueCode(ctx, oauth.CodeGrant{ClientID: web.ID, UserID: "user-1", RedirectURI: "https://web.example.com/cb",
			Scopes: []string{"read"}, CodeChallenge: oauth.S256Challenge(verifier)})
		if err != nil {
			t.Fatal(err)
		}
		code, body := as.token(t, web.ID, webSecret, url.Values{"grant_type": {"authorization_code"}, "code": {c}, "code_verifier": {verifier}, "redirect_uri": {"https://web.example.com/cb"}})
		if code != 200 {
			t.Fatalf("redeeming a code: %d %s", code, body)
		}
		return field(t, body, "access_token"), field(t, body, "refresh_token")
	}
	a1, r1 := grant()
	a2, r2 := grant()

	a = e.do("GET", "/api/applications/group-2/Web/tokens", "")
	a.MustCode(t, 200)
	var tp tokensPage
	a.Decode(t, &tp)
	if len(tp.Tokens) != 4 || tp.Next != "" {
		t.Fatalf("web's tokens: %s", a.Body)
	}
	for _, tok := range []string{a1, r1, a2, r2} {
		if strings.Contains(a.Body, tok[len(tok)-20:]) {
			t.Errorf("the list of tokens holds a token: %s", a.Body)
		}
	}
	if strings.Contains(a.Body, "hash") {
		t.Errorf("the list of tokens holds a hash: %s", a.Body)
	}
	for _, ti := range tp.Tokens {
		if ti.UserID != "user-1" || ti.FamilyID == "" || ti.ClientID != web.ID {
			t.Errorf("a token of web: %+v", ti)
		}
	}
	a = e.do("GET", "/api/applications/group-2/Web/tokens?limit=3", "")
	a.Decode(t, &tp)
	if len(tp.Tokens) != 3 || tp.Next == "" {
		t.Errorf("a page of 3: %s", a.Body)
	}
	e.do("GET", "/api/applications/group-2/Web/tokens?limit=x", "").WantError(t, 400, "limit")
	a = e.do("GET", "/api/applications/group-2/Svc/tokens", "")
	tp = tokensPage{}
	a.Decode(t, &tp)
	if len(tp.Tokens) != 1 || tp.Tokens[0].Kind != "access" || tp.Tokens[0].FamilyID != "" {
		t.Errorf("svc's tokens: %s", a.Body)
	}
	e.do("GET", "/api/applications/group-2/Nobody/tokens", "").WantError(t, 404, "Nobody")

	// Revoke one grant, then all of an application's tokens.
	c1, err := as.srv.Verify(ctx, a1)
	if err != nil {
		t.Fatal(err)
	}
	e.do("DELETE", "/api/applications/group-2/Web/families/nope", "").WantError(t, 404, `has no grant (token family) "nope"`)
	e.do("DELETE", "/api/applications/group-2/Svc/families/"+c1.FamilyID, "").WantError(t, 404, "has no grant")
	e.do("DELETE", "/api/applications/group-2/Web/families/"+c1.FamilyID, "").MustCode(t, 200)
	if _, err := as.srv.Verify(ctx, a1); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("a token of the revoked grant: got %v, want ErrInvalidToken", err)
	}
	if _, err := as.srv.Verify(ctx, a2); err != nil {
		t.Errorf("a token of the other grant: %v", err)
	}
	a = e.do("DELETE", "/api/applications/group-2/Svc/tokens", "")
	a.MustCode(t, 200)
	var rv oauth.Revoked
	a.Decode(t, &rv)
	if rv != (oauth.Revoked{Tokens: 1}) {
		t.Errorf("revoking svc's tokens: %s", a.Body)
	}
	if _, err := as.srv.Verify(ctx, ccToken); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("svc's token after the revocation: got %v, want ErrInvalidToken", err)
	}
	if code, body := as.token(t, web.ID, webSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r2}}); code != 200 {
		t.Fatalf("a refresh before web's revocation: %d %s", code, body)
	}
	// Deleting the application revokes what it still has.
	a = e.do("DELETE", "/api/applications/group-2/Web", "")
	a.MustCode(t, 200)
	if !strings.Contains(a.Body, `"revokedTokens":{"families":1,`) {
		t.Errorf("deleting web: %s", a.Body)
	}
	if _, err := as.srv.Verify(ctx, a2); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("a token of the deleted application: got %v, want ErrInvalidToken", err)
	}
	if l, _, _ := oauth.ListClientTokens(ctx, as.store, web.ID, kps.Page{}); len(l) != 0 {
		t.Errorf("the deleted application's tokens: %+v", l)
	}

	// The audit log and the node manager's log: never a secret.
	es := auditEntries(t, e)
	wantEntry(t, es, "create application", "ok", web.ID, "OAuth client (confidential; grants authorization_code refresh_token; scopes read; redirect URIs https://web.example.com/cb)")
	wantEntry(t, es, "create application", "error", `application "B"`, "grant type")
	wantEntry(t, es, "change application", "ok", "OAuth client (public")
	wantEntry(t, es, "create client secret", "ok", svc.ID, "client secret "+ns2.Secret.ID, "expires ")
	wantEntry(t, es, "create client secret", "error", "public client")
	wantEntry(t, es, "delete client secret", "ok", ns2.Secret.ID)
	wantEntry(t, es, "delete client secret", "error", "nope", "has no client secret")
	wantEntry(t, es, "revoke oauth grant", "ok", c1.FamilyID, web.ID)
	wantEntry(t, es, "revoke oauth grant", "error", "nope")
	wantEntry(t, es, "revoke oauth tokens", "ok", svc.ID, "0 grant(s), 0 code(s) not redeemed, 1 token(s) without a grant")
	wantEntry(t, es, "delete application", "ok", web.ID, "OAuth tokens revoked: 1 grant(s)")
	logData, err := os.ReadFile(e.h.Path("conf", "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{svcSecret, ns2.Value, webSecret} {
		rest := s[len(oauth.PrefixClientSecret):]
		if strings.Contains(string(logData), rest) || strings.Contains(logBuf.String(), rest) {
			t.Errorf("a client secret is in the audit log or the node manager's log")
		}
	}
	if !strings.Contains(logBuf.String(), "client secret created") {
		t.Errorf("the node manager's log has no entry of the secrets: %s", logBuf.String())
	}
}

// TestOAuthUsersAPI: the group's users, their passwords never shown,
// logged or audited.
func TestOAuthUsersAPI(t *testing.T) {
	e := appsEnv(t)
	var logBuf syncBuffer
	e.a.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	const pw1, pw2, pw3 = "first-secret-pw-1", "second-secret-pw-2", "third-secret-pw-3"

	a := e.do("GET", "/api/applications/group-2/oauth/users", "")
	a.MustCode(t, 200)
	if !strings.Contains(a.Body, `"users":[]`) {
		t.Errorf("no users: %s", a.Body)
	}
	e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"alice","password":"short"}`).WantError(t, 400, "password")
	e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"al:ice","password":"`+pw1+`"}`).WantError(t, 400, "user name")
	e.do("POST", "/api/applications/group-2/oauth/users", `{"password":"`+pw1+`"}`).WantError(t, 400, `"username" is required`)
	e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"alice"}`).WantError(t, 400, `"password" is required`)
	e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"alice","password":"`+pw1+`","enabled":false}`).WantError(t, 400, "enabled")
	a = e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"alice","name":"Alice A.","password":"`+pw1+`"}`)
	a.MustCode(t, 201)
	var alice authorize.User
	a.Decode(t, &alice)
	if alice.ID == "" || alice.Username != "alice" || alice.Name != "Alice A." || !alice.Enabled || strings.Contains(a.Body, pw1) || strings.Contains(a.Body, "pbkdf2") {
		t.Fatalf("created: %s", a.Body)
	}
	if a.Header.Get("Location") != "/api/applications/group-2/oauth/users/alice" {
		t.Errorf("Location %q", a.Header.Get("Location"))
	}
	e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"alice","password":"`+pw1+`"}`).WantError(t, 409, `OAuth user "alice" already`)
	e.do("POST", "/api/applications/group-2/oauth/users", `{"username":"bob","password":"`+pw1+`"}`).MustCode(t, 201)
	a = e.do("GET", "/api/applications/group-2/oauth/users?limit=1", "")
	var up usersPage
	a.Decode(t, &up)
	if len(up.Users) != 1 || up.Next == "" || strings.Contains(a.Body, "pbkdf2") || strings.Contains(a.Body, "assword") {
		t.Errorf("a page of users: %s", a.Body)
	}
	a = e.do("GET", "/api/applications/group-2/oauth/users/alice", "")
	a.MustCode(t, 200)
	if strings.Contains(a.Body, "pbkdf2") || strings.Contains(a.Body, "assword") {
		t.Errorf("a user: %s", a.Body)
	}
	e.do("GET", "/api/applications/group-2/oauth/users/nobody", "").WantError(t, 404, `no OAuth user "nobody"`)

	// The authorization page's check, on the same store.
	as := newGroupAS(t, e)
	users, err := authorize.NewUsers(context.Background(), as.store)
	if err != nil {
		t.Fatal(err)
	}
	login := func(pw string) error {
		_, err := users.Authenticate(context.Background(), "alice", secret.FromString(pw))
		return err
	}
	if err := login(pw1); err != nil {
		t.Fatalf("alice's password: %v", err)
	}
	e.do("PUT", "/api/applications/group-2/oauth/users/alice", `{}`).WantError(t, 400, "nothing to change")
	e.do("PUT", "/api/applications/group-2/oauth/users/alice", `{"name":"A"}`).WantError(t, 400, "cannot change")
	e.do("PUT", "/api/applications/group-2/oauth/users/alice", `{"password":"short"}`).WantError(t, 400, "password")
	e.do("PUT", "/api/applications/group-2/oauth/users/nobody", `{"enabled":false}`).WantError(t, 404, "nobody")
	var u authorize.User
	e.do("PUT", "/api/applications/group-2/oauth/users/alice", `{"enabled":false}`).Decode(t, &u)
	if u.Enabled {
		t.Error("disabled: still enabled")
	}
	if err := login(pw1); !errors.Is(err, authorize.ErrBadLogin) {
		t.Errorf("a disabled user's login: got %v, want ErrBadLogin", err)
	}
	e.do("PUT", "/api/applications/group-2/oauth/users/alice", `{"password":"`+pw2+`","enabled":true}`).Decode(t, &u)
	if !u.Enabled || login(pw2) != nil || !errors.Is(login(pw1), authorize.ErrBadLogin) {
		t.Error("a new password and enabled: the new password does not work, or the old one still does")
	}
	e.do("PUT", "/api/applications/group-2/oauth/users/alice", `{"password":"`+pw3+`"}`).MustCode(t, 200)
	if login(pw3) != nil {
		t.Error("the password set does not work")
	}
	e.do("DELETE", "/api/applications/group-2/oauth/users/alice", "").MustCode(t, 200)
	e.do("GET", "/api/applications/group-2/oauth/users/alice", "").WantError(t, 404, "alice")
	e.do("DELETE", "/api/applications/group-2/oauth/users/alice", "").WantError(t, 404, "alice")
	if !errors.Is(login(pw3), authorize.ErrBadLogin) {
		t.Error("a deleted user logs in")
	}

	es := auditEntries(t, e)
	wantEntry(t, es, "create oauth user", "ok", alice.ID, `OAuth user `+alice.ID+` ("alice"), enabled true`)
	wantEntry(t, es, "create oauth user", "error", `OAuth user "alice"`, "already")
	wantEntry(t, es, "disable oauth user", "ok", alice.ID, "enabled false")
	wantEntry(t, es, "change oauth user", "ok", alice.ID, "enabled true, password set")
	wantEntry(t, es, "set oauth user password", "ok", alice.ID, "password set")
	wantEntry(t, es, "set oauth user password", "error", "alice")
	wantEntry(t, es, "delete oauth user", "ok", alice.ID)
	logData, err := os.ReadFile(e.h.Path("conf", "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{pw1, pw2, pw3} {
		if strings.Contains(string(logData), pw) || strings.Contains(logBuf.String(), pw) {
			t.Errorf("a password is in the audit log or the node manager's log")
		}
	}
}

// TestOAuthManagementRBAC: an operator (applications.read) reads and is
// refused every change (403 naming applications.write); a KPS
// Administrator makes them.
func TestOAuthManagementRBAC(t *testing.T) {
	e := appsEnv(t)
	e.do("POST", "/api/applications/group-2", `{"name":"Svc","oauth":{"grantTypes":["client_credentials"]}}`).MustCode(t, 201)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).MustCode(t, 201)
	e.do("POST", "/api/rbac/users", `{"name":"kpsadmin","password":"kpsadmin-pw-1","roles":["KPS Administrator"]}`).MustCode(t, 201)
	as := func(user, pw, method, path, body string) apitest.Answer {
		req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
		req.SetBasicAuth(user, pw)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return apitest.Do(t, http.DefaultClient, req)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/applications/group-2/Svc/secrets", ""},
		{"DELETE", "/api/applications/group-2/Svc/secrets/x", ""},
		{"DELETE", "/api/applications/group-2/Svc/tokens", ""},
		{"DELETE", "/api/applications/group-2/Svc/families/x", ""},
		{"POST", "/api/applications/group-2/oauth/users", `{"username":"u","password":"a-good-password-1"}`},
		{"PUT", "/api/applications/group-2/oauth/users/u", `{"enabled":false}`},
		{"DELETE", "/api/applications/group-2/oauth/users/u", ""},
		{"POST", "/api/applications/group-2/oauth/signing-keys/rotate", ""},
		{"PUT", "/api/applications/group-2/Svc", `{"oauth":null}`},
	} {
		as("op", "operator-pw-1", c.method, c.path, c.body).WantError(t, 403, `user "op"`, "applications.write")
	}
	for _, p := range []string{"/api/applications/group-2/Svc/secrets", "/api/applications/group-2/Svc/tokens", "/api/applications/group-2/oauth/users"} {
		as("op", "operator-pw-1", "GET", p, "").MustCode(t, 200)
	}
	as("kpsadmin", "kpsadmin-pw-1", "POST", "/api/applications/group-2/Svc/secrets", "").MustCode(t, 201)
	as("kpsadmin", "kpsadmin-pw-1", "POST", "/api/applications/group-2/oauth/users", `{"username":"u","password":"a-good-password-1"}`).MustCode(t, 201)
	as("kpsadmin", "kpsadmin-pw-1", "DELETE", "/api/applications/group-2/Svc/tokens", "").MustCode(t, 200)
}

// TestRotateSigningKey: a new key in the group's key directory, kept with
// the old ones; refused (409) where the ANM cannot reach every instance's
// keys, or the group has no JWT keys.
func TestRotateSigningKey(t *testing.T) {
	e := appsEnv(t)
	const path = "/api/applications/group-2/oauth/signing-keys/rotate"
	e.do("POST", path, "").WantError(t, 409, "issues no JWT access tokens", "group.yaml of instance-1")
	conf := appsGroupYAML + "oauth:\n  enabled: true\n  issuer: https://gw.example.com\n  accessTokenFormat: jwt\n  signingAlgorithm: EdDSA\n"
	if err := os.WriteFile(e.h.GroupConfFile("group-2"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.do("POST", path, "").WantError(t, 409, "no signing keys yet", "groups/group-2/conf/oauth/keys")
	dir := filepath.Join(e.h.GroupConfDir("group-2"), "oauth", "keys")
	// The instance made the first key when it started.
	ks, err := oauth.LoadKeySet(e.h, dir, "EdDSA", nil)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := ks.Current()
	a := e.do("POST", path, "")
	a.MustCode(t, 200)
	var out rotatedSigningKey
	a.Decode(t, &out)
	if out.Kid == "" || out.Kid == first || out.Alg != "EdDSA" || len(out.Kids) != 2 || out.Kids[0] != out.Kid || out.Kids[1] != first {
		t.Fatalf("rotated: %s (first key %s)", a.Body, first)
	}
	// The instances' key set publishes the new key at once and signs with
	// it once it has been published for oauth.PublishDelay; the old one
	// still verifies.
	if err := ks.Reload(); err != nil {
		t.Fatal(err)
	}
	if kid, _ := ks.Current(); kid != first {
		t.Errorf("just after the rotation the instance signs with %s, want %s until the new key is published", kid, first)
	}
	later, err := oauth.LoadKeySet(e.h, dir, "EdDSA", func() time.Time { return time.Now().Add(oauth.PublishDelay) })
	if err != nil {
		t.Fatal(err)
	}
	if kid, alg := later.Current(); kid != out.Kid || alg != "EdDSA" {
		t.Errorf("after PublishDelay the instance signs with %s (%s), want %s", kid, alg, out.Kid)
	}
	if n := len(ks.JWKS().Keys); n != 2 {
		t.Errorf("the JWKS has %d keys, want 2 (the old one kept for verification)", n)
	}
	es := auditEntries(t, e)
	wantEntry(t, es, "rotate oauth signing key", "ok", "group-2", out.Kid, "2 key(s)")
	wantEntry(t, es, "rotate oauth signing key", "error", "no signing keys yet")
	e.do("POST", "/api/applications/group-1/oauth/signing-keys/rotate", "").WantError(t, 400, "node managers' group")
	e.do("POST", "/api/applications/group-9/oauth/signing-keys/rotate", "").WantError(t, 404, "group-9")

	// An instance on another host: its keys are there.
	_, err = e.store.Update(context.Background(), topology.Actor{User: "test"}, "test", 0, func(tp *topology.Topology) (string, error) {
		tp.Hosts = append(tp.Hosts, topology.Host{ID: tp.NextID(topology.KindHost), Name: "far"})
		g, err := tp.Group("group-2")
		if err != nil {
			return "", err
		}
		g.Services = append(g.Services, topology.Service{ID: tp.NextID(topology.KindInstance), Name: "far", Type: topology.TypeGateway, HostID: "host-2"})
		return "test", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.do("POST", path, "").WantError(t, 409, "instances on other hosts (instance-2 on host-2)", "one directory per host")
	e.do("POST", "/api/topology/groups", `{"name":"Empty"}`).MustCode(t, 201) // group-3
	e.do("POST", "/api/applications/group-3/oauth/signing-keys/rotate", "").WantError(t, 409, "no instance on the Admin Node Manager's host")
}

// FuzzOAuthBodies feeds the OAuth bodies of the management API (an
// application's "oauth" field, a user's body): none panics; each either
// decodes or is refused with a 400/413 *apihttp.Error.
func FuzzOAuthBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"W","oauth":{"grantTypes":["authorization_code"],"redirectUris":["https://a.example/cb"]}}`,
		`{"oauth":null}`, `{"oauth":"x"}`, `{"oauth":{"public":"yes"}}`, `{"oauth":{"jwks":{"keys":[]}}}`,
		`{"oauth":{"grantTypes":["client_credentials"],"colour":1}}`, `{"oauth":{}}{}`, `{"oauth":[1]}`,
		`{"username":"alice","password":"pw","enabled":true}`, `{"username":5}`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		refused := func(what string, err error) {
			var ae *apihttp.Error
			if !errors.As(err, &ae) || (ae.Code != http.StatusBadRequest && ae.Code != http.StatusRequestEntityTooLarge) || ae.Msg == "" {
				t.Fatalf("%s: got %#v, want a 400 or 413 *apihttp.Error", what, err)
			}
		}
		var b appBody
		if err := apihttp.DecodeJSON(bytes.NewReader(body), &b, appFields); err != nil {
			refused("application", err)
		} else {
			c, set, err := oauthOf(b)
			switch {
			case err != nil:
				refused("oauth", err)
			case set != (b.OAuth != nil):
				t.Fatalf("oauth %q: set %t", b.OAuth, set)
			case c != nil && string(b.OAuth) == "null":
				t.Fatal("oauth null gave settings")
			}
		}
		var u oauthUserBody
		if err := apihttp.DecodeJSON(bytes.NewReader(body), &u, oauthUserFields); err != nil {
			refused("user", err)
		}
	})
}
