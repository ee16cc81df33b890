package domain

import (
	"context"
	"errors"
	"fmt"
	"github.com/gatehouse-gw/gatehouse/internal/portinfo"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// InstanceSpec describes a gateway instance to create.
type InstanceSpec struct {
	Group, Name    string
	TrafficPort    int    // 0 → 8080
	ManagementPort int    // 0 → 8085
	Sample         bool   // enable the sample back end in instance.yaml
	SamplePort     int    // 0 → 8081 (only when Sample)
	GroupConfig    []byte // written as the new group's conf/group.yaml when the group is created; nil → a commented template
	// GroupID, when set, names an existing group (Group is then ignored and
	// no group is created).
	GroupID string
	// ExpectVersion is the topology version the change is based on; 0: the
	// current one (see topology.Store.Update).
	ExpectVersion int64
}

// Created says what CreateInstance made.
type Created struct {
	GroupID, InstanceID string
	NewGroup            bool
	Version             int64 // of the topology written
}

// PortClashError is a port that another process of this install directory
// is configured to use.
type PortClashError struct {
	Port  int
	Key   string // the new instance's setting, e.g. "traffic.port"
	Owner string // who has it, e.g. `instance "A" (instance-1) in group "G", its traffic.port`
}

func (e *PortClashError) Error() string {
	return fmt.Sprintf("port %d (%s) is already used by %s", e.Port, e.Key, e.Owner)
}

func (e *PortClashError) Unwrap() error { return ErrPortInUse }

// RunningError refuses a change while an instance runs.
type RunningError struct {
	Group, Name, ID string
	PID             int // 0 when unknown
}

func (e *RunningError) Error() string {
	pid := ""
	if e.PID > 0 {
		pid = ", pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("instance %q (%s%s) in group %q is running; stop it first (startinstance -k -n %q -g %q)", e.Name, e.ID, pid, e.Group, e.Name, e.Group)
}

func (e *RunningError) Unwrap() error { return home.ErrRunning }

func groupTemplate(name, id string) []byte {
	return []byte(`# Group configuration of ` + strconv.Quote(name) + ` (` + id + `), shared by every instance of
# the group. Per-instance settings (ports) live in each instance's conf/instance.yaml;
# startinstance -D key=value overrides both. docs/configuration.md lists every key.

zeroDowntime:
  shutdown:
    enabled: false   # answer 503 on /healthchecklb and keep serving for the delay on shutdown
    delay: 10        # seconds

# backends:
#   - name: orders
#     url: http://orders.internal:8000
# apis:
#   - name: orders
#     pathPrefix: /orders
#     backend: orders
`)
}

const instanceHeader = "Settings of this instance only (ports and anything that must differ between\ninstances of one group on one host). Group-wide settings are in ../../conf/group.yaml.\nstartinstance -D key=value overrides both. docs/configuration.md lists every key."

// CreateInstance creates the group when it does not exist and the instance
// on this host: the topology entry (type gateway, this host, its ports), the
// directories groups/<gid>/conf and groups/<gid>/<iid>/{conf,logs,trace}, and
// conf/instance.yaml with traffic.port, management.port and, with
// spec.Sample, sample.enabled and sample.port (ports not given: the lowest
// free ones of this host from 8080, 8085 and 8081 up). Its effective ports (as the
// layered configuration resolves them) must not clash with any other
// instance of this install directory nor with the node manager's port: a
// *PortClashError names the port and who has it. Nothing is left behind on
// failure.
func CreateInstance(ctx context.Context, h home.Home, actor topology.Actor, spec InstanceSpec) (Created, error) {
	var res Created
	if spec.GroupID == "" {
		if err := topology.ValidateName("group", spec.Group); err != nil {
			return res, err
		}
	}
	if err := topology.ValidateName("instance", spec.Name); err != nil {
		return res, err
	}
	// Ports not given: the lowest free ones of this host from the
	// defaults up (one rule for the menu, command mode, the interpreter
	// and the API), so that a second instance never clashes by default.
	if spec.TrafficPort == 0 || spec.ManagementPort == 0 || spec.Sample && spec.SamplePort == 0 {
		used, err := PortsInUse(h)
		if err != nil {
			used = map[int]string{}
		}
		if spec.TrafficPort == 0 {
			spec.TrafficPort = FreePort(used, DefaultTrafficPort, spec.ManagementPort, spec.SamplePort)
		}
		if spec.ManagementPort == 0 {
			spec.ManagementPort = FreePort(used, DefaultManagementPort, spec.TrafficPort, spec.SamplePort)
		}
		if spec.Sample && spec.SamplePort == 0 {
			spec.SamplePort = FreePort(used, DefaultSamplePort, spec.TrafficPort, spec.ManagementPort)
		}
	}
	if err := checkPort("traffic port", spec.TrafficPort); err != nil {
		return res, err
	}
	if err := checkPort("management port", spec.ManagementPort); err != nil {
		return res, err
	}
	if spec.Sample {
		if err := checkPort("sample port", spec.SamplePort); err != nil {
			return res, err
		}
	}
	hostID, err := LocalHost(h)
	if err != nil {
		return res, err
	}
	keys := map[string]string{"traffic.port": strconv.Itoa(spec.TrafficPort), "management.port": strconv.Itoa(spec.ManagementPort)}
	order := []string{"traffic.port", "management.port"}
	if spec.Sample {
		keys["sample.enabled"], keys["sample.port"] = "true", strconv.Itoa(spec.SamplePort)
		order = append(order, "sample.enabled", "sample.port")
	}
	var cleanup []string // directories to remove when the change fails
	t, err := audit.StoreFor(h).Update(ctx, actor, "create instance", spec.ExpectVersion, func(t *topology.Topology) (string, error) {
		var g *topology.Group
		var gerr error
		if spec.GroupID != "" {
			if g, gerr = t.Group(spec.GroupID); gerr != nil {
				return "", gerr
			}
			spec.Group = g.Name
		} else if g, gerr = t.FindGroup(spec.Group); errors.Is(gerr, topology.ErrNotFound) {
			if g, gerr = t.AddGroup(spec.Group); gerr != nil {
				return "", gerr
			}
			res.NewGroup = true
			if spec.GroupConfig != nil {
				// Checked with the instance settings about to be written:
				// a group may rely on them (a sample back end, say).
				if _, err := groupconf.Load(groupconf.Layer{Name: "group configuration", YAML: spec.GroupConfig},
					groupconf.Layer{Name: "instance settings", Properties: keys, Order: order}); err != nil {
					return "", fmt.Errorf("group configuration for %q: %w", spec.Group, err)
				}
			}
		} else if gerr != nil {
			return "", gerr
		} else {
			spec.Group = g.Name // named by its id
		}
		if !res.NewGroup && g.IsNodeManagerGroup() {
			return "", fmt.Errorf("the %q holds node managers, not gateway instances: %w", g.Name, topology.ErrInvalid)
		}
		res.GroupID = g.ID
		if _, err := g.InstanceByName(spec.Name); err == nil {
			return "", fmt.Errorf("instance %q in group %q %w", spec.Name, spec.Group, topology.ErrExists)
		}
		s, err := t.AddService(g.ID, topology.Service{
			Name: spec.Name, Type: topology.TypeGateway, HostID: hostID,
			ManagementPort: spec.ManagementPort, TrafficPort: spec.TrafficPort, Scheme: "http", Enabled: true,
		})
		if err != nil {
			return "", err
		}
		res.InstanceID = s.ID
		detail := fmt.Sprintf("instance %q (%s) in group %q (%s)", spec.Name, s.ID, spec.Group, g.ID)

		// Files: the group's (when new), then the instance's.
		if res.NewGroup {
			if _, err := os.Stat(h.GroupDir(g.ID)); errors.Is(err, os.ErrNotExist) {
				cleanup = append(cleanup, h.GroupDir(g.ID))
			}
			if err := os.MkdirAll(h.GroupConfDir(g.ID), 0o755); err != nil {
				return detail, fmt.Errorf("creating group directory: %w", err)
			}
			conf := spec.GroupConfig
			if conf == nil {
				conf = groupTemplate(g.Name, g.ID)
			}
			if err := home.WriteFileAtomic(h.GroupConfFile(g.ID), conf, 0o644); err != nil {
				return detail, err
			}
		} else if err := os.MkdirAll(h.GroupConfDir(g.ID), 0o755); err != nil {
			return detail, fmt.Errorf("creating group directory: %w", err)
		}
		idir := h.InstanceDir(g.ID, s.ID)
		if _, err := os.Stat(idir); errors.Is(err, os.ErrNotExist) {
			cleanup = append(cleanup, idir)
		}
		for _, d := range []string{h.Path("groups", g.ID, s.ID, "conf"), h.InstanceLogsDir(g.ID, s.ID), h.InstanceTraceDir(g.ID, s.ID)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return detail, fmt.Errorf("creating instance directory: %w", err)
			}
		}
		if err := groupconf.SetKeys(h.InstanceConfFile(g.ID, s.ID), keys, order, instanceHeader); err != nil {
			return detail, err
		}
		mgmtAddr, err := checkInstancePorts(h, t, hostID, g, s, nil)
		if err != nil {
			return detail, err
		}
		// The management listener's certificate, when this host holds the
		// domain CA key; elsewhere startinstance gets it (EnsureInstanceCert).
		// A CA key sealed with a passphrase this process was not given is
		// an error: no instance could issue the certificate later.
		var locked *secret.LockedError
		if _, err := EnsureInstanceCert(h, g.ID, s.ID, mgmtAddr); err != nil && (errors.As(err, &locked) || !errors.Is(err, ErrNoInstanceCert) && !errors.Is(err, pki.ErrNoCA)) {
			return detail, err
		}
		return detail, nil
	})
	if err != nil {
		for _, d := range cleanup {
			os.RemoveAll(d)
		}
		return Created{}, err
	}
	res.Version = t.Version
	return res, nil
}

// checkInstancePorts loads the effective configuration of s (whose files are
// written) and checks its ports against everything else on the host. It
// records the effective traffic and management ports in s, and returns the
// management listener's address.
func checkInstancePorts(h home.Home, t *topology.Topology, hostID string, g *topology.Group, s *topology.Service, osKeys map[string]bool) (string, error) {
	cfg, err := groupconf.LoadInstance(h, g.ID, s.ID, nil, nil)
	if err != nil {
		return "", err
	}
	s.TrafficPort, s.ManagementPort = cfg.Traffic.Port, cfg.Management.Port
	mine := []portUse{{cfg.Traffic.Port, "traffic.port"}, {cfg.Management.Port, "management.port"}}
	if cfg.Sample.Enabled {
		mine = append(mine, portUse{cfg.Sample.Port, "sample.port"})
	}
	if err := checkPortsFree(h, t, hostID, s.ID, cfg, osKeys); err != nil {
		return "", err
	}
	return cfg.Management.Address, nil
}

// checkPortsFree checks the ports of configuration cfg of instance id on
// host hostID: none is another instance's of the host (the topology), and
// none is held by a process of this host now (the instance would fail at
// its first start) — of the keys in osKeys only, when it is not nil (the
// ports being changed: the others may be the running instance's own). A
// port this process may not bind (below 1024 without the right) is left to
// the start to report.
func checkPortsFree(h home.Home, t *topology.Topology, hostID, id string, cfg *groupconf.Config, osKeys map[string]bool) error {
	mine := []struct {
		portUse
		addr string
	}{{portUse{cfg.Traffic.Port, "traffic.port"}, cfg.Traffic.Address}, {portUse{cfg.Management.Port, "management.port"}, cfg.Management.Address}}
	if cfg.Sample.Enabled {
		mine = append(mine, struct {
			portUse
			addr string
		}{portUse{cfg.Sample.Port, "sample.port"}, cfg.Sample.Address})
	}
	others := portsInUse(h, t, hostID, id)
	for _, m := range mine {
		for _, o := range others {
			if m.port == o.port {
				return &PortClashError{Port: m.port, Key: m.key, Owner: o.key}
			}
		}
	}
	for _, m := range mine {
		if osKeys != nil && !osKeys[m.key] {
			continue
		}
		if owner, held := heldByProcess(m.addr, m.port); held {
			return &PortClashError{Port: m.port, Key: m.key, Owner: owner}
		}
	}
	return nil
}

// heldByProcess reports whether a process of this host listens on port at
// addr (empty: every interface), and names it when it can.
func heldByProcess(addr string, port int) (string, bool) {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err == nil {
		ln.Close()
		return "", false
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return "", false
	}
	if pid, cmd, ok := portinfo.Holder(port); ok {
		return fmt.Sprintf("process %d (%s) on this host", pid, cmd), true
	}
	return "another process on this host", true
}

type portUse struct {
	port int
	key  string // for others: the owner's description
}

// portsInUse lists the ports configured on hostID by everything but the
// service except: every instance's effective traffic, management and sample
// ports, and the node manager's port.
func portsInUse(h home.Home, t *topology.Topology, hostID, except string) []portUse {
	var out []portUse
	for _, g := range t.Groups {
		for _, s := range g.Services {
			if s.HostID != hostID || s.ID == except {
				continue
			}
			switch s.Type {
			case topology.TypeNodeManager:
				out = append(out, portUse{s.ManagementPort, fmt.Sprintf("the node manager %q (%s), its management port", s.Name, s.ID)})
			case topology.TypeGateway:
				who := fmt.Sprintf("instance %q (%s) in group %q", s.Name, s.ID, g.Name)
				cfg, err := groupconf.LoadInstance(h, g.ID, s.ID, nil, nil)
				if err != nil {
					// A broken configuration still holds the ports the
					// topology records.
					out = append(out, portUse{s.TrafficPort, who + ", its traffic port"}, portUse{s.ManagementPort, who + ", its management port"})
					continue
				}
				out = append(out, portUse{cfg.Traffic.Port, who + ", its traffic.port"}, portUse{cfg.Management.Port, who + ", its management.port"})
				if cfg.Sample.Enabled {
					out = append(out, portUse{cfg.Sample.Port, who + ", its sample.port"})
				}
			}
		}
	}
	if c, err := LoadNodeManagerConf(h); err == nil && c.HostID == hostID && c.Port > 0 {
		out = append(out, portUse{c.Port, "this host's node manager (system/conf/nodemanager.yaml port)"})
	}
	return out
}

// SetInstancePorts changes the ports of an existing instance on this host
// (0 leaves a port unchanged; a sample port is written as sample.port without
// changing sample.enabled), with the same clash checks as CreateInstance. It
// updates instance.yaml, keeping its comments, and the topology. A running
// instance picks the new ports up when it restarts.
// RenameInstance renames instance name (or id) of group (name or id):
// directories are named by id, so nothing moves on disk; a running
// instance keeps its name in its logs until it restarts.
func RenameInstance(ctx context.Context, h home.Home, actor topology.Actor, group, name, newName string) error {
	_, err := audit.StoreFor(h).Update(ctx, actor, "rename instance", 0, func(t *topology.Topology) (string, error) {
		ref, err := t.FindInstance(group, name)
		if err != nil {
			return "", err
		}
		old := ref.Service.Name
		if err := t.RenameInstance(ref.Group.ID, ref.Service.ID, newName); err != nil {
			return "", err
		}
		return fmt.Sprintf("instance %s in group %q (%s): %q to %q", ref.Service.ID, ref.Group.Name, ref.Group.ID, old, newName), nil
	})
	return err
}

func SetInstancePorts(ctx context.Context, h home.Home, actor topology.Actor, group, name string, traffic, management, sample int) error {
	keys := map[string]string{}
	var order []string
	for _, p := range []struct {
		key  string
		port int
	}{{"traffic.port", traffic}, {"management.port", management}, {"sample.port", sample}} {
		if p.port == 0 {
			continue
		}
		if err := checkPort(p.key, p.port); err != nil {
			return err
		}
		keys[p.key] = strconv.Itoa(p.port)
		order = append(order, p.key)
	}
	if len(order) == 0 {
		return nil
	}
	hostID, err := LocalHost(h)
	if err != nil {
		return err
	}
	var restore func()
	_, err = audit.StoreFor(h).Update(ctx, actor, "set instance ports", 0, func(t *topology.Topology) (string, error) {
		ref, err := t.FindInstance(group, name)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("instance %q (%s) in group %q: %v", name, ref.Service.ID, group, keys)
		if ref.Service.HostID != hostID {
			return detail, fmt.Errorf("instance %q in group %q runs on host %s, not on this host (%s)", name, group, ref.Service.HostID, hostID)
		}
		path := h.InstanceConfFile(ref.Group.ID, ref.Service.ID)
		old, rerr := os.ReadFile(path)
		if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return detail, fmt.Errorf("reading %s: %w", path, rerr)
		}
		restore = func() {
			if rerr != nil {
				os.Remove(path)
			} else {
				home.WriteFileAtomic(path, old, 0o644)
			}
		}
		if err := groupconf.SetKeys(path, keys, order, instanceHeader); err != nil {
			restore = nil // nothing written
			return detail, err
		}
		changed := map[string]bool{}
		for k := range keys {
			changed[k] = true
		}
		_, err = checkInstancePorts(h, t, hostID, ref.Group, ref.Service, changed)
		return detail, err
	})
	if err != nil && restore != nil {
		restore()
	}
	return err
}

