package domain

import (
	"context"
	"errors"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

var actor = topology.Actor{User: "tester", Via: "test", Remote: "local"}

func newHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(filepath.Join(t.TempDir(), "apigateway"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func initOpts() InitOptions {
	return InitOptions{DomainName: "Test Domain", HostName: "host one", Username: "admin", Password: secret.FromString("s3cret-pass"), Actor: actor}
}

func initDomain(t *testing.T) home.Home {
	t.Helper()
	h := newHome(t)
	if _, err := Init(t.Context(), h, initOpts()); err != nil {
		t.Fatal(err)
	}
	return h
}

// snapshot maps every file under dir (relative path) to its content, and
// every directory to "<dir>"; run files are left out.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, filepath.Join("var", "run")+string(filepath.Separator)) {
			return nil
		}
		// The audit log records refused changes too (docs/audit.md).
		if rel == filepath.Join("conf", "audit") || strings.HasPrefix(rel, filepath.Join("conf", "audit")+string(filepath.Separator)) {
			return nil
		}
		if d.IsDir() {
			m[rel] = "<dir>"
			return nil
		}
		data, _ := os.ReadFile(p)
		m[rel] = string(data)
		return nil
	})
	return m
}

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if a, ok := after[k]; !ok {
			t.Errorf("%s disappeared", k)
		} else if a != v {
			t.Errorf("%s changed", k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared", k)
		}
	}
}

func TestInit(t *testing.T) {
	h := newHome(t)
	exe := filepath.Join(t.TempDir(), "gatehouse-build")
	os.WriteFile(exe, []byte("#!/bin/sh\necho fake\n"), 0o755)
	o := initOpts()
	o.Port = 9090
	o.Exe = exe
	o.ToolNames = []string{"managedomain", "startinstance"}
	top, err := Init(t.Context(), h, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Hosts) != 1 || top.Hosts[0].ID != "host-1" || top.Hosts[0].Name != "host one" {
		t.Errorf("hosts: got %+v", top.Hosts)
	}
	g, err := top.GroupByName(topology.NodeManagerGroupName)
	if err != nil || g.ID != "group-1" {
		t.Fatalf("node manager group: got %+v, %v", g, err)
	}
	nm, err := top.AdminNodeManager()
	if err != nil {
		t.Fatal(err)
	}
	if nm.ID != "nodemanager-1" || nm.ManagementPort != 9090 || nm.Scheme != "https" || nm.HostID != "host-1" {
		t.Errorf("node manager: got %+v", nm)
	}
	if top.ID == "" || top.Version != 1 || top.DomainName != "Test Domain" {
		t.Errorf("topology: got id %q version %d name %q", top.ID, top.Version, top.DomainName)
	}
	c, err := LoadNodeManagerConf(h)
	if err != nil || !reflect.DeepEqual(c, NodeManagerConf{HostID: "host-1", NodeManagerID: "nodemanager-1", Port: 9090}) {
		t.Errorf("nodemanager.yaml: got %+v, %v", c, err)
	}
	if id, err := LocalHost(h); err != nil || id != "host-1" {
		t.Errorf("LocalHost: got %q, %v", id, err)
	}
	ca, err := pki.LoadCA(h)
	if err != nil || ca.Cert.Subject.CommonName != "Gatehouse Domain CA Test Domain" {
		t.Errorf("CA: got %v", err)
	}
	if fi, err := os.Stat(pki.KeyFile(h)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode: got %v, %v", fi.Mode(), err)
	}
	if ok, err := rbac.Verify(h, "admin", secret.FromString("s3cret-pass")); !ok || err != nil {
		t.Errorf("admin user: got %v, %v", ok, err)
	}
	if data, _ := os.ReadFile(filepath.Join(h.BinDir(), "gatehouse")); string(data) != "#!/bin/sh\necho fake\n" {
		t.Error("binary not copied")
	}
	for _, n := range o.ToolNames {
		if target, err := os.Readlink(filepath.Join(h.BinDir(), n)); err != nil || target != "gatehouse" {
			t.Errorf("link %s: got %q, %v", n, target, err)
		}
	}
	for _, d := range home.Skeleton {
		if _, err := os.Stat(h.Path(d.Rel)); err != nil {
			t.Errorf("skeleton: %v", err)
		}
	}

	// A second Init changes nothing.
	before := snapshot(t, h.Dir)
	o2 := initOpts()
	o2.DomainName = "Other"
	_, err = Init(t.Context(), h, o2)
	if !errors.Is(err, topology.ErrExists) || !strings.Contains(err.Error(), h.Dir) {
		t.Errorf("second Init: got %v, want ErrExists naming %s", err, h.Dir)
	}
	sameSnapshot(t, before, snapshot(t, h.Dir))
}

