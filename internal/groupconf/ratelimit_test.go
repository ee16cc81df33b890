package groupconf

import (
	"strings"
	"testing"
	"time"
)

// TestRateLimitErrors: each wrong rateLimit is refused with the file, the
// line and the key.
func TestRateLimitErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"no requests", "      - rateLimit: {window: 1m}\n", []string{"g.yaml:10", "apis[0].policies[0].rateLimit: requests: required"}},
		{"no window", "      - rateLimit: {requests: 10}\n", []string{"g.yaml:10", "rateLimit: window: required"}},
		{"window not whole seconds", "      - rateLimit: {requests: 10, window: 1500ms}\n", []string{"rateLimit.window", "1.5s: want whole seconds"}},
		{"window too long", "      - rateLimit: {requests: 10, window: 25h}\n", []string{"rateLimit.window", "1s to 24h"}},
		{"negative requests", "      - rateLimit: {requests: -1, window: 1s}\n", []string{"rateLimit.requests", "-1: want 1 to"}},
		{"unknown key", "      - rateLimit: {requests: 10, window: 1s, key: ip}\n", []string{"rateLimit.key", `"ip": want clientIP, application, apiKey, oauthClient or header:NAME`}},
		{"bad header", "      - rateLimit: {requests: 10, window: 1s, key: \"header:X Tenant\"}\n", []string{"rateLimit.key", "not a field name"}},
		{"application alone", "      - rateLimit: {requests: 10, window: 1s, key: application}\n", []string{"rateLimit.key", "needs an apiKey, jwt or oauth policy before"}},
		{"apiKey alone", "      - rateLimit: {requests: 10, window: 1s, key: apiKey}\n", []string{"rateLimit.key", "needs an apiKey policy before"}},
		{"oauthClient after apiKey", "      - apiKey: {}\n      - rateLimit: {requests: 10, window: 1s, key: oauthClient}\n", []string{"g.yaml:11", "policies[1].rateLimit.key", "needs an oauth or jwt policy before"}},
		{"bad mode", "      - rateLimit: {requests: 10, window: 1s, mode: strict}\n", []string{"rateLimit.mode", `"strict": want approximate or exact`}},
		{"exact too large", "      - rateLimit: {requests: 20000, window: 1s, mode: exact}\n", []string{"rateLimit.requests", "exact mode is for small limits"}},
		{"bad name", "      - rateLimit: {requests: 10, window: 1s, name: \"a b\"}\n", []string{"rateLimit.name", `"a b"`}},
		{"same name twice", "      - rateLimit: {requests: 10, window: 1s}\n      - rateLimit: {requests: 100, window: 1h}\n", []string{"policies[1].rateLimit.name", "earlier rateLimit"}},
		{"max keys", "      - rateLimit: {requests: 10, window: 1s, maxKeys: 10}\n", []string{"rateLimit.maxKeys", "want 1000 to 10000000"}},
		{"exact timeout", "      - rateLimit: {requests: 10, window: 1s, exactTimeout: 2s}\n", []string{"rateLimit.exactTimeout", "want 1ms to 1s"}},
		{"unknown setting", "      - rateLimit: {requests: 10, window: 1s, limit: 3}\n", []string{"g.yaml:10", `unknown key "limit"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(policyConfig(tc.yaml))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestRateLimitLoads(t *testing.T) {
	cfg, err := Load(policyConfig("      - apiKey: {}\n      - rateLimit: {requests: 100, window: 1m, key: apiKey}\n" +
		"      - rateLimit: {name: burst, requests: 5, window: 1s, key: \"header:X-Tenant\", mode: exact}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.APIs[0].Policies
	if p[1].Type() != "rateLimit" || p[1].RateLimit.Requests != 100 || time.Duration(p[1].RateLimit.Window) != time.Minute {
		t.Errorf("got %+v", p[1].RateLimit)
	}
	d := p[1].RateLimit.WithDefaults()
	if d.Name != "default" || d.Mode != "approximate" || d.MaxKeys != DefaultRateLimitMaxKeys || time.Duration(d.ExactTimeout) != DefaultExactTimeout {
		t.Errorf("defaults: got %+v", d)
	}
	k, err := ParseRateLimitKey(p[2].RateLimit.Key)
	if err != nil || k != (RateLimitKey{From: "header", Name: "X-Tenant"}) {
		t.Errorf("key: got %+v, %v", k, err)
	}
}

// TestAPIKeyIDVariable: an apiKey policy gives ${apiKey.id} (the key's
// public id) to later policies.
func TestAPIKeyIDVariable(t *testing.T) {
	if _, err := Load(policyConfig("      - apiKey: {}\n      - headers: {request: {set: {X-Key-Id: \"${apiKey.id}\"}}}\n")); err != nil {
		t.Errorf("${apiKey.id} after apiKey: %v", err)
	}
	if _, err := Load(policyConfig("      - headers: {request: {set: {X-Key-Id: \"${apiKey.id}\"}}}\n")); err == nil {
		t.Error("${apiKey.id} without an apiKey policy: loaded, want refused")
	}
}
