// Package jwt is the jwt policy: a request must carry a bearer JWT issued
// by an external issuer, verified with the keys the issuer publishes
// (docs/policies.md#jwt).
//
// The token comes from one Authorization field with the Bearer scheme
// (RFC 6750 §2.1; the scheme without case, RFC 7235). Its signature is
// checked with go-jose against a key of the issuer's key set (KeySource:
// a JWKS URL, or found by discovery), with an algorithm of the configured
// list (never none, never HMAC: the keys are public); then iss (exact),
// aud (contains the configured audience), exp (required), nbf and iat,
// with a small leeway; then the scopes the API and the method require.
//
// Answers (RFC 6750 §3): 401 with WWW-Authenticate: Bearer realm="…"
// (and error="invalid_token" when a token was sent but is not good), 403
// with error="insufficient_scope" and the scopes needed, 503 when the
// issuer's keys are not available (never fetched, or too old). The token is
// never echoed, not even in the logs. On success the subject and client id
// go to the back end in configured fields (in place of any the client
// sent), into the exchange's variables (jwt.sub, jwt.clientId, jwt.scope)
// and, when no earlier policy named one, into its Application (the access
// log).
//
// A verified token is remembered by its SHA-256 for a short time (never
// past its exp), so that the next requests with it skip the signature
// check.
package jwt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// maxClaimBytes bounds the subject and client id passed to the back end.
const maxClaimBytes = 1024

// maxCachedTokens bounds the verified-token cache; when it is full,
// expired entries are dropped, and if none was, the whole cache.
const maxCachedTokens = 10000

// Options are the policy's dependencies besides its settings.
type Options struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Policy is one API's jwt policy. It is immutable (but for its cache of
// verified tokens) and safe for concurrent use.
type Policy struct {
	name   string // "jwt", or the name NewBearer was given
	vars   [3]string
	ext    TokenVerifier // NewBearer's verifier; nil: JWTs of an external issuer
	spec   groupconf.JWTPolicy
	keys   Keys
	algs   []jose.SignatureAlgorithm
	now    func() time.Time
	leeway time.Duration

	authNone    string // WWW-Authenticate without a token
	authInvalid string // with error="invalid_token"
	base        need
	byMethod    map[string]need // base scopes plus the method's
	cache       *tokenCache
}

// need is the scopes a request must have and the WWW-Authenticate of a 403.
type need struct {
	scopes []string
	auth   string
}

// New makes the policy of spec with keys.
func New(spec groupconf.JWTPolicy, keys Keys, opts Options) (*Policy, error) {
	spec = spec.WithDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Policy{name: "jwt", vars: [3]string{"jwt.sub", "jwt.clientId", "jwt.scope"}, spec: spec, keys: keys, now: opts.Now, leeway: spec.Leeway.D()}
	for _, a := range spec.Algorithms {
		if !slices.Contains(groupconf.JWTAlgorithms, a) {
			return nil, fmt.Errorf("jwt policy: algorithm %q is not accepted", a)
		}
		p.algs = append(p.algs, jose.SignatureAlgorithm(a))
	}
	p.authNone = `Bearer realm="` + spec.Realm + `"`
	p.authInvalid = p.authNone + `, error="invalid_token"`
	mkNeed := func(scopes []string) need {
		n := need{scopes: scopes, auth: p.authNone + `, error="insufficient_scope"`}
		if len(scopes) > 0 { // mutate:equivalent boundary a need without scopes never refuses a request: its WWW-Authenticate is never sent
			n.auth += `, scope="` + strings.Join(scopes, " ") + `"`
		}
		return n
	}
	p.base = mkNeed(slices.Clone(spec.Scopes))
	p.byMethod = map[string]need{}
	for m, s := range spec.MethodScopes {
		all := slices.Clone(spec.Scopes)
		for _, x := range s {
			if !slices.Contains(all, x) {
				all = append(all, x)
			}
		}
		p.byMethod[m] = mkNeed(all)
	}
	if g, ok := p.byMethod["GET"]; ok {
		if _, ok := p.byMethod["HEAD"]; !ok {
			p.byMethod["HEAD"] = g // a HEAD answers what a GET would, less the body
		}
	}
	if spec.TokenCacheTTL > 0 { // mutate:equivalent boundary WithDefaults makes 0 the 30 s default: TokenCacheTTL is never 0 here
		p.cache = &tokenCache{m: map[[32]byte]*verified{}, ttl: spec.TokenCacheTTL.D()}
	}
	return p, nil
}