func TestInitBadInput(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*InitOptions)
		want string
	}{
		{"no domain name", func(o *InitOptions) { o.DomainName = "" }, "domain name is empty"},
		{"no user", func(o *InitOptions) { o.Username = "" }, "needs a name"},
		{"no password", func(o *InitOptions) { o.Password = secret.Value{} }, "needs a password"},
		{"short password", func(o *InitOptions) { o.Password = secret.FromString("1234567") }, "at least 8"},
		{"bad port", func(o *InitOptions) { o.Port = 70000 }, "70000"},
		{"bad link", func(o *InitOptions) { o.ToolNames = []string{"../x"} }, "link name"},
		{"missing exe", func(o *InitOptions) { o.Exe = "/nonexistent/gatehouse"; o.ToolNames = []string{"managedomain"} }, "installing binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHome(t)
			o := initOpts()
			tt.mod(&o)
			_, err := Init(t.Context(), h, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret-pass") {
				t.Error("error shows the password")
			}
			// No domain left behind: no topology, CA, users or node manager file.
			for _, p := range []string{h.TopologyFile(), pki.KeyFile(h), pki.CertFile(h), h.AdminUsersFile(), h.NodeManagerConf(), filepath.Join(h.BinDir(), "managedomain")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s left behind", p)
				}
			}
			// And a later Init works.
			if _, err := Init(t.Context(), h, initOpts()); err != nil {
				t.Errorf("Init after a failed one: %v", err)
			}
		})
	}
}

func TestInstallBinaryIdempotent(t *testing.T) {
	h := newHome(t)
	exe := filepath.Join(t.TempDir(), "gh")
	os.WriteFile(exe, []byte("v1"), 0o755)
	if err := InstallBinary(h, exe, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	// Running from posix/bin/gatehouse itself: nothing to copy.
	if err := InstallBinary(h, filepath.Join(h.BinDir(), "gatehouse"), []string{"a", "c"}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(h.BinDir(), "gatehouse"))
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode: got %v, want 0755", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(h.BinDir())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"a", "b", "c", "gatehouse"}; !slices.Equal(names, want) {
		t.Errorf("posix/bin: got %v, want %v", names, want)
	}
}

func TestCreateInstance(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	c, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G one", Name: "it's A", Sample: true})
	if err != nil {
		t.Fatal(err)
	}
	if c != (Created{GroupID: "group-2", InstanceID: "instance-1", NewGroup: true, Version: 2}) {
		t.Errorf("got %+v", c)
	}
	for _, d := range []string{"groups/group-2/conf/group.yaml", "groups/group-2/instance-1/conf/instance.yaml", "groups/group-2/instance-1/logs", "groups/group-2/instance-1/trace"} {
		if _, err := os.Stat(h.Path(d)); err != nil {
			t.Error(err)
		}
	}
	cfg, err := groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Traffic.Port != 8080 || cfg.Management.Port != 8085 || !cfg.Sample.Enabled || cfg.Sample.Port != 8081 {
		t.Errorf("config: got traffic %d management %d sample %v %d", cfg.Traffic.Port, cfg.Management.Port, cfg.Sample.Enabled, cfg.Sample.Port)
	}
	top, _ := topology.NewStore(h, nil).Load()
	ref, err := top.FindInstance("G one", "it's A")
	if err != nil {
		t.Fatal(err)
	}
	if s := ref.Service; s.Type != topology.TypeGateway || s.HostID != "host-1" || s.TrafficPort != 8080 || s.ManagementPort != 8085 {
		t.Errorf("service: got %+v", s)
	}

	// A second instance in the same group, with its own ports.
	c2, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G one", Name: "B", TrafficPort: 9080, ManagementPort: 9085, GroupConfig: []byte("ignored: for an existing group\n")})
	if err != nil {
		t.Fatal(err)
	}
	if c2 != (Created{GroupID: "group-2", InstanceID: "instance-2", Version: 3}) {
		t.Errorf("got %+v", c2)
	}
}