// holdStopped takes the run lock of each instance so that none can start
// while it is being deleted; it refuses with a *RunningError when one runs.
// The returned function releases the locks; with remove it also deletes the
// run files.
func holdStopped(h home.Home, g *topology.Group, svcs []topology.Service) (release func(remove bool), err error) {
	var held []*home.Lock
	var files []home.RunFiles
	release = func(remove bool) {
		for i, l := range held {
			if remove {
				os.Remove(files[i].PID)
				os.Remove(files[i].Lock)
			}
			l.Unlock()
		}
	}
	if err := os.MkdirAll(h.RunDir(), 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	for _, s := range svcs {
		rf := h.RunFiles(s.ID)
		l, err := home.TryLock(rf.Lock)
		if errors.Is(err, home.ErrLocked) {
			release(false)
			re := &RunningError{Group: g.Name, Name: s.Name, ID: s.ID}
			if st, perr := home.Probe(rf); perr == nil && st.Record != nil {
				re.PID = st.Record.PID
			}
			return nil, re
		}
		if err != nil {
			release(false)
			return nil, err
		}
		held, files = append(held, l), append(files, rf)
	}
	return release, nil
}

// DeleteInstance removes an instance from the topology and its directory
// from this host. It refuses (a *RunningError) while the instance runs, and
// keeps it from starting during the deletion. Its id is never reused.
func DeleteInstance(ctx context.Context, h home.Home, actor topology.Actor, group, name string) error {
	_, err := deleteInstance(ctx, h, actor, 0, func(t *topology.Topology) (topology.InstanceRef, error) {
		return t.FindInstance(group, name)
	})
	return err
}

// DeleteInstanceID is DeleteInstance by ids, based on topology version
// expectVersion (0: the current one). It returns the new topology version.
func DeleteInstanceID(ctx context.Context, h home.Home, actor topology.Actor, expectVersion int64, groupID, instanceID string) (int64, error) {
	return deleteInstance(ctx, h, actor, expectVersion, func(t *topology.Topology) (topology.InstanceRef, error) {
		g, err := t.Group(groupID)
		if err != nil {
			return topology.InstanceRef{}, err
		}
		s, err := g.Service(instanceID)
		if err != nil {
			return topology.InstanceRef{}, err
		}
		if s.Type != topology.TypeGateway {
			return topology.InstanceRef{}, fmt.Errorf("service %q is a %s, not a gateway instance: %w", s.ID, s.Type, topology.ErrInvalid)
		}
		return topology.InstanceRef{Group: g, Service: s}, nil
	})
}

func deleteInstance(ctx context.Context, h home.Home, actor topology.Actor, expectVersion int64, find func(t *topology.Topology) (topology.InstanceRef, error)) (int64, error) {
	hostID, err := LocalHost(h)
	if err != nil {
		return 0, err
	}
	var release func(bool)
	var dir string
	nt, err := audit.StoreFor(h).Update(ctx, actor, "delete instance", expectVersion, func(t *topology.Topology) (string, error) {
		ref, err := find(t)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("instance %q (%s) in group %q (%s)", ref.Service.Name, ref.Service.ID, ref.Group.Name, ref.Group.ID)
		if ref.Service.HostID == hostID {
			if release, err = holdStopped(h, ref.Group, []topology.Service{*ref.Service}); err != nil {
				return detail, err
			}
			dir = h.InstanceDir(ref.Group.ID, ref.Service.ID)
		}
		return detail, t.RemoveService(ref.Group.ID, ref.Service.ID)
	})
	if release != nil {
		defer release(err == nil)
	}
	if err != nil {
		return 0, err
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return nt.Version, fmt.Errorf("instance deleted from the topology, but removing %s failed: %w", dir, err)
		}
	}
	return nt.Version, nil
}

