package groupconf

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// JWTPolicy is the jwt policy: a bearer JWT issued by an external issuer,
// verified with the keys the issuer publishes (docs/policies.md#jwt).
type JWTPolicy struct {
	Issuer              string              `yaml:"issuer" doc:"The issuer, exactly as the tokens' iss claim says it (https://login.example.com/realms/shop). Required."`
	Audience            string              `yaml:"audience" doc:"The audience this API is: the tokens' aud claim must contain it. Required."`
	JWKSURL             string              `yaml:"jwksUrl" doc:"The URL of the issuer's JSON Web Key Set; give it or discovery."`
	Discovery           bool                `yaml:"discovery" doc:"Find the key set's URL (jwks_uri) in the issuer's metadata: {issuer}/.well-known/openid-configuration, else RFC 8414's /.well-known/oauth-authorization-server; its issuer must be the configured one."`
	Algorithms          []string            `yaml:"algorithms" doc:"Signature algorithms accepted (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA); empty: RS256 and ES256. none and the HMAC algorithms (HS256…) are refused: the keys are public."`
	Types               []string            `yaml:"types" doc:"Token types accepted in the typ header (RFC 8725 §3.11), compared without case and without an application/ prefix: [at+jwt] accepts only RFC 9068 access tokens (not ID tokens); empty: typ is not checked."`
	Leeway              Duration            `yaml:"leeway" doc:"Clock skew allowed on exp, nbf and iat, up to 5m; 0: 30s."`
	Scopes              []string            `yaml:"scopes" doc:"Scopes every request must have (all of them), from the token's space-separated scope claim or its scp list; empty: none."`
	MethodScopes        map[string][]string `yaml:"methodScopes" doc:"More scopes required by method (GET: [orders:read], POST: [orders:write]), besides scopes; HEAD takes GET's unless it is listed."`
	SubjectClaim        string              `yaml:"subjectClaim" doc:"The claim naming the user or client the token is for; default sub."`
	ClientIDClaim       string              `yaml:"clientIdClaim" doc:"The claim naming the client application; empty: client_id, else azp."`
	SubjectHeader       string              `yaml:"subjectHeader" doc:"The field that tells the back end the subject (in place of any the client sent); default X-Gatehouse-Subject."`
	ClientIDHeader      string              `yaml:"clientIdHeader" doc:"The field that tells the back end the client id (in place of any the client sent); default X-Gatehouse-Client-Id."`
	RemoveAuthorization bool                `yaml:"removeAuthorization" doc:"Remove the Authorization field before forwarding; by default it is forwarded unchanged."`
	Realm               string              `yaml:"realm" doc:"The realm of the WWW-Authenticate field of a 401 or 403; default gatehouse."`
	CAFile              string              `yaml:"caFile" doc:"PEM bundle of CAs to verify the issuer's TLS certificate with, instead of the system's; relative to the install directory; under the group's directory or nodemanager.yaml allowedConfigDirs."`
	AllowHTTP           bool                `yaml:"allowHttp" doc:"Accept http:// for the issuer's URLs when the host is a loopback address or localhost (tests, a sidecar); never for another host."`
	KeysTTL             Duration            `yaml:"keysTtl" doc:"How long a fetched key set is used before it is fetched again (refreshed in the background before then), 1m to 24h; 0: 10m."`
	KeysMaxStale        Duration            `yaml:"keysMaxStale" doc:"How long past keysTtl the last key set is still used, with a warning, while the issuer cannot be reached, up to 7 days (168h); 0: 1h. After it the API answers 503."`
	RefetchInterval     Duration            `yaml:"refetchInterval" doc:"A token with an unknown kid makes the key set be fetched again at most once per this (a new key of the issuer is found; random kids cannot make the gateway hammer it), 1s to 1h; 0: 10s."`
	FetchTimeout        Duration            `yaml:"fetchTimeout" doc:"Longest time to fetch the issuer's metadata or key set, 1s to 1m; 0: 5s."`
	MaxTokenBytes       int                 `yaml:"maxTokenBytes" doc:"Longest token accepted, 1024 to 65536 bytes; 0: 8192."`
	TokenCacheTTL       Duration            `yaml:"tokenCacheTtl" doc:"How long a verified token is remembered (by its SHA-256) so that the next requests with it skip the signature check; never past its exp; up to 5m; 0: 30s."`
}

