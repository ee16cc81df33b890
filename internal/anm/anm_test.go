package anm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// fakeSup is a supervisor that remembers what it was told.
type fakeSup struct {
	mu     sync.Mutex
	states map[string]supervisor.InstanceState
}

func (f *fakeSup) StartInstance(ctx context.Context, id string) (supervisor.InstanceState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states[id].Status == "running" {
		return f.states[id], fmt.Errorf("instance %s: %w", id, home.ErrRunning)
	}
	f.states[id] = supervisor.InstanceState{ID: id, Status: "running", PID: 4242}
	return f.states[id], nil
}

func (f *fakeSup) StopInstance(ctx context.Context, id string) (supervisor.InstanceState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[id] = supervisor.InstanceState{ID: id, Status: "stopped"}
	return f.states[id], nil
}

func (f *fakeSup) Status(id string) (supervisor.InstanceState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.states[id]; ok {
		return st, nil
	}
	return supervisor.InstanceState{ID: id, Status: "stopped"}, nil
}

func (f *fakeSup) States() []supervisor.InstanceState {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []supervisor.InstanceState
	for _, s := range f.states {
		out = append(out, s)
	}
	return out
}

// Deploy and SetInService: the fake runs no instance, so they fail as a
// stopped instance does.
func (f *fakeSup) Deploy(ctx context.Context, id string, m deploy.Meta) (supervisor.InstanceState, error) {
	st, _ := f.Status(id)
	return st, fmt.Errorf("instance %s is not running (%s)", id, st.Status)
}

func (f *fakeSup) SetInService(ctx context.Context, id string, in bool, lease time.Duration) (supervisor.InstanceState, error) {
	st, _ := f.Status(id)
	return st, fmt.Errorf("instance %s is not running (%s)", id, st.Status)
}

func (f *fakeSup) SetArchive(ctx context.Context, id string, m deploy.Meta) (supervisor.InstanceState, error) {
	return f.Status(id)
}

type apiEnv struct {
	t     *testing.T
	h     home.Home
	a     *API
	store *topology.Store
	mgmt  *supervisor.MgmtClient
	sup   *fakeSup
	url   string
}

// newAPIEnv serves the management API of a new domain over plain HTTP
// (httptest) with a fake supervisor; TLS is tested with the whole node
// manager (internal/nodemanager).
func newAPIEnv(t *testing.T) *apiEnv { return newAPIEnvAt(t, apitest.Domain(t)) }

// newAPIEnvAt is newAPIEnv on the install directory h.
func newAPIEnvAt(t *testing.T, h home.Home) *apiEnv {
	t.Helper()
	e, err := newAPIAt(t, h)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e.a.Handler())
	t.Cleanup(ts.Close)
	e.url = ts.URL
	return e
}

// newAPIAt makes the management API of h as the node manager does, with a
// fake supervisor; the error is LoadAccess's.
func newAPIAt(t *testing.T, h home.Home) (*apiEnv, error) {
	t.Helper()
	conf, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	rec := audit.Recorder{Log: audit.Open(h), Logger: log}
	store := topology.NewStore(h, rec)
	topo, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	admin := false
	if svc, err := topo.AdminNodeManager(); err == nil && svc.ID == conf.NodeManagerID {
		admin = true
	}
	mgmt := supervisor.NewMgmtClient()
	sup := &fakeSup{states: map[string]supervisor.InstanceState{}}
	a := New(Config{Home: h, Conf: conf, Admin: admin, Store: store, Audit: rec, Logger: log, Instances: sup,
		Net: nodeapi.NewNet(h, conf.HostID, store, log), Router: nodeapi.NewRouter(log, mgmt, store, conf.HostID)})
	e := &apiEnv{t: t, h: h, a: a, store: store, mgmt: mgmt, sup: sup}
	if admin {
		return e, a.LoadAccess()
	}
	return e, nil
}

func (e *apiEnv) do(method, path, body string, hdr ...string) apitest.Answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth(apitest.User, apitest.Pass)
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // hdr may say otherwise
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return apitest.Do(e.t, http.DefaultClient, req)
}

