package tools_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// The deployment integration test (issue 7): a group of two instances on
// two hosts (two install directories, two node managers on 127.0.0.2 and
// 127.0.0.3) behind a real HAProxy that checks /healthchecklb, with traffic
// through HAProxy during zero-downtime deployments and a rollback.

// deployBackend is the back end of the test's APIs: it answers every
// request with its path, and echoes WebSocket messages on /ws.
func deployBackend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ws") {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		}
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "backend %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// groupYAML is a group configuration: APIs /v1 (and /v2 when v2) to the
// back end, zero-downtime deployment with short delays (off when delay is
// "").
func groupYAML(backend string, v2 bool, delay string) string {
	enabled := delay != ""
	if !enabled {
		delay = "0"
	}
	s := fmt.Sprintf(`zeroDowntime:
  deployment:
    enabled: %t
    delayBefore: %s
    delayAfter: %s
backends:
  - name: be
    url: %s
apis:
  - name: v1
    pathPrefix: /v1
    backend: be
`, enabled, delay, delay, backend)
	if v2 {
		s += `  - name: v2
    pathPrefix: /v2
    backend: be
`
	}
	return s
}

// upload posts a group configuration to the ANM with curl.
func (n *nmHost) upload(gid, yaml, query string) curlResult {
	n.t.Helper()
	f := filepath.Join(n.t.TempDir(), "group.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return n.curl(n.h, "-u", adminCreds, "-X", "POST", "-H", "Content-Type: application/yaml", "--data-binary", "@"+f,
		"/api/deployment/group/configuration/file/"+gid+query)
}

type groupDeploymentState struct {
	Archive    int
	Consistent bool
	Reasons    []string
	Instances  []struct {
		ID              string
		Status          string
		Archive         int
		DeployedArchive int
	}
}

func (n *nmHost) groupState(gid string) groupDeploymentState {
	n.t.Helper()
	var g groupDeploymentState
	result(n.t, n.api("GET", "/api/deployment/group/"+gid, ""), 200, &g)
	return g
}

// lbObserver polls each instance's /healthchecklb and records, per round,
// which answered 503.
type lbObserver struct {
	mu     sync.Mutex
	rounds [][]int // status per instance
}

func observeLB(ctx context.Context, ports []int) *lbObserver {
	o := &lbObserver{}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		for ctx.Err() == nil {
			round := make([]int, len(ports))
			for i, p := range ports {
				resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthchecklb", p))
				if err == nil {
					round[i] = resp.StatusCode
					resp.Body.Close()
				}
			}
			o.mu.Lock()
			o.rounds = append(o.rounds, round)
			o.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // sampling interval
			}
		}
	}()
	return o
}

// check: every instance was 503 at some point, never two at once, and every
// answer was 200 or 503.
func (o *lbObserver) check(t *testing.T, what string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.rounds) == 0 {
		t.Fatalf("%s: no /healthchecklb sample", what)
	}
	seen503 := make([]int, len(o.rounds[0]))
	for _, r := range o.rounds {
		n := 0
		for i, code := range r {
			switch code {
			case 503:
				n++
				seen503[i]++
			case 200:
			default:
				t.Errorf("%s: /healthchecklb of instance %d answered %d", what, i+1, code)
			}
		}
		if n > 1 {
			t.Errorf("%s: %d instances out of service at once: %v", what, n, r)
		}
	}
	for i, n := range seen503 {
		if n == 0 {
			t.Errorf("%s: instance %d never answered 503 on /healthchecklb (%d samples)", what, i+1, len(o.rounds))
		}
	}
	t.Logf("%s: %d samples, 503 samples per instance %v", what, len(o.rounds), seen503)
}

// checkNone: no instance left the pool (a deployment without zero-downtime).
func (o *lbObserver) checkNone(t *testing.T, what string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.rounds {
		for i, code := range r {
			if code != 200 {
				t.Errorf("%s: /healthchecklb of instance %d answered %d, want 200 throughout", what, i+1, code)
				return
			}
		}
	}
	t.Logf("%s: %d samples, all 200", what, len(o.rounds))
}

// loadGen sends requests through the load balancer on several keep-alive
// connections until stopped, counting answers and failures.
type loadGen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

func startLoad(addr string, paths []string, workers int) *loadGen {
	ctx, cancel := context.WithCancel(context.Background())
	g := &loadGen{stop: cancel}
	for w := 0; w < workers; w++ {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for i := 0; ctx.Err() == nil; i++ {
				p := paths[i%len(paths)]
				resp, err := c.Get("http://" + addr + p)
				if err != nil {
					g.fail(fmt.Sprintf("GET %s: %v", p, err))
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "backend "+p {
					g.fail(fmt.Sprintf("GET %s: %d %q", p, resp.StatusCode, body))
					continue
				}
				g.ok.Add(1)
			}
		}()
	}
	return g
}

