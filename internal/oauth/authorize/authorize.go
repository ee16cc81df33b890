// Package authorize is the authorization endpoint of the gateway's OAuth 2.0
// authorization server (RFC 6749 §4.1 with PKCE, RFC 7636, as RFC 9700
// asks): a user of the group logs in on a page served by the gateway,
// approves the client's request, and is sent back to the client's
// registered redirect URI with a single-use code.
//
// What it holds to:
//   - the redirect URI is compared exactly with the client's registered
//     ones; a request whose client or redirect URI cannot be trusted is
//     answered with an error page, never redirected;
//   - PKCE with S256 is required of every client (plain is refused);
//   - no session outlives the flow: the request, and after the login the
//     user, travel in a form field signed with the group's key, bound to
//     a cookie set on the first page (a form posted from elsewhere, or
//     after 10 minutes, is refused), so there is nothing to steal later;
//   - logins are throttled per user name; the page says nothing of whether
//     a user exists;
//   - pages cannot be framed, cached, or load anything (CSP default-src
//     'none'), and every redirect carries the issuer (RFC 9207).
//
// It is transport-neutral: Handle takes a Request and returns a Response,
// so that the gateway's own HTTP engine and net/http can both serve it.
package authorize

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Request is what the endpoint needs of an HTTP request.
type Request struct {
	Method   string
	RawQuery string
	Header   http.Header
	Body     []byte // the form of a POST (bounded by the caller: MaxBody)
	TLS      bool
}

// Response is the endpoint's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// MaxBody is the largest form accepted.
const MaxBody = 16 << 10

// Client is what the endpoint needs of a client application.
type Client struct {
	ID, Name     string
	Enabled      bool
	RedirectURIs []string
	Scopes       []string // scopes it may ask for
	AllowsCode   bool     // its grant types include authorization_code
}

// ErrUnknownClient is Clients' answer for an id that names no client.
var ErrUnknownClient = errors.New("unknown client")

// Clients finds clients; an error other than ErrUnknownClient means the
// registry could not answer (503).
type Clients interface {
	AuthorizeClient(ctx context.Context, id string) (Client, error)
}

// CodeRequest is what a code is issued for.
type CodeRequest struct {
	ClientID, RedirectURI string
	UserID, Username      string
	Scopes                []string
	CodeChallenge         string // S256
	Nonce                 string
}

// Codes issues authorization codes (the token endpoint redeems them).
type Codes interface {
	IssueCode(ctx context.Context, r CodeRequest) (string, error)
}

// Authenticator checks users' passwords (*Users).
type Authenticator interface {
	Authenticate(ctx context.Context, username string, pw secret.Value) (User, error)
}

// Config configures the endpoint; Key, Clients, Users and Codes are required.
type Config struct {
	Issuer  string       // the iss parameter of every redirect (RFC 9207)
	Path    string       // where the endpoint is served (the cookie's path); default /oauth/authorize
	Key     secret.Value // signs the forms' state: at least 32 bytes
	Clients Clients
	Users   Authenticator
	Codes   Codes
	Log     *slog.Logger
	Now     func() time.Time
	// FlowTTL is how long a page may be answered (default 10 min).
	FlowTTL time.Duration
	// MaxFailures failed logins of a user name in FailureWindow lock it
	// until the window has passed (defaults 5 and 5 min).
	MaxFailures   int
	FailureWindow time.Duration
}

// Authorizer is the endpoint. It is safe for concurrent use.
type Authorizer struct {
	c        Config
	mu       sync.Mutex
	failures map[string][]time.Time // by user name, recent failed logins
}