// RenameGroup renames a gateway group. Directories are named by id, so
// nothing moves on disk.
func RenameGroup(ctx context.Context, h home.Home, actor topology.Actor, oldName, newName string) error {
	_, err := audit.StoreFor(h).Update(ctx, actor, "rename group", 0, func(t *topology.Topology) (string, error) {
		g, err := t.FindGroup(oldName)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("group %s %q to %q", g.ID, oldName, newName)
		return detail, t.RenameGroup(g.ID, newName)
	})
	return err
}

// DeleteGroup deletes a gateway group, its instances and its directory. It
// refuses (a *RunningError) while any of its instances runs on this host.
func DeleteGroup(ctx context.Context, h home.Home, actor topology.Actor, name string) error {
	_, err := deleteGroup(ctx, h, actor, 0, func(t *topology.Topology) (*topology.Group, error) { return t.FindGroup(name) })
	return err
}

// DeleteGroupID is DeleteGroup by id, based on topology version
// expectVersion (0: the current one). It returns the new topology version.
func DeleteGroupID(ctx context.Context, h home.Home, actor topology.Actor, expectVersion int64, groupID string) (int64, error) {
	return deleteGroup(ctx, h, actor, expectVersion, func(t *topology.Topology) (*topology.Group, error) { return t.Group(groupID) })
}

