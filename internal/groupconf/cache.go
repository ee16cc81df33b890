package groupconf

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// Cache is one named cache of the group (caches[], docs/cache.md): each
// instance keeps a copy; a replicated cache sends its changes to the
// group's other instances over the cluster bus.
type Cache struct {
	Name          string   `yaml:"name" doc:"Its name, which policies give (letters, digits, _ - .)."`
	Replicated    bool     `yaml:"replicated" doc:"Send every put, remove, clear and expiry to the other instances of the group over the cluster bus, and copy a peer's entries when this instance starts or reconnects; false: each instance keeps its own."`
	Replication   string   `yaml:"replication" doc:"With replicated: sync (a put returns once every live peer acknowledged it) or async (changes are sent in batches, every batchInterval)."`
	BatchInterval Duration `yaml:"batchInterval" doc:"With replication async: the longest a change waits before it is sent (10ms to 10s)."`
	MaxEntries    int      `yaml:"maxEntries" doc:"Most entries held (1 to 10000000); a put beyond it evicts."`
	MaxBytes      int64    `yaml:"maxBytes" doc:"Most bytes held: keys, values and 96 bytes per entry (64 KiB to 16 GiB); a put beyond it evicts, and an entry larger than a shard's share (maxBytes, or maxBytes/16 for large caches) is not stored."`
	TimeToLive    Duration `yaml:"timeToLive" doc:"An entry expires this long after it was put (1s to 30 days); 0: never."`
	TimeToIdle    Duration `yaml:"timeToIdle" doc:"An entry expires when it was not read for this long (1s to 30 days), on each instance by its own reads; 0: never."`
	Eviction      string   `yaml:"eviction" doc:"Which entries leave a full cache first: LRU (least recently used) or LFU (least frequently used, then least recently)."`
}

// CacheDefaults fills what a caches entry leaves out.
func CacheDefaults() Cache {
	return Cache{Replication: "sync", BatchInterval: Duration(200 * time.Millisecond), MaxEntries: 10000, MaxBytes: 64 << 20, TimeToLive: Seconds(300), Eviction: "LRU"}
}

// UnmarshalYAML starts an entry from CacheDefaults.
func (c *Cache) UnmarshalYAML(n *yaml.Node) error {
	type plain Cache
	*c = CacheDefaults()
	return n.Decode((*plain)(c))
}

// ResponseCachePolicy is the responseCache policy.
type ResponseCachePolicy struct {
	Cache          string   `yaml:"cache" doc:"The name of a cache of caches where the responses are kept."`
	TTL            Duration `yaml:"ttl" doc:"How long a response is served from the cache (1s to 30 days; never longer than the cache's timeToLive, nor than the back end's s-maxage or max-age); 0: the cache's timeToLive."`
	Methods        []string `yaml:"methods" doc:"Methods whose responses are cached: GET and HEAD (a HEAD is answered from a GET's entry); empty: both. Other methods are never cached."`
	Headers        []string `yaml:"headers" doc:"Request fields whose values are part of the key (with the method, host and path); a back end's Vary naming another field makes its response not cached. Without Authorization and Cookie here, a request carrying either is stored only when the back end says public."`
	Query          []string `yaml:"query" doc:"Query parameters whose values are part of the key; empty: the whole query as sent."`
	IgnoreQuery    bool     `yaml:"ignoreQuery" doc:"Leave the query out of the key (query must then be empty)."`
	Statuses       []int    `yaml:"statuses" doc:"Statuses of the responses stored (200 to 599, not 206 nor 304); empty: every 2xx but 206."`
	StoreSetCookie bool     `yaml:"storeSetCookie" doc:"Store responses that set cookies (and replay the cookies to every client that gets the entry); false: never."`
	MaxBodyBytes   int64    `yaml:"maxBodyBytes" doc:"Largest response body stored, in bytes (1 to 64 MiB); a larger response is forwarded and not stored. 0: 1 MiB."`
}

// DefaultResponseCacheMaxBody is responseCache.maxBodyBytes when 0.
const DefaultResponseCacheMaxBody = 1 << 20

// CacheLookupPolicy is the cacheLookup policy.
type CacheLookupPolicy struct {
	Cache          string `yaml:"cache" doc:"The name of a cache of caches."`
	Key            string `yaml:"key" doc:"Where the entry's key comes from: header:NAME, query:NAME, param:NAME or application (as lookup's key)."`
	As             string `yaml:"as" doc:"The entry's value is given to later policies as ${as.value}. Letters, digits and _."`
	Required       bool   `yaml:"required" doc:"Refuse the request when there is no key or no entry (notFoundStatus); otherwise go on without ${as.value}."`
	NotFoundStatus int    `yaml:"notFoundStatus" doc:"The status of a refusal by a required cacheLookup: 403 or 404; 0: 403."`
}

