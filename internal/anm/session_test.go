package anm

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// sessionReq sends a request with a session cookie (set by hand: the
// cookie is Secure and these test servers are plain HTTP) and, when
// csrf is not empty, the csrf-token header.
func sessionReq(t *testing.T, base, method, path, body, cookie, csrf string) apitest.Answer {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set(csrfHeader, csrf)
	}
	return apitest.Do(t, http.DefaultClient, req)
}

// login posts the form and returns the session cookie and CSRF token.
func login(t *testing.T, base, user, pass string) (apitest.Answer, string, string) {
	t.Helper()
	form := url.Values{"username": {user}, "password": {pass}}.Encode()
	req, _ := http.NewRequest("POST", base+"/api/rbac/login", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	a := apitest.Do(t, http.DefaultClient, req)
	var cookie string
	for _, c := range (&http.Response{Header: a.Header}).Cookies() {
		if c.Name == sessionCookie {
			cookie = c.Value
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/api" {
				t.Errorf("got cookie %+v, want HttpOnly, Secure, SameSite=Strict, Path=/api", c)
			}
		}
	}
	return a, cookie, a.Header.Get(csrfHeader)
}

func TestSessionLoginCSRFLogout(t *testing.T) {
	e := newAPIEnv(t)
	a, cookie, csrf := login(t, e.url, apitest.User, apitest.Pass)
	a.MustCode(t, 200)
	if cookie == "" || csrf == "" || !strings.Contains(string(a.Result), csrf) {
		t.Fatalf("got cookie %q, csrf %q, result %s; want both, the token in the result", cookie, csrf, a.Result)
	}
	got := sessionReq(t, e.url, "GET", "/api/rbac/currentuser", "", cookie, "")
	got.MustCode(t, 200)
	if !strings.Contains(string(got.Result), `"auth":"session"`) {
		t.Errorf("got %s, want auth session", got.Result)
	}
	sessionReq(t, e.url, "POST", "/api/topology/groups", `{"name":"G1"}`, cookie, "").WantError(t, 403, "csrf-token")
	sessionReq(t, e.url, "POST", "/api/topology/groups", `{"name":"G1"}`, cookie, "wrong").WantError(t, 403, "csrf-token")
	sessionReq(t, e.url, "POST", "/api/topology/groups", `{"name":"G1"}`, cookie, csrf).MustCode(t, 201)
	// HTTP Basic needs no CSRF token.
	e.do("POST", "/api/topology/groups", `{"name":"G2"}`).MustCode(t, 201)
	sessionReq(t, e.url, "GET", "/api/topology", "", "x"+cookie, "").WantError(t, 401)
	// Logout is POST only: a GET (a link, an image) never ends a session.
	if a := sessionReq(t, e.url, "GET", "/api/rbac/logout", "", cookie, ""); a.Code != 405 || a.Header.Get("Allow") != "POST" {
		t.Errorf("GET logout: got %d (Allow %q), want 405 with Allow: POST", a.Code, a.Header.Get("Allow"))
	}
	sessionReq(t, e.url, "GET", "/api/rbac/currentuser", "", cookie, "").MustCode(t, 200)
	sessionReq(t, e.url, "POST", "/api/rbac/logout", "", cookie, "").WantError(t, 403)
	sessionReq(t, e.url, "POST", "/api/rbac/logout", "", cookie, csrf).MustCode(t, 200)
	sessionReq(t, e.url, "GET", "/api/topology", "", cookie, "").WantError(t, 401, "log in again")
}

func TestSessionLoginSlowDown(t *testing.T) {
	e := newAPIEnv(t)
	now := e.a.auth.throttle.now()
	e.a.auth.throttle.now = func() time.Time { return now }
	for i := range throttleFreeUser {
		a, _, _ := login(t, e.url, apitest.User, "wrong-password")
		if a.Code != 401 {
			t.Fatalf("attempt %d: got %d, want 401", i+1, a.Code)
		}
	}
	a, _, _ := login(t, e.url, apitest.User, apitest.Pass)
	a.WantError(t, 429)
	if got := a.Header.Get("Retry-After"); got != "1" {
		t.Errorf("got Retry-After %q, want 1", got)
	}
	// HTTP Basic is slowed down alike.
	e.do("GET", "/api/topology", "").WantError(t, 429)
	now = now.Add(throttleBaseDelay)
	a, _, _ = login(t, e.url, apitest.User, apitest.Pass)
	a.MustCode(t, 200)
	for n, want := range map[int]time.Duration{2: 0, 3: time.Second, 4: 2 * time.Second, 5: 4 * time.Second, 20: throttleMaxDelay} {
		if got := throttleDelay(n, throttleFreeUser); got != want {
			t.Errorf("throttleDelay(%d): got %v, want %v", n, got, want)
		}
	}
}

// TestSessionOnSecondANM: a session issued by one Admin Node Manager is
// accepted by a second one of the same domain — two in-process node
// managers (New) on two install dirs, the second a copy of the first (so
// it holds the same conf/sessionKey) with another port in
// system/conf/nodemanager.yaml.
func TestSessionOnSecondANM(t *testing.T) {
	e := newAPIEnv(t)
	dir2 := t.TempDir()
	if err := os.CopyFS(dir2, os.DirFS(e.h.Dir)); err != nil {
		t.Fatal(err)
	}
	h2, err := home.At(dir2)
	if err != nil {
		t.Fatal(err)
	}
	apitest.SetNMConf(t, h2, func(c *domain.NodeManagerConf) { c.Port = gwtest.FreePort(t) })
	ts2 := newAPIEnvAt(t, h2)

	_, cookie, csrf := login(t, e.url, apitest.User, apitest.Pass)
	got := sessionReq(t, ts2.url, "GET", "/api/rbac/currentuser", "", cookie, "")
	got.MustCode(t, 200)
	if !strings.Contains(string(got.Result), `"user":"admin"`) {
		t.Errorf("got %s, want user admin", got.Result)
	}
	sessionReq(t, ts2.url, "POST", "/api/topology/groups", `{"name":"On Second"}`, cookie, csrf).MustCode(t, 201)
	sessionReq(t, ts2.url, "POST", "/api/topology/groups", `{"name":"No Token"}`, cookie, "").WantError(t, 403)

	// Another domain's key refuses it.
	if err := os.WriteFile(h2.Path("conf", "sessionKey"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sessionReq(t, ts2.url, "GET", "/api/rbac/currentuser", "", cookie, "").WantError(t, 401)
}
