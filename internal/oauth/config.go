package oauth

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Access token formats.
const (
	FormatOpaque = "opaque"
	FormatJWT    = "jwt"
)

// Grant types the token endpoint knows.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
)

// Config is a group's authorization server settings: plain data, read from
// the group configuration (oauth:). WithDefaults fills the zero fields;
// Validate checks the result. A Config is not changed after New.
type Config struct {
	Issuer                string        `yaml:"issuer" doc:"The issuer identifier (RFC 8414): an https URL without query or fragment, as clients reach the gateway; iss of JWT access tokens. Required."`
	PathPrefix            string        `yaml:"pathPrefix" doc:"Where the endpoints are: <prefix>/token, /introspect, /revoke, /jwks and /authorize (reserved). Default /oauth. The metadata is always at /.well-known/oauth-authorization-server."`
	AccessTokenFormat     string        `yaml:"accessTokenFormat" doc:"opaque (default: random, stored as a keyed hash, checked by the store) or jwt (RFC 9068, signed with the group's key)."`
	AccessTokenLifetime   time.Duration `yaml:"accessTokenLifetime" doc:"Lifetime of an access token; default 1h (1m to 24h)."`
	RefreshTokenLifetime  time.Duration `yaml:"refreshTokenLifetime" doc:"Lifetime of a refresh token; each rotation issues a new one with this lifetime; default 720h (30 days; 1h to 8760h)."`
	CodeLifetime          time.Duration `yaml:"codeLifetime" doc:"Lifetime of an authorization code; default 60s (10s to 10m)."`
	Scopes                []string      `yaml:"scopes" doc:"The scopes this server knows; a request for another is refused with invalid_scope."`
	Audience              string        `yaml:"audience" doc:"aud of JWT access tokens; default the issuer."`
	ClientAssertionMaxAge time.Duration `yaml:"clientAssertionMaxAge" doc:"Longest lifetime (exp minus now) accepted for a private_key_jwt client assertion; default 5m."`
}

// Defaults.
const (
	DefaultPathPrefix            = "/oauth"
	DefaultAccessTokenLifetime   = time.Hour
	DefaultRefreshTokenLifetime  = 30 * 24 * time.Hour
	DefaultCodeLifetime          = 60 * time.Second
	DefaultClientAssertionMaxAge = 5 * time.Minute
)

// WithDefaults is c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.PathPrefix == "" {
		c.PathPrefix = DefaultPathPrefix
	}
	if c.AccessTokenFormat == "" {
		c.AccessTokenFormat = FormatOpaque
	}
	if c.AccessTokenLifetime == 0 {
		c.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if c.RefreshTokenLifetime == 0 {
		c.RefreshTokenLifetime = DefaultRefreshTokenLifetime
	}
	if c.CodeLifetime == 0 {
		c.CodeLifetime = DefaultCodeLifetime
	}
	if c.ClientAssertionMaxAge == 0 {
		c.ClientAssertionMaxAge = DefaultClientAssertionMaxAge
	}
	if c.Audience == "" {
		c.Audience = c.Issuer
	}
	return c
}

// Validate checks a configuration with its defaults filled in. Errors name
// the key (oauth.<key>) and what would be accepted.
func (c Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		return fmt.Errorf("oauth.issuer is required: the https URL clients reach the gateway at")
	case err != nil || u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("oauth.issuer %q: want an https URL without user, query or fragment (http only for a loopback host)", c.Issuer)
	case !strings.HasPrefix(c.PathPrefix, "/") || strings.HasSuffix(c.PathPrefix, "/") || strings.ContainsAny(c.PathPrefix, "?#% ") || strings.Contains(c.PathPrefix, "//"):
		return fmt.Errorf("oauth.pathPrefix %q: want a path starting with / and not ending with / (default %s)", c.PathPrefix, DefaultPathPrefix)
	case c.AccessTokenFormat != FormatOpaque && c.AccessTokenFormat != FormatJWT:
		return fmt.Errorf("oauth.accessTokenFormat %q: want %s or %s", c.AccessTokenFormat, FormatOpaque, FormatJWT)
	case c.AccessTokenLifetime < time.Minute || c.AccessTokenLifetime > 24*time.Hour:
		return fmt.Errorf("oauth.accessTokenLifetime %s: want 1m to 24h", c.AccessTokenLifetime)
	case c.RefreshTokenLifetime < time.Hour || c.RefreshTokenLifetime > 8760*time.Hour:
		return fmt.Errorf("oauth.refreshTokenLifetime %s: want 1h to 8760h", c.RefreshTokenLifetime)
	case c.CodeLifetime < 10*time.Second || c.CodeLifetime > 10*time.Minute:
		return fmt.Errorf("oauth.codeLifetime %s: want 10s to 10m (RFC 6749 §4.1.2 recommends at most 10 minutes)", c.CodeLifetime)
	case c.ClientAssertionMaxAge < 10*time.Second || c.ClientAssertionMaxAge > time.Hour:
		return fmt.Errorf("oauth.clientAssertionMaxAge %s: want 10s to 1h", c.ClientAssertionMaxAge)
	}
	for i, s := range c.Scopes {
		if !validScopeToken(s) {
			return fmt.Errorf("oauth.scopes[%d] %q: a scope is 1 to 128 printable ASCII characters without space, \" or \\ (RFC 6749 §3.3)", i, s)
		}
		if slices.Contains(c.Scopes[:i], s) {
			return fmt.Errorf("oauth.scopes[%d] %q: listed twice", i, s)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// validScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3).
func validScopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
