package authorize

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

const (
	cb        = "https://app.example.com/cb"
	challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" // RFC 7636 appendix B
)

type fakeClients struct {
	mu   sync.Mutex
	byID map[string]Client
	down bool
}

func (f *fakeClients) AuthorizeClient(_ context.Context, id string) (Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return Client{}, fmt.Errorf("registry: %w", kps.ErrUnavailable)
	}
	c, ok := f.byID[id]
	if !ok {
		return Client{}, ErrUnknownClient
	}
	return c, nil
}

type fakeCodes struct {
	mu   sync.Mutex
	got  []CodeRequest
	fail error
}

func (f *fakeCodes) IssueCode(_ context.Context, r CodeRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.got = append(f.got, r)
	return fmt.Sprintf("code-%d", len(f.got)), nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	t       *testing.T
	srv     *httptest.Server
	clients *fakeClients
	codes   *fakeCodes
	users   *Users
	store   kps.Store
	clock   *clock
	jar     http.CookieJar
	c       *http.Client
}

func newEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	store, err := sqlite.Open(t.Context(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	users, err := NewUsers(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.Create(t.Context(), "alice", "Alice", secret.FromString("correct horse battery")); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, users: users, codes: &fakeCodes{}, clock: &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)},
		clients: &fakeClients{byID: map[string]Client{
			"shop":  {ID: "shop", Name: "The <Shop>", Enabled: true, RedirectURIs: []string{cb}, Scopes: []string{"orders:read", "orders:write"}, AllowsCode: true},
			"two":   {ID: "two", Enabled: true, RedirectURIs: []string{cb, "https://app.example.com/other?x=1"}, AllowsCode: true},
			"m2m":   {ID: "m2m", Enabled: true, RedirectURIs: []string{cb}},
			"off":   {ID: "off", Enabled: false, RedirectURIs: []string{cb}, AllowsCode: true},
			"query": {ID: "query", Enabled: true, RedirectURIs: []string{"https://app.example.com/cb?tenant=7"}, AllowsCode: true},
		}}}
	c := Config{Issuer: "https://gw.example.com", Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: users, Codes: e.codes, Now: e.clock.now}
	for _, m := range mods {
		m(&c)
	}
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/oauth/authorize", a)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.newBrowser()
	return e
}

