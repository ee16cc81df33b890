package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/apiclient"
)

// The client's HTTP plumbing is internal/apiclient; this file words its
// errors for the command line.

// apiRequest is one call of the management API.
type apiRequest = apiclient.Request

// apiError is a non-2xx answer of the management API, explained.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// do sends one request with an optional form body and returns the raw
// "result" of the envelope.
func (c *apiClient) do(ctx context.Context, method, path string, form url.Values) (json.RawMessage, *http.Response, error) {
	return c.send(ctx, apiRequest{Method: method, Path: path, Form: form})
}

// send sends one request and returns the raw "result" of the envelope. A
// non-2xx answer is an *ExitError around an *apiError whose message
// explains the status.
func (c *apiClient) send(ctx context.Context, ar apiRequest) (json.RawMessage, *http.Response, error) {
	raw, resp, err := c.api.Send(ctx, ar)
	return raw, resp, c.explain(err)
}

// sendRaw is send without the envelope: the 2xx answer's body as it came.
func (c *apiClient) sendRaw(ctx context.Context, ar apiRequest) ([]byte, *http.Response, error) {
	b, resp, err := c.api.SendRaw(ctx, ar)
	return b, resp, c.explain(err)
}

// versionOf is the topology version a change wrote (its ETag), or 0.
func versionOf(resp *http.Response) int64 { return apiclient.VersionOf(resp) }

// explain words the client's errors for the command line: the status in
// words, the server's messages (they name what was asked for, and for a
// 403 the user, their roles and the missing permission), and what to do
// next.
func (c *apiClient) explain(err error) error {
	var se *apiclient.StatusError
	var te *apiclient.TransportError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return &ExitError{Code: 1, Err: &apiError{Status: se.Status, Message: c.statusText(se)}}
	case errors.As(err, &te):
		return &ExitError{Code: 1, Err: c.transportText(te)}
	}
	return err
}

func (c *apiClient) statusText(se *apiclient.StatusError) string {
	ms := make([]string, len(se.Messages))
	for i, m := range se.Messages {
		ms[i] = truncate(m, 500)
	}
	msg := ""
	if len(ms) > 0 {
		msg = ms[0]
	}
	if len(ms) > 1 {
		msg = "\n  - " + strings.Join(ms, "\n  - ")
	}
	switch se.Status {
	case http.StatusUnauthorized:
		if c.api.Session != nil {
			return fmt.Sprintf("not authenticated (401): %s; the session has expired or was ended: log in again (gatehouse client login)", msg)
		}
		return fmt.Sprintf("wrong credentials (401) for user %q at %s: %s", c.o.username, c.api.Base, msg)
	case http.StatusForbidden:
		return fmt.Sprintf("forbidden (403): %s; an administrator can give the user a role that holds it (gatehouse client user update)", msg)
	case http.StatusNotFound:
		hint := "gatehouse client topology (or users) lists what there is"
		switch {
		case strings.HasPrefix(se.Path, "/deployment/"):
			hint = "gatehouse deployments lists the archives and the recent jobs"
		case strings.HasPrefix(se.Path, "/applications/"):
			hint = "gatehouse client apps list -g GROUP lists the applications, keys list -g GROUP --app APP their keys"
		}
		return fmt.Sprintf("not found (404): %s; %s", msg, hint)
	case http.StatusConflict:
		if se.Version > 0 && strings.Contains(msg, "If-Match") {
			// The API's advice (GET and If-Match) in the client's words.
			if i := strings.Index(msg, "; read the topology again"); i > 0 {
				msg = msg[:i]
			}
			return fmt.Sprintf("conflict (409): the topology is no longer at version %d (--version): %s; run gatehouse client topology, check that the change still makes sense, and retry with the version it shows (or without --version)", se.Version, msg)
		}
		return fmt.Sprintf("conflict (409): %s", msg)
	case http.StatusBadRequest:
		return fmt.Sprintf("refused (400): %s", msg)
	case http.StatusTooManyRequests:
		return fmt.Sprintf("too many failed logins (429), retry after %s s: %s", se.RetryAfter, msg)
	}
	return fmt.Sprintf("%s (%d): %s", http.StatusText(se.Status), se.Status, msg)
}

func (c *apiClient) transportText(te *apiclient.TransportError) error {
	cp := te.Cert
	if cp == nil {
		return fmt.Errorf("cannot reach the Admin Node Manager at %s: %v", te.Base, te.Err)
	}
	fp, subj := "(no certificate)", ""
	if cp.Fingerprint != "" {
		fp = cp.Fingerprint
		subj = " (" + cp.Subject + ")"
		if cp.ChainTop != "" {
			subj += "; the chain's last certificate " + cp.ChainTop
		}
	}
	hint := "pass --cacert with the domain CA (groups/certs/domaincert.pem of the Admin Node Manager's install directory)"
	if c.o.cacert != "" {
		hint = fmt.Sprintf("the CA in %s did not sign it; pass --cacert with the domain CA (groups/certs/domaincert.pem)", c.o.cacert)
	}
	if cp.Hostnames != nil {
		hint = "connect with a host name the certificate names (" + strings.Join(cp.Hostnames, ", ") + ")"
	}
	return fmt.Errorf("the certificate of %s does not verify: %s; %s. The server presented a certificate with SHA-256 fingerprint %s%s",
		te.Base, cp.Reason, hint, fp, subj)
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