func (g *loadGen) fail(msg string) {
	g.failed.Add(1)
	g.mu.Lock()
	if len(g.errs) < 10 {
		g.errs = append(g.errs, msg)
	}
	g.mu.Unlock()
}

// finish stops the load and fails the test on any failed request.
func (g *loadGen) finish(t *testing.T, what string) {
	t.Helper()
	g.stop()
	g.wg.Wait()
	t.Logf("%s: %d requests through HAProxy, %d failed", what, g.ok.Load(), g.failed.Load())
	if g.failed.Load() > 0 || g.ok.Load() < 50 {
		t.Errorf("%s: %d failed requests (want 0) of %d: %v", what, g.failed.Load(), g.ok.Load()+g.failed.Load(), g.errs)
	}
}

// startLBProxy runs HAProxy in HTTP mode in front of the instances'
// traffic ports, checking /healthchecklb every 100 ms.
func startLBProxy(t *testing.T, ports []int) string {
	t.Helper()
	bin := haproxyPath(t)
	dir := t.TempDir()
	fp := gwtest.FreePort(t)
	var servers strings.Builder
	for i, p := range ports {
		fmt.Fprintf(&servers, "  server gw%d 127.0.0.1:%d check inter 100ms fall 1 rise 2\n", i+1, p)
	}
	cfg := fmt.Sprintf(`global
  maxconn 500
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 0
frontend fe
  bind 127.0.0.1:%d
  default_backend gws
backend gws
  balance roundrobin
  option httpchk GET /healthchecklb
  http-check expect status 200
%s`, fp, servers.String())
	exited := runHAProxy(t, bin, dir, cfg)
	addr := "127.0.0.1:" + strconv.Itoa(fp)
	// Ready when both servers are up: requests through it succeed.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			data, _ := os.ReadFile(filepath.Join(dir, "haproxy.out"))
			t.Fatalf("haproxy exited: %s", data)
		case <-time.After(50 * time.Millisecond): // polling for readiness
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not answer 200 on %s", addr)
		}
	}
	time.Sleep(500 * time.Millisecond) // rise 2 × 100 ms: both servers in the pool
	return addr
}

