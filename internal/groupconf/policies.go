package groupconf

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// Policy is one item of apis[].policies: exactly one of its keys, naming
// the policy's type, with that type's settings (docs/policies.md):
//
//	policies:
//	  - cors: {origins: [https://app.example.com], credentials: true}
//	  - headers: {request: {set: {X-Team: orders}}, response: {remove: [Server]}}
//
// The policies of an API apply in their order to every request that
// matched it; the gateway builds them once per configuration.
type Policy struct {
	APIKey  *APIKeyPolicy  `yaml:"apiKey" doc:"Require an API key of a client application allowed to use this API (docs/policies.md#apikey)."`
	JWT     *JWTPolicy     `yaml:"jwt" doc:"Require a bearer JWT of an external issuer, checked with the issuer's published keys (JWKS), its claims and scopes (docs/policies.md#jwt)."`
	Lookup  *LookupPolicy  `yaml:"lookup" doc:"Find a row of a custom KPS table and give its properties to the later policies (docs/policies.md#lookup)."`
	CORS    *CORSPolicy    `yaml:"cors" doc:"Cross-origin resource sharing: the gateway answers preflight requests and adds the CORS fields to responses (docs/policies.md#cors)."`
	OAuth   *OAuthPolicy   `yaml:"oauth" doc:"Require a bearer access token of the group's own authorization server, with the scopes this API needs (docs/policies.md#oauth)."`
	Headers *HeadersPolicy `yaml:"headers" doc:"Set or remove request fields before forwarding and response fields before answering (docs/policies.md#headers)."`
	// The cache policies (docs/cache.md).
	ResponseCache *ResponseCachePolicy `yaml:"responseCache" json:",omitempty" doc:"Answer GET and HEAD requests from a cache of the back end's earlier responses, without forwarding (docs/cache.md#responsecache)."`
	CacheLookup   *CacheLookupPolicy   `yaml:"cacheLookup" json:",omitempty" doc:"Find an entry of a cache by a key from the request and give its value to later policies (docs/cache.md#cachelookup-and-cachestore)."`
	CacheStore    *CacheStorePolicy    `yaml:"cacheStore" json:",omitempty" doc:"Store a value made of earlier policies' variables in a cache under a key from the request (docs/cache.md#cachelookup-and-cachestore)."`
	// RateLimit is in ratelimit.go.
	RateLimit *RateLimitPolicy `yaml:"rateLimit" doc:"At most N requests per window for each client IP, application, API key, OAuth client or header value, across the group's instances; 429 with Retry-After and the RateLimit fields beyond it (docs/rate-limits.md)."`
}

// Type is the policy's type name ("" when none or several keys are set).
func (p Policy) Type() string {
	var names []string
	if p.APIKey != nil {
		names = append(names, "apiKey")
	}
	if p.JWT != nil {
		names = append(names, "jwt")
	}
	if p.Lookup != nil {
		names = append(names, "lookup")
	}
	if p.CORS != nil {
		names = append(names, "cors")
	}
	if p.OAuth != nil {
		names = append(names, "oauth")
	}
	if p.Headers != nil {
		names = append(names, "headers")
	}
	if p.ResponseCache != nil {
		names = append(names, "responseCache")
	}
	if p.CacheLookup != nil {
		names = append(names, "cacheLookup")
	}
	if p.CacheStore != nil {
		names = append(names, "cacheStore")
	}
	if p.RateLimit != nil {
		names = append(names, "rateLimit")
	}
	if len(names) != 1 {
		return ""
	}
	return names[0]
}

// PolicyTypes are the policy type names, in the schema's order.
func PolicyTypes() []string { return yamlNames(policyType) }

