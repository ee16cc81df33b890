// Package apikey is the apiKey policy: a request must carry the API key of
// a client application that may use the API (docs/policies.md#apikey).
//
// The key comes from a request field (KeyId unless configured) or, when
// configured, a query parameter; both are removed before forwarding, so
// that the back end never sees a client's key. A missing, malformed,
// unknown, disabled or expired key is 401 with WWW-Authenticate; a key
// whose application may not use this API is 403; a key store that cannot
// answer is 503 (fail closed: never 401, never let through). The
// application's id and name go to the back end in configured fields (in
// place of any the client sent) and into the access log.
package apikey

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// MaxKeyBytes bounds a presented key: longer values are refused (401)
// without a look-up.
const MaxKeyBytes = 256

// App is what the policy needs of a client application.
type App struct {
	ID, Name string
	// KeyID is the public id of the key presented (not its secret part):
	// ${apiKey.id} for later policies (a rateLimit keyed by apiKey).
	KeyID string
	// APIs are the names of the APIs it may use.
	APIs []string
}

// Allows reports whether the application may use API api.
func (a App) Allows(api string) bool {
	for _, n := range a.APIs {
		if n == api {
			return true
		}
	}
	return false
}

// ErrInvalidKey is the Checker's answer for a key that does not open
// anything: unknown, disabled, expired, or its application disabled.
var ErrInvalidKey = errors.New("invalid API key")

// Checker finds the application of a presented key (internal/apps). Any
// error but one wrapping ErrInvalidKey means the store could not answer.
type Checker interface {
	Check(ctx context.Context, key string) (App, error)
}

// Policy is one API's apiKey policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	spec    groupconf.APIKeyPolicy
	api     string
	checker Checker
	auth    string // WWW-Authenticate
}

// New makes the policy of spec for API api, with checker.
func New(spec groupconf.APIKeyPolicy, api string, checker Checker) *Policy {
	spec = spec.WithDefaults()
	auth := `APIKey realm="gatehouse", header="` + spec.Header + `"`
	if spec.Query != "" {
		auth += `, query="` + spec.Query + `"`
	}
	return &Policy{spec: spec, api: api, checker: checker, auth: auth}
}

// Name is "apiKey".
func (p *Policy) Name() string { return "apiKey" }

func (p *Policy) unauthorized(msg string, cause error) *policy.Error {
	e := policy.Reject(http.StatusUnauthorized, msg)
	e.Fields = [][2]string{{"WWW-Authenticate", p.auth}}
	e.Err = cause
	return e
}

// Apply checks the key.
func (p *Policy) Apply(ex *policy.Exchange) error {
	r := ex.R
	var key string
	n := r.Header.Count(p.spec.Header)
	if n == 1 {
		key = string(r.Header.Get(p.spec.Header))
	}
	r.Header.Del(p.spec.Header)
	fromQuery := ""
	if p.spec.Query != "" && len(r.Query) > 0 {
		var removed bool
		r.Query, fromQuery, removed = cutParam(r.Query, p.spec.Query)
		if removed && n == 0 {
			key = fromQuery
			n = 1
		}
	}
	switch {
	case n == 0:
		return p.unauthorized("an API key is required", nil)
	case n > 1:
		return p.unauthorized("give one API key", errors.New("the key field was repeated"))
	case len(key) > MaxKeyBytes || key == "":
		return p.unauthorized("invalid API key", errors.New("key too long or empty"))
	}
	app, err := p.checker.Check(context.Background(), key)
	switch {
	case errors.Is(err, ErrInvalidKey):
		return p.unauthorized("invalid API key", err)
	case err != nil:
		return &policy.Error{Status: http.StatusServiceUnavailable, Message: "the API key cannot be checked now; try again later", Err: err, Fields: [][2]string{{"Retry-After", "1"}}}
	}
	ex.Application = app.ID
	ex.SetVar("application.id", app.ID)
	ex.SetVar("application.name", app.Name)
	if app.KeyID != "" {
		ex.SetVar("apiKey.id", app.KeyID)
	}
	if !app.Allows(p.api) {
		return &policy.Error{Status: http.StatusForbidden, Message: "this application may not use this API", Err: errors.New("application " + app.ID + " is not allowed API " + p.api)}
	}
	r.Header.Del(p.spec.ApplicationIDHeader)
	r.Header.Del(p.spec.ApplicationNameHeader)
	r.Header.SetString(p.spec.ApplicationIDHeader, app.ID)
	r.Header.SetString(p.spec.ApplicationNameHeader, app.Name)
	return nil
}

// cutParam removes every name=value parameter from the raw query q and
// returns the rest, the first value (unescaped) and whether any was there.
// The other parameters keep their bytes and order.
func cutParam(q []byte, name string) (rest []byte, value string, found bool) {
	out := make([]byte, 0, len(q))
	for _, part := range strings.Split(string(q), "&") {
		k, v, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == name {
			if !found {
				if uv, err := url.QueryUnescape(v); err == nil {
					value = uv
				}
			}
			found = true
			continue
		}
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, part...)
	}
	return out, value, found
}
