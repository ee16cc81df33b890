package groupconf

import (
	"strings"
	"testing"
	"time"
)

func oauthConfig(section string) Layer {
	return Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /a\n    backend: b\noauth:\n" + section)}
}

// TestOAuthSection: the authorization server's settings load with their
// defaults, and each wrong one is refused at its line, naming the key.
func TestOAuthSection(t *testing.T) {
	cfg, err := Load(oauthConfig("  enabled: true\n  issuer: https://gw.example.com\n  scopes: [orders:read, orders:write]\n  accessTokenLifetime: 15m\n"))
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.OAuth.ServerConfig()
	if !cfg.OAuth.Enabled || sc.Issuer != "https://gw.example.com" || sc.PathPrefix != "/oauth" || sc.AccessTokenFormat != "opaque" || sc.AccessTokenLifetime != 15*time.Minute ||
		sc.RefreshTokenLifetime != 720*time.Hour || sc.CodeLifetime != time.Minute || sc.ClientAssertionMaxAge != 5*time.Minute || len(sc.Scopes) != 2 || cfg.OAuth.SigningAlgorithm != "ES256" {
		t.Errorf("loaded: %+v", cfg.OAuth)
	}
	if o := cfg.Origin("oauth.issuer"); o.String() != "g.yaml:10" {
		t.Errorf("origin of oauth.issuer: %s", o)
	}
	// Disabled: nothing is checked (the defaults have no issuer).
	if _, err := Load(oauthConfig("  enabled: false\n")); err != nil {
		t.Errorf("disabled: %v", err)
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"no issuer", "  enabled: true\n", "g.yaml:9: oauth.issuer: is required"},
		{"http issuer", "  enabled: true\n  issuer: http://gw.example.com\n", "g.yaml:10: oauth.issuer"},
		{"issuer with a query", "  enabled: true\n  issuer: https://gw.example.com/?a=1\n", "oauth.issuer"},
		{"bad prefix", "  enabled: true\n  issuer: https://gw.example.com\n  pathPrefix: oauth/\n", "g.yaml:11: oauth.pathPrefix"},
		{"bad format", "  enabled: true\n  issuer: https://gw.example.com\n  accessTokenFormat: macaroon\n", "g.yaml:11: oauth.accessTokenFormat"},
		{"access lifetime", "  enabled: true\n  issuer: https://gw.example.com\n  accessTokenLifetime: 48h\n", "g.yaml:11: oauth.accessTokenLifetime"},
		{"code lifetime", "  enabled: true\n  issuer: https://gw.example.com\n  codeLifetime: 1h\n", "oauth.codeLifetime"},
		{"bad scope", "  enabled: true\n  issuer: https://gw.example.com\n  scopes: [\"a b\"]\n", "g.yaml:11: oauth.scopes"},
		{"bad algorithm", "  enabled: true\n  issuer: https://gw.example.com\n  signingAlgorithm: HS256\n", "g.yaml:11: oauth.signingAlgorithm: \"HS256\""},
		{"unknown key", "  enabled: true\n  issuer: https://gw.example.com\n  tokenFormat: jwt\n", `unknown key "tokenFormat"`},
	} {
		_, err := Load(oauthConfig(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// An API under the server's prefix.
	_, err = Load(Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /oauth/x\n    backend: b\noauth:\n  enabled: true\n  issuer: https://gw.example.com\n")})
	if err == nil || !strings.Contains(err.Error(), `/oauth is also the path of API "a"`) {
		t.Errorf("an API under /oauth: %v", err)
	}
	if _, err := Load(Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /oauthx\n    backend: b\noauth:\n  enabled: true\n  issuer: https://gw.example.com\n")}); err != nil {
		t.Errorf("an API at /oauthx: %v", err)
	}
	// Custom tables cannot take the server's names.
	_, err = Load(Layer{Name: "g.yaml", YAML: []byte("kps:\n  tables:\n    - {collection: c, name: n, alias: oauth_tokens, properties: [{name: id, type: string}], primaryKey: id}\n")})
	if err == nil || !strings.Contains(err.Error(), "a table of Gatehouse's own") {
		t.Errorf("a custom table named oauth_tokens: %v", err)
	}
}

// TestOAuthPolicy: the oauth policy needs the group's server, scopes the
// server knows, and the bearer settings the jwt policy takes.
func TestOAuthPolicy(t *testing.T) {
	cfgYAML := func(server, policy string) Layer {
		return Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /a\n    backend: b\n    policies:\n      - oauth: " + policy + "\n" + server)}
	}
	server := "oauth: {enabled: true, issuer: \"https://gw.example.com\", scopes: [read, write]}\n"
	cfg, err := Load(cfgYAML(server, "{scopes: [read], methodScopes: {POST: [write]}, removeAuthorization: true}"))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.APIs[0].Policies[0].OAuth.Bearer()
	if cfg.APIs[0].Policies[0].Type() != "oauth" || b.Scopes[0] != "read" || b.MethodScopes["POST"][0] != "write" || !b.RemoveAuthorization {
		t.Errorf("loaded: %+v", b)
	}
	for _, c := range []struct{ name, server, policy, want string }{
		{"no server", "", "{}", "apis[0].policies[0].oauth: the group has no authorization server"},
		{"unknown scope", server, "{scopes: [admin]}", `oauth.scopes: "admin" is not one of oauth.scopes`},
		{"bad header", server, "{clientIdHeader: \"X Y\"}", `"X Y" is not a field name`},
		{"cache too long", server, "{tokenCacheTtl: 10m}", "oauth.tokenCacheTtl: 10m0s: want 0s to 5m"},
		{"unknown key", server, "{issuer: x}", `unknown key "issuer"`},
	} {
		if _, err := Load(cfgYAML(c.server, c.policy)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// A lookup by the application after an oauth policy (the token's client id).
	if _, err := Load(Layer{Name: "g.yaml", YAML: []byte("kps:\n  tables:\n    - {collection: c, name: n, alias: customers, properties: [{name: id, type: string}, {name: tier, type: string}], primaryKey: id}\nbackends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /a\n    backend: b\n    policies:\n      - oauth: {}\n      - lookup: {table: customers, key: application, as: c}\n" + server)}); err != nil {
		t.Errorf("lookup by application after oauth: %v", err)
	}
	// ${oauth.sub} is a variable later policies may use.
	if _, err := Load(Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /a\n    backend: b\n    policies:\n      - oauth: {}\n      - headers: {request: {set: {X-User: \"${oauth.sub}\"}}}\n" + server)}); err != nil {
		t.Errorf("${oauth.sub} after an oauth policy: %v", err)
	}
}