// Name is "jwt", or the name given to NewBearer.
func (p *Policy) Name() string { return p.name }

// Token is what a TokenVerifier found in a good token.
type Token struct {
	Subject, ClientID string
	Scopes            []string
	ExpiresAt         time.Time
}

// ErrInvalidToken is a TokenVerifier's answer for a token that is not
// valid (401); any other error means it could not be checked (503).
var ErrInvalidToken = errors.New("invalid token")

// TokenVerifier checks a bearer token the policy does not verify itself.
type TokenVerifier func(ctx context.Context, token string) (Token, error)

// NewBearer is a policy named name that takes bearer tokens as the jwt
// policy does (the Authorization field, RFC 6750's answers, scopes per
// method, the fields to the back end, the cache of tokens seen), checked
// by verify instead of by an issuer's keys: the oauth policy, with the
// group's own authorization server. Its variables are name.sub,
// name.clientId and name.scope. spec's issuer and key settings are unused.
func NewBearer(name string, spec groupconf.JWTPolicy, verify TokenVerifier, opts Options) (*Policy, error) {
	spec.Algorithms = []string{"ES256"} // unused; keeps New's checks
	p, err := New(spec, nil, opts)
	if err != nil {
		// mutate:equivalent * New fails only for an algorithm it does not accept, and the list was just set to ES256: never reached
		return nil, err
	}
	p.name, p.ext = name, verify
	p.vars = [3]string{name + ".sub", name + ".clientId", name + ".scope"}
	return p, nil
}

// verifyExt checks tok with the policy's TokenVerifier.
func (p *Policy) verifyExt(tok string, now time.Time) (*verified, error) {
	t, err := p.ext(context.Background(), tok)
	switch {
	case errors.Is(err, ErrInvalidToken):
		return nil, p.invalid(err)
	case err != nil:
		return nil, &policy.Error{Status: http.StatusServiceUnavailable, Message: "the token cannot be checked now; try again later",
			Fields: [][2]string{{"Retry-After", "1"}}, Err: err}
	case !now.Before(t.ExpiresAt):
		return nil, p.invalid(errors.New("the token has expired"))
	case !fieldSafe(t.Subject) || !fieldSafe(t.ClientID):
		return nil, p.invalid(errors.New("the token's subject or client id cannot be passed on"))
	}
	until := now.Add(p.spec.TokenCacheTTL.D())
	if t.ExpiresAt.Before(until) {
		until = t.ExpiresAt
	}
	return &verified{sub: t.Subject, clientID: t.ClientID, scope: strings.Join(t.Scopes, " "), scopes: t.Scopes, until: until}, nil
}

// verified is what a good token gives.
type verified struct {
	sub, clientID, scope string
	scopes               []string
	until                time.Time // cached until (never past exp + leeway)
}

func (p *Policy) refuse(auth, msg string, cause error) *policy.Error {
	e := policy.Reject(http.StatusUnauthorized, msg)
	e.Fields = [][2]string{{"WWW-Authenticate", auth}}
	e.Err = cause
	return e
}

func (p *Policy) invalid(cause error) *policy.Error {
	return p.refuse(p.authInvalid, "the bearer token is not valid", cause)
}