// APIKeyPolicy is the apiKey policy.
type APIKeyPolicy struct {
	Header                string `yaml:"header" doc:"The request field that carries the key; default KeyId. It is removed before forwarding."`
	Query                 string `yaml:"query" doc:"A query parameter that may carry the key instead (the field wins when both are given); empty: not accepted in the query. It is removed before forwarding."`
	ApplicationIDHeader   string `yaml:"applicationIdHeader" doc:"The field that tells the back end the client application's id; default X-Gatehouse-Application-Id."`
	ApplicationNameHeader string `yaml:"applicationNameHeader" doc:"The field that tells the back end the application's name; default X-Gatehouse-Application-Name."`
}

// Defaults of the apiKey policy.
const (
	DefaultAPIKeyHeader     = "KeyId"
	DefaultApplicationIDHdr = "X-Gatehouse-Application-Id"
	DefaultApplicationName  = "X-Gatehouse-Application-Name"
)

// WithDefaults is p with its defaults filled in.
func (p APIKeyPolicy) WithDefaults() APIKeyPolicy {
	if p.Header == "" {
		p.Header = DefaultAPIKeyHeader
	}
	if p.ApplicationIDHeader == "" {
		p.ApplicationIDHeader = DefaultApplicationIDHdr
	}
	if p.ApplicationNameHeader == "" {
		p.ApplicationNameHeader = DefaultApplicationName
	}
	return p
}

// LookupPolicy is the lookup policy.
type LookupPolicy struct {
	Table          string `yaml:"table" doc:"The alias of a table of kps.tables."`
	Key            string `yaml:"key" doc:"Where the row's key comes from: header:NAME, query:NAME, param:NAME (a {name} segment of the API's path), or application (the client application an earlier apiKey policy found, or the client id of an earlier jwt or oauth policy's token)."`
	By             string `yaml:"by" doc:"primary (default) or secondary: the table's key the value is compared with."`
	As             string `yaml:"as" doc:"The name later policies find the row under: ${as.property} in a headers value. Letters, digits and _."`
	Required       bool   `yaml:"required" doc:"Refuse the request when there is no key or no row (notFoundStatus); otherwise go on without the row's properties."`
	NotFoundStatus int    `yaml:"notFoundStatus" doc:"The status of a refusal by a required lookup: 403 or 404; 0: 403."`
}

// LookupKey is a parsed lookup key source.
type LookupKey struct {
	From string // header, query, param or application
	Name string // the field, parameter or segment name ("" for application)
}

// ParseLookupKey parses a lookup's key setting.
func ParseLookupKey(s string) (LookupKey, error) {
	if s == "application" {
		return LookupKey{From: "application"}, nil
	}
	from, name, ok := strings.Cut(s, ":")
	switch {
	case !ok || name == "":
		return LookupKey{}, fmt.Errorf("%q: want header:NAME, query:NAME, param:NAME or application", s)
	case from == "header" && !isToken(name):
		return LookupKey{}, fmt.Errorf("%q: %q is not a field name", s, name)
	case from == "query" && (strings.ContainsAny(name, "&=#?% +") || len(name) > 64):
		return LookupKey{}, fmt.Errorf("%q: %q is not a plain query parameter name", s, name)
	case from == "param" && !isVarName(name):
		return LookupKey{}, fmt.Errorf("%q: %q is not a path segment name", s, name)
	case from != "header" && from != "query" && from != "param":
		return LookupKey{}, fmt.Errorf("%q: want header:NAME, query:NAME, param:NAME or application", s)
	}
	return LookupKey{From: from, Name: name}, nil
}

// isVarName: letters, digits and '_', a letter or '_' first.
func isVarName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// CORSPolicy is the cors policy.
type CORSPolicy struct {
	Origins       []string `yaml:"origins" doc:"Origins allowed to call the API from a browser, exactly as browsers send them (https://app.example.com, with a port when not the scheme's default), or \"*\" for any origin (not with credentials). Required."`
	Methods       []string `yaml:"methods" doc:"Methods a preflight may ask for; empty: the API's methods, or GET, HEAD and POST when the API takes any."`
	Headers       []string `yaml:"headers" doc:"Request fields a preflight may ask for (Access-Control-Allow-Headers); compared without case."`
	ExposeHeaders []string `yaml:"exposeHeaders" doc:"Response fields that scripts may read besides the safelisted ones (Access-Control-Expose-Headers)."`
	Credentials   bool     `yaml:"credentials" doc:"Let browsers send cookies and credentials (Access-Control-Allow-Credentials: true); refused with origin \"*\"."`
	MaxAge        Duration `yaml:"maxAge" doc:"How long browsers may cache a preflight answer (Access-Control-Max-Age), 0 to 24h; 0 omits the field."`
}