// newBrowser starts with an empty cookie jar.
func (e *env) newBrowser() {
	e.jar, _ = cookiejar.New(nil)
	e.c = &http.Client{Jar: e.jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (e *env) get(query string) answer {
	e.t.Helper()
	resp, err := e.c.Get(e.srv.URL + "/oauth/authorize?" + query)
	if err != nil {
		e.t.Fatal(err)
	}
	return read(e.t, resp)
}

func (e *env) post(form url.Values) answer {
	e.t.Helper()
	resp, err := e.c.PostForm(e.srv.URL+"/oauth/authorize", form)
	if err != nil {
		e.t.Fatal(err)
	}
	return read(e.t, resp)
}

func read(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

var flowField = regexp.MustCompile(`name="flow" value="([^"]+)"`)

func (a answer) flow(t *testing.T) string {
	t.Helper()
	m := flowField.FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("no flow field in the page (%d): %s", a.status, a.body)
	}
	return html.UnescapeString(m[1])
}

func params(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func good(extra ...string) string {
	return params(append([]string{"response_type", "code", "client_id", "shop", "redirect_uri", cb, "state", "s-1",
		"code_challenge", challenge, "code_challenge_method", "S256", "scope", "orders:write orders:read orders:read", "nonce", "n-1"}, extra...)...)
}

// location parses a redirect's Location and checks it goes to want.
func location(t *testing.T, a answer, want string) url.Values {
	t.Helper()
	if a.status != http.StatusSeeOther {
		t.Fatalf("status %d, want 303: %s", a.status, a.body)
	}
	u, err := url.Parse(a.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	base := *u
	base.RawQuery = ""
	if base.String() != want {
		t.Fatalf("redirected to %s, want %s", u, want)
	}
	return u.Query()
}

func checkHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"} {
		if h.Get(k) != v {
			t.Errorf("%s: %s %q, want %q", what, k, h.Get(k), v)
		}
	}
}

// TestAuthorizeFlow: the user signs in, approves, and the client gets a
// code for exactly what was asked, with its state and the issuer.
func TestAuthorizeFlow(t *testing.T) {
	e := newEnv(t)
	a := e.get(good())
	if a.status != 200 || !strings.Contains(a.body, "The &lt;Shop&gt;") || strings.Contains(a.body, "<Shop>") {
		t.Fatalf("login page: %d %s", a.status, a.body)
	}
	checkHeaders(t, "login page", a.header)
	if c := a.header.Get("Set-Cookie"); !strings.Contains(c, "gh_oauth_flow=") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Lax") || !strings.Contains(c, "Path=/oauth/authorize") {
		t.Errorf("cookie: %s", c)
	}
	flow := a.flow(t)
	bad := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {"wrong password!!"}})
	if bad.status != 401 || !strings.Contains(bad.body, "Unknown user or wrong password") || !strings.Contains(bad.body, `value="alice"`) {
		t.Errorf("wrong password: %d %s", bad.status, bad.body)
	}
	if unknown := e.post(url.Values{"flow": {flow}, "username": {"mallory"}, "password": {"wrong password!!"}}); unknown.status != 401 || !strings.Contains(unknown.body, "Unknown user or wrong password") {
		t.Errorf("unknown user: %d (must read as a wrong password)", unknown.status)
	}
	consent := e.post(url.Values{"flow": {bad.flow(t)}, "username": {"alice"}, "password": {"correct horse battery"}})
	if consent.status != 200 || !strings.Contains(consent.body, "Signed in as <strong>alice</strong>") || !strings.Contains(consent.body, "<code>orders:read</code>") {
		t.Fatalf("consent page: %d %s", consent.status, consent.body)
	}
	checkHeaders(t, "consent page", consent.header)
	done := e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"allow"}})
	q := location(t, done, cb)
	if q.Get("code") != "code-1" || q.Get("state") != "s-1" || q.Get("iss") != "https://gw.example.com" || q.Get("error") != "" {
		t.Errorf("redirect: %v", q)
	}
	checkHeaders(t, "redirect", done.header)
	if len(e.codes.got) != 1 {
		t.Fatalf("codes issued: %+v", e.codes.got)
	}
	u, _ := e.users.Get(t.Context(), "alice")
	want := CodeRequest{ClientID: "shop", RedirectURI: cb, UserID: u.ID, Username: "alice", Scopes: []string{"orders:read", "orders:write"}, CodeChallenge: challenge, Nonce: "n-1"}
	if got := e.codes.got[0]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("code request: %+v, want %+v", got, want)
	}

	// Deny: access_denied, with the state; no code.
	consent = e.post(url.Values{"flow": {e.get(good()).flow(t)}, "username": {"alice"}, "password": {"correct horse battery"}})
	q = location(t, e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"deny"}}), cb)
	if q.Get("error") != "access_denied" || q.Get("state") != "s-1" || q.Get("code") != "" {
		t.Errorf("denied: %v", q)
	}
	if r := e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"maybe"}}); r.status != 400 {
		t.Errorf("an unknown decision: %d", r.status)
	}
	// A registered redirect URI with a query keeps it; the only one is used when none is given.
	a = e.get(params("response_type", "code", "client_id", "query", "code_challenge", challenge, "code_challenge_method", "S256"))
	consent = e.post(url.Values{"flow": {a.flow(t)}, "username": {"alice"}, "password": {"correct horse battery"}})
	q = location(t, e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"allow"}}), "https://app.example.com/cb")
	if q.Get("tenant") != "7" || q.Get("code") == "" || q.Has("state") {
		t.Errorf("registered query: %v", q)
	}
	if len(e.codes.got) != 2 || e.codes.got[1].RedirectURI != "https://app.example.com/cb?tenant=7" || len(e.codes.got[1].Scopes) != 0 {
		t.Errorf("code request without scope: %+v", e.codes.got)
	}
}