// Apply checks the token.
func (p *Policy) Apply(ex *policy.Exchange) error {
	r := ex.R
	switch r.Header.Count("Authorization") {
	case 0:
		return p.refuse(p.authNone, "a bearer token is required", nil)
	case 1:
	default:
		return p.invalid(errors.New("the Authorization field was repeated"))
	}
	tok, ok := bearer(r.Header.Get("Authorization"))
	switch {
	case !ok:
		// Another scheme, or none: "no authentication information"
		// for this scheme (RFC 6750 §3.1: no error code).
		return p.refuse(p.authNone, "a bearer token is required", errors.New("the Authorization field is not of the Bearer scheme"))
	case len(tok) > p.spec.MaxTokenBytes:
		return p.invalid(fmt.Errorf("the token is %d bytes, more than %d", len(tok), p.spec.MaxTokenBytes))
	case len(tok) == 0:
		return p.invalid(errors.New("empty bearer token"))
	}
	now := p.now()
	var v *verified
	var sum [32]byte
	if p.cache != nil {
		sum = sha256.Sum256(tok)
		v = p.cache.get(sum, now)
	}
	if v == nil {
		var err error
		if p.ext != nil {
			v, err = p.verifyExt(string(tok), now)
		} else {
			v, err = p.verify(string(tok), now)
		}
		if err != nil {
			return err
		}
		if p.cache != nil {
			p.cache.put(sum, v, now)
		}
	}
	n := p.base
	if len(p.byMethod) > 0 { // mutate:equivalent boundary a look-up in an empty map finds nothing: the test only saves it
		if m, ok := p.byMethod[string(r.Method)]; ok {
			n = m
		}
	}
	for _, s := range n.scopes {
		if !slices.Contains(v.scopes, s) {
			return &policy.Error{Status: http.StatusForbidden, Message: "the bearer token lacks a scope this request needs: " + strings.Join(n.scopes, " "),
				Fields: [][2]string{{"WWW-Authenticate", n.auth}}, Err: fmt.Errorf("scope %q missing (subject %q, client %q)", s, v.sub, v.clientID)}
		}
	}
	r.Header.Del(p.spec.SubjectHeader)
	r.Header.Del(p.spec.ClientIDHeader)
	if v.sub != "" {
		r.Header.SetString(p.spec.SubjectHeader, v.sub)
	}
	if v.clientID != "" {
		r.Header.SetString(p.spec.ClientIDHeader, v.clientID)
	}
	if p.spec.RemoveAuthorization {
		r.Header.Del("Authorization")
	}
	ex.SetVar(p.vars[0], v.sub)
	ex.SetVar(p.vars[1], v.clientID)
	ex.SetVar(p.vars[2], v.scope)
	if ex.Application == "" {
		ex.Application = v.clientID
	}
	return nil
}

// bearer returns the token of an Authorization value of the Bearer
// scheme (compared without case, RFC 7235 §2.1) after one or more spaces;
// false for another scheme. The token's syntax is go-jose's to check.
func bearer(v []byte) ([]byte, bool) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !asciiEqualFold(v[:len(scheme)], scheme) {
		return nil, false
	}
	rest := v[len(scheme):]
	if len(rest) > 0 && rest[0] != ' ' {
		return nil, false // "Bearerx": another scheme
	}
	return bytes.TrimLeft(rest, " "), true
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// claims are the registered claims the policy checks, and the usual
// subject, client and scope claims.
type claims struct {
	Issuer    *string              `json:"iss"`
	Audience  josejwt.Audience     `json:"aud"`
	Expiry    *josejwt.NumericDate `json:"exp"`
	NotBefore *josejwt.NumericDate `json:"nbf"`
	IssuedAt  *josejwt.NumericDate `json:"iat"`
	Subject   *string              `json:"sub"`
	ClientID  *string              `json:"client_id"`
	AZP       *string              `json:"azp"`
	Scope     scopeList            `json:"scope"`
	SCP       scopeList            `json:"scp"`
}

// scopeList is a scope claim: a space-separated string, or a list.
type scopeList []string

func (s *scopeList) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("a scope claim is a string or a list of strings")
	}
	*s = list
	return nil
}