// Defaults of the jwt policy.
const (
	DefaultJWTSubjectClaim    = "sub"
	DefaultJWTSubjectHeader   = "X-Gatehouse-Subject"
	DefaultJWTClientIDHeader  = "X-Gatehouse-Client-Id"
	DefaultJWTRealm           = "gatehouse"
	DefaultJWTLeeway          = 30 * time.Second
	MaxJWTLeeway              = 5 * time.Minute
	DefaultJWTKeysTTL         = 10 * time.Minute
	DefaultJWTKeysMaxStale    = time.Hour
	DefaultJWTRefetchInterval = 10 * time.Second
	DefaultJWTFetchTimeout    = 5 * time.Second
	DefaultJWTMaxTokenBytes   = 8 << 10
	DefaultJWTTokenCacheTTL   = 30 * time.Second
)

// JWTVars are the variables a jwt policy gives later policies (${jwt.sub}
// in a headers value).
var JWTVars = []string{"jwt.sub", "jwt.clientId", "jwt.scope"}

// JWTAlgorithms are the signature algorithms a jwt policy may accept:
// asymmetric only, since the keys come from a public key set.
var JWTAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// WithDefaults is p with its defaults filled in.
func (p JWTPolicy) WithDefaults() JWTPolicy {
	if len(p.Algorithms) == 0 {
		p.Algorithms = []string{"RS256", "ES256"}
	}
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&p.Leeway, DefaultJWTLeeway)
	def(&p.KeysTTL, DefaultJWTKeysTTL)
	def(&p.KeysMaxStale, DefaultJWTKeysMaxStale)
	def(&p.RefetchInterval, DefaultJWTRefetchInterval)
	def(&p.FetchTimeout, DefaultJWTFetchTimeout)
	def(&p.TokenCacheTTL, DefaultJWTTokenCacheTTL)
	if p.MaxTokenBytes == 0 {
		p.MaxTokenBytes = DefaultJWTMaxTokenBytes
	}
	if p.SubjectClaim == "" {
		p.SubjectClaim = DefaultJWTSubjectClaim
	}
	if p.SubjectHeader == "" {
		p.SubjectHeader = DefaultJWTSubjectHeader
	}
	if p.ClientIDHeader == "" {
		p.ClientIDHeader = DefaultJWTClientIDHeader
	}
	if p.Realm == "" {
		p.Realm = DefaultJWTRealm
	}
	return p
}

// CheckIssuerURL accepts an https URL with a host, or an http one for a
// loopback host when allowHTTP is set; no user, query or fragment.
func CheckIssuerURL(s string, allowHTTP bool) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("want https://host[/path], without user, query or fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && !allowHTTP:
		return fmt.Errorf("http:// is refused (tokens' keys must come over TLS); allowHttp: true accepts it for a loopback host only")
	case u.Scheme == "http":
		if !IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("http:// is accepted for a loopback host only (127.0.0.1, ::1, localhost), not %q", u.Hostname())
		}
		return nil
	}
	return fmt.Errorf("want https://")
}

// IsLoopbackHost reports whether host is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isScopeToken: RFC 6749 §3.3 scope-token, %x21 / %x23-5B / %x5D-7E.
func isScopeToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

// isClaimName: a JSON member name we accept for a claim: printable ASCII
// without quotes or backslash, at most 64 bytes.
func isClaimName(s string) bool { return len(s) <= 64 && isScopeToken(s) }

