package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Map is how a restored install directory is moved to another site: host
// names, addresses and ports.
type Map struct {
	// Hosts maps a topology host name to the name it has at the new site.
	Hosts map[string]string
	// Addresses maps an IP address to another, where the install directory
	// names one: the node manager's listening and Admin Node Manager
	// addresses (nodemanager.yaml) and the listening addresses of this
	// host's instances (instance.yaml: traffic, management, sample).
	Addresses map[string]string
	// Port, when not nil, gives the new number of every port: the
	// topology's services (all hosts), the node manager's (and the Admin
	// Node Manager's it reaches), and this host's instances' (traffic,
	// management, sample).
	Port func(old int) int
	// Loopback makes the node manager and this host's instances listen on
	// 127.0.0.1 only (a copy started beside the live domain: backup verify,
	// dr drill).
	Loopback bool
	// Isolated turns off each of this host's instances' cluster bus
	// (cluster.enabled: false): a scratch copy whose settings name the live
	// peers (cluster.peers) or a fixed route port must neither join the
	// live group's bus nor take its port.
	Isolated bool
	// NodeManagersAt, when set, is the address every node manager of the
	// topology is reached at (its service's address tag): the copies of a
	// domain's hosts started on one machine reach each other there.
	NodeManagersAt string
}

// Remap applies m to the install directory h (a restored one) and returns
// a line per change made.
func Remap(ctx context.Context, h home.Home, m Map) ([]string, error) {
	var changes []string
	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return nil, err
	}
	port := func(p int) int {
		if m.Port == nil || p == 0 {
			return p
		}
		return m.Port(p)
	}
	addr := func(a string) string {
		if m.Loopback {
			return "127.0.0.1"
		}
		if n, ok := m.Addresses[a]; ok {
			return n
		}
		return a
	}
	// The topology: host names, and every service's ports.
	store := topology.NewStore(h, nil)
	var instances []topology.Service
	var groupOf = map[string]string{}
	_, err = store.Update(ctx, topology.Actor{User: "restore", Via: "restore", Remote: "local"}, "remap", 0, func(t *topology.Topology) (string, error) {
		for old := range m.Hosts {
			if !slices.ContainsFunc(t.Hosts, func(h topology.Host) bool { return h.Name == old }) {
				names := make([]string, len(t.Hosts))
				for i, h := range t.Hosts {
					names[i] = h.Name
				}
				return "", fmt.Errorf("no host is named %q in the topology (its hosts: %s)", old, strings.Join(names, ", "))
			}
		}
		for hi := range t.Hosts {
			if n, ok := m.Hosts[t.Hosts[hi].Name]; ok && n != t.Hosts[hi].Name {
				changes = append(changes, fmt.Sprintf("host %s: name %s → %s", t.Hosts[hi].ID, t.Hosts[hi].Name, n))
				t.Hosts[hi].Name = n
			}
		}
		for gi := range t.Groups {
			for si := range t.Groups[gi].Services {
				s := &t.Groups[gi].Services[si]
				if p := port(s.ManagementPort); p != s.ManagementPort {
					changes = append(changes, fmt.Sprintf("%s: management port %d → %d", s.ID, s.ManagementPort, p))
					s.ManagementPort = p
				}
				if p := port(s.TrafficPort); p != s.TrafficPort {
					changes = append(changes, fmt.Sprintf("%s: traffic port %d → %d", s.ID, s.TrafficPort, p))
					s.TrafficPort = p
				}
				if m.NodeManagersAt != "" && s.Type == topology.TypeNodeManager && s.Tags[domain.TagAddress] != m.NodeManagersAt {
					if s.Tags == nil {
						s.Tags = map[string]string{}
					}
					s.Tags[domain.TagAddress] = m.NodeManagersAt
					changes = append(changes, fmt.Sprintf("%s: reached at %s", s.ID, m.NodeManagersAt))
				}
				if s.Type == topology.TypeGateway && s.HostID == nm.HostID {
					instances = append(instances, *s)
					groupOf[s.ID] = t.Groups[gi].ID
				}
			}
		}
		return "ports and host names mapped at restore", nil
	})
	if err != nil {
		return nil, fmt.Errorf("mapping the topology: %w", err)
	}
	// This host's node manager.
	moved := port(nm.Port) != nm.Port || port(nm.ANMPort) != nm.ANMPort || addr(nm.Address) != nm.Address || nm.ANMAddress != "" && addr(nm.ANMAddress) != nm.ANMAddress
	nm.Port, nm.ANMPort = port(nm.Port), port(nm.ANMPort)
	nm.Address = addr(nm.Address)
	if nm.ANMAddress != "" { // empty on the Admin Node Manager's own host
		nm.ANMAddress = addr(nm.ANMAddress)
	}
	if moved {
		if err := domain.SaveNodeManagerConf(h, nm); err != nil {
			return nil, err
		}
		changes = append(changes, fmt.Sprintf("node manager %s: port %d, address %q; Admin Node Manager at %q port %d", nm.NodeManagerID, nm.Port, nm.Address, nm.ANMAddress, nm.ANMPort))
	}
	// This host's instances: their ports (as the topology now says) and
	// listening addresses.
	for _, s := range instances {
		path := filepath.Join(h.InstanceDir(groupOf[s.ID], s.ID), "conf", "instance.yaml")
		cur, err := instanceKeys(path)
		if err != nil {
			return nil, err
		}
		set := map[string]string{}
		if m.Port != nil {
			set["traffic.port"] = strconv.Itoa(s.TrafficPort)
			set["management.port"] = strconv.Itoa(s.ManagementPort)
			// The sample back end's port too, even when the file does
			// not set it (its default, or the group's, would clash with
			// the live instance's).
			sp := groupconf.Defaults().Sample.Port
			if v, ok := cur["sample.port"]; ok {
				if p, err := strconv.Atoi(v); err == nil {
					sp = p
				}
			}
			set["sample.port"] = strconv.Itoa(port(sp))
		}
		if m.Isolated {
			set["cluster.enabled"] = "false"
		}
		for _, k := range []string{"traffic.address", "management.address", "sample.address"} {
			if v, ok := cur[k]; (ok || m.Loopback) && addr(v) != v { // mutate:equivalent bool an unchanged value is dropped just below
				set[k] = addr(v)
			}
		}
		for k, v := range set {
			if cur[k] == v {
				delete(set, k)
			}
		}
		if len(set) == 0 {
			continue
		}
		keys := make([]string, 0, len(set)) // mutate:equivalent const a capacity
		for k := range set {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if err := groupconf.SetKeys(path, set, nil, ""); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", path, err)
		}
		for _, k := range keys {
			changes = append(changes, fmt.Sprintf("%s: %s %s → %s", s.ID, k, cur[k], set[k]))
		}
	}
	return changes, nil
}

// instanceKeys reads the scalar settings of an instance.yaml as dotted
// keys (traffic.port: "8080"); a missing file has none.
func instanceKeys(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				walk(prefix+k+".", c)
			}
		case []any:
		default:
			out[prefix[:len(prefix)-1]] = fmt.Sprint(v)
		}
	}
	walk("", doc)
	return out, nil
}
