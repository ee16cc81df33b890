// Package apiclient is the client side of the Admin Node Manager's
// management API (/api): one request with its body, authentication (a
// session's cookie and CSRF token, or HTTP Basic), the If-Match version of a
// topology change, and the API's answers and errors as types. The operator's
// CLI (internal/tools: gatehouse client, deploy, …) and any other client of
// the API (a web UI) speak through it, so that they send and read the API
// the same way; what to tell a user about an error is theirs to word.
//
// It uses only the API's wire format (docs/management-api.md): it never
// imports the server's packages.
package apiclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// SessionCookie is the name of the session cookie the API sets at login.
const SessionCookie = "gatehouse-session"

// MaxAnswer bounds an answer's body.
const MaxAnswer = 64 << 20

// Session is a login's session: what the API set, and where.
type Session struct {
	URL       string `json:"url"`              // the API's base URL
	CACert    string `json:"cacert,omitempty"` // the CA file the session was made with
	User      string `json:"user"`
	Cookie    string `json:"cookie"`
	CSRFToken string `json:"csrfToken"`
	Expires   string `json:"expires,omitempty"`
}

// Request is one call of the management API.
type Request struct {
	Method, Path string     // Path below the base URL, e.g. /topology
	Form         url.Values // a form body (login, logout, management); nil: none
	JSON         any        // a JSON body; nil: none
	// Version > 0 is sent as If-Match: the topology version the change is
	// based on (a 409 answers a stale one).
	Version int64
	// Body is a raw body sent as ContentType (a deployment archive); nil:
	// none.
	Body        []byte
	ContentType string
	// Accept overrides application/json for answers that are not the
	// JSON envelope (an archive download).
	Accept string
	// Long: no client timeout for this request (a synchronous rollout);
	// the context bounds it.
	Long bool
	// Into, when not nil, receives a 2xx answer's body as it arrives,
	// whatever its size (a backup); SendRaw then returns no body.
	Into io.Writer
}

// Client sends requests to one management API. Set its fields before the
// first request; it is not safe to change them while requests run.
type Client struct {
	Base string       // the API's base URL, e.g. https://localhost:8090/api (no trailing slash)
	HTTP *http.Client // see NewHTTPClient
	// Session, when set, authenticates every request (cookie, and the
	// CSRF token on methods other than GET and HEAD); otherwise Username
	// and Password are sent as HTTP Basic (never to the login path).
	Session  *Session
	Username string
	Password secret.Value
	// SessionRenewed is called when the API renewed the session cookie
	// (Session.Cookie already holds the new one), to keep it.
	SessionRenewed func(*Session)
}

// StatusError is a non-2xx answer: its status and the API's messages.
type StatusError struct {
	Method, Path string
	Status       int
	Messages     []string // the "errors" of the answer, or its text
	RetryAfter   string   // the Retry-After field (429)
	Version      int64    // the request's If-Match version, when it sent one
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %s (%d): %s", e.Method, e.Path, http.StatusText(e.Status), e.Status, strings.Join(e.Messages, "; "))
}

// TransportError is a failure to reach the API or to trust its
// certificate.
type TransportError struct {
	Base string
	Err  error // the cause (the url.Error unwrapped)
	// Cert is set when the certificate did not verify.
	Cert *CertProblem
}

// CertProblem describes a certificate that did not verify.
type CertProblem struct {
	Reason      string   // why, in words
	Fingerprint string   // SHA-256 of the leaf, colon-separated hex ("" when none was sent)
	Subject     string   // the leaf's subject and issuer
	ChainTop    string   // the subject and fingerprint of the chain's last certificate, when there are several
	Hostnames   []string // the names the certificate holds, when the host name did not match
	Unknown     bool     // signed by an unknown authority
}