// TestAuthorizeUntrusted: a request whose client or redirect URI cannot
// be trusted gets an error page, never a redirect.
func TestAuthorizeUntrusted(t *testing.T) {
	e := newEnv(t)
	for name, q := range map[string]string{
		"no client":                  params("response_type", "code", "redirect_uri", cb),
		"unknown client":             params("response_type", "code", "client_id", "nobody", "redirect_uri", cb),
		"disabled client":            params("response_type", "code", "client_id", "off", "redirect_uri", cb),
		"another redirect":           good("redirect_uri", "https://evil.example.com/cb")[0:0] + params("response_type", "code", "client_id", "shop", "redirect_uri", "https://evil.example.com/cb"),
		"a longer path":              params("response_type", "code", "client_id", "shop", "redirect_uri", cb+"/../evil"),
		"an extra query":             params("response_type", "code", "client_id", "shop", "redirect_uri", cb+"?x=1"),
		"another case":               params("response_type", "code", "client_id", "shop", "redirect_uri", "https://APP.example.com/cb"),
		"a trailing slash":           params("response_type", "code", "client_id", "shop", "redirect_uri", cb+"/"),
		"none of two":                params("response_type", "code", "client_id", "two"),
		"repeated client_id":         params("response_type", "code", "client_id", "shop", "client_id", "two", "redirect_uri", cb),
		"repeated redirect_uri":      params("response_type", "code", "client_id", "shop", "redirect_uri", cb, "redirect_uri", cb),
		"malformed query":            "client_id=shop&redirect_uri=%zz",
		"bad everything, bad client": params("response_type", "token", "client_id", "nobody", "redirect_uri", "https://evil.example.com/"),
	} {
		a := e.get(q)
		if a.status != 400 || a.header.Get("Location") != "" || !strings.Contains(a.body, "<h1>Authorization failed</h1>") {
			t.Errorf("%s: %d %v %s", name, a.status, a.header.Get("Location"), a.body)
		}
		checkHeaders(t, name, a.header)
	}
	e.clients.down = true
	if a := e.get(good()); a.status != 503 || a.header.Get("Location") != "" {
		t.Errorf("registry down: %d %v", a.status, a.header.Get("Location"))
	}
	e.clients.down = false
	resp, err := e.c.Do(must(http.NewRequest("PUT", e.srv.URL+"/oauth/authorize", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if a := read(t, resp); a.status != 405 || a.header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("PUT: %d %v", a.status, a.header)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestAuthorizeErrorsRedirected: once the redirect URI is trusted, a bad
// request goes back to it as RFC 6749 §4.1.2.1 says, with the state.
func TestAuthorizeErrorsRedirected(t *testing.T) {
	e := newEnv(t)
	base := []string{"client_id", "shop", "redirect_uri", cb, "state", "s-2"}
	pkce := []string{"code_challenge", challenge, "code_challenge_method", "S256"}
	cat := func(parts ...[]string) string {
		var all []string
		for _, p := range parts {
			all = append(all, p...)
		}
		return params(all...)
	}
	code := []string{"response_type", "code"}
	for _, c := range []struct {
		name, query, err string
	}{
		{"token response type", cat(base, pkce, []string{"response_type", "token"}), "unsupported_response_type"},
		{"no response type", cat(base, pkce), "unsupported_response_type"},
		{"no PKCE", cat(base, code), "invalid_request"},
		{"plain PKCE", cat(base, code, []string{"code_challenge", challenge, "code_challenge_method", "plain"}), "invalid_request"},
		{"no method", cat(base, code, []string{"code_challenge", challenge}), "invalid_request"},
		{"short challenge", cat(base, code, []string{"code_challenge", challenge[:42], "code_challenge_method", "S256"}), "invalid_request"},
		{"challenge not base64url", cat(base, code, []string{"code_challenge", strings.Repeat("+", 43), "code_challenge_method", "S256"}), "invalid_request"},
		{"unknown scope", cat(base, code, pkce, []string{"scope", "orders:read admin"}), "invalid_scope"},
		{"repeated scope", cat(base, code, pkce, []string{"scope", "orders:read", "scope", "orders:write"}), "invalid_request"},
		{"long state", cat([]string{"client_id", "shop", "redirect_uri", cb, "state", strings.Repeat("s", 1025)}, code, pkce), "invalid_request"},
		{"prompt none", cat(base, code, pkce, []string{"prompt", "none"}), "login_required"},
		{"request object", cat(base, code, pkce, []string{"request", "eyJ..."}), "request_not_supported"},
	} {
		q := location(t, e.get(c.query), cb)
		wantState := "s-2"
		if c.name == "long state" {
			wantState = strings.Repeat("s", 1025)
		}
		if q.Get("error") != c.err || q.Get("state") != wantState || q.Get("iss") != "https://gw.example.com" || q.Get("error_description") == "" || q.Has("code") {
			t.Errorf("%s: %v, want error %s", c.name, q, c.err)
		}
	}
	q := location(t, e.get(params("response_type", "code", "client_id", "m2m", "redirect_uri", cb, "code_challenge", challenge, "code_challenge_method", "S256")), cb)
	if q.Get("error") != "unauthorized_client" || q.Has("state") {
		t.Errorf("a client without the code grant: %v", q)
	}
	q = location(t, e.get(params("response_type", "code", "client_id", "shop", "redirect_uri", cb, "state", "a", "state", "b", "code_challenge", challenge, "code_challenge_method", "S256")), cb)
	if q.Get("error") != "invalid_request" || q.Has("state") {
		t.Errorf("a repeated state: %v (no state can be trusted)", q)
	}
	if len(e.codes.got) != 0 {
		t.Errorf("codes issued for bad requests: %+v", e.codes.got)
	}
}

// TestAuthorizeFormBinding: the forms count only from the browser that
// opened the page, within their lifetime, unaltered.
func TestAuthorizeFormBinding(t *testing.T) {
	e := newEnv(t)
	login := url.Values{"username": {"alice"}, "password": {"correct horse battery"}}
	with := func(flow string) url.Values {
		v := url.Values{"flow": {flow}}
		for k, x := range login {
			v[k] = x
		}
		return v
	}
	flow := e.get(good()).flow(t)
	expired := func(what string, a answer) {
		t.Helper()
		if a.status != 400 || !strings.Contains(a.body, "has expired or was not opened here") || a.header.Get("Location") != "" {
			t.Errorf("%s: %d %s", what, a.status, a.body)
		}
	}
	// Another browser (no cookie, or its own cookie) cannot post it.
	e.newBrowser()
	expired("without the cookie", e.post(with(flow)))
	e.get(good())
	expired("with another flow's cookie", e.post(with(flow)))

	e.newBrowser()
	flow = e.get(good()).flow(t)
	payload, sig, _ := strings.Cut(flow, ".")
	b := []byte(payload)
	b[5] ^= 1
	expired("altered", e.post(with(string(b)+"."+sig)))
	expired("no signature", e.post(with(payload)))
	expired("empty", e.post(with("")))
	expired("long", e.post(with(strings.Repeat("a", 9000)+"."+sig)))
	// A login-step form cannot be posted as a consent.
	if a := e.post(url.Values{"flow": {flow}, "decision": {"allow"}}); a.status != 401 || len(e.codes.got) != 0 {
		t.Errorf("a login form posted as a consent: %d, codes %v", a.status, e.codes.got)
	}
	e.clock.add(10*time.Minute - time.Second)
	consent := e.post(with(flow))
	if consent.status != 200 {
		t.Fatalf("within the lifetime: %d", consent.status)
	}
	e.clock.add(10 * time.Minute)
	expired("after the lifetime", e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"allow"}}))
	// Malformed forms.
	for name, req := range map[string]*http.Request{
		"not a form": func() *http.Request {
			r, _ := http.NewRequest("POST", e.srv.URL+"/oauth/authorize", strings.NewReader(with(flow).Encode()))
			r.Header.Set("Content-Type", "application/json")
			return r
		}(),
		"too large": func() *http.Request {
			r, _ := http.NewRequest("POST", e.srv.URL+"/oauth/authorize", strings.NewReader("flow="+strings.Repeat("a", MaxBody)))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(),
		"repeated field": func() *http.Request {
			v := with(flow)
			v.Add("username", "bob")
			r, _ := http.NewRequest("POST", e.srv.URL+"/oauth/authorize", strings.NewReader(v.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(),
		"bad encoding": func() *http.Request {
			r, _ := http.NewRequest("POST", e.srv.URL+"/oauth/authorize", strings.NewReader("flow=%zz"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}(),
	} {
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if a := read(t, resp); a.status != 400 || !strings.Contains(a.body, "The form") {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	// A client disabled during the flow: refused at the next step.
	e.clock.add(-20 * time.Minute)
	e.newBrowser()
	flow = e.get(good()).flow(t)
	e.clients.mu.Lock()
	c := e.clients.byID["shop"]
	c.Enabled = false
	e.clients.byID["shop"] = c
	e.clients.mu.Unlock()
	if a := e.post(with(flow)); a.status != 400 || !strings.Contains(a.body, "not known here") {
		t.Errorf("a client disabled during the flow: %d %s", a.status, a.body)
	}
}

// TestAuthorizeThrottle: five failed logins of a name in five minutes lock
// it (even with the right password) until the window has passed; a
// success forgets the failures.
func TestAuthorizeThrottle(t *testing.T) {
	e := newEnv(t)
	flow := e.get(good()).flow(t)
	try := func(pw string) answer {
		a := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {pw}})
		if m := flowField.FindStringSubmatch(a.body); m != nil {
			flow = html.UnescapeString(m[1])
		}
		return a
	}
	for range 4 {
		try("wrong password!!")
	}
	if a := try("correct horse battery"); a.status != 200 {
		t.Fatalf("after 4 failures: %d", a.status)
	}
	flow = e.get(good()).flow(t)
	for i := range 5 {
		if a := try("wrong password!!"); a.status != 401 {
			t.Errorf("failure %d: %d", i+1, a.status)
		}
		e.clock.add(time.Second)
	}
	a := try("correct horse battery")
	if a.status != 429 || !strings.Contains(a.body, "Too many failed sign-ins") {
		t.Errorf("after 5 failures: %d %s", a.status, a.body)
	}
	if b := e.post(url.Values{"flow": {flow}, "username": {"bob"}, "password": {"wrong password!!"}}); b.status != 401 {
		t.Errorf("another name: %d", b.status)
	}
	e.clock.add(5*time.Minute - 5*time.Second)
	if a := try("correct horse battery"); a.status != 200 {
		t.Errorf("after the window: %d", a.status)
	}
	// Empty and oversized fields are refused without a check.
	flow = e.get(good()).flow(t)
	if a := e.post(url.Values{"flow": {flow}, "username": {""}, "password": {"x"}}); a.status != 401 || !strings.Contains(a.body, "Give your user name and password") {
		t.Errorf("empty name: %d", a.status)
	}
	if a := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {strings.Repeat("p", 1025)}}); a.status != 401 {
		t.Errorf("long password: %d", a.status)
	}
}

// TestAuthorizeTrackedBound: the names with failures are bounded.
func TestAuthorizeTrackedBound(t *testing.T) {
	e := newEnv(t)
	a, _ := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes, Now: e.clock.now})
	for i := range maxTracked {
		a.fail(fmt.Sprint("user", i))
	}
	if len(a.failures) != maxTracked {
		t.Fatalf("%d tracked", len(a.failures))
	}
	e.clock.add(6 * time.Minute)
	a.fail("one more")
	if len(a.failures) != 1 {
		t.Errorf("%d tracked after the window, want 1 (the expired ones forgotten)", len(a.failures))
	}
	for i := 0; len(a.failures) < maxTracked; i++ {
		a.fail(fmt.Sprint("user", i))
	}
	a.fail("yet another") // none expired: all forgotten but the newest
	if len(a.failures) != 1 || len(a.failures["yet another"]) != 1 {
		t.Errorf("%d tracked after a full table without expired names, want 1", len(a.failures))
	}
}

// TestAuthorizeStoreDown: a users table that cannot answer is 503 on the
// page; a code that cannot be stored goes back as temporarily_unavailable.
func TestAuthorizeStoreDown(t *testing.T) {
	e := newEnv(t)
	flow := e.get(good()).flow(t)
	consent := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {"correct horse battery"}})
	e.codes.fail = fmt.Errorf("insert: %w", kps.ErrUnavailable)
	q := location(t, e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"allow"}}), cb)
	if q.Get("error") != "temporarily_unavailable" || q.Get("state") != "s-1" {
		t.Errorf("codes down: %v", q)
	}
	e.codes.fail = errors.New("something else")
	if q := location(t, e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"allow"}}), cb); q.Get("error") != "server_error" {
		t.Errorf("codes failing: %v", q)
	}
	e.store.Close()
	if a := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {"correct horse battery"}}); a.status != 503 {
		t.Errorf("users table down: %d %s", a.status, a.body)
	}
}

func TestNewRefuses(t *testing.T) {
	e := newEnv(t)
	for name, c := range map[string]Config{
		"short key":  {Key: secret.FromString("short"), Clients: e.clients, Users: e.users, Codes: e.codes},
		"no clients": {Key: secret.FromString(strings.Repeat("k", 32)), Users: e.users, Codes: e.codes},
		"no users":   {Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Codes: e.codes},
		"no codes":   {Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	a, err := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes})
	if err != nil || a.c.Path != "/oauth/authorize" || a.c.FlowTTL != 10*time.Minute || a.c.MaxFailures != 5 || a.c.FailureWindow != 5*time.Minute {
		t.Errorf("defaults: %+v %v", a.c, err)
	}
}
