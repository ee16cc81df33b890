package groupconf

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// cacheConfig is a configuration with the caches given as YAML lines
// under "caches:" (indented two; the first on line 2) and an API "a" on
// /a/{id} (GET, POST) with the policies given under "policies:"
// (indented six).
func cacheConfig(caches, policies string) Layer {
	y := "caches:\n" + caches + "backends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    path: /a/{id}\n    methods: [GET, POST]\n    backend: b\n    policies:\n" + policies
	return Layer{Name: "g.yaml", YAML: []byte(y)}
}

const okCache = "  - {name: c}\n"

// TestCacheErrors: each wrong cache or cache policy setting is refused
// naming the file, the line and the key, and what is accepted.
func TestCacheErrors(t *testing.T) {
	cases := []struct {
		name, caches, policies string
		want                   []string
	}{
		{"no name", "  - {maxEntries: 5}\n", "", []string{"g.yaml:2", "caches[0]", "needs a name"}},
		{"bad name", "  - {name: \"a b\"}\n", "", []string{"caches[0].name", `"a b"`}},
		{"twice", "  - {name: c}\n  - {name: c}\n", "", []string{"g.yaml:3", "caches[1].name", "defined twice"}},
		{"replication", "  - {name: c, replicated: true, replication: fast}\n", "", []string{"caches[0].replication", "want sync or async"}},
		{"batch interval", "  - {name: c, replication: async, batchInterval: 1ms}\n", "", []string{"caches[0].batchInterval", "want 10ms to 10s"}},
		{"max entries", "  - {name: c, maxEntries: 0}\n", "", []string{"caches[0].maxEntries", "want 1 to 10000000"}},
		{"max bytes", "  - {name: c, maxBytes: 1000}\n", "", []string{"caches[0].maxBytes", "64 KiB"}},
		{"ttl short", "  - {name: c, timeToLive: 100ms}\n", "", []string{"caches[0].timeToLive", "want 1s to 720h"}},
		{"tti long", "  - {name: c, timeToIdle: 1000h}\n", "", []string{"caches[0].timeToIdle", "want 1s to 720h"}},
		{"eviction", "  - {name: c, eviction: lru}\n", "", []string{"caches[0].eviction", "want LRU or LFU"}},
		{"unknown key", "  - {name: c, ttl: 5}\n", "", []string{"g.yaml:2", `unknown key "ttl"`}},
		{"responseCache unknown cache", okCache, "      - responseCache: {cache: d}\n", []string{"g.yaml:12", "apis[0].policies[0].responseCache.cache", `"d" is not a cache of caches (defined: c)`}},
		{"responseCache no caches", "", "      - responseCache: {cache: d}\n", []string{"declare it under caches"}},
		{"responseCache POST", okCache, "      - responseCache: {cache: c, methods: [GET, POST]}\n", []string{"responseCache.methods", `"POST": only GET and HEAD`}},
		{"responseCache status 206", okCache, "      - responseCache: {cache: c, statuses: [200, 206]}\n", []string{"responseCache.statuses", "206: want 200 to 599"}},
		{"responseCache status 99", okCache, "      - responseCache: {cache: c, statuses: [99]}\n", []string{"responseCache.statuses"}},
		{"responseCache query and ignore", okCache, "      - responseCache: {cache: c, query: [a], ignoreQuery: true}\n", []string{"responseCache.ignoreQuery", "not both"}},
		{"responseCache bad header", okCache, "      - responseCache: {cache: c, headers: [\"a b\"]}\n", []string{"responseCache.headers", "not a field name"}},
		{"responseCache bad query", okCache, "      - responseCache: {cache: c, query: [\"a=b\"]}\n", []string{"responseCache.query"}},
		{"responseCache ttl", okCache, "      - responseCache: {cache: c, ttl: 100ms}\n", []string{"responseCache.ttl", "want 1s"}},
		{"responseCache body over the cache", "  - {name: c, maxBytes: 65536}\n", "      - responseCache: {cache: c}\n", []string{"responseCache.maxBodyBytes", "more than cache \"c\" holds"}},
		{"responseCache body too large", okCache, "      - responseCache: {cache: c, maxBodyBytes: 100000000}\n", []string{"responseCache.maxBodyBytes", "64 MiB"}},
		{"two responseCache", okCache, "      - responseCache: {cache: c}\n      - responseCache: {cache: c}\n", []string{"policies[1].responseCache", "at most one"}},
		{"cacheLookup bad key", okCache, "      - cacheLookup: {cache: c, key: cookie:x, as: v}\n", []string{"cacheLookup.key", "want header:NAME"}},
		{"cacheLookup param not in path", okCache, "      - cacheLookup: {cache: c, key: param:x, as: v}\n", []string{"cacheLookup.key", "no {x} segment"}},
		{"cacheLookup application first", okCache, "      - cacheLookup: {cache: c, key: application, as: v}\n", []string{"cacheLookup.key", "needs an apiKey"}},
		{"cacheLookup as", okCache, "      - cacheLookup: {cache: c, key: param:id, as: \"a.b\"}\n", []string{"cacheLookup.as"}},
		{"cacheLookup as twice", okCache, "      - cacheLookup: {cache: c, key: param:id, as: v}\n      - cacheLookup: {cache: c, key: param:id, as: v}\n", []string{"policies[1].cacheLookup.as", "earlier lookup"}},
		{"cacheLookup status", okCache, "      - cacheLookup: {cache: c, key: param:id, as: v, notFoundStatus: 500}\n", []string{"cacheLookup.notFoundStatus"}},
		{"cacheStore unknown var", okCache, "      - cacheStore: {cache: c, key: param:id, value: \"${v.value}\"}\n", []string{"cacheStore.value", "${v.value} is given by no earlier policy"}},
		{"cacheStore unknown cache", okCache, "      - cacheStore: {cache: x, key: param:id, value: a}\n", []string{"cacheStore.cache"}},
		{"header uses an unknown cache var", okCache, "      - headers: {request: {set: {X-V: \"${w.value}\"}}}\n      - cacheLookup: {cache: c, key: param:id, as: w}\n", []string{"uses ${w.value}"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(cacheConfig(tc.caches, tc.policies))
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

// TestCacheLoad: defaults fill what a cache leaves out; the cache policies
// load, a cacheLookup's ${AS.value} usable by later policies.
func TestCacheLoad(t *testing.T) {
	cfg, err := Load(cacheConfig("  - {name: c}\n  - {name: r, replicated: true, replication: async, maxEntries: 5, maxBytes: 1048576, timeToLive: 1m, timeToIdle: 10s, eviction: LFU}\n",
		"      - cacheLookup: {cache: r, key: header:X-User, as: u}\n"+
			"      - headers: {request: {set: {X-Plan: \"${u.value}\"}}}\n"+
			"      - cacheStore: {cache: r, key: param:id, value: \"plan ${u.value}\", ttl: 30s}\n"+
			"      - responseCache: {cache: c, headers: [Accept], query: [page], ttl: 10s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := CacheDefaults()
	want.Name = "c"
	if cfg.Caches[0] != want {
		t.Errorf("caches[0]: got %+v, want %+v", cfg.Caches[0], want)
	}
	r := cfg.Caches[1]
	if !r.Replicated || r.Replication != "async" || r.MaxEntries != 5 || r.TimeToLive.D() != time.Minute || r.TimeToIdle.D() != 10*time.Second || r.Eviction != "LFU" || r.BatchInterval != CacheDefaults().BatchInterval {
		t.Errorf("caches[1]: got %+v", r)
	}
	ps := cfg.APIs[0].Policies
	if ps[3].Type() != "responseCache" || ps[3].ResponseCache.TTL.D() != 10*time.Second || ps[2].CacheStore.Value != "plan ${u.value}" {
		t.Errorf("policies: got %+v", ps)
	}
}

// TestChecksumWithoutCaches: a configuration that uses no cache has the
// checksum it had before caches existed (the new keys are left out of
// it), so that instances of two releases agree during a rolling upgrade.
func TestChecksumWithoutCaches(t *testing.T) {
	cfg, err := Load(policyConfig("      - headers: {request: {set: {X-A: \"1\"}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(cfg.Settings)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Caches", "ResponseCache", "CacheLookup", "CacheStore"} {
		if strings.Contains(string(data), `"`+k+`"`) {
			t.Errorf("the checksummed settings name %s: %s", k, data)
		}
	}
}

// TestCacheBounds: each range accepts its ends and refuses one step
// beyond them.
func TestCacheBounds(t *testing.T) {
	long := strings.Repeat("n", 64)
	cases := []struct {
		caches, policies string
		ok               bool
	}{
		{"  - {name: " + long + "}\n", "", true},
		{"  - {name: " + long + "x}\n", "", false},
		{"  - {name: a-b_c.d}\n", "", true},
		{"  - {name: c, replication: async, batchInterval: 10ms}\n", "", true},
		{"  - {name: c, replication: async, batchInterval: 9ms}\n", "", false},
		{"  - {name: c, replication: async, batchInterval: 10s}\n", "", true},
		{"  - {name: c, replication: async, batchInterval: 10001ms}\n", "", false},
		{"  - {name: c, maxEntries: 1}\n", "", true},
		{"  - {name: c, maxEntries: 10000000}\n", "", true},
		{"  - {name: c, maxEntries: 10000001}\n", "", false},
		{"  - {name: c, maxBytes: 65536}\n", "", true},
		{"  - {name: c, maxBytes: 65535}\n", "", false},
		{"  - {name: c, maxBytes: 17179869184}\n", "", true},
		{"  - {name: c, maxBytes: 17179869185}\n", "", false},
		{"  - {name: c, timeToLive: 1s, timeToIdle: 1s}\n", "", true},
		{"  - {name: c, timeToLive: 999ms}\n", "", false},
		{"  - {name: c, timeToIdle: 999ms}\n", "", false},
		{"  - {name: c, timeToLive: 720h, timeToIdle: 720h}\n", "", true},
		{"  - {name: c, timeToLive: 720h1s}\n", "", false},
		{"  - {name: c, timeToIdle: 720h1s}\n", "", false},
		{"  - {name: c, timeToLive: 0, timeToIdle: 0, eviction: LFU}\n", "", true},
		{okCache, "      - responseCache: {cache: c, ttl: 1s}\n", true},
		{okCache, "      - responseCache: {cache: c, ttl: 720h}\n", true},
		{okCache, "      - responseCache: {cache: c, ttl: 720h1s}\n", false},
		{okCache, "      - responseCache: {cache: c, statuses: [200, 599, 404, 301]}\n", true},
		{okCache, "      - responseCache: {cache: c, statuses: [199]}\n", false},
		{okCache, "      - responseCache: {cache: c, statuses: [600]}\n", false},
		{okCache, "      - responseCache: {cache: c, statuses: [304]}\n", false},
		{okCache, "      - responseCache: {cache: c, maxBodyBytes: 67108864}\n", true}, // the cache's 64 MiB exactly
		{"  - {name: c, maxBytes: 134217728}\n", "      - responseCache: {cache: c, maxBodyBytes: 67108864}\n", true},
		{"  - {name: c, maxBytes: 134217728}\n", "      - responseCache: {cache: c, maxBodyBytes: 67108865}\n", false},
		{"  - {name: c, maxBytes: 1048576}\n", "      - responseCache: {cache: c}\n", true},
		{"  - {name: c, maxBytes: 1048575}\n", "      - responseCache: {cache: c}\n", false},
		{"  - {name: c, maxBytes: 1048575}\n", "      - responseCache: {cache: c, maxBodyBytes: 1048575}\n", true},
		{okCache, "      - responseCache: {cache: c, maxBodyBytes: -1}\n", false},
		{okCache, "      - responseCache: {cache: c, query: [" + long + "]}\n", true},
		{okCache, "      - responseCache: {cache: c, query: [" + long + "x]}\n", false},
		{okCache, "      - responseCache: {cache: c, query: [\"\"]}\n", false},
		{okCache, "      - responseCache: {cache: c, methods: [HEAD]}\n", true},
		{okCache, "      - cacheLookup: {cache: c, key: param:id, as: v, notFoundStatus: 404}\n", true},
		{okCache, "      - cacheLookup: {cache: c, key: param:id, as: v, notFoundStatus: 403}\n", true},
		{okCache, "      - cacheLookup: {cache: c, key: param:id, as: v, notFoundStatus: 405}\n", false},
		{okCache, "      - cacheStore: {cache: c, key: param:id, value: " + strings.Repeat("v", 8<<10) + "}\n", true},
		{okCache, "      - cacheStore: {cache: c, key: param:id, value: " + strings.Repeat("v", 8<<10+1) + "}\n", false},
		{okCache, "      - cacheStore: {cache: c, key: param:id, value: \"${x\"}\n", false},
		{okCache, "      - cacheStore: {cache: c, key: param:id, value: v, ttl: 1s}\n", true},
		{okCache, "      - cacheStore: {cache: c, key: param:id, value: v, ttl: 999ms}\n", false},
		{okCache, "      - cacheStore: {cache: c, key: param:id, value: v, ttl: 720h1s}\n", false},
	}
	for _, tc := range cases {
		_, err := Load(cacheConfig(tc.caches, tc.policies))
		if (err == nil) != tc.ok {
			t.Errorf("%q %q: got %v, want ok %v", tc.caches, strings.TrimSpace(tc.policies), err, tc.ok)
		}
	}
	// An API taking neither GET nor HEAD.
	y := "caches:\n  - {name: c}\nbackends:\n  - name: b\n    url: http://127.0.0.1:1\napis:\n  - name: a\n    pathPrefix: /a\n    methods: [POST]\n    backend: b\n    policies:\n      - responseCache: {cache: c}\n"
	if _, err := Load(Layer{Name: "g.yaml", YAML: []byte(y)}); err == nil || !strings.Contains(err.Error(), "neither GET nor HEAD") {
		t.Errorf("a POST API with responseCache: %v", err)
	}
}