// HeadersPolicy is the headers policy.
type HeadersPolicy struct {
	Request  HeaderEdits `yaml:"request" doc:"Edits of the request before it is forwarded."`
	Response HeaderEdits `yaml:"response" doc:"Edits of the response before it is sent to the client, also of the gateway's own error answers."`
}

// HeaderEdits remove fields and then set fields.
type HeaderEdits struct {
	Set    map[string]string `yaml:"set" doc:"Fields to set (name: value), replacing every value the message had."`
	Remove []string          `yaml:"remove" doc:"Fields to remove (names, without case)."`
}

var policyType = reflect.TypeOf(Policy{})

// RouteMethods are the methods the API's route matches: its methods, and
// OPTIONS besides when it has a cors policy (the gateway answers the
// preflight; another OPTIONS request is refused by the cors policy when
// the API did not list OPTIONS). Empty: any method.
func (a API) RouteMethods() []string {
	if len(a.Methods) == 0 || slices.Contains(a.Methods, "OPTIONS") {
		return a.Methods
	}
	for _, p := range a.Policies {
		if p.CORS != nil {
			return append(slices.Clone(a.Methods), "OPTIONS")
		}
	}
	return a.Methods
}

// MaxCORSMaxAge bounds cors.maxAge (browsers cap it lower still).
const MaxCORSMaxAge = 24 * time.Hour

// gatewayFields are request and response fields that a headers policy may
// not touch: the message's framing and connection, and what the gateway
// sets itself after the policies.
var gatewayFields = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "Te", "Trailer", "Proxy-Connection",
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Correlationid"}

// validatePolicies checks apis[i].policies, and that every ${variable}
// of a headers value is given by an earlier policy of the API.
func (c *Config) validatePolicies(i int, a API, add func(error)) {
	vars := map[string]bool{}
	lookups := map[string]bool{}
	apiKey := false
	responseCache := false
	for j, p := range a.Policies {
		k := fmt.Sprintf("apis[%d].policies[%d]", i, j)
		if p.Type() == "" {
			add(c.errAt(k, "a policy is one mapping with exactly one key, its type: one of %s", strings.Join(PolicyTypes(), ", ")))
			continue
		}
		switch {
		case p.APIKey != nil:
			c.validateAPIKey(k+".apiKey", *p.APIKey, add)
			apiKey = true
			vars["application.id"], vars["application.name"] = true, true
			vars["apiKey.id"] = true // the key's public id (rateLimit's key: apiKey)
		case p.JWT != nil:
			c.validateJWT(k+".jwt", *p.JWT, add)
			apiKey = true // the token's client id is the exchange's application
			for _, v := range JWTVars {
				vars[v] = true
			}
		case p.Lookup != nil:
			c.validateLookup(k+".lookup", a, *p.Lookup, apiKey, lookups, vars, add)
		case p.CORS != nil:
			c.validateCORS(k+".cors", a, *p.CORS, add)
		case p.OAuth != nil:
			c.validateOAuthPolicy(k+".oauth", *p.OAuth, add)
			apiKey = true // the token's client id is the exchange's application
			for _, v := range OAuthVars {
				vars[v] = true
			}
		case p.Headers != nil:
			c.validateHeaderEdits(k+".headers.request", p.Headers.Request, vars, add)
			c.validateHeaderEdits(k+".headers.response", p.Headers.Response, vars, add)
		case p.ResponseCache != nil:
			if responseCache {
				add(c.errAt(k+".responseCache", "an API has at most one responseCache policy"))
			}
			responseCache = true
			c.validateResponseCache(k+".responseCache", a, *p.ResponseCache, add)
		case p.CacheLookup != nil:
			c.validateCacheLookup(k+".cacheLookup", a, *p.CacheLookup, apiKey, lookups, vars, add)
		case p.CacheStore != nil:
			c.validateCacheStore(k+".cacheStore", a, *p.CacheStore, apiKey, vars, add)
		case p.RateLimit != nil:
			c.validateRateLimit(k+".rateLimit", a, j, *p.RateLimit, add)
		}
	}
}