// Ports not given are the lowest free ones from the defaults up: a second
// instance without ports does not clash with the first (#15).
func TestCreateInstanceFreePorts(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A", Sample: true}); err != nil {
		t.Fatal(err)
	}
	c, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "B", Sample: true})
	if err != nil {
		t.Fatalf("a second instance without ports: %v", err)
	}
	topo, _ := audit.StoreFor(h).Load()
	ref, _ := topo.FindInstanceID(c.InstanceID)
	// 8080, 8085 and 8081 are A's; 8082 is the next traffic port, 8086
	// the next management port, 8083 the next sample port.
	if s := ref.Service; s.TrafficPort != 8082 || s.ManagementPort != 8086 {
		t.Errorf("B's ports: traffic %d management %d, want 8082 and 8086", s.TrafficPort, s.ManagementPort)
	}
	cfg, err := groupconf.LoadInstance(h, c.GroupID, c.InstanceID, nil, nil)
	if err != nil || cfg.Sample.Port != 8083 {
		t.Errorf("B's sample port: %v %v, want 8083", cfg, err)
	}
	// A given port is kept even when a free one is lower.
	c, err = CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "C", TrafficPort: 9500})
	if err != nil {
		t.Fatal(err)
	}
	topo, _ = audit.StoreFor(h).Load()
	if ref, _ := topo.FindInstanceID(c.InstanceID); ref.Service.TrafficPort != 9500 || ref.Service.ManagementPort != 8087 {
		t.Errorf("C's ports: %+v", ref.Service)
	}
}

