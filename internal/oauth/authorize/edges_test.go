package authorize

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// TestAuthorizeLimits: each length limit at its edge (accepted at the
// limit, refused one past it).
func TestAuthorizeLimits(t *testing.T) {
	e := newEnv(t)
	base := []string{"response_type", "code", "client_id", "shop", "redirect_uri", cb, "code_challenge", challenge, "code_challenge_method", "S256"}
	for _, c := range []struct {
		what     string
		extra    []string
		accepted bool
	}{
		{"a state of 1024 bytes", []string{"state", strings.Repeat("s", 1024)}, true},
		{"a state of 1025 bytes", []string{"state", strings.Repeat("s", 1025)}, false},
		{"a nonce of 512 bytes", []string{"nonce", strings.Repeat("n", 512)}, true},
		{"a nonce of 513 bytes", []string{"nonce", strings.Repeat("n", 513)}, false},
	} {
		a := e.get(params(append(base, c.extra...)...))
		if got := a.status == 200; got != c.accepted {
			t.Errorf("%s: %d %s", c.what, a.status, a.header.Get("Location"))
		}
	}
	flow := e.get(params(base...)).flow(t)
	login := func(user, pw string) int {
		return e.post(url.Values{"flow": {flow}, "username": {user}, "password": {pw}}).status
	}
	// A name of 128 bytes is checked (401: no such user); 129 is refused unchecked, as is a password over 1024.
	if s := login(strings.Repeat("u", 128), "wrong password!!"); s != 401 {
		t.Errorf("a name of 128 bytes: %d", s)
	}
	if s := login("alice", strings.Repeat("p", 1024)); s != 401 {
		t.Errorf("a password of 1024 bytes: %d", s)
	}
	if s := login("alice", "correct horse battery"); s != 200 {
		t.Errorf("the right password after: %d", s)
	}
	// The signed form field: up to 8 KiB.
	flow = e.get(params(base...)).flow(t)
	if len(flow) >= 8<<10 {
		t.Fatalf("a flow field of %d bytes", len(flow))
	}
	padded := flow + strings.Repeat("A", 8<<10-len(flow)+1)
	if a := e.post(url.Values{"flow": {padded}, "username": {"alice"}, "password": {"correct horse battery"}}); a.status != 400 {
		t.Errorf("a flow field over 8 KiB: %d", a.status)
	}
	// User names at Create: 128 bytes accepted, 129 refused.
	if _, err := e.users.Create(t.Context(), strings.Repeat("b", 128), "", mustPW()); err != nil {
		t.Errorf("a user name of 128 bytes: %v", err)
	}
	if _, err := e.users.Create(t.Context(), strings.Repeat("b", 129), "", mustPW()); err == nil {
		t.Error("a user name of 129 bytes was accepted")
	}
}

func mustPW() secret.Value { return secret.FromString("correct horse battery") }