func TestAPIAuthentication(t *testing.T) {
	e := newAPIEnv(t)
	get := func(user, pass string, set bool) apitest.Answer {
		req, _ := http.NewRequest("GET", e.url+"/api/topology", nil)
		if set {
			req.SetBasicAuth(user, pass)
		}
		return apitest.Do(t, http.DefaultClient, req)
	}
	for _, c := range []struct {
		name       string
		user, pass string
		set        bool
		want       int
		msg        string
	}{
		{"no credentials", "", "", false, 401, "authentication required"},
		{"wrong password", apitest.User, "wrong-password", true, 401, "wrong user name or password"},
		{"unknown user", "nobody", apitest.Pass, true, 401, "wrong user name or password"},
		{"right", apitest.User, apitest.Pass, true, 200, ""},
		{"right again (remembered)", apitest.User, apitest.Pass, true, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := get(c.user, c.pass, c.set)
			if c.want != 200 {
				a.WantError(t, c.want, c.msg)
				if got := a.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="Gatehouse"`) {
					t.Errorf("WWW-Authenticate: got %q", got)
				}
			} else if a.Code != 200 {
				t.Errorf("got %d, want 200: %s", a.Code, a.Body)
			}
		})
	}
	// A changed users file forgets remembered credentials.
	os.WriteFile(e.h.AdminUsersFile(), []byte(`{"users":[]}`), 0o600)
	get(apitest.User, apitest.Pass, true).WantError(t, 401)
	// Unknown paths are not revealed to strangers.
	req, _ := http.NewRequest("GET", e.url+"/api/nothing", nil)
	apitest.Do(t, http.DefaultClient, req).WantError(t, 401)
}

func TestAPITopology(t *testing.T) {
	e := newAPIEnv(t)
	a := e.do("GET", "/api/topology", "")
	if a.Code != 200 {
		t.Fatalf("got %d: %s", a.Code, a.Body)
	}
	if a.Header.Get("ETag") != `"1"` {
		t.Errorf("ETag: got %q, want \"1\"", a.Header.Get("ETag"))
	}
	var tv topologyView
	a.Decode(t, &tv)
	if tv.Version != 1 || tv.ID == "" || len(tv.Hosts) != 1 || tv.Hosts[0].ID != "host-1" || len(tv.Groups) != 1 {
		t.Fatalf("topology: got %+v", tv)
	}
	nm := tv.Groups[0].Services[0]
	if nm.ID != "nodemanager-1" || nm.Type != "nodemanager" || nm.Status != "running" || nm.Scheme != "https" || !nm.Enabled {
		t.Errorf("node manager: got %+v", nm)
	}
	for _, k := range []string{`"hostID":"host-1"`, `"managementPort":`, `"tags":{"internal_admin_nm":"true"}`, `"timestamp":`} {
		if !strings.Contains(a.Body, k) {
			t.Errorf("body lacks %s: %s", k, a.Body)
		}
	}
	e.do("POST", "/api/topology/services/group-2", `{"name":"x"}`).WantError(t, 404, `no group "group-2"`, `"group-1"`)
	g := e.do("POST", "/api/topology/groups", `{"name":"G"}`)
	if g.Code != 201 {
		t.Fatalf("create group: %s", g.Body)
	}
	s := e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"one","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t)))
	if s.Code != 201 {
		t.Fatalf("create service: %s", s.Body)
	}
	a = e.do("GET", "/api/topology?serviceType=gateway", "")
	a.Decode(t, &tv)
	if len(tv.Groups) != 2 || len(tv.Groups[0].Services) != 0 || len(tv.Groups[1].Services) != 1 || tv.Groups[1].Services[0].Status != "stopped" {
		t.Errorf("serviceType=gateway: got %+v", tv.Groups)
	}
	a = e.do("GET", "/api/topology?serviceType=nodemanager", "")
	a.Decode(t, &tv)
	if len(tv.Groups[0].Services) != 1 || len(tv.Groups[1].Services) != 0 {
		t.Errorf("serviceType=nodemanager: got %+v", tv.Groups)
	}
	e.do("GET", "/api/topology?serviceType=bogus", "").WantError(t, 400, `"bogus"`, "gateway")
}

func TestAPIGroupsAndServices(t *testing.T) {
	e := newAPIEnv(t)
	g := e.do("POST", "/api/topology/groups", `{"name":"Group A"}`, "If-Match", `"1"`)
	if g.Code != 201 || g.Version != 2 || g.Header.Get("ETag") != `"2"` || g.Header.Get("Location") != "/api/topology/groups/group-2" {
		t.Fatalf("create group: got %d version %d ETag %q: %s", g.Code, g.Version, g.Header.Get("ETag"), g.Body)
	}
	var gv groupView
	g.Decode(t, &gv)
	if gv.ID != "group-2" || gv.Name != "Group A" || gv.Services == nil {
		t.Errorf("group: got %+v", gv)
	}
	if _, err := os.Stat(e.h.GroupConfFile("group-2")); err != nil {
		t.Errorf("group.yaml: %v", err)
	}
	e.do("POST", "/api/topology/groups", `{"name":"Group A"}`).WantError(t, 409, "already exists")
	e.do("POST", "/api/topology/groups", `{"name":"Group B"}`, "If-Match", `"1"`).WantError(t, 409, "expected version 1, current version is 2", "If-Match")
	e.do("POST", "/api/topology/groups?version=1", `{"name":"Group B"}`).WantError(t, 409, "expected version 1")
	e.do("POST", "/api/topology/groups", `{"name":"Group B"}`, "If-Match", "two").WantError(t, 400, "If-Match")
	e.do("POST", "/api/topology/groups?version=3", `{"name":"Group B"}`, "If-Match", `"2"`).WantError(t, 400, "send one")
	e.do("POST", "/api/topology/groups", `{"name":"bad/name"}`).WantError(t, 400, "not allowed")

	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	body := fmt.Sprintf(`{"name":"Server 1","hostID":"host-1","trafficPort":%d,"managementPort":%d}`, tp, mp)
	s := e.do("POST", "/api/topology/services/group-2", body, "If-Match", `"2"`)
	if s.Code != 201 || s.Version != 3 {
		t.Fatalf("create service: got %d version %d: %s", s.Code, s.Version, s.Body)
	}
	var sv serviceView
	s.Decode(t, &sv)
	if sv.ID != "instance-1" || sv.Type != "gateway" || sv.HostID != "host-1" || sv.TrafficPort != tp || sv.ManagementPort != mp || sv.Status != "stopped" {
		t.Errorf("service: got %+v", sv)
	}
	e.do("POST", "/api/topology/services/group-2", body).WantError(t, 409, "already exists")
	e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"Server 2","trafficPort":%d,"managementPort":%d}`, tp, gwtest.FreePort(t))).WantError(t, 409, strconv.Itoa(tp), "Server 1")
	e.do("POST", "/api/topology/services/group-1", `{"name":"Server 2"}`).WantError(t, 400, "node managers")
	e.do("POST", "/api/topology/services/group-2", `{"name":"Server 2","hostID":"host-7"}`).WantError(t, 404, `no host "host-7"`)
	e.do("POST", "/api/topology/hosts", `{"name":"gw2"}`)
	e.do("POST", "/api/topology/services/group-2", `{"name":"Server 2","hostID":"host-2"}`).WantError(t, 409, "host-2", "no node manager", "managedomain -a")

	l := e.do("GET", "/api/topology/services/group-2", "")
	var list []serviceView
	l.Decode(t, &list)
	if len(list) != 1 || list[0].ID != "instance-1" {
		t.Errorf("list services: got %+v", list)
	}
	e.do("GET", "/api/topology/services/group-9", "").WantError(t, 404, `"group-9"`)
	e.do("GET", "/api/topology/services/group-2/instance-9", "").WantError(t, 404, `"instance-9"`)

	// A running instance is not deleted.
	e.do("POST", "/api/management/start/group-2/instance-1", "")
	rf := e.h.RunFiles("instance-1")
	os.MkdirAll(e.h.RunDir(), 0o755)
	lock, err := home.TryLock(rf.Lock)
	if err != nil {
		t.Fatal(err)
	}
	e.do("DELETE", "/api/topology/services/group-2/instance-1", "").WantError(t, 409, "running")
	e.do("DELETE", "/api/topology/groups/group-2", "").WantError(t, 409, "running")
	lock.Unlock()

	e.do("DELETE", "/api/topology/services/group-2/instance-1", "", "If-Match", `"3"`).WantError(t, 409, "expected version 3")
	d := e.do("DELETE", "/api/topology/services/group-2/instance-1", "")
	if d.Code != 200 || d.Version != 5 {
		t.Errorf("delete service: got %d version %d: %s", d.Code, d.Version, d.Body)
	}
	e.do("DELETE", "/api/topology/services/group-2/instance-1", "").WantError(t, 404, `"instance-1"`)
	e.do("DELETE", "/api/topology/services/group-1/nodemanager-1", "").WantError(t, 400, "not a gateway instance")
	e.do("DELETE", "/api/topology/groups/group-1", "").WantError(t, 400, "cannot be deleted")
	d = e.do("DELETE", "/api/topology/groups/group-2", "", "If-Match", `"5"`)
	if d.Code != 200 || d.Version != 6 {
		t.Errorf("delete group: got %d version %d: %s", d.Code, d.Version, d.Body)
	}
	if _, err := os.Stat(e.h.GroupDir("group-2")); !os.IsNotExist(err) {
		t.Errorf("group directory left: %v", err)
	}
	e.do("DELETE", "/api/topology/groups/group-2", "").WantError(t, 404, `no group "group-2"`)
}

func TestAPIHosts(t *testing.T) {
	e := newAPIEnv(t)
	c := e.do("POST", "/api/topology/hosts", `{"name":"gw2"}`)
	if c.Code != 201 || c.Version != 2 {
		t.Fatalf("create host: %d %s", c.Code, c.Body)
	}
	e.do("POST", "/api/topology/hosts", `{"name":"gw2"}`).WantError(t, 409, "already exists")
	e.do("POST", "/api/topology/hosts", `{"name":"gw3","id":"host-9"}`).WantError(t, 400, "leave \"id\" out")
	var hosts []topology.Host
	e.do("GET", "/api/topology/hosts", "").Decode(t, &hosts)
	if len(hosts) != 2 || hosts[1].ID != "host-2" || hosts[1].Name != "gw2" {
		t.Errorf("hosts: got %+v", hosts)
	}
	if a := e.do("PUT", "/api/topology/hosts/host-2", `{"name":"gw2b"}`); a.Code != 200 || !strings.Contains(a.Body, `"gw2b"`) {
		t.Errorf("rename: %s", a.Body)
	}
	if a := e.do("PUT", "/api/topology/hosts", `{"id":"host-2","name":"gw2c"}`); a.Code != 200 {
		t.Errorf("rename by body: %s", a.Body)
	}
	e.do("PUT", "/api/topology/hosts", `{"name":"x"}`).WantError(t, 400, "which host")
	e.do("PUT", "/api/topology/hosts/host-2", `{"name":"gw1"}`).WantError(t, 409, "already exists")
	var h topology.Host
	e.do("GET", "/api/topology/hosts/host-2", "").Decode(t, &h)
	if h.Name != "gw2c" {
		t.Errorf("host: got %+v", h)
	}
	e.do("GET", "/api/topology/hosts/host-5", "").WantError(t, 404, `"host-5"`)
	e.do("DELETE", "/api/topology/hosts/host-1", "").WantError(t, 400, "own host")
	// A host with a service is not deleted.
	if _, err := e.store.Update(t.Context(), topology.Actor{}, "test", 0, func(t *topology.Topology) (string, error) {
		g, _ := t.AddGroup("Remote")
		_, err := t.AddService(g.ID, topology.Service{Name: "far", Type: topology.TypeGateway, HostID: "host-2", ManagementPort: 8085})
		return "", err
	}); err != nil {
		t.Fatal(err)
	}
	e.do("DELETE", "/api/topology/hosts/host-2", "").WantError(t, 409, "instance-1")
	e.do("DELETE", "/api/topology/groups/group-2", "")
	if a := e.do("DELETE", "/api/topology/hosts/host-2", ""); a.Code != 200 {
		t.Errorf("delete host: %s", a.Body)
	}
	// A host that joined (it has a node manager) can be removed again,
	// its node manager with it; the node manager's id is never reused.
	var nmID string
	if _, err := e.store.Update(t.Context(), topology.Actor{}, "test", 0, func(t *topology.Topology) (string, error) {
		hid := t.NextID(topology.KindHost)
		t.Hosts = append(t.Hosts, topology.Host{ID: hid, Name: "joined"})
		for _, g := range t.Groups {
			if g.IsNodeManagerGroup() {
				nm, err := t.AddService(g.ID, topology.Service{Name: "Node Manager on joined", Type: topology.TypeNodeManager, HostID: hid, ManagementPort: 8090})
				if err != nil {
					return "", err
				}
				nmID = nm.ID
			}
		}
		return "", nil
	}); err != nil {
		t.Fatal(err)
	}
	if a := e.do("DELETE", "/api/topology/hosts/host-3", ""); a.Code != 200 {
		t.Fatalf("delete a joined host: %d %s", a.Code, a.Body)
	}
	after, err := e.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range after.Groups {
		for _, s := range g.Services {
			if s.ID == nmID || s.HostID == "host-3" {
				t.Errorf("after deleting host-3: %s (%s) is still there", s.ID, s.HostID)
			}
		}
	}
	if next := after.Clone().NextID(topology.KindNodeManager); next == nmID {
		t.Errorf("the removed node manager's id %s would be given again", nmID)
	}
}

func TestAPIBadInput(t *testing.T) {
	e := newAPIEnv(t)
	for _, c := range []struct {
		name, body string
		hdr        []string
		code       int
		subs       []string
	}{
		{"malformed", `{"name": "x",}`, nil, 400, []string{"malformed JSON at offset 14"}},
		{"truncated", `{"name": "x"`, nil, 400, []string{"ends in the middle"}},
		{"empty", ``, []string{"Content-Type", "application/json"}, 400, []string{"empty request body", `"name"`}},
		// A change without a JSON content type (a cross-site form could
		// send one) is refused before its body is read.
		{"no content type", ``, nil, 415, []string{"no Content-Type", "application/json"}},
		{"form content type", `name=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, []string{"application/json"}},
		{"unknown field", `{"name":"x","colour":"red"}`, nil, 400, []string{`unknown field "colour"`, `accepted: "name"`}},
		{"wrong type", `{"name":5}`, nil, 400, []string{`field "name"`, "got a JSON number, want a string"}},
		{"array", `[]`, nil, 400, []string{"got a JSON array, want an object"}},
		{"two objects", `{"name":"a"}{"name":"b"}`, nil, 400, []string{"after the JSON object"}},
		{"too large", `{"name":"` + strings.Repeat("a", apihttp.MaxBodyBytes) + `"}`, nil, 413, []string{"1048576 bytes"}},
		{"content type", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415, []string{"application/json"}},
		{"not utf-8", "{\"name\":\"X\xff\"}", nil, 400, []string{"not valid UTF-8"}},
		{"utf-16 charset", `{"name":"x"}`, []string{"Content-Type", "application/json; charset=utf-16"}, 415, []string{"UTF-8 only"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.do("POST", "/api/topology/groups", c.body, c.hdr...).WantError(t, c.code, c.subs...)
		})
	}
	e.do("POST", "/api/topology/groups", `{"name":"y"}`, "Content-Type", "application/json; charset=UTF-8").MustCode(t, 201)
	// The Node Manager Group takes no configuration.
	e.do("POST", "/api/deployment/group/configuration/file/group-1?deploy=false", "log:\n  level: info\n", "Content-Type", "application/yaml").WantError(t, 400, "takes no configuration")
	e.do("POST", "/api/topology/services/group-1", `{"name":"x","trafficPort":70000}`).WantError(t, 400, "trafficPort 70000")
	e.do("POST", "/api/topology/services/group-1", `{"name":"x","type":"nodemanager"}`).WantError(t, 400, "only gateway")
	// Wrong method, unknown paths.
	a := e.do("DELETE", "/api/topology", "")
	a.WantError(t, 405, "DELETE")
	if a.Header.Get("Allow") != "GET" {
		t.Errorf("Allow: got %q, want GET", a.Header.Get("Allow"))
	}
	if a := e.do("PATCH", "/api/topology/hosts", ""); a.Header.Get("Allow") != "GET, POST, PUT" {
		t.Errorf("Allow: got %q", a.Header.Get("Allow"))
	}
	e.do("GET", "/api/nothing", "").WantError(t, 404, "/api/nothing")
	e.do("POST", "/api/management/restart/group-1/nodemanager-1", "").WantError(t, 404, `"restart"`)
}

func TestAPIManagement(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"G"}`)
	e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"one","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t)))
	for _, c := range []struct{ action, want string }{{"status", "stopped"}, {"start", "running"}, {"status", "running"}, {"stop", "stopped"}} {
		a := e.do("POST", "/api/management/"+c.action+"/group-2/instance-1", "")
		var st supervisor.InstanceState
		a.Decode(t, &st)
		if a.Code != 200 || st.Status != c.want {
			t.Errorf("%s: got %d %+v, want %s", c.action, a.Code, st, c.want)
		}
	}
	e.do("POST", "/api/management/start/group-2/instance-1", "")
	e.do("POST", "/api/management/start/group-2/instance-1", "").WantError(t, 409, "running")
	e.do("GET", "/api/management/start/group-2/instance-1", "").WantError(t, 405)
	e.do("POST", "/api/management/start/group-2/instance-7", "").WantError(t, 404, `"instance-7"`)
	e.do("POST", "/api/management/start/group-1/nodemanager-1", "").WantError(t, 400, "not a gateway instance")

	// An instance on another host: an error naming the host, and unknown in
	// the topology.
	e.do("POST", "/api/topology/hosts", `{"name":"gw2"}`)
	if _, err := e.store.Update(t.Context(), topology.Actor{}, "test", 0, func(t *topology.Topology) (string, error) {
		_, err := t.AddService("group-2", topology.Service{Name: "far", Type: topology.TypeGateway, HostID: "host-2", ManagementPort: 8085})
		return "", err
	}); err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/management/start/group-2/instance-2", "").WantError(t, 502, "host-2", `"gw2"`)
	var sv serviceView
	e.do("GET", "/api/topology/services/group-2/instance-2", "").Decode(t, &sv)
	if sv.Status != "unknown" {
		t.Errorf("remote instance status: got %q, want unknown", sv.Status)
	}
}

func TestNotAdminNodeManager(t *testing.T) {
	h := apitest.Domain(t)
	store := topology.NewStore(h, nil)
	if _, err := store.Update(t.Context(), topology.Actor{}, "test", 0, func(t *topology.Topology) (string, error) {
		t.Hosts = append(t.Hosts, topology.Host{ID: t.NextID(topology.KindHost), Name: "gw2"})
		_, err := t.AddService("group-1", topology.Service{Name: "NM 2", Type: topology.TypeNodeManager, HostID: "host-2", ManagementPort: 8090, Scheme: "https"})
		return "", err
	}); err != nil {
		t.Fatal(err)
	}
	apitest.SetNMConf(t, h, func(c *domain.NodeManagerConf) { c.HostID, c.NodeManagerID = "host-2", "nodemanager-2" })
	e := newAPIEnvAt(t, h)
	req, _ := http.NewRequest("GET", e.url+"/api/topology", nil)
	apitest.Do(t, http.DefaultClient, req).WantError(t, 404, "not the Admin Node Manager", "nodemanager-1", `gw1 (host-1)`)
}