func TestDeploymentZeroDowntime(t *testing.T) {
	// Two hosts: the ANM, and a second host joined to it.
	pw := adminPasswordFile(t)
	anm, fp := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)
	second.h.MustRun("", append(join, "--anm_fingerprint", fp)...)
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)

	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	gid := group.ID
	tp1, mp1, tp2, mp2 := gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)
	var svc struct{ ID string }
	result(t, anm.api("POST", "/api/topology/services/"+gid, fmt.Sprintf(`{"name":"one","hostID":"host-1","trafficPort":%d,"managementPort":%d}`, tp1, mp1)), 201, &svc)
	result(t, anm.api("POST", "/api/topology/services/"+gid, fmt.Sprintf(`{"name":"two","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, tp2, mp2)), 201, &svc)
	inStep(t, "instances", anm.h, second.h)
	for _, id := range []string{"instance-1", "instance-2"} {
		var st struct{ Status string }
		result(t, anm.api("POST", "/api/management/start/"+gid+"/"+id, ""), 200, &st)
	}
	be := deployBackend(t)

	// An invalid configuration: refused with file and line, nothing stored.
	bad := groupYAML(be.URL, false, "0.1") + "  - name: broken\n    pathPrefix: /b\n    backnd: be\n"
	if r := anm.upload(gid, bad, ""); r.code != 400 || !strings.Contains(r.body, "group.yaml:15") || !strings.Contains(r.body, "backnd") {
		t.Fatalf("invalid configuration: got %d %s, want 400 naming group.yaml:15 and the key", r.code, r.body)
	}
	// A configuration that names the domain CA's key as its traffic key
	// (it would be served on the traffic port): refused, nothing stored.
	keyGrab := groupYAML(be.URL, false, "0.1") + "traffic:\n  tls:\n    certFile: groups/certs/domaincert.pem\n    keyFile: groups/certs/private/domainkey.pem\n"
	if r := anm.upload(gid, keyGrab, ""); r.code != 400 || !strings.Contains(r.body, "traffic.tls.keyFile") || !strings.Contains(r.body, "groups/certs/private/domainkey.pem") || !strings.Contains(r.body, "key material") {
		t.Fatalf("a configuration naming the CA's key: got %d %s, want 400 naming the key, the file and the rule", r.code, r.body)
	}
	var deps struct{ Archives []struct{ ID int } }
	result(t, anm.api("GET", "/api/deployment/domain/deployments", ""), 200, &deps)
	if len(deps.Archives) != 0 {
		t.Fatalf("an invalid configuration was stored: %+v", deps.Archives)
	}

	// Archive 1: /v1, deployed to both (no load yet: the routes do not exist before).
	var up struct {
		Archive struct{ ID int }
		Job     struct {
			ID     int
			Status string
			Done   int
		}
	}
	result(t, anm.upload(gid, groupYAML(be.URL, false, "0.5"), "?comment=first"), 200, &up)
	if up.Archive.ID != 1 || up.Job.Status != "succeeded" || up.Job.Done != 2 {
		t.Fatalf("first deployment: %+v", up)
	}
	if g := anm.groupState(gid); !g.Consistent || g.Archive != 1 {
		t.Fatalf("after archive 1: %+v", g)
	}

	lb := startLBProxy(t, []int{tp1, tp2})

	// A keep-alive connection and a WebSocket straight to instance-1,
	// opened before the deployment, used after it.
	ka, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tp1))
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	kr := bufio.NewReader(ka)
	kaGet := func(path string) (int, string) {
		t.Helper()
		fmt.Fprintf(ka, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(kr, nil)
		if err != nil {
			t.Fatalf("keep-alive connection: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, _ := kaGet("/v2/x"); code != 404 {
		t.Fatalf("/v2 before archive 2: %d, want 404", code)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wcancel()
	ws, _, err := websocket.Dial(wctx, fmt.Sprintf("ws://127.0.0.1:%d/v1/ws", tp1), nil)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.CloseNow()
	wsEcho := func(msg string) {
		t.Helper()
		if err := ws.Write(wctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("websocket write: %v", err)
		}
		_, got, err := ws.Read(wctx)
		if err != nil || string(got) != msg {
			t.Fatalf("websocket echo: %q %v", got, err)
		}
	}
	wsEcho("before")

	// Archive 2 (/v2 added), zero-downtime, under load through HAProxy.
	zdt := func(what string, call func() curlResult, wantArchive int, zeroDowntime bool) {
		t.Helper()
		octx, ocancel := context.WithCancel(context.Background())
		obs := observeLB(octx, []int{tp1, tp2})
		load := startLoad(lb, []string{"/v1/a", "/v1/b/c"}, 4)
		time.Sleep(300 * time.Millisecond) // traffic flowing before the rollout starts
		r := call()
		time.Sleep(300 * time.Millisecond) // and after it ends
		load.finish(t, what)
		ocancel()
		var res struct {
			Job struct {
				Status string
				Done   int
			}
		}
		result(t, r, 200, &res)
		if res.Job.Status != "succeeded" || res.Job.Done != 2 {
			t.Errorf("%s: job %+v", what, res.Job)
		}
		if zeroDowntime {
			obs.check(t, what)
		} else {
			obs.checkNone(t, what)
		}
		g := anm.groupState(gid)
		if !g.Consistent || g.Archive != wantArchive {
			t.Errorf("%s: group state %+v, want consistent on archive %d", what, g, wantArchive)
		}
		for _, in := range g.Instances {
			if in.Archive != wantArchive || in.DeployedArchive != wantArchive {
				t.Errorf("%s: %s reports archive %d (files %d), want %d", what, in.ID, in.Archive, in.DeployedArchive, wantArchive)
			}
		}
	}
	zdt("deploy archive 2", func() curlResult { return anm.upload(gid, groupYAML(be.URL, true, "0.5"), "?comment=second") }, 2, true)

	// The connections opened before are still there and see archive 2.
	if code, body := kaGet("/v2/x"); code != 200 || body != "backend /v2/x" {
		t.Errorf("keep-alive connection after the deployment: %d %q", code, body)
	}
	wsEcho("after")

	// Rollback to archive 1, the same way.
	zdt("rollback to archive 1", func() curlResult {
		return anm.api("POST", "/api/deployment/group/deploy/"+gid+"/1?comment=rollback", "")
	}, 1, true)
	if code, _ := kaGet("/v2/x"); code != 404 {
		t.Errorf("/v2 after the rollback: %d, want 404", code)
	}
	wsEcho("after rollback")

	// A deployment without zero-downtime (archive 3, /v2 again) under load:
	// the hot swap alone loses nothing, and /healthchecklb stays 200.
	zdt("deploy archive 3 without zero-downtime", func() curlResult { return anm.upload(gid, groupYAML(be.URL, true, ""), "?comment=third") }, 3, false)
	if code, body := kaGet("/v2/x"); code != 200 || body != "backend /v2/x" {
		t.Errorf("keep-alive connection after archive 3: %d %q", code, body)
	}
	wsEcho("after archive 3")

	// The archive can be downloaded; audit entries for the upload and rollouts.
	if r := anm.curl(anm.h, "-u", adminCreds, "/api/deployment/archive/"+gid+"/2"); r.code != 200 || !strings.HasPrefix(r.body, "\x1f\x8b") {
		t.Errorf("download: %d, %d bytes", r.code, len(r.body))
	}
	var aud struct {
		Entries []struct{ Action, Outcome string }
	}
	result(t, anm.api("GET", "/api/audit?action=archive", ""), 200, &aud)
	actions := map[string]int{}
	for _, e := range aud.Entries {
		actions[e.Action+"/"+e.Outcome]++
	}
	if actions["upload archive/ok"] != 3 || actions["upload archive/error"] != 2 || actions["deploy archive/ok"] != 3 || actions["rollback archive/ok"] != 1 {
		t.Errorf("audit entries: %v", actions)
	}

	// A new instance of the group (on the second host) starts from the
	// group's archive, not from the original group.yaml: still consistent.
	tp3, mp3 := gwtest.FreePort(t), gwtest.FreePort(t)
	result(t, anm.api("POST", "/api/topology/services/"+gid, fmt.Sprintf(`{"name":"three","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, tp3, mp3)), 201, &svc)
	if g := anm.groupState(gid); !g.Consistent || g.Archive != 3 || len(g.Instances) != 3 {
		t.Errorf("after adding instance-3: %+v, want consistent on archive 3", g)
	}
	result(t, anm.api("DELETE", "/api/topology/services/"+gid+"/"+svc.ID, ""), 200, nil)

	// An instance down during a deployment: reported, the group inconsistent.
	var st struct{ Status string }
	result(t, anm.api("POST", "/api/management/stop/"+gid+"/instance-2", ""), 200, &st)
	r3 := anm.upload(gid, groupYAML(be.URL, false, "0.1"), "?comment=fourth")
	if r3.code != 502 || !strings.Contains(r3.body, "instance-2") || !strings.Contains(r3.body, "not running") {
		t.Errorf("deployment with instance-2 down: %d %s", r3.code, r3.body)
	}
	g := anm.groupState(gid)
	if g.Consistent || len(g.Reasons) == 0 {
		t.Errorf("group after a failed rollout: %+v, want inconsistent", g)
	}
	var topo struct {
		Groups []struct {
			ID         string
			Deployment *struct {
				Consistent bool
			}
		}
	}
	result(t, anm.api("GET", "/api/topology", ""), 200, &topo)
	for _, tg := range topo.Groups {
		if tg.ID == gid && (tg.Deployment == nil || tg.Deployment.Consistent) {
			t.Errorf("topology shows the group as %+v, want inconsistent", tg.Deployment)
		}
	}

	// Last-known-good: instance-2 started with its node manager stopped
	// serves the archive it last took (3: /v1 and /v2), not archive 4 (no
	// /v2) nor the original group.yaml (no /v1).
	second.h.MustRun("", "nodemanager", "-k")
	second.h.MustRun("", "startinstance", "-d", "-n", "two", "-g", "G")
	t.Cleanup(func() { second.h.Run("", "startinstance", "-k", "-n", "two", "-g", "G") })
	if code, _ := gwtest.Get(t, fmt.Sprintf("http://127.0.0.1:%d/v1/lkg", tp2)); code != 200 {
		t.Errorf("instance-2 started without its node manager: /v1 %d, want 200", code)
	}
	if code, _ := gwtest.Get(t, fmt.Sprintf("http://127.0.0.1:%d/v2/lkg", tp2)); code != 200 {
		t.Errorf("instance-2 started without its node manager: /v2 %d, want 200 (archive 3)", code)
	}
	var status struct {
		Deployment struct{ Archive int }
	}
	code, body := anm.h.MgmtGet(mp2, "/status") // a client certificate of the domain; the CA key is on the ANM host
	if err := json.Unmarshal([]byte(body), &status); code != 200 || err != nil || status.Deployment.Archive != 3 {
		t.Errorf("instance-2 /status: %d %s, want archive 3", code, body)
	}
}