// CacheStorePolicy is the cacheStore policy.
type CacheStorePolicy struct {
	Cache string   `yaml:"cache" doc:"The name of a cache of caches."`
	Key   string   `yaml:"key" doc:"Where the entry's key comes from: header:NAME, query:NAME, param:NAME or application (as lookup's key)."`
	Value string   `yaml:"value" doc:"The value stored: text with ${variables} of earlier policies (at most 8 KiB written; a value that comes out over 64 KiB, or with a variable not set, is not stored)."`
	TTL   Duration `yaml:"ttl" doc:"How long the entry lives (never longer than the cache's timeToLive); 0: the cache's timeToLive."`
}

// maxCacheTime bounds the durations of caches and cache policies.
const maxCacheTime = 30 * 24 * time.Hour

func (c *Config) cacheNamed(name string) (Cache, bool) {
	for _, x := range c.Caches {
		if x.Name == name {
			return x, true
		}
	}
	return Cache{}, false
}

func (c *Config) cacheNames() string {
	var names []string
	for _, x := range c.Caches {
		names = append(names, x.Name)
	}
	if len(names) == 0 {
		return "none; declare it under caches"
	}
	return strings.Join(names, ", ")
}

// validateCaches checks caches[].
func (c *Config) validateCaches(add func(error)) {
	seen := map[string]bool{}
	for i, x := range c.Caches {
		k := fmt.Sprintf("caches[%d]", i)
		switch {
		case x.Name == "":
			add(c.errAt(k, "a cache needs a name (1 to 64 letters, digits, _ - or .)"))
		case !isLabel(x.Name):
			add(c.errAt(k+".name", "%q: a cache's name is 1 to 64 letters, digits, _ - or .", x.Name))
		case seen[x.Name]:
			add(c.errAt(k+".name", "cache %q is defined twice", x.Name))
		}
		seen[x.Name] = true
		switch x.Replication {
		case "sync", "async":
		default:
			add(c.errAt(k+".replication", "%q: want sync or async", x.Replication))
		}
		if d := x.BatchInterval.D(); d < 10*time.Millisecond || d > 10*time.Second {
			add(c.errAt(k+".batchInterval", "%s: want 10ms to 10s", d))
		}
		if x.MaxEntries < 1 || x.MaxEntries > 10_000_000 {
			add(c.errAt(k+".maxEntries", "%d: want 1 to 10000000", x.MaxEntries))
		}
		if x.MaxBytes < 64<<10 || x.MaxBytes > 16<<30 {
			add(c.errAt(k+".maxBytes", "%d: want 65536 (64 KiB) to 17179869184 (16 GiB)", x.MaxBytes))
		}
		for _, d := range []struct {
			key string
			v   Duration
		}{{"timeToLive", x.TimeToLive}, {"timeToIdle", x.TimeToIdle}} {
			if d.v != 0 && (d.v.D() < time.Second || d.v.D() > maxCacheTime) {
				add(c.errAt(k+"."+d.key, "%s: want 1s to 720h (30 days), or 0 for never", d.v.D()))
			}
		}
		switch x.Eviction {
		case "LRU", "LFU":
		default:
			add(c.errAt(k+".eviction", "%q: want LRU or LFU (upper case)", x.Eviction))
		}
	}
}

// isLabel: 1 to 64 letters, digits, '_', '-', '.'.
func isLabel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (c *Config) validateCacheRef(k, name string, add func(error)) (Cache, bool) {
	x, ok := c.cacheNamed(name)
	if !ok {
		add(c.errAt(k+".cache", "%q is not a cache of caches (defined: %s)", name, c.cacheNames()))
	}
	return x, ok
}

