package tools

import (
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
	"strings"
)

const sessionCookieName = "gatehouse-session"

// apiError is a non-2xx answer of the management API.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// do sends one request and returns the raw "result" of the envelope.
func (c *apiClient) do(ctx context.Context, method, path string, form url.Values) (json.RawMessage, *http.Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
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
	resp, err := c.http.Do(req)
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
		return nil, resp, c.statusError(resp, b)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Result == nil {
		return nil, resp, fmt.Errorf("%s %s: not a management API answer (status %d): %.200s", method, c.base+path, resp.StatusCode, b)
	}
	return env.Result, resp, nil
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

func (c *apiClient) statusError(resp *http.Response, b []byte) error {
	var env struct {
		Errors []struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &env) == nil && len(env.Errors) > 0 {
		var ms []string
		for _, e := range env.Errors {
			ms = append(ms, e.Message)
		}
		msg = strings.Join(ms, "; ")
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
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
		text = fmt.Sprintf("forbidden (403): %s", msg)
	case http.StatusTooManyRequests:
		text = fmt.Sprintf("too many failed logins (429), retry after %s s: %s", resp.Header.Get("Retry-After"), msg)
	default:
		text = fmt.Sprintf("%s (%d): %s", http.StatusText(resp.StatusCode), resp.StatusCode, msg)
	}
	return &ExitError{Code: 1, Err: &apiError{Status: resp.StatusCode, Message: text}}
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