func (c *Config) validateJWT(k string, p JWTPolicy, add func(error)) {
	if p.Issuer == "" {
		add(c.errAt(k, "issuer: give the issuer, exactly as the tokens' iss claim says it (https://login.example.com)"))
	} else if err := CheckIssuerURL(p.Issuer, p.AllowHTTP); err != nil {
		add(c.errAt(k+".issuer", "%q: %v", p.Issuer, err))
	}
	if strings.TrimSpace(p.Audience) == "" {
		add(c.errAt(k, "audience: give the audience the tokens must be for (their aud claim)"))
	}
	switch {
	case p.JWKSURL == "" && !p.Discovery:
		add(c.errAt(k, "give jwksUrl (the issuer's key set) or discovery: true (find it in the issuer's metadata)"))
	case p.JWKSURL != "" && p.Discovery:
		add(c.errAt(k+".jwksUrl", "give jwksUrl or discovery: true, not both"))
	case p.JWKSURL != "":
		if err := CheckIssuerURL(p.JWKSURL, p.AllowHTTP); err != nil {
			add(c.errAt(k+".jwksUrl", "%q: %v", p.JWKSURL, err))
		}
	}
	seen := map[string]bool{}
	for _, a := range p.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			add(c.errAt(k+".algorithms", "\"none\" is refused: an unsigned token proves nothing"))
		case len(a) == 5 && strings.HasPrefix(strings.ToUpper(a), "HS"):
			add(c.errAt(k+".algorithms", "%q is refused: HMAC needs a shared secret, and the issuer's keys are public (a token signed with a public key as HMAC secret would pass)", a))
		case !slices.Contains(JWTAlgorithms, a):
			add(c.errAt(k+".algorithms", "%q is not an algorithm accepted: %s", a, strings.Join(JWTAlgorithms, ", ")))
		case seen[a]:
			add(c.errAt(k+".algorithms", "%q is listed twice", a))
		}
		seen[a] = true
	}
	for _, t := range p.Types {
		if !isScopeToken(t) || strings.ContainsAny(t, ",;") {
			add(c.errAt(k+".types", "%q is not a media type name (at+jwt, JWT)", t))
		}
	}
	bounds := []struct {
		key      string
		v        Duration
		min, max time.Duration
	}{
		{"leeway", p.Leeway, 0, MaxJWTLeeway},
		{"keysTtl", p.KeysTTL, time.Minute, 24 * time.Hour},
		{"keysMaxStale", p.KeysMaxStale, 0, 7 * 24 * time.Hour},
		{"refetchInterval", p.RefetchInterval, time.Second, time.Hour},
		{"fetchTimeout", p.FetchTimeout, time.Second, time.Minute},
	}
	for _, b := range bounds {
		if b.v != 0 && (b.v.D() < b.min || b.v.D() > b.max) {
			add(c.errAt(k+"."+b.key, "%s: want %s to %s (0: the default)", b.v.D(), fmtDur(b.min), fmtDur(b.max)))
		}
	}
	for _, f := range []struct{ key, name string }{{"subjectClaim", p.SubjectClaim}, {"clientIdClaim", p.ClientIDClaim}} {
		if f.name != "" && !isClaimName(f.name) {
			add(c.errAt(k+"."+f.key, "%q is not a claim name (printable ASCII without spaces, quotes or backslash, at most 64 bytes)", f.name))
		}
	}
	c.validateBearer(k, p, add)
}

// validateBearer checks the settings a jwt and an oauth policy share: how
// the token is taken, the scopes required, the fields to the back end.
func (c *Config) validateBearer(k string, p JWTPolicy, add func(error)) {
	if p.TokenCacheTTL != 0 && (p.TokenCacheTTL.D() < 0 || p.TokenCacheTTL.D() > 5*time.Minute) {
		add(c.errAt(k+".tokenCacheTtl", "%s: want 0s to 5m (0: the default)", p.TokenCacheTTL.D()))
	}
	if p.MaxTokenBytes != 0 && (p.MaxTokenBytes < 1024 || p.MaxTokenBytes > 64<<10) {
		add(c.errAt(k+".maxTokenBytes", "%d: want 1024 to 65536 (0: 8192)", p.MaxTokenBytes))
	}
	for _, s := range p.Scopes {
		if !isScopeToken(s) {
			add(c.errAt(k+".scopes", "%q is not a scope (printable ASCII without spaces, quotes or backslash)", s))
		}
	}
	methods := make([]string, 0, len(p.MethodScopes))
	for m := range p.MethodScopes {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		if !validMethods[m] {
			add(c.errAt(k+".methodScopes", "%q is not a method; accepted: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT (upper case)", m))
		}
		for _, s := range p.MethodScopes[m] {
			if !isScopeToken(s) {
				add(c.errAt(k+".methodScopes", "%s: %q is not a scope (printable ASCII without spaces, quotes or backslash)", m, s))
			}
		}
	}
	d := p.WithDefaults()
	for _, f := range []struct{ key, name string }{{"subjectHeader", d.SubjectHeader}, {"clientIdHeader", d.ClientIDHeader}} {
		switch {
		case !isToken(f.name):
			add(c.errAt(k+"."+f.key, "%q is not a field name", f.name))
		case strings.EqualFold(f.name, "Authorization"):
			add(c.errAt(k+"."+f.key, "%q carries the token", f.name))
		case slices.ContainsFunc(gatewayFields, func(g string) bool { return strings.EqualFold(g, f.name) }):
			add(c.errAt(k+"."+f.key, "%q is the gateway's own field", f.name))
		}
	}
	if strings.EqualFold(d.SubjectHeader, d.ClientIDHeader) {
		add(c.errAt(k, "subjectHeader and clientIdHeader must be two different fields"))
	}
	if strings.ContainsAny(p.Realm, "\"\\\r\n\x00") || len(p.Realm) > 128 {
		add(c.errAt(k+".realm", "%q: want at most 128 characters without quotes, backslash or line breaks", p.Realm))
	}
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	s = strings.TrimSuffix(s, "0m")
	return s
}