func deleteGroup(ctx context.Context, h home.Home, actor topology.Actor, expectVersion int64, find func(t *topology.Topology) (*topology.Group, error)) (int64, error) {
	hostID, err := LocalHost(h)
	if err != nil {
		return 0, err
	}
	var release func(bool)
	var dir string
	nt, err := audit.StoreFor(h).Update(ctx, actor, "delete group", expectVersion, func(t *topology.Topology) (string, error) {
		g, err := find(t)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("group %q (%s) with %d instance(s)", g.Name, g.ID, len(g.Services))
		if g.IsNodeManagerGroup() {
			return detail, t.RemoveGroup(g.ID) // refused by the topology, with its reason
		}
		var local []topology.Service
		for _, s := range g.Services {
			if s.HostID == hostID {
				local = append(local, s)
			}
		}
		if release, err = holdStopped(h, g, local); err != nil {
			return detail, err
		}
		dir = h.GroupDir(g.ID)
		return detail, t.RemoveGroup(g.ID)
	})
	if release != nil {
		defer release(err == nil)
	}
	if err != nil {
		return 0, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nt.Version, fmt.Errorf("group deleted from the topology, but removing %s failed: %w", dir, err)
	}
	return nt.Version, nil
}

// CreateGroup creates an empty gateway group called name, with its
// directory and a commented conf/group.yaml, based on topology version
// expectVersion (0: the current one). It returns the group and the new
// topology version.
func CreateGroup(ctx context.Context, h home.Home, actor topology.Actor, expectVersion int64, name string) (topology.Group, int64, error) {
	var out topology.Group
	var cleanup string
	nt, err := audit.StoreFor(h).Update(ctx, actor, "create group", expectVersion, func(t *topology.Topology) (string, error) {
		g, err := t.AddGroup(name)
		if err != nil {
			return fmt.Sprintf("group %q", name), err
		}
		detail := fmt.Sprintf("group %q (%s)", name, g.ID)
		if _, err := os.Stat(h.GroupDir(g.ID)); errors.Is(err, os.ErrNotExist) {
			cleanup = h.GroupDir(g.ID)
		}
		if err := os.MkdirAll(h.GroupConfDir(g.ID), 0o755); err != nil {
			return detail, fmt.Errorf("creating group directory: %w", err)
		}
		if err := home.WriteFileAtomic(h.GroupConfFile(g.ID), groupTemplate(g.Name, g.ID), 0o644); err != nil {
			return detail, err
		}
		out = *g
		return detail, nil
	})
	if err != nil {
		if cleanup != "" {
			os.RemoveAll(cleanup)
		}
		return topology.Group{}, 0, err
	}
	return out, nt.Version, nil
}

// PortsInUse maps every port configured on this host (each instance's
// effective traffic, management and sample ports, and the node manager's
// port) to a description of who has it.
func PortsInUse(h home.Home) (map[int]string, error) {
	t, err := audit.StoreFor(h).Load()
	if err != nil {
		return nil, err
	}
	hostID, err := LocalHost(h)
	if err != nil {
		return nil, err
	}
	m := map[int]string{}
	for _, u := range portsInUse(h, t, hostID, "") {
		if _, ok := m[u.port]; !ok {
			m[u.port] = u.key
		}
	}
	return m, nil
}

// FreePort returns the lowest port from start up that is not in used and not
// one of avoid (0 when there is none below 65536).
func FreePort(used map[int]string, start int, avoid ...int) int {
	for p := start; p <= 65535; p++ {
		if _, ok := used[p]; ok {
			continue
		}
		if slices.Contains(avoid, p) {
			continue
		}
		return p
	}
	return 0
}