// TestAuthorizeEdges: the form's size limit at its edge (16 KiB), the
// signing key's (32 bytes), the settings taken as given down to their
// least, the flow cookie's 256 random bits, the real clock when none is
// given.
func TestAuthorizeEdges(t *testing.T) {
	e := newEnv(t)
	login := func(pad int) answer {
		flow := e.get(good()).flow(t)
		v := url.Values{"flow": {flow}, "username": {"alice"}, "password": {"correct horse battery"}}
		base := len(v.Encode()) + len("&pad=")
		v.Set("pad", strings.Repeat("x", pad-base))
		if n := len(v.Encode()); n != pad {
			t.Fatalf("a form of %d bytes, want %d", n, pad)
		}
		return e.post(v)
	}
	if a := login(16 << 10); a.status != 200 || !strings.Contains(a.body, "Allow access?") {
		t.Errorf("a form of 16 KiB: %d %s", a.status, a.body)
	}
	if a := login(16<<10 + 1); a.status != 400 || !strings.Contains(a.body, "The form is malformed") {
		t.Errorf("a form of 16 KiB + 1: %d %s", a.status, a.body)
	}
	// The cookie: 32 random bytes, base64url.
	a := e.get(good())
	var nonce string
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "gh_oauth_flow" {
			nonce = c.Value
		}
	}
	if b, err := base64.RawURLEncoding.DecodeString(nonce); err != nil || len(b) != 32 {
		t.Errorf("the flow cookie %q: %d bytes, want 32", nonce, len(b))
	}
	// No client_id: said so.
	if a := e.get(params("response_type", "code", "redirect_uri", cb)); a.status != 400 || !strings.Contains(a.body, "has no client_id") {
		t.Errorf("no client_id: %d %s", a.status, a.body)
	}

	// The key: 32 bytes at least.
	for n, ok := range map[int]bool{31: false, 32: true} {
		if _, err := New(Config{Key: secret.FromString(strings.Repeat("k", n)), Clients: e.clients, Users: e.users, Codes: e.codes}); (err == nil) != ok {
			t.Errorf("a key of %d bytes: %v", n, err)
		}
	}

	// One failure allowed, forgotten after 1 ns.
	e = newEnv(t, func(c *Config) { c.MaxFailures, c.FailureWindow = 1, 1 })
	flow := e.get(good()).flow(t)
	try := func(pw string) int {
		a := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {pw}})
		if m := flowField.FindStringSubmatch(a.body); m != nil {
			flow = html.UnescapeString(m[1])
		}
		return a.status
	}
	if s := try("wrong password!!"); s != 401 {
		t.Errorf("the first failure: %d", s)
	}
	if s := try("correct horse battery"); s != 429 {
		t.Errorf("after one failure with MaxFailures 1: %d", s)
	}
	e.clock.add(1)
	if s := try("correct horse battery"); s != 200 {
		t.Errorf("1 ns after the failure with FailureWindow 1 ns: %d", s)
	}
	// A page valid for 1 ns has expired when it is posted.
	e = newEnv(t, func(c *Config) { c.FlowTTL = 1 })
	if a := e.post(url.Values{"flow": {e.get(good()).flow(t)}, "username": {"alice"}, "password": {"correct horse battery"}}); a.status != 400 || !strings.Contains(a.body, "has expired") {
		t.Errorf("a page posted after its FlowTTL of 1 ns: %d", a.status)
	}

	// The real clock.
	e = newEnv(t, func(c *Config) { c.Now = nil })
	if s := e.post(url.Values{"flow": {e.get(good()).flow(t)}, "username": {"alice"}, "password": {"correct horse battery"}}).status; s != 200 {
		t.Errorf("with the real clock: %d", s)
	}
}

// TestAuthorizeLoginFields: an empty or oversized name or password is
// refused before any check, and said so.
func TestAuthorizeLoginFields(t *testing.T) {
	e := newEnv(t)
	flow := e.get(good()).flow(t)
	for what, f := range map[string][2]string{
		"a name of 129 bytes":     {strings.Repeat("u", 129), "correct horse battery"},
		"an empty name":           {"", "correct horse battery"},
		"an empty password":       {"alice", ""},
		"a password of 1025 byte": {"alice", strings.Repeat("p", 1025)},
	} {
		a := e.post(url.Values{"flow": {flow}, "username": {f[0]}, "password": {f[1]}})
		if a.status != 401 || !strings.Contains(a.body, "Give your user name and password.") {
			t.Errorf("%s: %d %s", what, a.status, a.body)
		}
	}
	// At the limits: checked.
	for what, f := range map[string][2]string{
		"a name of 128 bytes":      {strings.Repeat("u", 128), "correct horse battery"},
		"a password of 1024 bytes": {"alice", strings.Repeat("p", 1024)},
	} {
		a := e.post(url.Values{"flow": {flow}, "username": {f[0]}, "password": {f[1]}})
		if a.status != 401 || !strings.Contains(a.body, "Unknown user or wrong password.") {
			t.Errorf("%s: %d %s", what, a.status, a.body)
		}
	}
}

