package anm

import (
	"fmt"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
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
	for i := range throttleFreePair {
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
		if got := throttleDelay(n, throttleFreePair); got != want {
			t.Errorf("throttleDelay(%d): got %v, want %v", n, got, want)
		}
	}
}

// TestLoginLever: a login cannot be used to grow the audit log or the
// slow-down table, and parallel guesses are slowed down as sequential ones.
func TestLoginLever(t *testing.T) {
	e := newAPIEnv(t)
	auditSize := func() int64 {
		fi, err := os.Stat(e.h.Path("conf", "audit", "audit.log"))
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := auditSize()
	for _, name := range []string{strings.Repeat("n", 65), strings.Repeat("n", 200<<10), "bad\x01name"} {
		a, _, _ := login(t, e.url, name, "whatever-password")
		a.WantError(t, 401)
	}
	if got := auditSize(); got != before {
		t.Errorf("impossible user names grew the audit log by %d bytes", got-before)
	}
	if n := len(e.a.auth.throttle.m); n != 0 {
		t.Errorf("impossible user names took %d slow-down entries", n)
	}

	// 12 wrong guesses at once from one address: only throttleFreePair
	// have their password checked, the others wait (429).
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _, _ := login(t, e.url, apitest.User, "wrong-password")
			mu.Lock()
			codes[a.Code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[401] != throttleFreePair || codes[429] != 12-throttleFreePair {
		t.Errorf("12 parallel wrong logins: got %v, want %d × 401 and the rest 429", codes, throttleFreePair)
	}
}

func TestThrottlePerAddressAndBounded(t *testing.T) {
	th := newThrottle()
	now := time.Unix(1e9, 0)
	th.now = func() time.Time { return now }
	for i := range throttleFreePair {
		if d := th.reserve("ann", "10.0.0.1"); d != 0 {
			t.Fatalf("attempt %d: wait %v", i+1, d)
		}
	}
	if d := th.reserve("ann", "10.0.0.1"); d != throttleBaseDelay {
		t.Errorf("after %d failures from one address: wait %v, want %v", throttleFreePair, d, throttleBaseDelay)
	}
	// From another address the user is not locked out.
	if d := th.reserve("ann", "10.0.0.2"); d != 0 {
		t.Errorf("another address: wait %v, want none", d)
	}
	th.reset("ann", "10.0.0.2")
	// Many users from one address: the address is slowed down too.
	for i := range throttleFreeAddr {
		th.reserve(fmt.Sprintf("u%d", i), "10.0.0.3")
	}
	if d := th.reserve("someone", "10.0.0.3"); d != throttleBaseDelay {
		t.Errorf("%d failures from one address: wait %v, want %v", throttleFreeAddr, d, throttleBaseDelay)
	}
	// A right password forgives its own attempt only.
	th.reserve("bob", "10.0.0.4")
	th.reset("bob", "10.0.0.4")
	if f := th.m[addrKey("10.0.0.4")]; f == nil || f.n != 0 {
		t.Errorf("after a good login: %+v, want the address count back to 0", f)
	}
	// The table stays bounded, and a new key is always counted.
	last := ""
	for i := range throttleMaxKeys + 50 {
		now = now.Add(time.Millisecond)
		last = fmt.Sprintf("10.1.%d.%d", i/256, i%256)
		th.reserve("x", last)
		if n := len(th.m); n > throttleMaxKeys {
			t.Fatalf("table: %d entries, want at most %d", n, throttleMaxKeys)
		}
	}
	if th.m[pairKey(last, "x")] == nil || th.m[addrKey(last)] == nil {
		t.Errorf("the newest attempt was not counted")
	}
	if th.m[pairKey("10.1.0.0", "x")] != nil {
		t.Errorf("the oldest count was kept while newer ones came")
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

// TestSessionEndsWithItsUser: a session is bound to its user's record: a
// password change, a role change, and a delete followed by a user made
// again with the same name each end it, on every ANM that reads the
// users file (here two on one install directory).
func TestSessionEndsWithItsUser(t *testing.T) {
	e := newAPIEnv(t)
	other := newAPIEnvAt(t, e.h) // a second ANM on the same files
	mk := func(name, role string) {
		t.Helper()
		e.do("POST", "/api/rbac/users", fmt.Sprintf(`{"name":%q,"password":"pw-%s-123456","roles":[%q]}`, name, name, role)).MustCode(t, 201)
	}
	valid := func(cookie string) (int, int) {
		t.Helper()
		return sessionReq(t, e.url, "GET", "/api/rbac/currentuser", "", cookie, "").Code,
			sessionReq(t, other.url, "GET", "/api/rbac/currentuser", "", cookie, "").Code
	}
	for _, tc := range []struct {
		name   string
		change func(user string)
	}{
		{"password changed", func(u string) {
			e.do("PUT", "/api/rbac/users/"+u, `{"password":"another-pw-98765"}`).MustCode(t, 200)
		}},
		{"roles changed", func(u string) {
			e.do("PUT", "/api/rbac/users/"+u, `{"roles":["Deployer"]}`).MustCode(t, 200)
		}},
		{"deleted and made again as an administrator", func(u string) {
			e.do("DELETE", "/api/rbac/users/"+u, "").MustCode(t, 200)
			e.do("POST", "/api/rbac/users", fmt.Sprintf(`{"name":%q,"password":"new-pw-4567890","roles":["API Server Administrator"]}`, u)).MustCode(t, 201)
		}},
	} {
		user := "u" + strings.ReplaceAll(tc.name, " ", "")[:8]
		mk(user, "API Server Operator")
		a, cookie, _ := login(t, e.url, user, "pw-"+user+"-123456")
		a.MustCode(t, 200)
		if c1, c2 := valid(cookie); c1 != 200 || c2 != 200 {
			t.Fatalf("%s: a fresh session: %d on one ANM, %d on the other", tc.name, c1, c2)
		}
		tc.change(user)
		if c1, c2 := valid(cookie); c1 != 401 || c2 != 401 {
			t.Errorf("%s: the session still works: %d on one ANM, %d on the other; want 401 on both", tc.name, c1, c2)
		}
	}
	// A change of another user leaves a session alone.
	mk("keeper", "API Server Operator")
	a, cookie, _ := login(t, e.url, "keeper", "pw-keeper-123456")
	a.MustCode(t, 200)
	mk("someone", "Deployer")
	if c1, _ := valid(cookie); c1 != 200 {
		t.Errorf("another user's creation ended the session: %d", c1)
	}
}

// TestAuditHeadKeyIsTheSessionKey: the audit head's MAC key is read from
// the session key's file.
func TestAuditHeadKeyIsTheSessionKey(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	if audit.SessionKeyFile(h) != rbac.SessionKeyFile(h) {
		t.Errorf("audit reads %s, rbac writes %s", audit.SessionKeyFile(h), rbac.SessionKeyFile(h))
	}
}
