package metrics

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A node manager's metrics: one series set per instance, what is unknown
// left out, and every family described in docs/nodemanager.md.
func TestNodeManagerMetrics(t *testing.T) {
	yes := true
	m := NewNodeManager(NodeManagerOptions{HostID: "host-2", NodeManagerID: "nodemanager-2", Version: "v1", Instances: func() []NodeInstance {
		return []NodeInstance{
			{GroupID: "group-2", InstanceID: "instance-1", GroupName: "G", InstanceName: "one", Status: "running", Phase: "serving", Restarts: 2, LastExitCode: 137, HasLastExit: true, InService: &yes},
			{GroupID: "group-2", InstanceID: "instance-2", GroupName: "G", InstanceName: "two", Status: "stopped"},
		}
	}})
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: got %d, want 200", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	one := map[string]string{"instance_id": "instance-1"}
	two := map[string]string{"instance_id": "instance-2"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_nodemanager_build_info", map[string]string{"version": "v1", "host_id": "host-2", "node_manager_id": "nodemanager-2", "admin": "false"}, 1},
		{"gatehouse_nodemanager_instance_up", one, 1},
		{"gatehouse_nodemanager_instance_up", two, 0},
		{"gatehouse_nodemanager_instance_status", map[string]string{"instance_id": "instance-2", "status": "stopped"}, 1},
		{"gatehouse_nodemanager_instance_phase", map[string]string{"instance_id": "instance-1", "phase": "serving"}, 1},
		{"gatehouse_nodemanager_instance_restarts_total", one, 2},
		{"gatehouse_nodemanager_instance_last_exit_code", one, 137},
		{"gatehouse_nodemanager_instance_last_exit_code", two, -1},
		{"gatehouse_nodemanager_instance_in_service", one, 1},
		{"gatehouse_nodemanager_instance_in_service", two, -1},
		{"gatehouse_nodemanager_instance_phase", two, -1},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v: got %v, want %v (-1: absent)", c.name, c.labels, got, c.want)
		}
	}
	doc, err := os.ReadFile("../../docs/nodemanager.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, Namespace+"_") {
			continue
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/nodemanager.md does not describe %s", name)
		}
	}
}