// TestAuthorizeForgedFlows: a signed form field whose state does not
// decode is refused (only the server signs them: this is its own guard).
func TestAuthorizeForgedFlows(t *testing.T) {
	e := newEnv(t)
	a, err := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "oauth authorize at /oauth/authorize" {
		t.Errorf("String: %q", a.String())
	}
	page := e.get(good())
	var nonce []byte
	for _, c := range (&http.Response{Header: page.header}).Cookies() {
		if c.Name == "gh_oauth_flow" {
			nonce, _ = base64.RawURLEncoding.DecodeString(c.Value)
		}
	}
	signed := func(payload string) string {
		return payload + "." + base64.RawURLEncoding.EncodeToString(a.mac(payload))
	}
	exp := e.clock.now().Add(time.Minute).Unix()
	good := fmt.Sprintf(`{"st":"login","c":"shop","r":%q,"cc":%q,"e":%d,"b":%q}`, cb, challenge, exp, binding(nonce))
	bad := fmt.Sprintf(`{"st":"login","c":"shop","r":%q,"cc":%q,"e":%d,"b":%q,"sc":"not a list"}`, cb, challenge, exp, binding(nonce))
	login := func(field string) answer {
		return e.post(url.Values{"flow": {field}, "username": {"alice"}, "password": {"correct horse battery"}})
	}
	if r := login(signed(base64.RawURLEncoding.EncodeToString([]byte(good)))); r.status != 200 {
		t.Fatalf("a well-formed flow signed here: %d %s", r.status, r.body)
	}
	// A consent form forged without the key: refused, no code.
	u, _ := e.users.Get(t.Context(), "alice")
	consent := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"st":"consent","c":"shop","r":%q,"cc":%q,"u":%q,"un":"alice","e":%d,"b":%q}`,
		cb, challenge, u.ID, exp, binding(nonce))))
	for what, sig := range map[string]string{
		"a wrong signature":       base64.RawURLEncoding.EncodeToString(make([]byte, 32)),
		"a signature not base64":  "!!",
		"an empty signature":      "",
		"the signature of a flow": strings.SplitN(page.flow(t), ".", 2)[1],
	} {
		if r := e.post(url.Values{"flow": {consent + "." + sig}, "decision": {"allow"}}); r.status != 400 || len(e.codes.got) != 0 {
			t.Errorf("a consent forged with %s: %d, codes %v", what, r.status, e.codes.got)
		}
	}
	if q := location(t, e.post(url.Values{"flow": {signed(consent)}, "decision": {"allow"}}), cb); q.Get("code") == "" {
		t.Errorf("the same consent signed with the key: %v", q)
	}
	e.codes.got = nil
	for what, field := range map[string]string{
		"not base64":                signed("not+base64"),
		"not JSON":                  signed(base64.RawURLEncoding.EncodeToString([]byte("not JSON"))),
		"a field of the wrong type": signed(base64.RawURLEncoding.EncodeToString([]byte(bad))),
	} {
		if r := login(field); r.status != 400 || !strings.Contains(r.body, "has expired or was not opened here") {
			t.Errorf("%s: %d %s", what, r.status, r.body)
		}
	}
}

// TestAuthorizeBadRegisteredURI: a registered redirect URI that does not
// parse gets an error page, never a redirect.
func TestAuthorizeBadRegisteredURI(t *testing.T) {
	e := newEnv(t)
	e.clients.byID["bad"] = Client{ID: "bad", Enabled: true, RedirectURIs: []string{"https://app.example.com/%zz"}, AllowsCode: true}
	a := e.get(params("response_type", "token", "client_id", "bad"))
	if a.status != 400 || a.header.Get("Location") != "" || !strings.Contains(a.body, "The redirect_uri is malformed.") {
		t.Errorf("%d %v %s", a.status, a.header, a.body)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestServeHTTPBodyError: a form that cannot be read is 400, and nothing
// else is written.
func TestServeHTTPBodyError(t *testing.T) {
	e := newEnv(t)
	a, _ := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes})
	r := httptest.NewRequest("POST", "/oauth/authorize", io.NopCloser(errReader{}))
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code != 400 || w.Body.String() != "reading the form failed\n" {
		t.Errorf("%d %q", w.Code, w.Body.String())
	}
}

// failingStore fails Define, List and Update (the other operations'
// failures are a closed store's, in TestUsers).
type failingStore struct{ kps.Store }

func (failingStore) Define(context.Context, ...kps.Table) error {
	return fmt.Errorf("%w: connection refused", kps.ErrUnavailable)
}
func (failingStore) List(context.Context, string, kps.Page) (kps.Result, error) {
	return kps.Result{}, fmt.Errorf("%w: connection refused", kps.ErrUnavailable)
}
func (failingStore) Update(context.Context, string, kps.Row) (kps.Row, error) {
	return kps.Row{}, fmt.Errorf("%w: connection refused", kps.ErrUnavailable)
}

func TestUsersStoreFails(t *testing.T) {
	e := newEnv(t)
	if u, err := NewUsers(t.Context(), failingStore{e.store}); u != nil || !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("NewUsers with Define failing: %v %v", u, err)
	}
	u := &Users{store: failingStore{e.store}, now: time.Now}
	if l, next, err := u.List(t.Context(), kps.Page{}); l != nil || next != "" || !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("List failing: %v %q %v", l, next, err)
	}
	if err := u.SetEnabled(t.Context(), "alice", false); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("SetEnabled with updates failing: %v", err)
	}
}

// TestAuthorizeFlowFieldEdges: a signed form field of exactly 8 KiB is
// read, a few bytes more is refused though well signed; a page is refused
// at exactly its lifetime.
func TestAuthorizeFlowFieldEdges(t *testing.T) {
	e := newEnv(t)
	a, _ := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes, Now: e.clock.now})
	page := e.get(good())
	var nonce []byte
	for _, c := range (&http.Response{Header: page.header}).Cookies() {
		if c.Name == "gh_oauth_flow" {
			nonce, _ = base64.RawURLEncoding.DecodeString(c.Value)
		}
	}
	field := func(size int) string {
		for pad := 0; pad < 8<<10; pad++ {
			f := a.sign(flow{Step: "login", ClientID: "shop", RedirectURI: cb, Challenge: challenge, State: strings.Repeat("s", pad),
				Exp: e.clock.now().Add(time.Minute).Unix(), Binding: binding(nonce)})
			if len(f) == size {
				return f
			}
		}
		t.Fatalf("no field of %d bytes", size)
		return ""
	}
	login := func(f string) int {
		return e.post(url.Values{"flow": {f}, "username": {"alice"}, "password": {"correct horse battery"}}).status
	}
	if s := login(field(8 << 10)); s != 200 {
		t.Errorf("a field of 8 KiB: %d", s)
	}
	if s := login(field(8<<10 + 4)); s != 400 {
		t.Errorf("a field of 8 KiB + 4: %d", s)
	}
	// Exactly at the page's lifetime (10 min): expired.
	f := e.get(good()).flow(t)
	e.clock.add(10 * time.Minute)
	if s := login(f); s != 400 {
		t.Errorf("a page posted at exactly its lifetime: %d", s)
	}
}

// TestAuthorizeLog: refusals for too many failures and codes that cannot
// be issued are logged.
func TestAuthorizeLog(t *testing.T) {
	var buf bytes.Buffer
	e := newEnv(t, func(c *Config) { c.Log = slog.New(slog.NewTextHandler(&buf, nil)); c.MaxFailures = 1 })
	flow := e.get(good()).flow(t)
	login := func(pw string) answer {
		a := e.post(url.Values{"flow": {flow}, "username": {"alice"}, "password": {pw}})
		if m := flowField.FindStringSubmatch(a.body); m != nil {
			flow = html.UnescapeString(m[1])
		}
		return a
	}
	login("wrong password!!")
	login("correct horse battery")
	if !strings.Contains(buf.String(), "login refused, too many failures") {
		t.Errorf("a locked login is not logged:\n%s", buf.String())
	}
	e.clock.add(5 * time.Minute)
	consent := login("correct horse battery")
	e.codes.fail = errors.New("disk full")
	e.post(url.Values{"flow": {consent.flow(t)}, "decision": {"allow"}})
	if !strings.Contains(buf.String(), "a code could not be issued") || !strings.Contains(buf.String(), "disk full") {
		t.Errorf("a code not issued is not logged:\n%s", buf.String())
	}
}

// TestAuthorizeNoIssuer: without an issuer, redirects carry no iss.
func TestAuthorizeNoIssuer(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Issuer = "" })
	q := location(t, e.get(params("response_type", "token", "client_id", "shop", "redirect_uri", cb)), cb)
	if q.Has("iss") || q.Get("error") != "unsupported_response_type" {
		t.Errorf("redirect without an issuer: %v", q)
	}
}

// TestAuthenticateBadHash: a stored hash that does not parse is a bad
// login, not an outage.
func TestAuthenticateBadHash(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.Insert(t.Context(), UsersTable, map[string]any{"username": "eve", "passwordHash": "garbage", "enabled": true, "createdAt": int64(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Authenticate(t.Context(), "eve", secret.FromString("correct horse battery")); !errors.Is(err, ErrBadLogin) {
		t.Errorf("a bad stored hash: %v", err)
	}
	// An unknown user with the password of the hash checked in its place.
	if _, err := e.users.Authenticate(t.Context(), "mallory", secret.FromString("not anybody's password")); !errors.Is(err, ErrBadLogin) {
		t.Errorf("an unknown user with the dummy's password: %v", err)
	}
}

// TestAuthorizeFailuresForgotten: a name whose failures have all left the
// window is forgotten when it is next looked at; the table holds 10,000
// names, and a new one past them clears it when none has expired.
func TestAuthorizeFailuresForgotten(t *testing.T) {
	e := newEnv(t)
	a, _ := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes, Now: e.clock.now})
	a.fail("x")
	e.clock.add(5 * time.Minute)
	if a.locked("x") || len(a.failures) != 0 {
		t.Errorf("a name whose failures expired: still tracked (%d)", len(a.failures))
	}
	for i := range 10000 {
		a.fail(fmt.Sprint("user", i))
	}
	if len(a.failures) != 10000 {
		t.Fatalf("%d tracked after 10,000 names", len(a.failures))
	}
	a.fail("user0") // a name already there: nothing cleared
	if len(a.failures) != 10000 || len(a.failures["user0"]) != 2 {
		t.Errorf("%d tracked after a known name's second failure", len(a.failures))
	}
	a.fail("one more")
	if len(a.failures) != 1 {
		t.Errorf("%d tracked after the 10,001st name, want 1", len(a.failures))
	}
	// Half of a full table expired: only those are dropped for a new name.
	clear(a.failures)
	for i := range 5000 {
		a.fail(fmt.Sprint("old", i))
	}
	e.clock.add(5 * time.Minute)
	for i := range 5000 {
		a.fail(fmt.Sprint("new", i))
	}
	a.fail("newest")
	if len(a.failures) != 5001 {
		t.Errorf("%d tracked after a new name in a full table half expired, want 5,001", len(a.failures))
	}
}

// TestAuthorizeCookieSecure: the flow cookie is Secure when the page came
// over TLS, and only then.
func TestAuthorizeCookieSecure(t *testing.T) {
	e := newEnv(t)
	a, _ := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: e.clients, Users: e.users, Codes: e.codes, Now: e.clock.now})
	for url, secure := range map[string]bool{"https://gw.example.com/oauth/authorize?": true, "http://gw.example.com/oauth/authorize?": false} {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest("GET", url+good(), nil))
		c := w.Header().Get("Set-Cookie")
		if w.Code != 200 || strings.Contains(c, "; Secure") != secure {
			t.Errorf("%s: %d, cookie %q", url, w.Code, c)
		}
	}
}