func TestCreateInstanceRefusals(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A", Sample: true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec InstanceSpec
		is   error
		want string
	}{
		{"traffic clash", InstanceSpec{Group: "G", Name: "B", TrafficPort: 8080, ManagementPort: 9001}, ErrPortInUse, `port 8080 (traffic.port) is already used by instance "A" (instance-1) in group "G"`},
		{"management clash in new group", InstanceSpec{Group: "H", Name: "B", TrafficPort: 9000, ManagementPort: 8085}, ErrPortInUse, `port 8085 (management.port)`},
		{"sample clash", InstanceSpec{Group: "H", Name: "B", TrafficPort: 8081, ManagementPort: 9001}, ErrPortInUse, `its sample.port`},
		{"node manager clash", InstanceSpec{Group: "H", Name: "B", TrafficPort: 8090, ManagementPort: 9001}, ErrPortInUse, "node manager"},
		{"own ports clash", InstanceSpec{Group: "H", Name: "B", TrafficPort: 9000, ManagementPort: 9000}, nil, "port 9000"},
		{"duplicate name", InstanceSpec{Group: "G", Name: "A", TrafficPort: 9000, ManagementPort: 9001}, topology.ErrExists, `instance "A" in group "G"`},
		{"node manager group", InstanceSpec{Group: topology.NodeManagerGroupName, Name: "B", TrafficPort: 9000, ManagementPort: 9001}, topology.ErrInvalid, "node managers"},
		{"bad name", InstanceSpec{Group: "G", Name: `a"b`, TrafficPort: 9000, ManagementPort: 9001}, topology.ErrInvalid, "not allowed"},
		{"bad port", InstanceSpec{Group: "G", Name: "B", TrafficPort: 0, ManagementPort: 65536}, topology.ErrInvalid, "65536"},
		{"bad group config", InstanceSpec{Group: "H", Name: "B", TrafficPort: 9000, ManagementPort: 9001, GroupConfig: []byte("nonsense: 1\n")}, nil, `unknown key "nonsense"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, h.Dir)
			_, err := CreateInstance(ctx, h, actor, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want it to wrap %v", err, tt.is)
			}
			sameSnapshot(t, before, snapshot(t, h.Dir))
		})
	}
}

func TestCreateInstanceNoDomain(t *testing.T) {
	h := newHome(t)
	_, err := CreateInstance(t.Context(), h, actor, InstanceSpec{Group: "G", Name: "A"})
	if !errors.Is(err, home.ErrNoDomain) {
		t.Errorf("got %v, want ErrNoDomain", err)
	}
}

func TestIDsNeverReused(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := DeleteInstance(ctx, h, actor, "G", "A"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.InstanceDir("group-2", "instance-1")); !os.IsNotExist(err) {
		t.Errorf("instance directory still there: %v", err)
	}
	c, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceID != "instance-2" {
		t.Errorf("got %s, want instance-2", c.InstanceID)
	}
	if err := DeleteGroup(ctx, h, actor, "G"); err != nil {
		t.Fatal(err)
	}
	c, err = CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GroupID != "group-3" || c.InstanceID != "instance-3" {
		t.Errorf("got %+v, want group-3/instance-3", c)
	}
}

func TestDeleteRefusedWhileRunning(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	c, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	claim, err := home.ClaimRunFiles(h.RunFiles(c.InstanceID))
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, h.Dir)
	for name, op := range map[string]func() error{
		"instance": func() error { return DeleteInstance(ctx, h, actor, "G", "A") },
		"group":    func() error { return DeleteGroup(ctx, h, actor, "G") },
	} {
		err := op()
		var re *RunningError
		if !errors.As(err, &re) || !errors.Is(err, home.ErrRunning) || re.PID != os.Getpid() {
			t.Errorf("delete %s: got %v, want a RunningError with pid %d", name, err, os.Getpid())
		}
		sameSnapshot(t, before, snapshot(t, h.Dir))
	}
	claim.Release()
	if err := DeleteGroup(ctx, h, actor, "G"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.GroupDir("group-2")); !os.IsNotExist(err) {
		t.Errorf("group directory still there: %v", err)
	}
}

func TestUnknownNamesListRegistered(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A"})
	CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "B", TrafficPort: 9000, ManagementPort: 9001})
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"delete instance", DeleteInstance(ctx, h, actor, "G", "Z"), `no instance "Z" in group "G"; registered: "A", "B"`},
		{"delete instance group", DeleteInstance(ctx, h, actor, "X", "A"), `no group "X"; registered: "G"`},
		{"rename group", RenameGroup(ctx, h, actor, "X", "Y"), `no group "X"; registered: "G"`},
		{"delete group", DeleteGroup(ctx, h, actor, "X"), `no group "X"; registered: "G"`},
		{"set ports", SetInstancePorts(ctx, h, actor, "G", "Z", 1234, 0, 0), `registered: "A", "B"`},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) || !errors.Is(tt.err, topology.ErrNotFound) {
			t.Errorf("%s: got %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}

func TestRenameGroup(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A"})
	CreateInstance(ctx, h, actor, InstanceSpec{Group: "H", Name: "A", TrafficPort: 9000, ManagementPort: 9001})
	if err := RenameGroup(ctx, h, actor, "G", "New name"); err != nil {
		t.Fatal(err)
	}
	top, _ := topology.NewStore(h, nil).Load()
	if g, err := top.GroupByName("New name"); err != nil || g.ID != "group-2" {
		t.Errorf("got %+v, %v", g, err)
	}
	if _, err := os.Stat(h.InstanceDir("group-2", "instance-1")); err != nil {
		t.Errorf("directories moved: %v", err)
	}
	for _, tt := range []struct{ from, to, want string }{
		{"H", "New name", "already exists"},
		{topology.NodeManagerGroupName, "X", "cannot be renamed"},
		{"H", "", "empty"},
	} {
		before := snapshot(t, h.Dir)
		if err := RenameGroup(ctx, h, actor, tt.from, tt.to); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("rename %q to %q: got %v, want %q", tt.from, tt.to, err, tt.want)
		}
		sameSnapshot(t, before, snapshot(t, h.Dir))
	}
	if err := DeleteGroup(ctx, h, actor, topology.NodeManagerGroupName); err == nil {
		t.Error("deleting the Node Manager Group accepted")
	}
}

func TestSetInstancePorts(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A", Sample: true})
	CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "B", TrafficPort: 9000, ManagementPort: 9001})
	path := h.InstanceConfFile("group-2", "instance-1")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, append([]byte("# my own comment\n"), data...), 0o644)

	if err := SetInstancePorts(ctx, h, actor, "G", "A", 7080, 0, 7081); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.Contains(string(data), "# my own comment") {
		t.Errorf("comment lost:\n%s", data)
	}
	cfg, err := groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Traffic.Port != 7080 || cfg.Management.Port != 8085 || cfg.Sample.Port != 7081 {
		t.Errorf("got traffic %d management %d sample %d", cfg.Traffic.Port, cfg.Management.Port, cfg.Sample.Port)
	}
	top, _ := topology.NewStore(h, nil).Load()
	ref, _ := top.FindInstance("G", "A")
	if ref.Service.TrafficPort != 7080 {
		t.Errorf("topology traffic port: got %d, want 7080", ref.Service.TrafficPort)
	}

	before := snapshot(t, h.Dir)
	for _, tt := range []struct {
		traffic, mgmt, sample int
		want                  string
	}{
		{9000, 0, 0, `port 9000 (traffic.port) is already used by instance "B"`},
		{0, 0, 9001, `port 9001 (sample.port)`},
		{0, 7080, 0, "port 7080"},
		{-1, 0, 0, "-1"},
	} {
		err := SetInstancePorts(ctx, h, actor, "G", "A", tt.traffic, tt.mgmt, tt.sample)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ports %d/%d/%d: got %v, want %q", tt.traffic, tt.mgmt, tt.sample, err, tt.want)
		}
		sameSnapshot(t, before, snapshot(t, h.Dir))
	}
}

func TestPortsInUseAndFreePort(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{Group: "G", Name: "A", Sample: true}); err != nil {
		t.Fatal(err)
	}
	used, err := PortsInUse(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{8080, 8081, 8085, 8090} {
		if _, ok := used[p]; !ok {
			t.Errorf("port %d not listed in %v", p, used)
		}
	}
	if got := FreePort(used, 8080); got != 8082 {
		t.Errorf("FreePort(8080): got %d, want 8082", got)
	}
	if got := FreePort(used, 8080, 8082); got != 8083 {
		t.Errorf("FreePort(8080, avoid 8082): got %d, want 8083", got)
	}
}

// TestCreateInstanceOnAHeldPort: a port another process of the host listens
// on is refused when the instance is created (it could never start), naming
// the port, the setting and the holder.
func TestCreateInstanceOnAHeldPort(t *testing.T) {
	h := initDomain(t)
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := ln.Addr().(*net.TCPAddr).Port
	_, err = CreateInstance(context.Background(), h, actor, InstanceSpec{Group: "G", Name: "S", TrafficPort: held, ManagementPort: gwtest.FreePort(t)})
	var pc *PortClashError
	if !errors.As(err, &pc) || pc.Port != held || pc.Key != "traffic.port" || !strings.Contains(pc.Owner, "on this host") {
		t.Fatalf("got %v, want a PortClashError for traffic.port %d held by a process", err, held)
	}
	if _, err := os.Stat(h.Path("groups", "group-2")); err == nil {
		if ents, _ := os.ReadDir(h.Path("groups", "group-2")); len(ents) > 1 {
			t.Errorf("files left behind: %v", ents)
		}
	}
	// Free ports: created.
	if _, err := CreateInstance(context.Background(), h, actor, InstanceSpec{Group: "G", Name: "S", TrafficPort: gwtest.FreePort(t), ManagementPort: gwtest.FreePort(t)}); err != nil {
		t.Fatalf("free ports: %v", err)
	}
}
