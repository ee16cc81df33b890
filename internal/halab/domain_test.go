package halab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

const (
	adminPassword = "changeme-Secret1"
	groupName     = "HA Group"
	// The group configuration's short delays (docs/testing.md: short delays
	// come from configuration): HAProxy needs at most about 1 s (fall 2 ×
	// inter 500 ms) to take a server out and 1 s (rise 2) to put it back.
	shutdownDelay = "2"
	delayBefore   = "2"
	delayAfter    = "1.5"
	// restartBackoffMax bounds the node manager's restart delay, so that a
	// soak that kills instances round after round is not slowed by a
	// back-off grown to the default 60 s.
	restartBackoff    = "500ms"
	restartBackoffMax = "2"
)

// lab is the domain under test: one host whose node manager is the Admin
// Node Manager, a group of three instances, a back end, HAProxy.
type lab struct {
	t       *testing.T
	h       *gwtest.Home
	pwFile  string
	anmURL  string // https://127.0.0.1:port
	api     *apiClient
	gid     string
	insts   []*inst
	backend *httptest.Server
	lb      *haproxy
	// current is the archive the whole group should be on; variantOf says
	// which configuration each archive holds, so that every deployment
	// changes something (the next one is the other variant).
	current   int
	variantOf map[int]int
}

// inst is one gateway instance of the group.
type inst struct {
	id, name string
	tp, mp   int // traffic and management ports
}

func (in *inst) String() string { return in.id + " (" + in.name + ")" }

