package tools_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// anm is an Admin Node Manager started with the real binary (nodemanager
// -d) in a temporary install directory.
type anm struct {
	t    *testing.T
	h    *gwtest.Home
	port int
	ca   string
}

func startANM(t *testing.T) *anm {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed (scripts/test installs it): %v", err)
	}
	h := gwtest.NewHome(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	port := gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(port))
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	h.MustRun("", "nodemanager", "-d")
	return &anm{t: t, h: h, port: port, ca: h.Path("groups", "certs", "domaincert.pem")}
}

type curlResult struct {
	code    int
	body    string
	headers string
	exit    int
	stderr  string
}

// curl runs the real curl against the node manager (https://localhost:PORT),
// verifying its certificate with the domain CA unless noCA.
func (a *anm) curl(args ...string) curlResult {
	a.t.Helper()
	hdr := filepath.Join(a.t.TempDir(), "headers")
	base := []string{"-sS", "--max-time", "60", "-D", hdr, "-o", "-", "-w", "\n%{http_code}"}
	var full []string
	for _, x := range args {
		if strings.HasPrefix(x, "/") {
			x = fmt.Sprintf("https://localhost:%d%s", a.port, x)
		}
		full = append(full, x)
	}
	noCA := false
	if len(full) > 0 && full[0] == "--no-ca" {
		noCA, full = true, full[1:]
	}
	if !noCA {
		base = append(base, "--cacert", a.ca)
	}
	cmd := exec.Command("curl", append(base, full...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r := curlResult{stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
		return r
	} else if err != nil {
		a.t.Fatal(err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	r.body, r.code = s[:i], atoi(s[i+1:])
	h, _ := os.ReadFile(hdr)
	r.headers = strings.ToLower(string(h)) // HTTP/2: lower-case names
	return r
}

func atoi(s string) int { n, _ := strconv.Atoi(strings.TrimSpace(s)); return n }

const adminCreds = "admin:changeme-Secret1"

func (a *anm) api(method, path, body string, extra ...string) curlResult {
	a.t.Helper()
	args := []string{"-u", adminCreds, "-X", method}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "--data-binary", body)
	}
	return a.curl(append(append(args, extra...), path)...)
}

func result(t *testing.T, r curlResult, code int, v any) {
	t.Helper()
	if r.exit != 0 || r.code != code {
		t.Fatalf("got exit %d status %d, want status %d: %s %s", r.exit, r.code, code, r.body, r.stderr)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.body), &env); err != nil {
		t.Fatalf("not the envelope: %v: %s", err, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(env.Result, v); err != nil {
			t.Fatalf("result: %v: %s", err, r.body)
		}
	}
}

// The management API through the real binary and a real client: the TLS
// chain verified by curl against the domain CA, Basic auth, a group and an
// instance created, started, checked through the router and stopped, and
// a stale version refused.
func TestManagementAPIWithCurl(t *testing.T) {
	a := startANM(t)

	// The chain: curl trusts the node manager only with the domain CA.
	if r := a.curl("--no-ca", "-u", adminCreds, "/api/topology"); r.exit != 60 {
		t.Errorf("curl without the domain CA: got exit %d (%s), want 60 (certificate not trusted)", r.exit, r.stderr)
	}
	var topo struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
		Groups  []struct {
			ID       string `json:"id"`
			Services []struct {
				ID, Type, Status string
			} `json:"services"`
		} `json:"groups"`
	}
	r := a.curl("-u", adminCreds, "/api/topology")
	result(t, r, 200, &topo)
	if topo.Version != 1 || len(topo.Groups) != 1 || topo.Groups[0].Services[0].Status != "running" {
		t.Errorf("topology: got %+v", topo)
	}
	if !strings.Contains(r.headers, `etag: "1"`) {
		t.Errorf("headers lack the ETag: %s", r.headers)
	}

	// 401s.
	for _, args := range [][]string{{"/api/topology"}, {"-u", "admin:wrong-password", "/api/topology"}, {"-u", "nobody:changeme-Secret1", "/api/topology"}} {
		r := a.curl(args...)
		if r.code != 401 || !strings.Contains(r.headers, `www-authenticate: basic realm="gatehouse"`) || !strings.Contains(r.body, `"code":401`) {
			t.Errorf("curl %v: got %d %s %s", args, r.code, r.headers, r.body)
		}
	}

	// A group and an instance.
	var group struct{ ID string }
	result(t, a.api("POST", "/api/topology/groups", `{"name":"API Group"}`, "-H", `If-Match: "1"`), 201, &group)
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	var svc struct{ ID, Status string }
	result(t, a.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"API Server","trafficPort":%d,"managementPort":%d}`, tp, mp), "-H", `If-Match: "2"`), 201, &svc)
	if svc.ID != "instance-1" || svc.Status != "stopped" {
		t.Errorf("service: got %+v", svc)
	}
	// A stale version.
	if r := a.api("POST", "/api/topology/groups", `{"name":"Late"}`, "-H", `If-Match: "2"`); r.code != 409 || !strings.Contains(r.body, "expected version 2, current version is 3") {
		t.Errorf("stale version: got %d %s", r.code, r.body)
	}

	// Start, health through the router, status, stop.
	var st struct{ Status string }
	result(t, a.api("POST", "/api/management/start/"+group.ID+"/instance-1", ""), 200, &st)
	if st.Status != "running" {
		t.Errorf("start: got %+v", st)
	}
	if r := a.curl("-u", adminCreds, "/api/router/service/instance-1/healthcheck"); r.code != 200 || r.body != "<status>ok</status>" {
		t.Errorf("health through the router: got %d %q", r.code, r.body)
	}
	if r := a.curl("-u", adminCreds, "/api/router/service/instance-1/status"); r.code != 200 || !strings.Contains(r.body, `"instanceId":"instance-1"`) {
		t.Errorf("/status through the router: got %d %s", r.code, r.body)
	}
	if code, body := gwtest.Get(t, fmt.Sprintf("http://127.0.0.1:%d/healthcheck", tp)); code != 200 {
		t.Errorf("traffic health: %d %s", code, body)
	}
	result(t, a.curl("-u", adminCreds, "/api/topology?serviceType=gateway"), 200, &topo)
	if s := topo.Groups[1].Services; len(s) != 1 || s[0].Status != "running" {
		t.Errorf("topology after start: got %+v", topo.Groups)
	}
	if r := a.api("DELETE", "/api/topology/services/"+group.ID+"/instance-1", ""); r.code != 409 || !strings.Contains(r.body, "running") {
		t.Errorf("delete a running instance: got %d %s", r.code, r.body)
	}
	result(t, a.api("POST", "/api/management/stop/"+group.ID+"/instance-1", ""), 200, &st)
	if st.Status != "stopped" {
		t.Errorf("stop: got %+v", st)
	}
	if r := a.curl("-u", adminCreds, "/api/router/service/instance-1/healthcheck"); r.code != 502 {
		t.Errorf("router to a stopped instance: got %d %s", r.code, r.body)
	}
	result(t, a.api("DELETE", "/api/topology/services/"+group.ID+"/instance-1", ""), 200, nil)
	result(t, a.api("DELETE", "/api/topology/groups/"+group.ID, ""), 200, nil)

	// Bad input through the real listener.
	if r := a.api("POST", "/api/topology/groups", `{"name":`); r.code != 400 || !strings.Contains(r.body, "offset") {
		t.Errorf("malformed JSON: got %d %s", r.code, r.body)
	}
	if r := a.api("PATCH", "/api/topology", ""); r.code != 405 || !strings.Contains(r.headers, "allow: get") {
		t.Errorf("wrong method: got %d %s", r.code, r.headers)
	}
}
