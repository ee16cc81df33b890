package kpsexport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

func topo() *topology.Topology {
	return &topology.Topology{Groups: []topology.Group{
		{ID: "group-2", Name: "A", Services: []topology.Service{
			{ID: "instance-1", Name: "a1", Type: topology.TypeGateway, HostID: "host-2"},
			{ID: "instance-2", Name: "a2", Type: topology.TypeGateway, HostID: "host-1"},
		}},
		{ID: "group-3", Name: "B", Services: []topology.Service{
			{ID: "instance-3", Name: "b1", Type: topology.TypeGateway, HostID: "host-1"},
		}},
	}}
}

// Each group's shared store is exported by the host of its first instance.
func TestFirstHost(t *testing.T) {
	tp := topo()
	for _, c := range []struct {
		host, group string
		want        bool
	}{
		{"host-1", "group-2", false}, {"host-2", "group-2", true},
		{"host-1", "group-3", true}, {"host-2", "group-3", false},
		{"host-1", "group-9", false},
	} {
		if got := FirstHost(tp, c.host)(c.group); got != c.want {
			t.Errorf("FirstHost(%s)(%s) = %v, want %v", c.host, c.group, got, c.want)
		}
	}
}

func writeGroup(t *testing.T, h home.Home, gid, yaml string) {
	t.Helper()
	dir := h.Path("groups", gid, "conf")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "group.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Only the groups of the host whose configuration names PostgreSQL are
// exported, at their first local instance's kpsadmin backup place; a
// configuration that does not load is an error naming the group.
func TestExports(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	writeGroup(t, h, "group-2", "kps:\n  backend: postgres\n  postgres: {host: db, database: gh, user: gh}\n")
	writeGroup(t, h, "group-3", "kps:\n  backend: sqlite\n")
	ex, warn, err := Exports(h, topo(), "host-1", "test", nil)
	if err != nil || len(warn) != 0 {
		t.Fatal(err)
	}
	if len(ex) != 1 || ex[0].Kind != Kind || !strings.HasPrefix(ex[0].Path, "groups/group-2/instance-2/conf/kps/backup/") || !strings.HasSuffix(ex[0].Path, ".jsonl") {
		t.Fatalf("exports of host-1: %+v", ex)
	}
	if ex, _, err := Exports(h, topo(), "host-1", "test", FirstHost(topo(), "host-1")); err != nil || len(ex) != 0 {
		t.Errorf("exports of host-1, first hosts only: %+v, %v; want none (group-2's first instance is on host-2)", ex, err)
	}
	if ex, _, err := Exports(h, topo(), "host-2", "test", FirstHost(topo(), "host-2")); err != nil || len(ex) != 1 || !strings.HasPrefix(ex[0].Path, "groups/group-2/instance-1/") {
		t.Errorf("exports of host-2, first hosts only: %+v, %v", ex, err)
	}
	writeGroup(t, h, "group-3", "kps: [not, a, map]\n")
	ex, warn, err = Exports(h, topo(), "host-1", "test", nil)
	if err != nil || len(ex) != 1 || len(warn) != 1 || !strings.Contains(warn[0], `group "B" (group-3): its configuration does not load`) {
		t.Errorf("a configuration that does not load: %v, %v, %v; want group-2's export and a warning naming group B", ex, warn, err)
	}
	// The export of a database that does not answer fails the backup.
	writeGroup(t, h, "group-3", "kps:\n  backend: sqlite\n")
	ex, _, _ = Exports(h, topo(), "host-1", "test", nil)
	if _, err := ex[0].Write(t.Context(), &strings.Builder{}); err == nil || !strings.Contains(err.Error(), `group "A"`) {
		t.Errorf("an export of a database that does not answer: %v", err)
	}
}
