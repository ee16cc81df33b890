package groupconf

import (
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/oauth"
)

// ServerConfig is o as the authorization server takes it.
func (o OAuth) ServerConfig() oauth.Config {
	return oauth.Config{
		Issuer: o.Issuer, PathPrefix: o.PathPrefix, AccessTokenFormat: o.AccessTokenFormat,
		AccessTokenLifetime: time.Duration(o.AccessTokenLifetime), RefreshTokenLifetime: time.Duration(o.RefreshTokenLifetime),
		CodeLifetime: time.Duration(o.CodeLifetime), Scopes: o.Scopes, Audience: o.Audience,
		ClientAssertionMaxAge: time.Duration(o.ClientAssertionMaxAge),
	}
}

// signingAlgorithms are those of the group's key set (oauth.LoadKeySet).
var signingAlgorithms = []string{"ES256", "ES384", "EdDSA", "RS256"}

// validateOAuth checks the oauth section when it is enabled, with the
// authorization server's own rules; an error is placed at the key it names.
func (c *Config) validateOAuth(add func(error)) {
	o := c.OAuth
	if !o.Enabled {
		return
	}
	if err := o.ServerConfig().WithDefaults().Validate(); err != nil {
		msg := err.Error()
		key, _, _ := strings.Cut(msg, " ")
		key = strings.TrimSuffix(key, ":")
		if i := strings.IndexByte(key, '['); i > 0 {
			key = key[:i]
		}
		if !strings.HasPrefix(key, "oauth.") {
			key = "oauth"
		}
		e := c.errAt(key, "%s", strings.TrimLeft(strings.TrimPrefix(msg, key), ": "))
		if c.Origin(key).Line == 0 { // a key left out: the section's place
			e.(*Error).Origin = c.Origin("oauth.enabled")
		}
		add(e)
	}
	found := false
	for _, a := range signingAlgorithms {
		found = found || a == o.SigningAlgorithm
	}
	if !found {
		add(c.errAt("oauth.signingAlgorithm", "%q: want one of %s", o.SigningAlgorithm, strings.Join(signingAlgorithms, ", ")))
	}
	for _, a := range c.APIs {
		if strings.HasPrefix(a.PathPrefix+"/", o.PathPrefix+"/") || a.Path == o.PathPrefix || strings.HasPrefix(a.Path, o.PathPrefix+"/") {
			add(c.errAt("oauth.pathPrefix", "%s is also the path of API %q: the authorization server answers there first; choose another prefix", o.PathPrefix, a.Name))
		}
	}
}
