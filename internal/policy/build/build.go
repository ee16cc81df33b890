// Package build makes an API's policy chain from its configuration
// (apis[].policies): one policy value per item, in order, built once per
// configuration so that a hot swap replaces every chain whole.
package build

import (
	"fmt"
	"slices"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/cache/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
	"github.com/gatehouse-gw/gatehouse/internal/policy/cachekv"
	"github.com/gatehouse-gw/gatehouse/internal/policy/cors"
	"github.com/gatehouse-gw/gatehouse/internal/policy/headers"
	"github.com/gatehouse-gw/gatehouse/internal/policy/jwt"
	"github.com/gatehouse-gw/gatehouse/internal/policy/lookup"
	"github.com/gatehouse-gw/gatehouse/internal/policy/responsecache"
)

// Deps are what policies need besides their settings: the group's
// services, opened once per instance.
type Deps struct {
	// APIKeys checks API keys (the group's client applications in its
	// KPS); nil: the apiKey policy cannot be built.
	APIKeys apikey.Checker
	// KPS reads rows of the group's custom tables (the instance's
	// kps.Cache); nil: the lookup policy cannot be built.
	KPS lookup.Rows
	// OAuth checks the access tokens of the group's authorization server;
	// nil: the oauth policy cannot be built.
	OAuth jwt.TokenVerifier
	// Tables are the custom tables' definitions (kps.tables).
	Tables []kps.Table
	// JWT are the issuers' key sources of the configuration being built
	// (one per distinct issuer setting, started and stopped with it);
	// nil: the jwt policy cannot be built.
	JWT *jwt.Sources
	// Caches are the configuration's caches (caches:); nil: the cache
	// policies cannot be built.
	Caches *cache.Set
	// RateLimits are the instance's rate-limit counters (kept across
	// configurations); nil: the rateLimit policy cannot be built.
	RateLimits *ratelimit.Service
}

// Chain is the chain of api's policies (validated by groupconf).
func Chain(api groupconf.API, deps Deps) (policy.Chain, error) {
	var c policy.Chain
	for i, p := range api.Policies {
		switch {
		case p.APIKey != nil:
			if deps.APIKeys == nil {
				return nil, fmt.Errorf("API %q, policy %d (apiKey): this instance has no Key Property Store for the group's API keys", api.Name, i)
			}
			c = append(c, apikey.New(*p.APIKey, api.Name, deps.APIKeys))
		case p.JWT != nil:
			if deps.JWT == nil {
				return nil, fmt.Errorf("API %q, policy %d (jwt): this instance has no key sources for issuers", api.Name, i)
			}
			ks, err := deps.JWT.For(*p.JWT)
			if err != nil {
				return nil, fmt.Errorf("API %q, policy %d (jwt): %w", api.Name, i, err)
			}
			jp, err := jwt.New(*p.JWT, ks, jwt.Options{})
			if err != nil {
				return nil, fmt.Errorf("API %q, policy %d: %w", api.Name, i, err)
			}
			c = append(c, jp)
		case p.Lookup != nil:
			ti := slices.IndexFunc(deps.Tables, func(t kps.Table) bool { return t.Alias == p.Lookup.Table })
			if deps.KPS == nil || ti < 0 {
				return nil, fmt.Errorf("API %q, policy %d (lookup): this instance has no Key Property Store table %q", api.Name, i, p.Lookup.Table)
			}
			lp, err := lookup.New(*p.Lookup, deps.Tables[ti], deps.KPS)
			if err != nil {
				return nil, fmt.Errorf("API %q, policy %d: %w", api.Name, i, err)
			}
			c = append(c, lp)
		case p.OAuth != nil:
			if deps.OAuth == nil {
				return nil, fmt.Errorf("API %q, policy %d (oauth): this instance has no authorization server for the group (oauth.enabled)", api.Name, i)
			}
			op, err := jwt.NewBearer("oauth", p.OAuth.Bearer(), deps.OAuth, jwt.Options{})
			if err != nil {
				return nil, fmt.Errorf("API %q, policy %d: %w", api.Name, i, err)
			}
			c = append(c, op)
		case p.ResponseCache != nil, p.CacheLookup != nil, p.CacheStore != nil:
			cp, err := cachePolicy(api, p, deps.Caches)
			if err != nil {
				return nil, fmt.Errorf("API %q, policy %d (%s): %w", api.Name, i, p.Type(), err)
			}
			c = append(c, cp)
		case p.CORS != nil:
			c = append(c, cors.New(*p.CORS, api.Methods))
		case p.Headers != nil:
			c = append(c, headers.New(*p.Headers))
		case p.RateLimit != nil:
			if deps.RateLimits == nil {
				return nil, fmt.Errorf("API %q, policy %d (rateLimit): this instance has no rate-limit counters", api.Name, i)
			}
			rp, err := ratelimit.NewPolicy(*p.RateLimit, api.Name, deps.RateLimits)
			if err != nil {
				return nil, fmt.Errorf("API %q, policy %d (rateLimit): %w", api.Name, i, err)
			}
			c = append(c, rp)
		default:
			return nil, fmt.Errorf("API %q, policy %d: no policy type given", api.Name, i)
		}
	}
	return c, nil
}

// cachePolicy builds a responseCache, cacheLookup or cacheStore policy.
func cachePolicy(api groupconf.API, p groupconf.Policy, caches *cache.Set) (policy.Policy, error) {
	var name string
	switch {
	case p.ResponseCache != nil:
		name = p.ResponseCache.Cache
	case p.CacheLookup != nil:
		name = p.CacheLookup.Cache
	default:
		name = p.CacheStore.Cache
	}
	c := caches.Get(name)
	if c == nil {
		return nil, fmt.Errorf("this instance has no cache %q", name)
	}
	switch {
	case p.ResponseCache != nil:
		return responsecache.New(*p.ResponseCache, api.Name, c), nil
	case p.CacheLookup != nil:
		return cachekv.NewLookup(*p.CacheLookup, c)
	default:
		return cachekv.NewStore(*p.CacheStore, c)
	}
}