func (e *TransportError) Error() string {
	if e.Cert != nil {
		return fmt.Sprintf("the certificate of %s does not verify: %s", e.Base, e.Cert.Reason)
	}
	return fmt.Sprintf("cannot reach %s: %v", e.Base, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Send sends r and returns the "result" of the answer's envelope. Errors
// are *StatusError, *TransportError, or the context's.
func (c *Client) Send(ctx context.Context, r Request) (json.RawMessage, *http.Response, error) {
	b, resp, err := c.SendRaw(ctx, r)
	if err != nil {
		return nil, resp, err
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Result == nil {
		return nil, resp, fmt.Errorf("%s %s: not a management API answer (status %d): %.200s", r.Method, c.Base+r.Path, resp.StatusCode, b)
	}
	return env.Result, resp, nil
}

// SendRaw is Send without the envelope: a 2xx answer's body as it came (at
// most MaxAnswer bytes).
func (c *Client) SendRaw(ctx context.Context, r Request) ([]byte, *http.Response, error) {
	var body io.Reader
	contentType := ""
	switch {
	case r.Body != nil:
		body, contentType = bytes.NewReader(r.Body), r.ContentType
	case r.JSON != nil:
		b, err := json.Marshal(r.JSON)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding the request: %w", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	case r.Form != nil:
		body, contentType = strings.NewReader(r.Form.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, c.Base+r.Path, body)
	if err != nil {
		return nil, nil, err
	}
	accept := "application/json"
	if r.Accept != "" {
		accept = r.Accept
	}
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.Version > 0 {
		req.Header.Set("If-Match", `"`+strconv.FormatInt(r.Version, 10)+`"`)
	}
	switch {
	case c.Session != nil:
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: c.Session.Cookie})
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			req.Header.Set("csrf-token", c.Session.CSRFToken)
		}
	case !c.Password.IsZero() && !strings.HasSuffix(r.Path, "/rbac/login"):
		req.SetBasicAuth(c.Username, c.Password.RevealString())
	}
	hc := c.HTTP
	if r.Long {
		nc := *c.HTTP
		nc.Timeout = 0
		hc = &nc
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, c.transportError(err)
	}
	defer resp.Body.Close()
	if r.Into != nil && resp.StatusCode/100 == 2 {
		c.renewCookie(resp)
		if _, err := io.Copy(r.Into, resp.Body); err != nil {
			return nil, resp, fmt.Errorf("reading the answer of %s: %w", c.Base, err)
		}
		return nil, resp, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return nil, resp, fmt.Errorf("reading the answer of %s: %w", c.Base, err)
	}
	c.renewCookie(resp)
	if resp.StatusCode/100 != 2 {
		return nil, resp, statusError(resp, r, b)
	}
	return b, resp, nil
}

// Login logs Username in with Password (POST /rbac/login) and returns the
// session the API set, and the answer's result.
func (c *Client) Login(ctx context.Context) (*Session, json.RawMessage, error) {
	form := url.Values{"username": {c.Username}, "password": {c.Password.RevealString()}}
	raw, resp, err := c.Send(ctx, Request{Method: http.MethodPost, Path: "/rbac/login", Form: form})
	if err != nil {
		return nil, nil, err
	}
	var r struct {
		User      string `json:"user"`
		CSRFToken string `json:"csrfToken"`
		Expires   string `json:"expires"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, nil, fmt.Errorf("login answer: %w", err)
	}
	s := &Session{URL: c.Base, User: r.User, CSRFToken: r.CSRFToken, Expires: r.Expires}
	if s.CSRFToken == "" {
		s.CSRFToken = resp.Header.Get("csrf-token")
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == SessionCookie {
			s.Cookie = ck.Value
		}
	}
	if s.Cookie == "" {
		return nil, nil, fmt.Errorf("login at %s: the answer set no %s cookie", c.Base, SessionCookie)
	}
	return s, raw, nil
}

// VersionOf is the topology version a change wrote (its ETag), or 0.
func VersionOf(resp *http.Response) int64 {
	v, _ := strconv.ParseInt(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
	return v
}

// renewCookie keeps a renewed session cookie.
func (c *Client) renewCookie(resp *http.Response) {
	if c.Session == nil {
		return
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == SessionCookie && ck.Value != "" && ck.Value != c.Session.Cookie {
			c.Session.Cookie = ck.Value
			if c.SessionRenewed != nil {
				c.SessionRenewed(c.Session)
			}
		}
	}
}

// statusError reads the API's error envelope.
func statusError(resp *http.Response, r Request, b []byte) error {
	var env struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	e := &StatusError{Method: r.Method, Path: r.Path, Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Version: r.Version}
	if json.Unmarshal(b, &env) == nil {
		for _, m := range env.Errors {
			if s := strings.TrimSpace(m.Message); s != "" {
				e.Messages = append(e.Messages, s)
			}
		}
	}
	if len(e.Messages) == 0 {
		e.Messages = []string{strings.TrimSpace(string(b))}
	}
	return e
}

// transportError describes a failure to reach or trust the server.
func (c *Client) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	te := &TransportError{Base: c.Base, Err: unwrapURLError(err)}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		cp := &CertProblem{Reason: cve.Err.Error()}
		if len(cve.UnverifiedCertificates) > 0 {
			leaf := cve.UnverifiedCertificates[0]
			sum := sha256.Sum256(leaf.Raw)
			cp.Fingerprint = Fingerprint(sum[:])
			cp.Subject = fmt.Sprintf("subject %q, issuer %q", leaf.Subject.String(), leaf.Issuer.String())
			if n := len(cve.UnverifiedCertificates); n > 1 {
				top := cve.UnverifiedCertificates[n-1]
				s := sha256.Sum256(top.Raw)
				cp.ChainTop = fmt.Sprintf("%q has SHA-256 fingerprint %s", top.Subject.String(), Fingerprint(s[:]))
			}
		}
		var ua x509.UnknownAuthorityError
		var hn x509.HostnameError
		if errors.As(cve.Err, &hn) {
			cp.Hostnames = hn.Certificate.DNSNames
		} else if errors.As(cve.Err, &ua) {
			cp.Reason, cp.Unknown = "signed by an unknown authority", true
		}
		te.Cert = cp
	}
	return te
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Fingerprint formats a digest as colon-separated upper-case hex.
func Fingerprint(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", x)
	}
	return sb.String()
}

// TLSConfig is the client's TLS settings: the server verified against the
// CA certificates of caFile (the domain CA), or not at all when insecure.
// It returns caFile made absolute.
func TLSConfig(caFile string, insecure bool) (*tls.Config, string, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		tc.InsecureSkipVerify = true
		return tc, caFile, nil
	}
	if caFile == "" {
		return tc, "", nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, "", fmt.Errorf("%s: no PEM certificate in it", caFile)
	}
	tc.RootCAs = pool
	if abs, err := filepath.Abs(caFile); err == nil {
		caFile = abs
	}
	return tc, caFile, nil
}

// NewHTTPClient is the HTTP client for the API: the proxy from the
// environment, 10 s to connect and shake hands, 2 minutes per request
// (Request.Long lifts it), redirects not followed.
func NewHTTPClient(tc *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, TLSHandshakeTimeout: 10 * time.Second}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