// verify checks tok's signature and claims at now.
func (p *Policy) verify(tok string, now time.Time) (*verified, error) {
	jws, err := jose.ParseSignedCompact(tok, p.algs)
	if err != nil {
		return nil, p.invalid(fmt.Errorf("parsing the token: %w", err))
	}
	if len(jws.Signatures) != 1 {
		// mutate:equivalent * ParseSignedCompact gives exactly one signature (a compact JWS has one): never reached
		return nil, p.invalid(errors.New("not one signature"))
	}
	h := jws.Signatures[0].Header
	alg := jose.SignatureAlgorithm(h.Algorithm)
	// mutate:equivalent bool defence in depth: ParseSignedCompact refuses an algorithm not in p.algs and fits gives no key for none or HS*, so this check is never the only refusal
	if !slices.Contains(p.algs, alg) || strings.EqualFold(h.Algorithm, "none") || strings.HasPrefix(strings.ToUpper(h.Algorithm), "HS") {
		// go-jose refuses these already; never rely on one check only.
		return nil, p.invalid(fmt.Errorf("algorithm %q not accepted", trunc(h.Algorithm))) // mutate:equivalent delete-stmt defence in depth, as above
	}
	if len(p.spec.Types) > 0 {
		typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
		if !typeAccepted(p.spec.Types, typ) {
			return nil, p.invalid(fmt.Errorf("typ %q is not one of %s", trunc(typ), strings.Join(p.spec.Types, ", ")))
		}
	}
	key, err := p.keys.Key(h.KeyID, alg)
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		return nil, &policy.Error{Status: http.StatusServiceUnavailable, Message: "the token cannot be checked now; try again later",
			Err: err, Fields: [][2]string{{"Retry-After", "1"}}}
	case err != nil:
		return nil, p.invalid(err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, p.invalid(fmt.Errorf("signature (kid %q, %s): %w", trunc(h.KeyID), alg, err))
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, p.invalid(fmt.Errorf("claims: %w", err))
	}
	l := p.leeway
	switch {
	case c.Issuer == nil || *c.Issuer != p.spec.Issuer:
		return nil, p.invalid(fmt.Errorf("iss %q is not %q", trunc(deref(c.Issuer)), p.spec.Issuer))
	case !c.Audience.Contains(p.spec.Audience):
		return nil, p.invalid(fmt.Errorf("aud %q does not contain %q", trunc(strings.Join(c.Audience, " ")), p.spec.Audience))
	case c.Expiry == nil:
		return nil, p.invalid(errors.New("no exp claim"))
	case !now.Before(c.Expiry.Time().Add(l)):
		return nil, p.refuse(p.authInvalid, "the bearer token has expired", fmt.Errorf("expired at %s (leeway %s)", c.Expiry.Time().UTC().Format(time.RFC3339), l))
	case c.NotBefore != nil && now.Add(l).Before(c.NotBefore.Time()):
		return nil, p.invalid(fmt.Errorf("not valid before %s (leeway %s)", c.NotBefore.Time().UTC().Format(time.RFC3339), l))
	case c.IssuedAt != nil && now.Add(l).Before(c.IssuedAt.Time()):
		return nil, p.invalid(fmt.Errorf("issued in the future, at %s (leeway %s)", c.IssuedAt.Time().UTC().Format(time.RFC3339), l))
	}
	v := &verified{sub: deref(c.Subject), scopes: c.Scope}
	if len(v.scopes) == 0 {
		v.scopes = c.SCP
	}
	switch {
	case p.spec.ClientIDClaim != "":
		if v.clientID, err = stringClaim(payload, p.spec.ClientIDClaim); err != nil {
			return nil, p.invalid(err)
		}
	case c.ClientID != nil:
		v.clientID = *c.ClientID
	default:
		v.clientID = deref(c.AZP)
	}
	if p.spec.SubjectClaim != groupconf.DefaultJWTSubjectClaim {
		if v.sub, err = stringClaim(payload, p.spec.SubjectClaim); err != nil {
			return nil, p.invalid(err)
		}
	}
	for _, s := range []string{v.sub, v.clientID} {
		if !fieldSafe(s) {
			return nil, p.invalid(fmt.Errorf("the subject or client id is longer than %d bytes or holds a control character", maxClaimBytes))
		}
	}
	v.scope = strings.Join(v.scopes, " ")
	v.until = c.Expiry.Time().Add(l)
	return v, nil
}

// typeAccepted compares a typ header with the accepted types, without
// case and without an "application/" prefix (RFC 7515 §4.1.9).
func typeAccepted(types []string, typ string) bool {
	norm := func(t string) string {
		if len(t) > len("application/") && strings.EqualFold(t[:len("application/")], "application/") {
			t = t[len("application/"):]
		}
		return strings.ToLower(t)
	}
	typ = norm(typ)
	for _, t := range types {
		if norm(t) == typ {
			return true
		}
	}
	return false
}

// stringClaim reads the string claim name of a JSON object ("" when
// absent; an error when it is not a string).
func stringClaim(payload []byte, name string) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		// mutate:equivalent * verify unmarshalled this payload into the claims struct and found an iss: it is a JSON object, never reached
		return "", fmt.Errorf("claims: %w", err)
	}
	raw, ok := m[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("claim %q is not a string", name)
	}
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// fieldSafe: at most maxClaimBytes, no control character (a value that
// goes into a request field).
func fieldSafe(s string) bool {
	if len(s) > maxClaimBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// tokenCache remembers verified tokens by their SHA-256.
type tokenCache struct {
	ttl time.Duration
	mu  sync.RWMutex
	m   map[[32]byte]*verified
}

func (c *tokenCache) get(sum [32]byte, now time.Time) *verified {
	c.mu.RLock()
	v := c.m[sum]
	c.mu.RUnlock()
	if v == nil || !now.Before(v.until) {
		return nil
	}
	return v
}

func (c *tokenCache) put(sum [32]byte, v *verified, now time.Time) {
	e := *v
	if lim := now.Add(c.ttl); lim.Before(e.until) {
		e.until = lim
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedTokens {
		for k, x := range c.m {
			if !now.Before(x.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedTokens {
			clear(c.m)
		}
	}
	c.m[sum] = &e
}
