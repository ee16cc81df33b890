package instance

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// TestManagementProfiling: /debug/pprof/ on the management listener is
// off by default (404 naming the setting); with profiling.enabled it
// serves Go's profiles to this host's node manager's certificate only, on
// GET only.
func TestManagementProfiling(t *testing.T) {
	off := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	if r := do(t, nil, "GET", off.mgmt+"/debug/pprof/", nil); r.status != 404 || !strings.Contains(r.body, "profiling.enabled") {
		t.Errorf("profiling off: got %d %s, want 404 naming profiling.enabled", r.status, r.body)
	}

	const nm = pki.NodeManagerCNPrefix + "nm-1 (host-1)"
	_, ca, base := startDomainTLSInstance(t, quickstartYAML(newPorts(t), sampleAPI+"profiling: {enabled: true}\n"), func(o *Options) { o.NodeManager = nm })
	client := func(cn string) *http.Client { return domainClient(t, ca, cn) }
	get := func(c *http.Client, method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	own := client(nm)
	if code, body := get(own, "GET", "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Errorf("the index to this host's node manager: got %d %.200s", code, body)
	}
	if code, body := get(own, "GET", "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("a named profile: got %d %.200s", code, body)
	}
	if code, body := get(own, "GET", "/debug/pprof/profile?seconds=1"); code != 200 || len(body) == 0 {
		t.Errorf("a CPU profile of 1 s: got %d, %d bytes", code, len(body))
	}
	if code, body := get(own, "GET", "/debug/pprof/cmdline"); code != 200 || len(body) == 0 {
		t.Errorf("cmdline: got %d %q", code, body)
	}
	if code, _ := get(own, "POST", "/debug/pprof/symbol"); code != 405 {
		t.Errorf("POST: got %d, want 405", code)
	}
	for _, cn := range []string{pki.NodeManagerCNPrefix + "nm-2 (host-2)", "instance-1"} {
		if code, body := get(client(cn), "GET", "/debug/pprof/"); code != 403 {
			t.Errorf("GET as %q: got %d %.200s, want 403", cn, code, body)
		}
	}
}
