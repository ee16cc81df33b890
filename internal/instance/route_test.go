package instance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/sample"
)

// paramPolicy copies the matched route's {id} parameter into a request
// header, so that the test sees what policies see.
type paramPolicy struct{}

func (paramPolicy) Name() string { return "param" }
func (paramPolicy) Apply(ex *policy.Exchange) error {
	if v, ok := ex.Params.Get("id"); ok {
		ex.R.Header.AddCopy([]byte("X-Param-Id"), []byte(v))
	}
	return nil
}

// TestRouting drives the real request path: {id} routes forward with their
// parameter visible to policies, another method answers 405 with Allow, and
// paths that could slip past a route answer 400.
func TestRouting(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), `
backends:
  - name: sample
    sample: true
apis:
  - name: order
    path: /echo/orders/{id}
    methods: [GET, DELETE]
    backend: sample
  - name: order-lines
    path: /echo/orders/{id}/lines
    methods: [POST]
    backend: sample
  - name: public
    pathPrefix: /echo/public
    backend: sample
  - name: report
    pathRegex: '/echo/reports/[0-9]{4}'
    methods: [GET]
    backend: sample
`))
	rt := *ti.rt.Load()
	rt.chains = make([]policy.Chain, len(rt.chains))
	for i := range rt.chains {
		rt.chains[i] = policy.Chain{paramPolicy{}}
	}
	ti.rt.Store(&rt)

	tests := []struct {
		method, path string
		wantStatus   int
		wantPath     string // path the back end saw
		wantParam    string // X-Param-Id the back end saw
		wantAllow    string
	}{
		{"GET", "/echo/orders/42", 200, "/echo/orders/42", "42", ""},
		{"DELETE", "/echo/orders/42", 200, "/echo/orders/42", "42", ""},
		{"GET", "/echo/orders/a%20b", 200, "/echo/orders/a b", "a b", ""},
		{"GET", "/echo/%6Frders/7", 200, "/echo/orders/7", "7", ""},
		{"POST", "/echo/orders/42/lines", 200, "/echo/orders/42/lines", "42", ""},
		{"GET", "/echo/reports/2024", 200, "/echo/reports/2024", "", ""},
		{"POST", "/echo/orders/42", 405, "", "", "DELETE, GET"},
		{"GET", "/echo/orders/42/lines", 405, "", "", "POST"},
		{"POST", "/echo/reports/2024", 405, "", "", "GET"},
		{"GET", "/echo/orders/", 404, "", "", ""},
		{"GET", "/echo/orders/42/x", 404, "", "", ""},
		{"GET", "/echo/public/..%2forders/1", 400, "", "", ""},
		{"GET", "/echo/public/%2e%2e/orders/1", 400, "", "", ""},
		{"GET", "/echo/public/..;/orders/1", 400, "", "", ""},
		{"GET", "/echo//orders/1", 400, "", "", ""},
	}
	for _, tt := range tests {
		r := rawRequest(t, ti.base, tt.method, tt.path)
		if r.status != tt.wantStatus {
			t.Errorf("%s %s: status: got %d, want %d (%s)", tt.method, tt.path, r.status, tt.wantStatus, r.body)
			continue
		}
		if got := r.header.Get("Allow"); got != tt.wantAllow {
			t.Errorf("%s %s: Allow: got %q, want %q", tt.method, tt.path, got, tt.wantAllow)
		}
		if tt.wantStatus != http.StatusOK {
			if !strings.Contains(r.body, fmt.Sprintf(`"code":%d`, tt.wantStatus)) {
				t.Errorf("%s %s: body: got %s, want the JSON error body", tt.method, tt.path, r.body)
			}
			continue
		}
		var e sample.Echo
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Fatalf("%s %s: %v (%s)", tt.method, tt.path, err, r.body)
		}
		var param string
		if v := e.Headers["X-Param-Id"]; len(v) > 0 {
			param = v[0]
		}
		if e.Path != tt.wantPath || param != tt.wantParam {
			t.Errorf("%s %s: back end saw path %q, X-Param-Id %q; want %q, %q", tt.method, tt.path, e.Path, param, tt.wantPath, tt.wantParam)
		}
	}
}
