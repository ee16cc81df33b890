package oauth

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

// TestConfigYAML: the configuration reads from YAML as the group
// configuration will have it (durations as Go durations).
func TestConfigYAML(t *testing.T) {
	var c Config
	err := yaml.Unmarshal([]byte(`
issuer: https://gw.example.com
pathPrefix: /as
accessTokenFormat: jwt
accessTokenLifetime: 15m
refreshTokenLifetime: 168h
codeLifetime: 30s
scopes: [orders.read, orders.write]
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AccessTokenLifetime != 15*time.Minute || c.RefreshTokenLifetime != 168*time.Hour || c.CodeLifetime != 30*time.Second ||
		c.PathPrefix != "/as" || c.AccessTokenFormat != FormatJWT || len(c.Scopes) != 2 || c.Audience != c.Issuer {
		t.Errorf("got %+v", c)
	}
}