// OAuthPolicy is the oauth policy: a bearer access token issued by the
// group's own authorization server (oauth: in the group configuration;
// docs/policies.md#oauth).
type OAuthPolicy struct {
	Scopes              []string            `yaml:"scopes" doc:"Scopes every request must have (all of them); empty: none."`
	MethodScopes        map[string][]string `yaml:"methodScopes" doc:"More scopes required by method (GET: [orders:read], POST: [orders:write]), besides scopes; HEAD takes GET's unless it is listed."`
	SubjectHeader       string              `yaml:"subjectHeader" doc:"The field that tells the back end the subject: the user, or the client for a client_credentials token (in place of any the client sent); default X-Gatehouse-Subject."`
	ClientIDHeader      string              `yaml:"clientIdHeader" doc:"The field that tells the back end the client id (in place of any the client sent); default X-Gatehouse-Client-Id."`
	RemoveAuthorization bool                `yaml:"removeAuthorization" doc:"Remove the Authorization field before forwarding; by default it is forwarded unchanged."`
	Realm               string              `yaml:"realm" doc:"The realm of the WWW-Authenticate field of a 401 or 403; default gatehouse."`
	MaxTokenBytes       int                 `yaml:"maxTokenBytes" doc:"Longest token accepted, 1024 to 65536 bytes; 0: 8192."`
	TokenCacheTTL       Duration            `yaml:"tokenCacheTtl" doc:"How long a verified token is remembered (by its SHA-256), so that a revoked token may still pass that long besides kps.cache.ttl; never past its expiry; up to 5m; 0: 30s."`
}

// OAuthVars are the variables an oauth policy gives later policies.
var OAuthVars = []string{"oauth.sub", "oauth.clientId", "oauth.scope"}

// Bearer is p as the bearer settings of a jwt policy (the policy shares
// its code).
func (p OAuthPolicy) Bearer() JWTPolicy {
	return JWTPolicy{Scopes: p.Scopes, MethodScopes: p.MethodScopes, SubjectHeader: p.SubjectHeader, ClientIDHeader: p.ClientIDHeader,
		RemoveAuthorization: p.RemoveAuthorization, Realm: p.Realm, MaxTokenBytes: p.MaxTokenBytes, TokenCacheTTL: p.TokenCacheTTL}
}

func (c *Config) validateOAuthPolicy(k string, p OAuthPolicy, add func(error)) {
	if !c.OAuth.Enabled {
		add(c.errAt(k, "the group has no authorization server: set oauth.enabled and oauth.issuer (docs/oauth.md)"))
	}
	c.validateBearer(k, p.Bearer(), add)
	for _, s := range p.Scopes {
		if len(c.OAuth.Scopes) > 0 && !slices.Contains(c.OAuth.Scopes, s) {
			add(c.errAt(k+".scopes", "%q is not one of oauth.scopes: no token could carry it", s))
		}
	}
}
