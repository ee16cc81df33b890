package tools

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
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

const sessionCookieName = "gatehouse-session"

// apiError is a non-2xx answer of the management API.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// apiRequest is one call of the management API.
type apiRequest struct {
	method, path string
	form         url.Values // a form body (login, logout, management); nil: none
	json         any        // a JSON body; nil: none
	version      int64      // > 0: sent as If-Match (the topology version the change is based on)
	// body is a raw body sent as contentType (a deployment archive); nil: none.
	body        []byte
	contentType string
	// accept overrides the Accept header (application/json) for answers
	// that are not the JSON envelope (an archive download, sendRaw).
	accept string
	// long: no client timeout for this request (a synchronous rollout); the
	// context bounds it.
	long bool
}

// do sends one request with an optional form body and returns the raw
// "result" of the envelope.
func (c *apiClient) do(ctx context.Context, method, path string, form url.Values) (json.RawMessage, *http.Response, error) {
	return c.send(ctx, apiRequest{method: method, path: path, form: form})
}

// send sends one request and returns the raw "result" of the envelope.
// With the saved session it sends the cookie, and the CSRF token on every
// method that is not GET or HEAD; otherwise HTTP Basic as --username. A
// non-2xx answer is an *ExitError around an *apiError whose message
// explains the status (statusError).
func (c *apiClient) send(ctx context.Context, ar apiRequest) (json.RawMessage, *http.Response, error) {
	b, resp, err := c.sendRaw(ctx, ar)
	if err != nil {
		return nil, resp, err
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Result == nil {
		return nil, resp, fmt.Errorf("%s %s: not a management API answer (status %d): %.200s", ar.method, c.base+ar.path, resp.StatusCode, b)
	}
	return env.Result, resp, nil
}

// sendRaw is send without the envelope: the 2xx answer's body as it came
// (at most 64 MiB). Errors are send's.
func (c *apiClient) sendRaw(ctx context.Context, ar apiRequest) ([]byte, *http.Response, error) {
	var body io.Reader
	contentType := ""
	switch {
	case ar.body != nil:
		body, contentType = bytes.NewReader(ar.body), ar.contentType
	case ar.json != nil:
		b, err := json.Marshal(ar.json)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding the request: %w", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	case ar.form != nil:
		body, contentType = strings.NewReader(ar.form.Encode()), "application/x-www-form-urlencoded"
	}
	method, path := ar.method, ar.path
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	accept := "application/json"
	if ar.accept != "" {
		accept = ar.accept
	}
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ar.version > 0 {
		req.Header.Set("If-Match", `"`+strconv.FormatInt(ar.version, 10)+`"`)
	}
	switch {
	case c.sess != nil:
		req.AddCookie(&http.Cookie{Name: sessionCookieName, Value: c.sess.Cookie})
		if method != http.MethodGet && method != http.MethodHead {
			req.Header.Set("csrf-token", c.sess.CSRFToken)
		}
	case !c.password.IsZero() && !strings.HasSuffix(path, "/rbac/login"):
		req.SetBasicAuth(c.o.username, c.password.RevealString())
	}
	hc := c.http
	if ar.long {
		nc := *c.http
		nc.Timeout = 0
		hc = &nc
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, c.transportError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp, fmt.Errorf("reading the answer of %s: %w", c.base, err)
	}
	c.renewCookie(resp)
	if resp.StatusCode/100 != 2 {
		return nil, resp, c.statusError(resp, ar, b)
	}
	return b, resp, nil
}

// versionOf is the topology version a change wrote (its ETag), or 0.
func versionOf(resp *http.Response) int64 {
	v, _ := strconv.ParseInt(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
	return v
}

// renewCookie keeps a renewed session cookie.
func (c *apiClient) renewCookie(resp *http.Response) {
	if c.sess == nil {
		return
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookieName && ck.Value != "" && ck.Value != c.sess.Cookie {
			c.sess.Cookie = ck.Value
			_ = saveSession(c.sessPath, c.sess)
		}
	}
}

// statusError explains a non-2xx answer: the status in words, the
// server's messages (it names what was asked for, and for a 403 the user,
// their roles and the missing permission), and what to do next.
func (c *apiClient) statusError(resp *http.Response, ar apiRequest, b []byte) error {
	var env struct {
		Errors []struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	var ms []string
	if json.Unmarshal(b, &env) == nil {
		for _, e := range env.Errors {
			if m := strings.TrimSpace(e.Message); m != "" {
				ms = append(ms, truncate(m, 500))
			}
		}
	}
	if len(ms) == 0 {
		ms = []string{truncate(strings.TrimSpace(string(b)), 500)}
	}
	msg := ms[0]
	if len(ms) > 1 {
		msg = "\n  - " + strings.Join(ms, "\n  - ")
	}
	var text string
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if c.sess != nil {
			text = fmt.Sprintf("not authenticated (401): %s; the session has expired or was ended: log in again (gatehouse client login)", msg)
		} else {
			text = fmt.Sprintf("wrong credentials (401) for user %q at %s: %s", c.o.username, c.base, msg)
		}
	case http.StatusForbidden:
		text = fmt.Sprintf("forbidden (403): %s; an administrator can give the user a role that holds it (gatehouse client user update)", msg)
	case http.StatusNotFound:
		hint := "gatehouse client topology (or users) lists what there is"
		if strings.HasPrefix(ar.path, "/deployment/") {
			hint = "gatehouse deployments lists the archives and the recent jobs"
		}
		text = fmt.Sprintf("not found (404): %s; %s", msg, hint)
	case http.StatusConflict:
		text = fmt.Sprintf("conflict (409): %s", msg)
		if ar.version > 0 && strings.Contains(msg, "If-Match") {
			// The API's advice (GET and If-Match) in the client's words.
			if i := strings.Index(msg, "; read the topology again"); i > 0 {
				msg = msg[:i]
			}
			text = fmt.Sprintf("conflict (409): the topology is no longer at version %d (--version): %s; run gatehouse client topology, check that the change still makes sense, and retry with the version it shows (or without --version)", ar.version, msg)
		}
	case http.StatusBadRequest:
		text = fmt.Sprintf("refused (400): %s", msg)
	case http.StatusTooManyRequests:
		text = fmt.Sprintf("too many failed logins (429), retry after %s s: %s", resp.Header.Get("Retry-After"), msg)
	default:
		text = fmt.Sprintf("%s (%d): %s", http.StatusText(resp.StatusCode), resp.StatusCode, msg)
	}
	return &ExitError{Code: 1, Err: &apiError{Status: resp.StatusCode, Message: text}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// transportError explains a failure to reach or trust the server.
func (c *apiClient) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		fp := "(no certificate)"
		subj := ""
		if len(cve.UnverifiedCertificates) > 0 {
			leaf := cve.UnverifiedCertificates[0]
			sum := sha256.Sum256(leaf.Raw)
			fp = fingerprint(sum[:])
			subj = fmt.Sprintf(" (subject %q, issuer %q)", leaf.Subject.String(), leaf.Issuer.String())
			if len(cve.UnverifiedCertificates) > 1 {
				top := cve.UnverifiedCertificates[len(cve.UnverifiedCertificates)-1]
				s := sha256.Sum256(top.Raw)
				subj += fmt.Sprintf("; the chain's last certificate %q has SHA-256 fingerprint %s", top.Subject.String(), fingerprint(s[:]))
			}
		}
		hint := "pass --cacert with the domain CA (groups/certs/domaincert.pem of the Admin Node Manager's install directory)"
		if c.o.cacert != "" {
			hint = fmt.Sprintf("the CA in %s did not sign it; pass --cacert with the domain CA (groups/certs/domaincert.pem)", c.o.cacert)
		}
		var ua x509.UnknownAuthorityError
		var hn x509.HostnameError
		reason := cve.Err.Error()
		if errors.As(cve.Err, &hn) {
			hint = "connect with a host name the certificate names (" + strings.Join(hn.Certificate.DNSNames, ", ") + ")"
		} else if errors.As(cve.Err, &ua) {
			reason = "signed by an unknown authority"
		}
		return &ExitError{Code: 1, Err: fmt.Errorf("the certificate of %s does not verify: %s; %s. The server presented a certificate with SHA-256 fingerprint %s%s",
			c.base, reason, hint, fp, subj)}
	}
	return &ExitError{Code: 1, Err: fmt.Errorf("cannot reach the Admin Node Manager at %s: %v", c.base, unwrapURLError(err))}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func fingerprint(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", x)
	}
	return sb.String()
}