func (c *Config) validateLookup(k string, a API, p LookupPolicy, apiKey bool, lookups, vars map[string]bool, add func(error)) {
	t, ok := c.kpsTable(p.Table)
	if !ok {
		var aliases []string
		for _, t := range c.KPS.Tables {
			aliases = append(aliases, t.Alias)
		}
		add(c.errAt(k+".table", "%q is not a table of kps.tables (defined: %s)", p.Table, strings.Join(aliases, ", ")))
	}
	key, err := ParseLookupKey(p.Key)
	switch {
	case err != nil:
		add(c.errAt(k+".key", "%v", err))
	case key.From == "application" && !apiKey:
		add(c.errAt(k+".key", "application needs an apiKey, jwt or oauth policy before this lookup (the policy that finds the client application)"))
	case key.From == "param" && !strings.Contains(a.Path, "{"+key.Name+"}"):
		add(c.errAt(k+".key", "the API's path %q has no {%s} segment", a.Path, key.Name))
	}
	switch p.By {
	case "", "primary":
	case "secondary":
		if ok && t.SecondaryKey == "" {
			add(c.errAt(k+".by", "table %q has no secondary key", p.Table))
		}
	default:
		add(c.errAt(k+".by", "%q: want primary or secondary", p.By))
	}
	switch {
	case !isVarName(p.As) || p.As == "application":
		add(c.errAt(k+".as", "%q: want a name of letters, digits and _ (not application)", p.As))
	case lookups[p.As]:
		add(c.errAt(k+".as", "%q is the name of an earlier lookup of this API", p.As))
	}
	lookups[p.As] = true
	if p.NotFoundStatus != 0 && p.NotFoundStatus != 403 && p.NotFoundStatus != 404 {
		add(c.errAt(k+".notFoundStatus", "%d: want 403 or 404", p.NotFoundStatus))
	}
	if ok {
		for _, prop := range t.Properties {
			vars[p.As+"."+prop.Name] = true
		}
	}
}

func (c *Config) kpsTable(alias string) (KPSTable, bool) {
	for _, t := range c.KPS.Tables {
		if t.Alias == alias {
			return t, true
		}
	}
	return KPSTable{}, false
}

func (c *Config) validateCORS(k string, a API, p CORSPolicy, add func(error)) {
	if len(p.Origins) == 0 {
		add(c.errAt(k+".origins", "give the origins allowed (https://app.example.com), or \"*\""))
	}
	for _, o := range p.Origins {
		if o == "*" {
			if p.Credentials {
				add(c.errAt(k+".origins", "\"*\" with credentials: true is refused (browsers refuse it too): list the origins"))
			}
			if len(p.Origins) > 1 {
				add(c.errAt(k+".origins", "\"*\" allows every origin: give it alone"))
			}
			continue
		}
		if err := checkOrigin(o); err != nil {
			add(c.errAt(k+".origins", "%q: %v", o, err))
		}
	}
	for _, m := range p.Methods {
		if !validMethods[m] {
			add(c.errAt(k+".methods", "%q is not a method; accepted: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT (upper case)", m))
		} else if len(a.Methods) > 0 && !slices.Contains(a.Methods, m) {
			add(c.errAt(k+".methods", "%q is not one of the API's methods (%s)", m, strings.Join(a.Methods, ", ")))
		}
	}
	for _, h := range append(slices.Clone(p.Headers), p.ExposeHeaders...) {
		if !isToken(h) {
			add(c.errAt(k, "%q is not a field name", h))
		}
	}
	if time.Duration(p.MaxAge) > MaxCORSMaxAge { // a negative duration does not load
		add(c.errAt(k+".maxAge", "%s: want 0 to 24h", time.Duration(p.MaxAge)))
	}
}

