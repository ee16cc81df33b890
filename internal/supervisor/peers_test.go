package supervisor

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/cluster"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// TestClusterPeers: an instance's peers are the other instances of its
// group: on this host at 127.0.0.1 (or their cluster.address) and the route
// port of their own settings; on another host at that host's node
// manager's address (or the host's name) and the management port + 10000.
func TestClusterPeers(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	write := func(path, data string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(h.GroupConfFile("group-2"), "")
	write(h.InstanceConfFile("group-2", "instance-1"), "management: {port: 8085}\n")
	write(h.InstanceConfFile("group-2", "instance-2"), "management: {port: 8086}\ncluster: {address: 127.0.0.2, port: 7001}\n")
	gw := func(id, host string, mp int) topology.Service {
		return topology.Service{ID: id, Type: topology.TypeGateway, HostID: host, ManagementPort: mp}
	}
	topo := &topology.Topology{
		Hosts: []topology.Host{{ID: "host-1", Name: "gw1"}, {ID: "host-2", Name: "gw2"}, {ID: "host-3", Name: "gw3.example.com"}},
		Groups: []topology.Group{
			{ID: "group-1", Services: []topology.Service{
				{ID: "nodemanager-1", Type: topology.TypeNodeManager, HostID: "host-1"},
				{ID: "nodemanager-2", Type: topology.TypeNodeManager, HostID: "host-2", Tags: map[string]string{"address": "10.0.0.2"}},
				{ID: "nodemanager-3", Type: topology.TypeNodeManager, HostID: "host-3"},
			}},
			{ID: "group-2", Services: []topology.Service{
				gw("instance-1", "host-1", 8085), gw("instance-2", "host-1", 8086),
				gw("instance-3", "host-2", 8085), gw("instance-4", "host-3", 60000),
			}},
			{ID: "group-3", Services: []topology.Service{gw("instance-5", "host-1", 8087)}},
		},
	}
	s := New(Config{Home: h, HostID: "host-1", Logger: slog.New(slog.DiscardHandler)})
	refs := topo.Instances("host-1")
	got := s.clusterPeers(topo, refs[0])
	want := []cluster.Peer{
		{ID: "instance-2", URL: "127.0.0.2:7001"},
		{ID: "instance-3", URL: "10.0.0.2:18085"},
		{ID: "instance-4", URL: "gw3.example.com:50000"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("peers of instance-1: got %v, want %v", got, want)
	}
	if got := s.clusterPeers(topo, refs[1]); len(got) != 3 || got[0] != (cluster.Peer{ID: "instance-1", URL: "127.0.0.1:18085"}) {
		t.Errorf("peers of instance-2: got %v, want instance-1 at 127.0.0.1:18085 first", got)
	}
	if got := s.clusterPeers(topo, refs[2]); len(got) != 0 {
		t.Errorf("peers of instance-5, alone in its group: got %v, want none", got)
	}
}
