package instance

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const rateLimitAPIs = `
traffic: {address: 127.0.0.1, port: %d, trustedProxies: [127.0.0.1]}
management: {address: 127.0.0.1, port: %d}
sample: {enabled: true, address: 127.0.0.1, port: %d}
log: {level: debug}
backends:
  - name: sample
    sample: true
apis:
  - name: limited
    pathPrefix: /limited
    stripPrefix: true
    backend: sample
    policies:
      - rateLimit: {requests: 3, window: 60s}
      - rateLimit: {name: tenant, requests: 100, window: 1h, key: "header:X-Tenant"}
`

// TestRateLimitPolicy: through the instance, keyed by the client's address
// after the trusted-proxy walk: three requests pass with the RateLimit
// fields, the fourth is 429 with Retry-After, and another client is not
// limited; two policies of one API each give their member.
func TestRateLimitPolicy(t *testing.T) {
	p := newPorts(t)
	ti := startInstance(t, fmt.Sprintf(rateLimitAPIs, p.traffic, p.management, p.sample))
	from := func(client string) http.Header {
		return http.Header{"X-Forwarded-For": {client}, "X-Tenant": {"acme"}}
	}
	item := regexp.MustCompile(`^"default";r=(\d+);t=(\d+), "tenant";r=(\d+);t=(\d+)$`)
	for i, wantR := range []string{"2", "1", "0"} {
		r := do(t, nil, "GET", ti.base+"/limited/echo", from("203.0.113.7"))
		rl := strings.Join(r.header.Values("RateLimit"), ", ")
		m := item.FindStringSubmatch(rl)
		if r.status != 200 || m == nil || m[1] != wantR || m[3] != strconv.Itoa(99-i) {
			t.Errorf("request %d: got %d RateLimit %q, want 200 with r=%s for default and r=%d for tenant", i+1, r.status, rl, wantR, 99-i)
		}
		if got := strings.Join(r.header.Values("RateLimit-Policy"), ", "); got != `"default";q=3;w=60, "tenant";q=100;w=3600` {
			t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
		}
		if strings.Contains(r.body, "X-Forwarded-For") && !strings.Contains(r.body, "203.0.113.7") {
			t.Errorf("request %d: the back end did not see the client: %s", i+1, r.body)
		}
	}
	r := do(t, nil, "GET", ti.base+"/limited/echo", from("203.0.113.7"))
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.header.Get("Retry-After") == "0" {
		t.Fatalf("4th request: got %d Retry-After %q, want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"default";r=0;t=`+r.header.Get("Retry-After")) {
		t.Errorf("429: RateLimit %q, want r=0 and t equal to Retry-After %s", got, r.header.Get("Retry-After"))
	}
	if !strings.Contains(r.body, "rate limit") || strings.Contains(r.body, `"method"`) {
		t.Errorf("429 body: %s", r.body)
	}
	if r := do(t, nil, "GET", ti.base+"/limited/echo", from("203.0.113.8")); r.status != 200 {
		t.Errorf("another client: got %d, want 200", r.status)
	}
	// The decisions are in the metrics.
	res, err := http.Get(ti.mgmt + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`gatehouse_ratelimit_decisions_total{api="limited",decision="allowed",policy="default"} 4`,
		`gatehouse_ratelimit_decisions_total{api="limited",decision="limited",policy="default"} 1`,
		`gatehouse_ratelimit_partitioned 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// BenchmarkProxyRateLimit: the request path through a rateLimit policy
// that lets every request through (a limit never reached), keyed by the
// client's address and by a header, against the same API without a policy
// ("nopolicy"); the target is at least 0.85 × its throughput.
//
//	go test ./internal/instance -run '^$' -bench 'ProxyRateLimit' -benchmem -count 5
func BenchmarkProxyRateLimit(b *testing.B) {
	for _, c := range []struct{ name, policy string }{
		{"nopolicy", ""},
		{"clientIP", "      - rateLimit: {requests: 1000000000, window: 1s}\n"},
		{"header", "      - rateLimit: {requests: 1000000000, window: 1s, key: \"header:X-Tenant\"}\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var addr string
			if c.policy == "" {
				addr = benchGateway(b)
			} else {
				addr = benchGateway(b, c.policy)
			}
			benchWithField(b, addr, "X-Tenant: acme")
		})
	}
}

// TestRateLimitSwap: a configuration swap that keeps a rateLimit's
// settings keeps its counts (the client stays limited); a swap that
// changes them counts anew.
func TestRateLimitSwap(t *testing.T) {
	p := newPorts(t)
	yaml := fmt.Sprintf(rateLimitAPIs, p.traffic, p.management, p.sample)
	ti := startInstance(t, yaml)
	get := func() int {
		return do(t, nil, "GET", ti.base+"/limited/echo", http.Header{"X-Forwarded-For": {"203.0.113.9"}}).status
	}
	for range 3 {
		get()
	}
	if s := get(); s != 429 {
		t.Fatalf("4th request: got %d, want 429", s)
	}
	// The same settings, another API added: still limited.
	same := yaml + "  - name: other\n    pathPrefix: /other\n    backend: sample\n"
	if err := ti.Swap(loadConfig(t, same)); err != nil {
		t.Fatal(err)
	}
	if s := get(); s != 429 {
		t.Errorf("after a swap keeping the policy: got %d, want 429 (counts kept)", s)
	}
	// Another limit: a new count.
	if err := ti.Swap(loadConfig(t, strings.Replace(yaml, "requests: 3, window: 60s", "requests: 4, window: 60s", 1))); err != nil {
		t.Fatal(err)
	}
	if s := get(); s != 200 {
		t.Errorf("after a swap changing the limit: got %d, want 200 (a new count)", s)
	}
	if n := len(ti.rateLimits.LimiterIDs()); n != 2 {
		t.Errorf("limiters after the swaps: got %d, want 2 (the old ones dropped)", n)
	}
}

// BenchmarkProxyRateLimitParallel: as BenchmarkProxyRateLimit over 16
// connections at once, every request of the one key (the client's
// address): the worst case for the key's counters.
//
//	go test ./internal/instance -run '^$' -bench 'ProxyRateLimitParallel' -count 5
func BenchmarkProxyRateLimitParallel(b *testing.B) {
	for _, c := range []struct{ name, policy string }{
		{"nopolicy", ""},
		{"clientIP", "      - rateLimit: {requests: 1000000000, window: 1s}\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var addr string
			if c.policy == "" {
				addr = benchGateway(b)
			} else {
				addr = benchGateway(b, c.policy)
			}
			benchParallel(b, addr)
		})
	}
}
