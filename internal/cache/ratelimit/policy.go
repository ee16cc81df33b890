package ratelimit

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// The response fields of draft-ietf-httpapi-ratelimit-headers-11.
const (
	FieldRateLimit  = "RateLimit"
	FieldPolicy     = "RateLimit-Policy"
	FieldRetryAfter = "Retry-After"
)

// Policy is one API's rateLimit policy: it counts each request that
// reaches it by its key and refuses those beyond the limit with 429,
// Retry-After and the RateLimit fields; the responses it lets through get
// RateLimit and RateLimit-Policy too (unless omitHeaders). It is immutable
// and safe for concurrent use.
type Policy struct {
	lim         *Limiter
	key         groupconf.RateLimitKey
	varName     string // the exchange variable that carries the RateLimit item to EditResponse
	policyField string // "name";q=N;w=S
	quotedName  string
	omit        bool
}

var (
	_ policy.Policy         = (*Policy)(nil)
	_ policy.ResponseEditor = (*Policy)(nil)
)

// NewPolicy makes the policy of spec for API api, counting on svc.
func NewPolicy(spec groupconf.RateLimitPolicy, api string, svc *Service) (*Policy, error) {
	spec = spec.WithDefaults()
	key, err := groupconf.ParseRateLimitKey(spec.Key)
	if err != nil {
		return nil, err
	}
	w := time.Duration(spec.Window)
	lim, err := svc.Limiter(Spec{API: api, Name: spec.Name, Requests: spec.Requests, Window: w, Key: spec.Key,
		Exact: spec.Mode == "exact", MaxKeys: spec.MaxKeys, Timeout: time.Duration(spec.ExactTimeout)})
	if err != nil {
		return nil, err
	}
	q := strconv.Quote(spec.Name) // the name is letters, digits, '-', '_', '.': a valid sf-string
	return &Policy{lim: lim, key: key, varName: "rateLimit." + spec.Name, quotedName: q, omit: spec.OmitHeaders,
		policyField: fmt.Sprintf("%s;q=%d;w=%d", q, spec.Requests, int64(w/time.Second))}, nil
}

// Name is "rateLimit".
func (p *Policy) Name() string { return "rateLimit" }

// Limiter is the policy's limiter.
func (p *Policy) Limiter() *Limiter { return p.lim }

// Apply counts the request and refuses it beyond the limit.
func (p *Policy) Apply(ex *policy.Exchange) error {
	var buf [64]byte
	var key []byte
	switch p.key.From {
	case "clientIP":
		key = ex.ClientAddr.AppendTo(buf[:0])
	case "application":
		key = append(buf[:0], ex.Application...)
	case "apiKey":
		v, _ := ex.Var("apiKey.id")
		key = append(buf[:0], v...)
	case "oauthClient":
		v, ok := ex.Var("oauth.clientId")
		if !ok {
			v, _ = ex.Var("jwt.clientId")
		}
		key = append(buf[:0], v...)
	case "header":
		key = ex.R.Header.Get(p.key.Name) // absent: the requests without it share one counter
	}
	d := p.lim.Allow(key)
	if d.Allowed {
		if !p.omit {
			ex.SetVar(p.varName, p.item(d.Remaining, seconds(d.Reset)))
		}
		return nil
	}
	retry := max(seconds(d.RetryAfter), 1)
	ex.SetVar(p.varName, p.item(0, retry))
	return &policy.Error{Status: http.StatusTooManyRequests, Message: "too many requests: this API's rate limit is reached; retry after the time in Retry-After",
		Fields: [][2]string{{FieldRetryAfter, strconv.FormatInt(retry, 10)}}}
}

// item is the policy's member of the RateLimit field.
func (p *Policy) item(remaining, t int64) string {
	var buf [96]byte
	b := append(buf[:0], p.quotedName...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, t, 10)
	return string(b)
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// EditResponse adds the RateLimit and RateLimit-Policy fields of the
// decision Apply took (to the back end's response, or to the gateway's own
// answer: the 429, or a refusal by a later policy).
func (p *Policy) EditResponse(ex *policy.Exchange, status int, h *h1.Header) {
	v, ok := ex.Var(p.varName)
	if !ok {
		return
	}
	h.AddString(FieldPolicy, p.policyField)
	h.AddString(FieldRateLimit, v)
}
