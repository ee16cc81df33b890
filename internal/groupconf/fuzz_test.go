package groupconf

import "testing"

// FuzzLoad: any input either loads into a valid config or returns an error;
// it never panics.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"traffic:\n  port: 8080\n",
		"apis:\n  - name: a\n    pathPrefix: /a\n    backend: b\nbackends:\n  - name: b\n    url: http://x\n",
		"zeroDowntime: {shutdown: {enabled: true, delay: 1.5}}",
		"a: &x 1\nb: *x\n",
		"apis:\n  - name: a\n    pathPrefix: /a\n    backend: b\n    policies:\n      - jwt: {issuer: \"https://id.example\", audience: a, discovery: true, methodScopes: {GET: [r]}, leeway: 1m}\nbackends:\n  - name: b\n    url: http://x\n",
		"caches:\n  - {name: c, replicated: true, replication: async, eviction: LFU, timeToIdle: 10s}\napis:\n  - name: a\n    path: /a/{id}\n    backend: b\n    policies:\n      - responseCache: {cache: c, headers: [Accept], query: [q], statuses: [200, 404]}\n      - cacheLookup: {cache: c, key: param:id, as: v}\n      - cacheStore: {cache: c, key: header:X, value: \"${v.value}\"}\nbackends:\n  - name: b\n    url: http://x\n",
		"[1, 2]",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(Layer{Name: "f.yaml", YAML: data})
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}
