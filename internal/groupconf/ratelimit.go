package groupconf

import (
	"fmt"
	"strings"
	"time"
)

// RateLimitPolicy is the rateLimit policy: at most Requests requests per
// Window for each key, across the group's instances (docs/rate-limits.md).
type RateLimitPolicy struct {
	Name         string   `yaml:"name" doc:"The policy's name in the RateLimit-Policy and RateLimit fields: letters, digits, '-', '_' and '.', at most 64; default: default. Two rateLimit policies of one API need different names."`
	Requests     int64    `yaml:"requests" doc:"How many requests each key may make per window, across every instance of the group (1 to 1000000000; at most 10000 in exact mode). Required."`
	Window       Duration `yaml:"window" doc:"The window, in whole seconds (1s to 24h). Required."`
	Key          string   `yaml:"key" doc:"What requests are counted by: clientIP (the client's address after the trusted-proxy walk; default), application (the client application of an earlier apiKey, jwt or oauth policy), apiKey (the id of the key an earlier apiKey policy checked), oauthClient (the client id of an earlier oauth or jwt policy's token), or header:NAME (a request field's value; requests without it share one counter)."`
	Mode         string   `yaml:"mode" doc:"approximate (default): every instance admits against the group-wide estimate, counts travel on the cluster bus, no round trip on the request path. exact: one owner instance per key holds its counter and the others ask it on every request (a round trip on the bus: for small limits)."`
	OmitHeaders  bool     `yaml:"omitHeaders" doc:"Do not add RateLimit and RateLimit-Policy to the responses let through (a 429 always carries them and Retry-After)."`
	MaxKeys      int      `yaml:"maxKeys" doc:"Most keys an instance counts at once (1000 to 10000000); beyond it, new keys share one counter until old ones expire. 0: 100000."`
	ExactTimeout Duration `yaml:"exactTimeout" doc:"In exact mode, how long a request waits for the owner's answer (1ms to 1s); without an answer the instance decides alone with its share of the limit. 0: 50ms."`
}

// Defaults and bounds of the rateLimit policy.
const (
	DefaultRateLimitName    = "default"
	DefaultRateLimitKey     = "clientIP"
	DefaultRateLimitMaxKeys = 100000
	DefaultExactTimeout     = 50 * time.Millisecond
	MaxRateLimitRequests    = 1_000_000_000
	MaxExactRequests        = 10000
	MaxRateLimitWindow      = 24 * time.Hour
)

// WithDefaults is p with its defaults filled in.
func (p RateLimitPolicy) WithDefaults() RateLimitPolicy {
	if p.Name == "" {
		p.Name = DefaultRateLimitName
	}
	if p.Key == "" {
		p.Key = DefaultRateLimitKey
	}
	if p.Mode == "" {
		p.Mode = "approximate"
	}
	if p.MaxKeys == 0 {
		p.MaxKeys = DefaultRateLimitMaxKeys
	}
	if p.ExactTimeout == 0 {
		p.ExactTimeout = Duration(DefaultExactTimeout)
	}
	return p
}

// RateLimitKey is a parsed rateLimit key source.
type RateLimitKey struct {
	From string // clientIP, application, apiKey, oauthClient or header
	Name string // the field name (header only)
}

// ParseRateLimitKey parses a rateLimit's key setting.
func ParseRateLimitKey(s string) (RateLimitKey, error) {
	switch s {
	case "clientIP", "application", "apiKey", "oauthClient":
		return RateLimitKey{From: s}, nil
	}
	if name, ok := strings.CutPrefix(s, "header:"); ok {
		if !isToken(name) {
			return RateLimitKey{}, fmt.Errorf("%q: %q is not a field name", s, name)
		}
		return RateLimitKey{From: "header", Name: name}, nil
	}
	return RateLimitKey{}, fmt.Errorf("%q: want clientIP, application, apiKey, oauthClient or header:NAME", s)
}

// validRateLimitName: letters, digits, '-', '_', '.'; 1 to 64 bytes.
func validRateLimitName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validateRateLimit checks apis[i].policies[j].rateLimit (k is its path);
// before are the API's earlier policies.
func (c *Config) validateRateLimit(k string, a API, j int, p RateLimitPolicy, add func(error)) {
	p = p.WithDefaults()
	if !validRateLimitName(p.Name) {
		add(c.errAt(k+".name", "%q: want letters, digits, '-', '_' and '.', at most 64", p.Name))
	}
	for _, o := range a.Policies[:j] {
		if o.RateLimit != nil && o.RateLimit.WithDefaults().Name == p.Name {
			add(c.errAt(k+".name", "%q is the name of an earlier rateLimit policy of this API: give each its own name", p.Name))
			break
		}
	}
	switch {
	case p.Requests == 0:
		add(c.errAt(k, "requests: required: how many requests each key may make per window (1 to %d)", MaxRateLimitRequests))
	case p.Requests < 1 || p.Requests > MaxRateLimitRequests:
		add(c.errAt(k+".requests", "%d: want 1 to %d", p.Requests, MaxRateLimitRequests))
	case p.Mode == "exact" && p.Requests > MaxExactRequests:
		add(c.errAt(k+".requests", "%d: exact mode is for small limits (at most %d): a round trip per request to the key's owner; use mode approximate", p.Requests, MaxExactRequests))
	}
	w := time.Duration(p.Window)
	switch {
	case w == 0:
		add(c.errAt(k, "window: required: the window of the limit, in whole seconds (1s to 24h)"))
	case w < time.Second || w > MaxRateLimitWindow || w%time.Second != 0:
		add(c.errAt(k+".window", "%s: want whole seconds, 1s to 24h", w))
	}
	key, err := ParseRateLimitKey(p.Key)
	if err != nil {
		add(c.errAt(k+".key", "%v", err))
	} else {
		var apiKey, token bool
		for _, o := range a.Policies[:j] {
			apiKey = apiKey || o.APIKey != nil
			token = token || o.JWT != nil || o.OAuth != nil
		}
		switch {
		case key.From == "application" && !apiKey && !token:
			add(c.errAt(k+".key", "application needs an apiKey, jwt or oauth policy before this rateLimit (the policy that finds the client application)"))
		case key.From == "apiKey" && !apiKey:
			add(c.errAt(k+".key", "apiKey needs an apiKey policy before this rateLimit (the policy that checks the key)"))
		case key.From == "oauthClient" && !token:
			add(c.errAt(k+".key", "oauthClient needs an oauth or jwt policy before this rateLimit (the policy that checks the token)"))
		}
	}
	switch p.Mode {
	case "approximate", "exact":
	default:
		add(c.errAt(k+".mode", "%q: want approximate or exact", p.Mode))
	}
	if p.MaxKeys < 1000 || p.MaxKeys > 10_000_000 {
		add(c.errAt(k+".maxKeys", "%d: want 1000 to 10000000 (0: %d)", p.MaxKeys, DefaultRateLimitMaxKeys))
	}
	if t := time.Duration(p.ExactTimeout); t < time.Millisecond || t > time.Second {
		add(c.errAt(k+".exactTimeout", "%s: want 1ms to 1s", t))
	}
}