func (c *Config) validateResponseCache(k string, a API, p ResponseCachePolicy, add func(error)) {
	x, ok := c.validateCacheRef(k, p.Cache, add)
	if p.TTL != 0 && (p.TTL.D() < time.Second || p.TTL.D() > maxCacheTime) {
		add(c.errAt(k+".ttl", "%s: want 1s to 720h (30 days), or 0 for the cache's timeToLive", p.TTL.D()))
	}
	for _, m := range p.Methods {
		if m != "GET" && m != "HEAD" {
			add(c.errAt(k+".methods", "%q: only GET and HEAD responses are cached (other methods change state, and their answers depend on the body)", m))
		}
	}
	for _, h := range p.Headers {
		if !isToken(h) {
			add(c.errAt(k+".headers", "%q is not a field name", h))
		}
	}
	for _, q := range p.Query {
		if q == "" || strings.ContainsAny(q, "&=#?% +") || len(q) > 64 {
			add(c.errAt(k+".query", "%q is not a plain query parameter name", q))
		}
	}
	if p.IgnoreQuery && len(p.Query) > 0 {
		add(c.errAt(k+".ignoreQuery", "ignoreQuery leaves the query out of the key: give it or query, not both"))
	}
	for _, s := range p.Statuses {
		if s < 200 || s > 599 || s == 206 || s == 304 {
			add(c.errAt(k+".statuses", "%d: want 200 to 599, not 206 (partial) nor 304 (not modified)", s))
		}
	}
	if p.MaxBodyBytes < 0 || p.MaxBodyBytes > 64<<20 {
		add(c.errAt(k+".maxBodyBytes", "%d: want 1 to 67108864 (64 MiB), or 0 for 1 MiB", p.MaxBodyBytes))
	} else if mb := p.MaxBodyBytes; ok && (mb == 0 && x.MaxBytes < DefaultResponseCacheMaxBody || mb > x.MaxBytes) {
		add(c.errAt(k+".maxBodyBytes", "%d is more than cache %q holds (maxBytes %d)", max(mb, DefaultResponseCacheMaxBody), x.Name, x.MaxBytes))
	}
	if len(a.Methods) > 0 && !slices.Contains(a.Methods, "GET") && !slices.Contains(a.Methods, "HEAD") {
		add(c.errAt(k, "the API takes neither GET nor HEAD (methods %s): nothing would be cached", strings.Join(a.Methods, ", ")))
	}
}

func (c *Config) validateCacheKey(k string, a API, key string, apiKey bool, add func(error)) {
	lk, err := ParseLookupKey(key)
	switch {
	case err != nil:
		add(c.errAt(k+".key", "%v", err))
	case lk.From == "application" && !apiKey:
		add(c.errAt(k+".key", "application needs an apiKey, jwt or oauth policy before this one (the policy that finds the client application)"))
	case lk.From == "param" && !strings.Contains(a.Path, "{"+lk.Name+"}"):
		add(c.errAt(k+".key", "the API's path %q has no {%s} segment", a.Path, lk.Name))
	}
}

func (c *Config) validateCacheLookup(k string, a API, p CacheLookupPolicy, apiKey bool, lookups, vars map[string]bool, add func(error)) {
	c.validateCacheRef(k, p.Cache, add)
	c.validateCacheKey(k, a, p.Key, apiKey, add)
	switch {
	case !isVarName(p.As) || p.As == "application":
		add(c.errAt(k+".as", "%q: want a name of letters, digits and _ (not application)", p.As))
	case lookups[p.As]:
		add(c.errAt(k+".as", "%q is the name of an earlier lookup of this API", p.As))
	}
	lookups[p.As] = true
	vars[p.As+".value"] = true
	if p.NotFoundStatus != 0 && p.NotFoundStatus != 403 && p.NotFoundStatus != 404 {
		add(c.errAt(k+".notFoundStatus", "%d: want 403 or 404", p.NotFoundStatus))
	}
}

func (c *Config) validateCacheStore(k string, a API, p CacheStorePolicy, apiKey bool, vars map[string]bool, add func(error)) {
	c.validateCacheRef(k, p.Cache, add)
	c.validateCacheKey(k, a, p.Key, apiKey, add)
	if len(p.Value) > 8<<10 {
		add(c.errAt(k+".value", "at most 8 KiB"))
	}
	parts, err := ParseTemplate(p.Value)
	if err != nil {
		add(c.errAt(k+".value", "%v", err))
	}
	for _, part := range parts {
		if part.Var != "" && !vars[part.Var] {
			add(c.errAt(k+".value", "${%s} is given by no earlier policy of this API (an apiKey policy gives application.id and application.name; a lookup gives AS.PROPERTY; a cacheLookup AS.value)", part.Var))
		}
	}
	if p.TTL != 0 && (p.TTL.D() < time.Second || p.TTL.D() > maxCacheTime) {
		add(c.errAt(k+".ttl", "%s: want 1s to 720h (30 days), or 0 for the cache's timeToLive", p.TTL.D()))
	}
}