// New checks c and returns the endpoint.
func New(c Config) (*Authorizer, error) {
	switch {
	case len(c.Key.Reveal()) < 32:
		return nil, errors.New("authorize: the signing key needs at least 32 bytes")
	case c.Clients == nil || c.Users == nil || c.Codes == nil:
		return nil, errors.New("authorize: Clients, Users and Codes are required")
	}
	if c.Path == "" {
		c.Path = "/oauth/authorize"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.FlowTTL <= 0 {
		c.FlowTTL = 10 * time.Minute
	}
	if c.MaxFailures <= 0 {
		c.MaxFailures = 5
	}
	if c.FailureWindow <= 0 {
		c.FailureWindow = 5 * time.Minute
	}
	return &Authorizer{c: c, failures: map[string][]time.Time{}}, nil
}

// cookieName holds the flow's nonce; the signed form carries its hash.
const cookieName = "gh_oauth_flow"

// flow is the signed state of a form: the validated request, and after
// the login the user.
type flow struct {
	Step        string   `json:"st"` // "login" or "consent"
	ClientID    string   `json:"c"`
	RedirectURI string   `json:"r"`
	State       string   `json:"s,omitempty"`
	Scopes      []string `json:"sc,omitempty"`
	Challenge   string   `json:"cc"`
	Nonce       string   `json:"n,omitempty"`
	UserID      string   `json:"u,omitempty"`
	Username    string   `json:"un,omitempty"`
	Exp         int64    `json:"e"`
	Binding     string   `json:"b"` // base64 SHA-256 of the cookie's nonce
}

// Handle answers one request to the endpoint.
func (a *Authorizer) Handle(ctx context.Context, r *Request) *Response {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return a.start(ctx, r)
	case http.MethodPost:
		return a.step(ctx, r)
	default:
		resp := a.page(http.StatusMethodNotAllowed, errorPage, pageData{Title: "Method not allowed", Message: "Use GET to start an authorization."})
		resp.Header.Set("Allow", "GET, HEAD, POST")
		return resp
	}
}

// single returns the parameters, refusing any given more than once.
func single(v url.Values) (map[string]string, string) {
	out := make(map[string]string, len(v))
	for k, vs := range v {
		if len(vs) != 1 {
			return nil, k
		}
		out[k] = vs[0]
	}
	return out, ""
}

