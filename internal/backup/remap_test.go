package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// domainHome is a real domain: host "site-a" with its Admin Node Manager
// on 18090 (listening on 10.0.0.5), instance S of group G on 18080/18085
// with the sample back end on 18081.
func domainHome(t *testing.T) home.Home {
	t.Helper()
	h := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	actor := topology.Actor{User: "t", Via: "test", Remote: "local"}
	if _, err := domain.Init(t.Context(), h, domain.InitOptions{DomainName: "D", HostName: "site-a", Username: "admin", Password: secret.FromString("password1"), Port: 18090, Address: "10.0.0.5", Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if _, err := domain.CreateInstance(t.Context(), h, actor, domain.InstanceSpec{Group: "G", Name: "S", TrafficPort: 18080, ManagementPort: 18085, Sample: true, SamplePort: 18081}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(h.InstanceDir("group-2", "instance-1"), "conf", "instance.yaml")
	if err := groupconf.SetKeys(path, map[string]string{"traffic.address": "10.0.0.5"}, nil, ""); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRemap(t *testing.T) {
	h := domainHome(t)
	changes, err := Remap(t.Context(), h, Map{
		Hosts:     map[string]string{"site-a": "dr-a"},
		Addresses: map[string]string{"10.0.0.5": "192.168.7.5", "10.9.9.9": "10.1.1.1"},
		Port:      func(p int) int { return p + 1000 },
	})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := topology.NewStore(h, nil).Load()
	if err != nil {
		t.Fatal(err)
	}
	if tp.Hosts[0].Name != "dr-a" {
		t.Errorf("host name: %q, want dr-a", tp.Hosts[0].Name)
	}
	anm, _ := tp.AdminNodeManager()
	inst, _ := tp.FindInstance("G", "S")
	if anm.ManagementPort != 19090 || inst.Service.TrafficPort != 19080 || inst.Service.ManagementPort != 19085 {
		t.Errorf("topology ports: ANM %d, instance %d/%d", anm.ManagementPort, inst.Service.TrafficPort, inst.Service.ManagementPort)
	}
	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		t.Fatal(err)
	}
	if nm.Port != 19090 || nm.Address != "192.168.7.5" || nm.ANMAddress != "" || nm.ANMPort != 0 {
		t.Errorf("nodemanager.yaml: %+v", nm)
	}
	keys, err := instanceKeys(filepath.Join(h.InstanceDir("group-2", "instance-1"), "conf", "instance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"traffic.port": "19080", "management.port": "19085", "sample.port": "19081", "traffic.address": "192.168.7.5", "sample.enabled": "true"}
	for k, v := range want {
		if keys[k] != v {
			t.Errorf("instance.yaml %s: %q, want %q", k, keys[k], v)
		}
	}
	if _, ok := keys["management.address"]; ok {
		t.Errorf("management.address set though it was not: %v", keys)
	}
	all := strings.Join(changes, "\n")
	for _, w := range []string{"name site-a → dr-a", "management port 18090 → 19090", "traffic.address 10.0.0.5 → 192.168.7.5", "sample.port 18081 → 19081"} {
		if !strings.Contains(all, w) {
			t.Errorf("changes do not say %q:\n%s", w, all)
		}
	}
	// The configuration still loads (the mapped files are valid).
	if _, err := groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil); err != nil {
		t.Errorf("the mapped instance's configuration: %v", err)
	}

	// Nothing to change: no change.
	if changes, err := Remap(t.Context(), h, Map{}); err != nil || len(changes) != 0 {
		t.Errorf("an empty map: %v %v", changes, err)
	}
}

func TestRemapUnknownHost(t *testing.T) {
	h := domainHome(t)
	before, _ := os.ReadFile(filepath.Join(h.Dir, "groups", "topology.json"))
	_, err := Remap(t.Context(), h, Map{Hosts: map[string]string{"nope": "x"}, Port: func(p int) int { return p + 1 }})
	if err == nil || !strings.Contains(err.Error(), `no host is named "nope"`) || !strings.Contains(err.Error(), "site-a") {
		t.Fatalf("unknown host: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(h.Dir, "groups", "topology.json"))
	if string(before) != string(after) {
		t.Error("the topology changed though the mapping was refused")
	}
	if nm, _ := domain.LoadNodeManagerConf(h); nm.Port != 18090 {
		t.Errorf("the node manager's port changed to %d", nm.Port)
	}
}

func TestRemapLoopback(t *testing.T) {
	h := domainHome(t)
	if _, err := Remap(t.Context(), h, Map{Loopback: true}); err != nil {
		t.Fatal(err)
	}
	nm, _ := domain.LoadNodeManagerConf(h)
	if nm.Address != "127.0.0.1" || nm.ANMAddress != "" {
		t.Errorf("nodemanager.yaml: %+v", nm)
	}
	keys, _ := instanceKeys(filepath.Join(h.InstanceDir("group-2", "instance-1"), "conf", "instance.yaml"))
	for _, k := range []string{"traffic.address", "management.address", "sample.address"} {
		if keys[k] != "127.0.0.1" {
			t.Errorf("%s: %q, want 127.0.0.1", k, keys[k])
		}
	}
	if keys["traffic.port"] != "18080" {
		t.Errorf("ports moved without Port: %v", keys)
	}
	if _, ok := keys["cluster.enabled"]; ok {
		t.Errorf("the cluster bus changed without Isolated: %v", keys)
	}
	// Isolated: the copy's instances never start the bus.
	if _, err := Remap(t.Context(), h, Map{Isolated: true}); err != nil {
		t.Fatal(err)
	}
	keys, _ = instanceKeys(filepath.Join(h.InstanceDir("group-2", "instance-1"), "conf", "instance.yaml"))
	if keys["cluster.enabled"] != "false" {
		t.Errorf("Isolated: cluster.enabled %q, want false", keys["cluster.enabled"])
	}
}

func TestRecoveryPoint(t *testing.T) {
	h, _ := installDir(t)
	before := time.Now().UTC()
	var buf bytes.Buffer
	m, err := Write(t.Context(), h, &buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	rp := m.RecoveryPoint()
	if rp.Before(before) || rp.After(after) {
		t.Errorf("recovery point %s, want the store's snapshot, within %s–%s", rp, before, after)
	}
	got, err := Verify(t.Context(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if !got.RecoveryPoint().Equal(rp) {
		t.Errorf("read back: %s, written %s", got.RecoveryPoint(), rp)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	two := &Manifest{Created: t0, Entries: []Entry{{Path: "a"}, {Path: "b", KPS: true, Snapshot: t0.Add(3 * time.Second)}, {Path: "c", KPS: true, Snapshot: t0.Add(2 * time.Second)}}}
	if rp := two.RecoveryPoint(); !rp.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("two stores: %s, want the earlier snapshot", rp)
	}
	none := &Manifest{Created: t0, Entries: []Entry{{Path: "a"}}}
	if rp := none.RecoveryPoint(); !rp.Equal(t0) {
		t.Errorf("no store: %s, want the creation time", rp)
	}
}

func TestRemapNodeManagersAt(t *testing.T) {
	h := domainHome(t)
	if _, err := Remap(t.Context(), h, Map{NodeManagersAt: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	tp, _ := topology.NewStore(h, nil).Load()
	anm, _ := tp.AdminNodeManager()
	if anm.Tags[domain.TagAddress] != "127.0.0.1" {
		t.Errorf("the node manager's address tag: %v", anm.Tags)
	}
	if changes, err := Remap(t.Context(), h, Map{NodeManagersAt: "127.0.0.1"}); err != nil || len(changes) != 0 {
		t.Errorf("again: %v %v", changes, err)
	}
}

func TestRemapMore(t *testing.T) {
	// A joined host: its Admin Node Manager's address and port mapped.
	h := domainHome(t)
	nm, _ := domain.LoadNodeManagerConf(h)
	nm.ANMAddress, nm.ANMPort = "10.0.0.9", 18091
	if err := domain.SaveNodeManagerConf(h, nm); err != nil {
		t.Fatal(err)
	}
	changes, err := Remap(t.Context(), h, Map{Addresses: map[string]string{"10.0.0.9": "10.1.1.9"}})
	if err != nil {
		t.Fatal(err)
	}
	nm, _ = domain.LoadNodeManagerConf(h)
	if nm.ANMAddress != "10.1.1.9" || nm.ANMPort != 18091 || !strings.Contains(strings.Join(changes, "\n"), `Admin Node Manager at "10.1.1.9" port 18091`) {
		t.Errorf("the ANM's address: %+v, changes %v", nm, changes)
	}
	changes, _ = Remap(t.Context(), h, Map{Port: func(p int) int { return p + 1 }})
	nm, _ = domain.LoadNodeManagerConf(h)
	all := strings.Join(changes, "\n")
	if nm.ANMPort != 18092 || !strings.Contains(all, "traffic port 18080 → 18081") || !strings.Contains(all, "management port 18085 → 18086") {
		t.Errorf("ports: %+v, changes:\n%s", nm, all)
	}
	// The same ports again: nothing to change, nothing said.
	if changes, err := Remap(t.Context(), h, Map{Port: func(p int) int { return p }}); err != nil || len(changes) != 0 {
		t.Errorf("an identity mapping: %v %v", changes, err)
	}
	// A node manager service without tags gets the address tag.
	store := topology.NewStore(h, nil)
	if _, err := store.Update(t.Context(), topology.Actor{User: "t"}, "untag", 0, func(tp *topology.Topology) (string, error) {
		for gi := range tp.Groups {
			for si := range tp.Groups[gi].Services {
				if tp.Groups[gi].Services[si].Type == topology.TypeNodeManager {
					tp.Groups[gi].Services[si].Tags = nil
				}
			}
		}
		return "", nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Remap(t.Context(), h, Map{NodeManagersAt: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	tp, _ := store.Load()
	for _, g := range tp.Groups {
		for _, s := range g.Services {
			if s.Type == topology.TypeNodeManager && s.Tags[domain.TagAddress] != "127.0.0.1" {
				t.Errorf("%s: tags %v", s.ID, s.Tags)
			}
		}
	}
	// An instance without instance.yaml gets one; a damaged one is an
	// error naming it; no node manager settings, an error.
	path := filepath.Join(h.InstanceDir("group-2", "instance-1"), "conf", "instance.yaml")
	os.Remove(path)
	if _, err := Remap(t.Context(), h, Map{Port: func(p int) int { return p + 100 }}); err != nil {
		t.Fatal(err)
	}
	if keys, _ := instanceKeys(path); keys["traffic.port"] != "18181" {
		t.Errorf("the new instance.yaml: %v", keys)
	}
	os.WriteFile(path, []byte("traffic: [\n"), 0o644)
	if _, err := Remap(t.Context(), h, Map{Port: func(p int) int { return p }}); err == nil || !strings.Contains(err.Error(), "instance.yaml") {
		t.Errorf("a damaged instance.yaml: %v", err)
	}
	os.Remove(path)
	os.Mkdir(path, 0o755)
	if _, err := Remap(t.Context(), h, Map{Port: func(p int) int { return p }}); err == nil {
		t.Error("an instance.yaml that cannot be read: no error")
	}
	if _, err := Remap(t.Context(), home.Home{Dir: t.TempDir()}, Map{}); err == nil {
		t.Error("no node manager settings: no error")
	}
}