func (c *Config) validateAPIKey(k string, p APIKeyPolicy, add func(error)) {
	p = p.WithDefaults()
	for _, f := range []struct{ key, name string }{{"header", p.Header}, {"applicationIdHeader", p.ApplicationIDHeader}, {"applicationNameHeader", p.ApplicationNameHeader}} {
		switch {
		case !isToken(f.name):
			add(c.errAt(k+"."+f.key, "%q is not a field name", f.name))
		case slices.ContainsFunc(gatewayFields, func(g string) bool { return strings.EqualFold(g, f.name) }):
			add(c.errAt(k+"."+f.key, "%q is the gateway's own field", f.name))
		}
	}
	if strings.EqualFold(p.Header, p.ApplicationIDHeader) || strings.EqualFold(p.Header, p.ApplicationNameHeader) || strings.EqualFold(p.ApplicationIDHeader, p.ApplicationNameHeader) {
		add(c.errAt(k, "header, applicationIdHeader and applicationNameHeader must be three different fields"))
	}
	if p.Query != "" && (strings.ContainsAny(p.Query, "&=#?% +") || len(p.Query) > 64) {
		add(c.errAt(k+".query", "%q is not a plain query parameter name", p.Query))
	}
}

// checkOrigin accepts a serialized origin: scheme://host[:port], lower
// case, nothing after it.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want http:// or https:// and a host")
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "/"):
		return fmt.Errorf("an origin is scheme://host[:port] with nothing after it")
	case o != strings.ToLower(o):
		return fmt.Errorf("browsers send origins in lower case")
	}
	return nil
}

func (c *Config) validateHeaderEdits(k string, e HeaderEdits, vars map[string]bool, add func(error)) {
	check := func(name string) bool {
		switch {
		case !isToken(name):
			add(c.errAt(k, "%q is not a field name", name))
		case slices.ContainsFunc(gatewayFields, func(f string) bool { return strings.EqualFold(f, name) }):
			add(c.errAt(k, "%q is the gateway's own field (framing, connection or forwarding): a policy may not change it", name))
		default:
			return true
		}
		return false
	}
	for name, v := range e.Set {
		if check(name) && (strings.ContainsAny(v, "\r\n\x00") || len(v) > 8<<10 || v != strings.TrimSpace(v)) {
			add(c.errAt(k+".set", "the value of %q must be one line of at most 8 KiB without leading or trailing spaces", name))
		}
		parts, err := ParseTemplate(v)
		if err != nil {
			add(c.errAt(k+".set", "the value of %q: %v", name, err))
			continue
		}
		for _, p := range parts {
			if p.Var != "" && !vars[p.Var] {
				add(c.errAt(k+".set", "the value of %q uses ${%s}, which no earlier policy of this API gives (an apiKey policy gives application.id and application.name; a lookup gives AS.PROPERTY)", name, p.Var))
			}
		}
	}
	for _, name := range e.Remove {
		check(name)
	}
}