// start validates an authorization request and shows the login page.
func (a *Authorizer) start(ctx context.Context, r *Request) *Response {
	vals, err := url.ParseQuery(r.RawQuery)
	if err != nil {
		return a.errorPage(http.StatusBadRequest, "The authorization request is malformed.")
	}
	p, repeated := single(vals)
	if repeated == "client_id" || repeated == "redirect_uri" {
		return a.errorPage(http.StatusBadRequest, "The authorization request repeats "+repeated+".")
	}
	client, redirect, resp := a.trusted(ctx, vals.Get("client_id"), vals.Get("redirect_uri"))
	if resp != nil {
		return resp
	}
	// From here on the redirect URI is trusted: errors go back to it.
	state := vals.Get("state")
	if len(vals["state"]) > 1 {
		state = ""
	}
	fail := func(code, desc string) *Response { return a.redirectError(redirect, code, desc, state) }
	switch {
	case repeated != "":
		return fail("invalid_request", "the parameter "+repeated+" is repeated")
	case p["response_type"] != "code":
		return fail("unsupported_response_type", "only response_type=code is supported")
	case !client.AllowsCode:
		return fail("unauthorized_client", "this client may not use the authorization code grant")
	case p["code_challenge"] == "":
		return fail("invalid_request", "PKCE is required: give code_challenge and code_challenge_method=S256")
	case p["code_challenge_method"] != "S256":
		return fail("invalid_request", "code_challenge_method must be S256")
	case !validChallenge(p["code_challenge"]):
		return fail("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
	case len(state) > 1024 || len(p["nonce"]) > 512:
		return fail("invalid_request", "state or nonce is too long")
	case p["prompt"] == "none":
		return fail("login_required", "the user must log in")
	case p["request"] != "" || p["request_uri"] != "":
		return fail("request_not_supported", "request objects are not supported")
	}
	scopes := strings.Fields(p["scope"])
	for _, s := range scopes {
		if !slices.Contains(client.Scopes, s) {
			return fail("invalid_scope", "this client may not ask for the scope "+s)
		}
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	nonce := make([]byte, 32)
	rand.Read(nonce) // never fails (crypto/rand, since Go 1.24)
	f := flow{Step: "login", ClientID: client.ID, RedirectURI: redirect, State: state, Scopes: scopes,
		Challenge: p["code_challenge"], Nonce: p["nonce"], Exp: a.c.Now().Add(a.c.FlowTTL).Unix(), Binding: binding(nonce)}
	resp = a.page(http.StatusOK, loginPage, pageData{Title: "Sign in", Client: clientName(client), Scopes: scopes, Flow: a.sign(f), Action: a.c.Path})
	resp.Header.Add("Set-Cookie", a.cookie(base64.RawURLEncoding.EncodeToString(nonce), r.TLS, int(a.c.FlowTTL.Seconds())))
	return resp
}

// trusted finds the client and the redirect URI to use, or the error page.
func (a *Authorizer) trusted(ctx context.Context, clientID, redirect string) (Client, string, *Response) {
	if clientID == "" {
		return Client{}, "", a.errorPage(http.StatusBadRequest, "The authorization request has no client_id.")
	}
	client, err := a.c.Clients.AuthorizeClient(ctx, clientID)
	switch {
	case errors.Is(err, ErrUnknownClient) || err == nil && !client.Enabled:
		return Client{}, "", a.errorPage(http.StatusBadRequest, "The client is not known here.")
	case err != nil:
		a.c.Log.Warn("oauth authorize: the client registry cannot answer", "client", clientID, "err", err)
		return Client{}, "", a.errorPage(http.StatusServiceUnavailable, "The authorization server cannot answer now; try again later.")
	}
	switch {
	case redirect == "" && len(client.RedirectURIs) == 1:
		redirect = client.RedirectURIs[0]
	case redirect == "":
		return Client{}, "", a.errorPage(http.StatusBadRequest, "The authorization request has no redirect_uri.")
	case !slices.Contains(client.RedirectURIs, redirect):
		return Client{}, "", a.errorPage(http.StatusBadRequest, "The redirect_uri is not one registered for this client.")
	}
	return client, redirect, nil
}

// step answers the login and consent forms.
func (a *Authorizer) step(ctx context.Context, r *Request) *Response {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") || len(r.Body) > MaxBody {
		return a.errorPage(http.StatusBadRequest, "The form is malformed.")
	}
	vals, err := url.ParseQuery(string(r.Body))
	if err != nil {
		return a.errorPage(http.StatusBadRequest, "The form is malformed.")
	}
	p, repeated := single(vals)
	if repeated != "" {
		return a.errorPage(http.StatusBadRequest, "The form repeats "+repeated+".")
	}
	f, ok := a.verify(p["flow"], r.Header)
	if !ok {
		return a.errorPage(http.StatusBadRequest, "This page has expired or was not opened here. Go back to the application and start again.")
	}
	client, _, resp := a.trusted(ctx, f.ClientID, f.RedirectURI)
	if resp != nil {
		return resp
	}
	switch f.Step {
	case "login":
		return a.login(ctx, f, client, p)
	case "consent":
		return a.consent(ctx, f, p)
	}
	return a.errorPage(http.StatusBadRequest, "The form is malformed.")
}

func (a *Authorizer) login(ctx context.Context, f flow, client Client, p map[string]string) *Response {
	username := p["username"]
	again := func(status int, msg string) *Response {
		return a.page(status, loginPage, pageData{Title: "Sign in", Client: clientName(client), Scopes: f.Scopes, Flow: a.sign(f), Action: a.c.Path, Error: msg, Username: username})
	}
	if username == "" || len(username) > 128 || p["password"] == "" || len(p["password"]) > 1024 {
		return again(http.StatusUnauthorized, "Give your user name and password.")
	}
	if a.locked(username) {
		a.c.Log.Warn("oauth authorize: login refused, too many failures", "username", username)
		return again(http.StatusTooManyRequests, "Too many failed sign-ins for this user. Wait a few minutes and try again.")
	}
	user, err := a.c.Users.Authenticate(ctx, username, secret.FromString(p["password"]))
	switch {
	case errors.Is(err, ErrBadLogin):
		a.fail(username)
		a.c.Log.Info("oauth authorize: failed sign-in", "username", username, "client", f.ClientID)
		return again(http.StatusUnauthorized, "Unknown user or wrong password.")
	case err != nil:
		a.c.Log.Warn("oauth authorize: the users table cannot answer", "err", err)
		return again(http.StatusServiceUnavailable, "Sign-in is not possible now; try again later.")
	}
	a.forgive(username)
	f.Step, f.UserID, f.Username = "consent", user.ID, user.Username
	f.Exp = a.c.Now().Add(a.c.FlowTTL).Unix()
	return a.page(http.StatusOK, consentPage, pageData{Title: "Allow access", Client: clientName(client), Scopes: f.Scopes, Flow: a.sign(f), Action: a.c.Path, Username: user.Username})
}

func (a *Authorizer) consent(ctx context.Context, f flow, p map[string]string) *Response {
	switch p["decision"] {
	case "allow":
	case "deny":
		a.c.Log.Info("oauth authorize: the user denied", "username", f.Username, "client", f.ClientID)
		return a.redirectError(f.RedirectURI, "access_denied", "the user denied the request", f.State)
	default:
		return a.errorPage(http.StatusBadRequest, "The form is malformed.")
	}
	code, err := a.c.Codes.IssueCode(ctx, CodeRequest{ClientID: f.ClientID, RedirectURI: f.RedirectURI, UserID: f.UserID,
		Username: f.Username, Scopes: f.Scopes, CodeChallenge: f.Challenge, Nonce: f.Nonce})
	if err != nil {
		a.c.Log.Warn("oauth authorize: a code could not be issued", "client", f.ClientID, "err", err)
		if errors.Is(err, kps.ErrUnavailable) {
			return a.redirectError(f.RedirectURI, "temporarily_unavailable", "try again later", f.State)
		}
		return a.redirectError(f.RedirectURI, "server_error", "the code could not be issued", f.State)
	}
	a.c.Log.Info("oauth authorize: code issued", "username", f.Username, "client", f.ClientID, "scopes", strings.Join(f.Scopes, " "))
	return a.redirect(f.RedirectURI, url.Values{"code": {code}}, f.State)
}

// redirectError sends an error back to the client (RFC 6749 §4.1.2.1).
func (a *Authorizer) redirectError(redirect, code, desc, state string) *Response {
	return a.redirect(redirect, url.Values{"error": {code}, "error_description": {desc}}, state)
}

func (a *Authorizer) redirect(redirect string, q url.Values, state string) *Response {
	u, err := url.Parse(redirect)
	if err != nil {
		return a.errorPage(http.StatusBadRequest, "The redirect_uri is malformed.")
	}
	all := u.Query()
	for k, v := range q {
		all[k] = v
	}
	if state != "" {
		all.Set("state", state)
	}
	if a.c.Issuer != "" {
		all.Set("iss", a.c.Issuer)
	}
	u.RawQuery = all.Encode()
	h := securityHeaders()
	h.Set("Location", u.String())
	return &Response{Status: http.StatusSeeOther, Header: h}
}

// sign makes a form's flow field: base64url(JSON).base64url(HMAC).
func (a *Authorizer) sign(f flow) string {
	b, _ := json.Marshal(f)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(a.mac(payload))
}

func (a *Authorizer) mac(payload string) []byte {
	m := hmac.New(sha256.New, a.c.Key.Reveal())
	m.Write([]byte("gatehouse oauth authorize flow\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verify checks a flow field: its signature, its lifetime, and that the
// browser holds the cookie it was bound to.
func (a *Authorizer) verify(field string, h http.Header) (flow, bool) {
	payload, sig, ok := strings.Cut(field, ".")
	if !ok || len(field) > 8<<10 {
		return flow{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, a.mac(payload)) {
		return flow{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	var f flow
	if err != nil || json.Unmarshal(b, &f) != nil {
		return flow{}, false
	}
	if a.c.Now().Unix() >= f.Exp {
		return flow{}, false
	}
	for _, c := range (&http.Request{Header: h}).CookiesNamed(cookieName) {
		nonce, err := base64.RawURLEncoding.DecodeString(c.Value)
		if err == nil && hmac.Equal([]byte(binding(nonce)), []byte(f.Binding)) {
			return f, true
		}
	}
	return flow{}, false
}

func binding(nonce []byte) string {
	s := sha256.Sum256(nonce)
	return base64.RawURLEncoding.EncodeToString(s[:])
}

func (a *Authorizer) cookie(value string, secure bool, maxAge int) string {
	c := &http.Cookie{Name: cookieName, Value: value, Path: a.c.Path, MaxAge: maxAge, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	return c.String()
}

// locked reports whether username has had MaxFailures failed logins within
// the window.
func (a *Authorizer) locked(username string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.recent(username)) >= a.c.MaxFailures
}

// recent is username's failures within the window; a.mu is held.
func (a *Authorizer) recent(username string) []time.Time {
	cut := a.c.Now().Add(-a.c.FailureWindow)
	fs := a.failures[username]
	i := 0
	for i < len(fs) && !fs[i].After(cut) {
		i++
	}
	if i == len(fs) {
		delete(a.failures, username)
		return nil
	}
	a.failures[username] = fs[i:]
	return fs[i:]
}

// maxTracked bounds the names whose failures are remembered.
const maxTracked = 10000

func (a *Authorizer) fail(username string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.failures[username]; !ok && len(a.failures) >= maxTracked {
		for k := range a.failures {
			a.recent(k) // forgets the names whose failures have all expired
		}
		if len(a.failures) >= maxTracked {
			clear(a.failures)
		}
	}
	a.failures[username] = append(a.recent(username), a.c.Now())
}

func (a *Authorizer) forgive(username string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.failures, username)
}

// validChallenge: an S256 challenge is 43 characters of base64url.
func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

func clientName(c Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

func (a *Authorizer) errorPage(status int, msg string) *Response {
	return a.page(status, errorPage, pageData{Title: "Authorization failed", Message: msg})
}

// String describes the endpoint for logs.
func (a *Authorizer) String() string { return fmt.Sprintf("oauth authorize at %s", a.c.Path) }