// newLab makes the domain with the real tools, starts the node manager,
// creates and starts the instances through the management API, deploys
// the first archive (before any load: the instances start without APIs)
// and puts HAProxy in front.
func newLab(t *testing.T) *lab {
	t.Helper()
	haproxyBin(t) // skips with the reason before anything is built
	l := &lab{t: t, h: gwtest.NewHome(t), variantOf: map[int]int{}}
	l.pwFile = filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(l.pwFile, []byte(adminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := gwtest.FreePort(t)
	l.h.MustRun("", "managedomain", "-i", "--domain_name", "HALab", "--username", "admin", "--password_file", l.pwFile,
		"--host_name", "lab", "--nm_address", "127.0.0.1", "--port", strconv.Itoa(port))
	t.Cleanup(func() { l.h.Run("", "nodemanager", "-k", "-q") })
	l.h.MustRun("", "nodemanager", "-d")
	l.anmURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	api, err := newAPIClient(l.anmURL, l.h.CACertFile())
	if err != nil {
		t.Fatal(err)
	}
	l.api = api
	if err := api.login("admin", adminPassword); err != nil {
		t.Fatal(err)
	}

	var group struct{ ID string }
	if err := api.call("POST", "/api/topology/groups", `{"name":"`+groupName+`"}`, 201, &group); err != nil {
		t.Fatal(err)
	}
	l.gid = group.ID
	for i := 1; i <= 3; i++ {
		in := &inst{name: fmt.Sprintf("gw%d", i), tp: gwtest.FreePort(t), mp: gwtest.FreePort(t)}
		var svc struct{ ID string }
		body := fmt.Sprintf(`{"name":%q,"hostID":"host-1","trafficPort":%d,"managementPort":%d}`, in.name, in.tp, in.mp)
		if err := api.call("POST", "/api/topology/services/"+l.gid, body, 201, &svc); err != nil {
			t.Fatal(err)
		}
		in.id = svc.ID
		l.insts = append(l.insts, in)
	}
	for _, in := range l.insts {
		if err := api.call("POST", "/api/management/start/"+l.gid+"/"+in.id, "", 200, nil); err != nil {
			t.Fatalf("starting %s: %v", in, err)
		}
	}
	l.backend = newBackend(t)
	if _, err := l.uploadAndDeploy("setup"); err != nil {
		t.Fatal(err)
	}
	ports := make([]int, len(l.insts))
	for i, in := range l.insts {
		ports[i] = in.tp
	}
	l.lb = startHAProxy(t, ports)
	return l
}

// newBackend is the APIs' back end: it reads the body and answers
// "backend METHOD PATH BYTES", which the load generator checks.
func newBackend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return // an aborted upload
		}
		fmt.Fprintf(w, "backend %s %s %d", r.Method, r.URL.Path, n)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// groupYAML is the lab's group configuration. Variant 1 adds an API that
// the load does not use: every deployment changes the configuration, and
// the load's /v1 routes are served by both.
func (l *lab) groupYAML(variant int) string {
	s := fmt.Sprintf(`# HA lab, variant %d
zeroDowntime:
  shutdown:
    enabled: true
    delay: %s
    drainTimeout: 10
  deployment:
    enabled: true
    delayBefore: %s
    delayAfter: %s
nodeManager:
  restartOnFailure: true
  restartBackoff: %s
  restartBackoffMax: %s
backends:
  - name: be
    url: %s
apis:
  - name: v1
    pathPrefix: /v1
    backend: be
`, variant, shutdownDelay, delayBefore, delayAfter, restartBackoff, restartBackoffMax, l.backend.URL)
	if variant == 1 {
		s += "  - name: v2\n    pathPrefix: /v2\n    backend: be\n"
	}
	return s
}

// nextVariant is the variant of the next deployment: the other one.
func (l *lab) nextVariant() int { return 1 - l.variantOf[l.current] }

// uploadAndDeploy uploads the next configuration through the API and waits
// for the rollout; it returns the archive.
func (l *lab) uploadAndDeploy(comment string) (int, error) {
	v := l.nextVariant()
	var res uploadResult
	if err := l.api.upload(l.gid, l.groupYAML(v), "comment="+url.QueryEscape(comment), 200, &res); err != nil {
		return 0, err
	}
	l.variantOf[res.Archive.ID] = v
	if res.Job == nil || res.Job.Status != "succeeded" {
		return res.Archive.ID, fmt.Errorf("deployment of archive %d: job %+v", res.Archive.ID, res.Job)
	}
	l.current = res.Archive.ID
	return res.Archive.ID, nil
}

type uploadResult struct {
	Archive struct{ ID int }
	Job     *job
}

type job struct {
	ID     int
	Status string
	Error  string
	Done   int
	Steps  []struct {
		InstanceID string
		Status     string
	}
}

// groupState is GET /api/deployment/group/{groupID}.
type groupState struct {
	Archive    int
	Consistent bool
	Reasons    []string
	Instances  []struct {
		ID              string
		Status          string
		Archive         int
		DeployedArchive int
		InService       *bool
	}
}

func (l *lab) groupState() (groupState, error) {
	var g groupState
	err := l.api.call("GET", "/api/deployment/group/"+l.gid, "", 200, &g)
	return g, err
}

// settled says whether the group is consistent with every instance running
// and in service, and describes what it saw.
func (g groupState) settled() (bool, string) {
	ok := g.Consistent
	var b strings.Builder
	fmt.Fprintf(&b, "consistent=%v archive=%d reasons=%q;", g.Consistent, g.Archive, g.Reasons)
	for _, in := range g.Instances {
		inService := in.InService != nil && *in.InService
		ok = ok && in.Status == "running" && inService
		svc := "?"
		if in.InService != nil {
			svc = strconv.FormatBool(*in.InService)
		}
		fmt.Fprintf(&b, " %s %s archive %d (files %d) inService=%s;", in.ID, in.Status, in.Archive, in.DeployedArchive, svc)
	}
	return ok && len(g.Instances) == 3, b.String()
}

// awaitSettled polls the group's deployment state until settled.
func (l *lab) awaitSettled(within time.Duration) error {
	return poll(within, 500*time.Millisecond, func() (bool, string) {
		g, err := l.groupState()
		if err != nil {
			return false, err.Error()
		}
		return g.settled()
	})
}

// repair brings the group back to the lab's starting point after a
// scenario that failed: every instance running, the current archive
// deployed everywhere (a redeploy also puts an instance left out of
// service back in), every server UP in HAProxy.
func (l *lab) repair() error {
	if l.nodeManagerPID() == 0 || !alive(l.nodeManagerPID()) {
		l.h.Run("", "nodemanager", "-d")
	}
	if err := l.awaitNodeManager(30 * time.Second); err != nil {
		return fmt.Errorf("repair: the ANM does not answer: %v", err)
	}
	for _, in := range l.insts {
		if pid := l.pid(in.id); pid == 0 || !alive(pid) {
			// The node manager may be starting it at the same moment:
			// what counts is that it runs afterwards.
			l.h.Run("", "startinstance", "-d", "-n", in.name, "-g", groupName)
			if err := l.awaitBack(in, 0, backWithin); err != nil {
				return fmt.Errorf("repair: %v", err)
			}
		}
	}
	var redeploy error
	if l.current != 0 {
		// 409 while a resumed rollout still runs: then awaitSettled
		// below waits for it.
		var res struct{ Job *job }
		redeploy = l.api.call("POST", fmt.Sprintf("/api/deployment/group/deploy/%s/%d?comment=repair", l.gid, l.current), "", 200, &res)
	}
	if err := l.awaitSettled(60 * time.Second); err != nil {
		return fmt.Errorf("repair: %v (redeploy of archive %d: %v)", err, l.current, redeploy)
	}
	return l.lb.awaitAllUp(30 * time.Second)
}

// pid is the pid in var/run/<id>.pid (0 when there is none).
func (l *lab) pid(id string) int {
	data, err := os.ReadFile(l.h.Path("var", "run", id+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// alive says whether pid is a live process (a zombie is dead).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// kill9 sends SIGKILL to pid and waits until it is gone.
func kill9(what string, pid int) error {
	if pid == 0 {
		return fmt.Errorf("%s: no pid", what)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %s (pid %d): %v", what, pid, err)
	}
	return poll(10*time.Second, 10*time.Millisecond, func() (bool, string) {
		return !alive(pid), fmt.Sprintf("%s (pid %d) still alive", what, pid)
	})
}

// awaitBack waits until instance in runs again as a process other than
// old and answers 200 on its traffic port's /healthchecklb.
func (l *lab) awaitBack(in *inst, old int, within time.Duration) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	return poll(within, 20*time.Millisecond, func() (bool, string) {
		pid := l.pid(in.id)
		if pid == 0 || pid == old || !alive(pid) {
			return false, fmt.Sprintf("%s not running again (pid file says %d, killed %d)", in, pid, old)
		}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthchecklb", in.tp))
		if err != nil {
			return false, fmt.Sprintf("%s pid %d: %v", in, pid, err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprintf("%s pid %d: /healthchecklb %d", in, pid, resp.StatusCode)
	})
}

// awaitNodeManager waits until the management API answers (the ANM is up).
func (l *lab) awaitNodeManager(within time.Duration) error {
	return poll(within, 100*time.Millisecond, func() (bool, string) {
		var g groupState
		err := l.api.call("GET", "/api/deployment/group/"+l.gid, "", 200, &g)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// apiClient talks to the management API with a session (login once): HTTP
// Basic would cost a PBKDF2 hash of 600,000 iterations per request, which
// the lab's polling cannot afford on two cores.
type apiClient struct {
	base string
	c    *http.Client
	tls  *tls.Config
	csrf string
}

func newAPIClient(base, caFile string) (*apiClient, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	jar, _ := cookiejar.New(nil)
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &apiClient{base: base, tls: conf, c: &http.Client{Timeout: 90 * time.Second, Jar: jar,
		Transport: &http.Transport{Proxy: nil, TLSClientConfig: conf, MaxIdleConnsPerHost: 2}}}, nil
}

func (a *apiClient) login(user, password string) error {
	form := url.Values{"username": {user}, "password": {password}}
	resp, err := a.c.PostForm(a.base+"/api/rbac/login", form)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res struct {
		Result struct{ CSRFToken string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 || res.Result.CSRFToken == "" {
		return fmt.Errorf("login: %d %v", resp.StatusCode, err)
	}
	a.csrf = res.Result.CSRFToken
	return nil
}

// cookieHeader is the session cookie, for raw requests.
func (a *apiClient) cookieHeader() string {
	u, _ := url.Parse(a.base + "/api/")
	var parts []string
	for _, c := range a.c.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// do sends a request and returns the status and body.
func (a *apiClient) do(ctx context.Context, method, path, ctype string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if method != "GET" {
		req.Header.Set("csrf-token", a.csrf)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// call sends a JSON request, wants status want and decodes the result of
// the envelope into v (when not nil).
func (a *apiClient) call(method, path, body string, want int, v any) error {
	ctype := ""
	if body != "" {
		ctype = "application/json"
	}
	return a.result(method, path, ctype, []byte(body), want, v)
}

func (a *apiClient) upload(gid, yaml, query string, want int, v any) error {
	return a.result("POST", "/api/deployment/group/configuration/file/"+gid+"?"+query, "application/yaml", []byte(yaml), want, v)
}

func (a *apiClient) result(method, path, ctype string, body []byte, want int, v any) error {
	code, data, err := a.do(context.Background(), method, path, ctype, body)
	if err != nil {
		return fmt.Errorf("%s %s: %v", method, path, err)
	}
	if code != want {
		return fmt.Errorf("%s %s: %d, want %d: %.300s", method, path, code, want, data)
	}
	if v == nil {
		return nil
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("%s %s: not the envelope: %v: %.300s", method, path, err, data)
	}
	if err := json.Unmarshal(env.Result, v); err != nil {
		return fmt.Errorf("%s %s: result: %v: %.300s", method, path, err, data)
	}
	return nil
}

// dialAPI opens a TLS connection to the management API for a raw request.
func (a *apiClient) dialAPI() (net.Conn, *net.TCPConn, error) {
	u, _ := url.Parse(a.base)
	nc, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	raw := nc.(*net.TCPConn)
	conf := a.tls.Clone()
	conf.ServerName = u.Hostname()
	conf.NextProtos = []string{"http/1.1"}
	tc := tls.Client(nc, conf)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, nil, err
	}
	return tc, raw, nil
}