// isToken reports whether s is an RFC 9110 token (a field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (c *Config) validateKPS(add func(error)) {
	k := c.KPS
	switch k.Backend {
	case "sqlite":
	case "postgres":
		if k.Postgres.Host == "" || k.Postgres.Database == "" || k.Postgres.User == "" {
			add(c.errAt("kps.postgres", "give host, database and user of the PostgreSQL database"))
		}
		if k.Postgres.Port < 0 || k.Postgres.Port > 65535 {
			add(c.errAt("kps.postgres.port", "%d is not a TCP port", k.Postgres.Port))
		}
		switch k.Postgres.SSLMode {
		case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		default:
			add(c.errAt("kps.postgres.sslMode", "%q: want disable, allow, prefer, require, verify-ca or verify-full", k.Postgres.SSLMode))
		}
	default:
		add(c.errAt("kps.backend", "%q: want sqlite or postgres (cassandra is not available; docs/kps.md)", k.Backend))
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"kps.cache.ttl", k.Cache.TTL}, {"kps.cache.negativeTTL", k.Cache.NegativeTTL}} {
		if time.Duration(d.v) < 100*time.Millisecond || time.Duration(d.v) > 10*time.Minute {
			add(c.errAt(d.key, "%s: want 0.1s to 10m", time.Duration(d.v)))
		}
	}
	seen := map[string]bool{}
	for i, t := range k.KPSTables() {
		key := fmt.Sprintf("kps.tables[%d]", i)
		switch {
		case slices.Contains(reservedAliases, t.Alias):
			add(c.errAt(key+".alias", "%q is a table of Gatehouse's own (client applications and keys)", t.Alias))
		case seen[t.Alias]:
			add(c.errAt(key+".alias", "%q is defined twice", t.Alias))
		}
		seen[t.Alias] = true
		if err := t.Validate(); err != nil {
			add(c.errAt(key, "%v", err))
		}
	}
	if k.Cache.MaxBytes < 64<<10 || k.Cache.MaxBytes > 1<<30 {
		add(c.errAt("kps.cache.maxBytes", "%d: want 65536 (64 KiB) to 1073741824 (1 GiB)", k.Cache.MaxBytes))
	}
}

// TemplatePart is a piece of a headers value: literal text, or a
// variable (${name}) given by an earlier policy.
type TemplatePart struct {
	Lit string
	Var string
}

// ParseTemplate splits a headers value into literal text and ${variables}
// (names of letters, digits, '_' and '.'); "$$" is a literal "$".
func ParseTemplate(s string) ([]TemplatePart, error) {
	var parts []TemplatePart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '$':
			lit.WriteByte('$')
			i++
		case i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return nil, fmt.Errorf("\"${\" without \"}\" in %q", s)
			}
			name := s[i+2 : i+2+end]
			if !validVar(name) {
				return nil, fmt.Errorf("${%s}: a variable is NAME.PROPERTY (letters, digits, _)", name)
			}
			if lit.Len() > 0 {
				parts = append(parts, TemplatePart{Lit: lit.String()})
				lit.Reset()
			}
			parts = append(parts, TemplatePart{Var: name})
			i += 2 + end
		default:
			lit.WriteByte('$')
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, TemplatePart{Lit: lit.String()})
	}
	return parts, nil
}

func validVar(name string) bool {
	head, tail, ok := strings.Cut(name, ".")
	return ok && isVarName(head) && tail != "" && isPropName(tail)
}

// isPropName: a KPS property name (letters, digits, '_', '-', '.').
func isPropName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// KPSTables are the custom tables as the KPS defines them.
func (k KPS) KPSTables() []kps.Table {
	out := make([]kps.Table, 0, len(k.Tables))
	for _, t := range k.Tables {
		kt := kps.Table{Collection: t.Collection, Name: t.Name, Alias: t.Alias, PrimaryKey: t.PrimaryKey, SecondaryKey: t.SecondaryKey, Indexes: t.Indexes}
		for _, p := range t.Properties {
			kt.Properties = append(kt.Properties, kps.Property{Name: p.Name, Type: kps.Type(p.Type), Generated: p.Generated, Encrypted: p.Encrypted})
		}
		out = append(out, kt)
	}
	return out
}

// reservedAliases are the tables Gatehouse defines itself (internal/apps).
var reservedAliases = []string{"applications", "apikeys", "oauth_client_secrets", "oauth_users", "oauth_tokens", "oauth_codes", "oauth_families", "oauth_assertions", "oauth_meta"}

// Equal reports whether k and o are the same settings (the store to open
// and how it is cached).
func (k KPS) Equal(o KPS) bool { return reflect.DeepEqual(k, o) }
