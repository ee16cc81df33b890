// Package cors is the cors policy: cross-origin resource sharing (the
// Fetch standard's CORS protocol) for an API, answered by the gateway.
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
// answered 204 with the Access-Control-Allow-* fields when the origin, the
// method and every requested field are allowed, and refused 403 otherwise;
// it never reaches the back end. Other requests go on; their responses (the
// back end's and the gateway's own errors) get Access-Control-Allow-Origin
// (and -Credentials, -Expose-Headers) when their Origin is allowed, in place
// of whatever the back end sent, and Vary: Origin. docs/policies.md#cors.
package cors

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// Policy is one API's cors policy. It is immutable and safe for concurrent
// use.
type Policy struct {
	anyOrigin   bool
	origins     map[string]bool
	methods     []string
	allowMethod string // Access-Control-Allow-Methods
	headers     map[string]bool
	allowHeader string // Access-Control-Allow-Headers
	expose      string
	credentials bool
	maxAge      string // "" omits the field
	// apiOptions: the API itself takes OPTIONS, so an OPTIONS request that
	// is not a preflight goes on to the back end.
	apiOptions bool
}

// New builds the policy of spec for an API whose own methods are
// apiMethods (empty: any). spec has been validated (groupconf).
func New(spec groupconf.CORSPolicy, apiMethods []string) *Policy {
	p := &Policy{origins: map[string]bool{}, headers: map[string]bool{}, credentials: spec.Credentials}
	for _, o := range spec.Origins {
		if o == "*" {
			p.anyOrigin = true
		}
		p.origins[o] = true
	}
	p.methods = spec.Methods
	if len(p.methods) == 0 {
		p.methods = apiMethods
	}
	if len(p.methods) == 0 {
		p.methods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	}
	p.allowMethod = strings.Join(p.methods, ", ")
	for _, h := range spec.Headers {
		p.headers[strings.ToLower(h)] = true
	}
	p.allowHeader = strings.Join(spec.Headers, ", ")
	p.expose = strings.Join(spec.ExposeHeaders, ", ")
	if d := time.Duration(spec.MaxAge); d > 0 {
		p.maxAge = strconv.Itoa(int(d / time.Second))
	}
	p.apiOptions = len(apiMethods) == 0 || slices.Contains(apiMethods, http.MethodOptions)
	return p
}

// Name is "cors".
func (p *Policy) Name() string { return "cors" }

func (p *Policy) originAllowed(origin []byte) bool {
	return len(origin) > 0 && (p.anyOrigin || p.origins[string(origin)])
}

// Apply answers a preflight, refuses an OPTIONS request that is not one
// when the API does not take OPTIONS, and lets the rest go on.
func (p *Policy) Apply(ex *policy.Exchange) error {
	r := ex.R
	if string(r.Method) != http.MethodOptions {
		return nil
	}
	origin, want := r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Method")
	if origin == nil || want == nil {
		if p.apiOptions {
			return nil
		}
		e := policy.Reject(http.StatusMethodNotAllowed, "method OPTIONS is not allowed here")
		e.Fields = [][2]string{{"Allow", strings.Join(slices.DeleteFunc(slices.Clone(p.methods), func(m string) bool { return m == http.MethodOptions }), ", ")}}
		return e
	}
	if !p.originAllowed(origin) {
		return policy.Reject(http.StatusForbidden, "CORS preflight refused: origin not allowed")
	}
	if !slices.Contains(p.methods, string(want)) {
		return policy.Reject(http.StatusForbidden, "CORS preflight refused: method not allowed")
	}
	fieldsOK := true
	r.Header.Each(func(name, value []byte) bool {
		if !strings.EqualFold(string(name), "Access-Control-Request-Headers") {
			return true
		}
		for _, f := range strings.Split(string(value), ",") {
			f = strings.ToLower(strings.TrimSpace(f))
			if f != "" && !p.headers[f] {
				fieldsOK = false
				return false
			}
		}
		return true
	})
	if !fieldsOK {
		return policy.Reject(http.StatusForbidden, "CORS preflight refused: request field not allowed")
	}
	h := ex.W.Header()
	p.allowOrigin(h, origin)
	h.SetString("Access-Control-Allow-Methods", p.allowMethod)
	if p.allowHeader != "" {
		h.SetString("Access-Control-Allow-Headers", p.allowHeader)
	}
	if p.maxAge != "" {
		h.SetString("Access-Control-Max-Age", p.maxAge)
	}
	h.AddString("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	h.SetString("Content-Length", "0")
	ex.W.WriteHeader(http.StatusNoContent)
	return policy.ErrHandled
}

func isPreflight(ex *policy.Exchange) bool {
	return string(ex.R.Method) == http.MethodOptions && ex.R.Header.Get("Access-Control-Request-Method") != nil
}

// allowOrigin sets Access-Control-Allow-Origin (and -Credentials).
func (p *Policy) allowOrigin(h *h1.Header, origin []byte) {
	if p.anyOrigin && !p.credentials {
		h.SetString("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.SetString("Access-Control-Allow-Credentials", "true")
	}
}

// responseFields are the CORS fields of a response that only this policy
// sets: the back end's are removed.
var responseFields = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"}

// EditResponse makes the response's CORS fields the policy's.
func (p *Policy) EditResponse(ex *policy.Exchange, _ int, h *h1.Header) {
	for _, f := range responseFields {
		h.Del(f)
	}
	if !p.anyOrigin || p.credentials {
		h.AddString("Vary", "Origin")
	}
	origin := ex.R.Header.Get("Origin")
	if !p.originAllowed(origin) || isPreflight(ex) {
		return // a preflight's fields are Apply's: a refused one has none
	}
	p.allowOrigin(h, origin)
	if p.expose != "" {
		h.SetString("Access-Control-Expose-Headers", p.expose)
	}
}
