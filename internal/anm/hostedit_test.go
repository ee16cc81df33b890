package anm

import (
	"encoding/json"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// PUT /api/topology/hosts/{hostID} with nodeManagerPort and metrics: the
// ANM's own node manager switched before the topology is written and
// committed after; refusals change nothing. (Against real processes, for
// another host too: TestEditHostNodeManagerPort in internal/tools.)
func TestEditHostPortAndMetrics(t *testing.T) {
	e := newAPIEnv(t)
	var calls []string
	var start int64
	e.a.switchPort = func(port int) (nodeapi.PortSwitch, error) {
		calls = append(calls, "switch")
		if v := e.version(); v != start {
			t.Errorf("topology version %d at the switch: the topology must be written after it", v)
		}
		return nodeapi.PortSwitch{Port: port, OldPort: 8090, Commit: func() { calls = append(calls, "commit") }, Abort: func() error { calls = append(calls, "abort"); return nil }}, nil
	}
	e.do("POST", "/api/topology/hosts", `{"name":"spare"}`).MustCode(t, 201)
	v := e.version()
	start = v
	e.do("PUT", "/api/topology/hosts/host-2", `{"metrics":true}`).WantError(t, 409, "has no node manager")
	e.do("PUT", "/api/topology/hosts/host-1", `{"nodeManagerPort":70000}`).WantError(t, 400, "nodeManagerPort 70000")
	e.do("PUT", "/api/topology/hosts/host-1", `{}`).WantError(t, 400)
	e.do("POST", "/api/topology/hosts", `{"name":"x","metrics":true}`).WantError(t, 400, "takes \"name\" only")
	if e.version() != v || len(calls) != 0 {
		t.Fatalf("refusals: version %d (want %d), switch calls %v", e.version(), v, calls)
	}

	a := e.do("PUT", "/api/topology/hosts/host-1", `{"nodeManagerPort":18091,"metrics":true}`)
	a.MustCode(t, 200)
	var out hostEdit
	if err := json.Unmarshal(a.Result, &out); err != nil {
		t.Fatal(err)
	}
	if out.NodeManager == nil || out.NodeManager.Port != 18091 || !out.NodeManager.Metrics || out.ManagementAPI == "" {
		t.Errorf("answer: got %s", a.Result)
	}
	if len(calls) != 2 || calls[0] != "switch" || calls[1] != "commit" {
		t.Errorf("switch calls: got %v, want switch, commit", calls)
	}
	topo, _ := e.store.Load()
	nm, _ := topo.AdminNodeManager()
	if nm.ManagementPort != 18091 || nm.Tags[topology.TagMetrics] != "true" {
		t.Errorf("topology: got port %d tags %v", nm.ManagementPort, nm.Tags)
	}
	// Metrics off again; the same port is no change of port.
	e.do("PUT", "/api/topology/hosts/host-1", `{"nodeManagerPort":18091,"metrics":false}`).MustCode(t, 200)
	topo, _ = e.store.Load()
	if nm, _ := topo.AdminNodeManager(); nm.Tags[topology.TagMetrics] != "" || len(calls) != 2 {
		t.Errorf("metrics off: tags %v, switch calls %v", nm.Tags, calls)
	}
}

func (e *apiEnv) version() int64 {
	e.t.Helper()
	t, err := e.store.Load()
	if err != nil {
		e.t.Fatal(err)
	}
	return t.Version
}
