// Package domain holds the operations that change a domain: creating it
// (Init), creating, re-porting and deleting gateway instances, renaming and
// deleting groups, and installing the binary into posix/bin. managedomain,
// quickstart and (later) the management API all call these, so every rule
// lives here once: names are validated, ports never clash within an install
// directory, a running instance is never deleted, and nothing is left
// half-written when an operation fails.
//
// Every topology change goes through topology.Store.Update with the caller's
// Actor. Files that belong to a change (directories, instance.yaml) are
// written under the topology lock before the topology itself, and removed or
// restored again when the change fails, so the topology never names an
// instance whose files are missing.
package domain

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
	"go.yaml.in/yaml/v4"
)

// Default ports.
const (
	DefaultNodeManagerPort = 8090
	DefaultTrafficPort     = 8080
	DefaultManagementPort  = 8085
	DefaultSamplePort      = 8081
)

// ErrPortInUse is wrapped by PortClashError.
var ErrPortInUse = errors.New("port already in use")

// InitOptions are the parameters of Init.
type InitOptions struct {
	DomainName string       // required
	HostName   string       // this host's name in the topology; default os.Hostname()
	Username   string       // first admin user, required
	Password   secret.Value // required, at least 8 characters
	Port       int          // this host's (Admin) Node Manager management port; 0 → 8090
	Address    string       // the IP the node manager listens on; "" every interface
	Actor      topology.Actor
	Exe        string   // path of the running gatehouse binary, copied into posix/bin ("" skips)
	ToolNames  []string // links to make in posix/bin pointing at gatehouse
	// CA, when set, is the domain CA the operator provides (managedomain
	// -i --domain_cert --domain_key, checked by pki.CheckOperatorCA);
	// otherwise a new one is made.
	CA *pki.CA
}

// NodeManagerConf is system/conf/nodemanager.yaml: who this host is.
type NodeManagerConf struct {
	HostID        string `yaml:"hostID"`
	NodeManagerID string `yaml:"nodeManagerID"`
	Port          int    `yaml:"port"`
	// Address is the IP the node manager listens on; empty: every
	// interface.
	Address string `yaml:"address,omitempty"`
	// ANMAddress and ANMPort are where this host reaches the Admin Node
	// Manager (written by managedomain -a on a host that joined a domain;
	// empty on the ANM's host, which is its own).
	ANMAddress string `yaml:"anmAddress,omitempty"`
	ANMPort    int    `yaml:"anmPort,omitempty"`
	// Sessions are the management API's session lifetimes on the Admin
	// Node Manager (docs/sessions.md); absent: the defaults. Set by hand.
	Sessions SessionsConf `yaml:"sessions,omitempty"`
	// Rollout holds the Admin Node Manager's rollout settings
	// (docs/deployment.md). Set by hand.
	Rollout RolloutConf `yaml:"rollout,omitempty"`
	// AllowedConfigDirs are directories, besides each group's own
	// directory, under which a group configuration of this host may name
	// files (TLS keys and certificates, CA bundles): absolute, or relative
	// to the install directory (groupconf.FilePolicy). Set by hand, the
	// same on every host (the Admin Node Manager checks uploads with its
	// own).
	AllowedConfigDirs []string `yaml:"allowedConfigDirs,omitempty"`
	// Audit is the audit log's rotation (docs/audit.md): audit.maxFileBytes,
	// read by every appender of this install directory. Set by hand.
	Audit audit.Conf `yaml:"audit,omitempty"`
	// PassphraseExec is a program and its arguments (no shell) whose
	// standard output is a passphrase (docs/passphrase.md): the node manager
	// runs it with the scope appended ("nodemanager", "ca", or "group" and
	// the group's id) to unlock its own secrets, the CA's and those of the
	// groups whose instances it starts. Set by hand; an absolute path,
	// writable by its owner only.
	PassphraseExec []string `yaml:"passphraseExec,omitempty"`
	// Backup is the host's scheduled backups (docs/backup.md#scheduled-backups):
	// a schedule, a directory, a retention count. Set by hand.
	Backup schedule.Conf `yaml:"backup,omitempty"`
}

// FilePolicy is where a configuration of group groupID may name files on
// this host.
func (c NodeManagerConf) FilePolicy(h home.Home, groupID string) groupconf.FilePolicy {
	return groupconf.FilePolicy{Home: h, GroupID: groupID, Allowed: c.AllowedConfigDirs}
}

// RolloutConf is the rollout section of nodemanager.yaml.
type RolloutConf struct {
	// LeaseSeconds is how long an instance a rollout took out of service
	// stays out when the Admin Node Manager stops renewing the lease (it
	// died): 0 is 30 s; 3 to 3600.
	LeaseSeconds int `yaml:"leaseSeconds,omitempty"`
}

// Lease is the out-of-service lease the settings ask for (0: the
// default), or an error naming the bounds.
func (c RolloutConf) Lease() (time.Duration, error) {
	switch {
	case c.LeaseSeconds == 0:
		return 0, nil
	case c.LeaseSeconds < 3 || c.LeaseSeconds > 3600:
		return 0, fmt.Errorf("rollout.leaseSeconds %d: want 3 to 3600 (the default is 30)", c.LeaseSeconds)
	}
	return time.Duration(c.LeaseSeconds) * time.Second, nil
}

// SessionsConf is the sessions section of nodemanager.yaml: durations such
// as 30m or 8h; zero is the default (rbac.SessionLifetimes checks the
// bounds when the Admin Node Manager starts).
type SessionsConf struct {
	IdleTimeout     time.Duration `yaml:"idleTimeout,omitempty"`
	AbsoluteTimeout time.Duration `yaml:"absoluteTimeout,omitempty"`
}

// Init creates the domain in h: the skeleton directories, the domain CA, the
// first admin user, the session key (conf/sessionKey), system/conf/nodemanager.yaml, the binary and its links,
// and last the topology (host-1; group-1 "Node Manager Group" holding
// nodemanager-1, the Admin Node Manager, scheme https, on port o.Port).
//
// A second Init on the same directory fails with an error wrapping
// topology.ErrExists and changes nothing. When Init fails part-way, the files
// it created are removed again and no topology is written, so no domain is
// left behind.
func Init(ctx context.Context, h home.Home, o InitOptions) (_ *topology.Topology, err error) {
	if err := validateInit(&o); err != nil {
		return nil, err
	}
	store := audit.StoreFor(h)
	if store.Exists() {
		return nil, existsErr(h)
	}
	if err := h.EnsureSkeleton(); err != nil {
		return nil, err
	}
	// Serialise concurrent Inits; the topology lock is taken later by Create.
	l, err := home.TryLock(filepath.Join(h.RunDir(), "init.lock"))
	if err != nil {
		return nil, fmt.Errorf("creating domain in %s: another initialisation is running: %w", h.Dir, err)
	}
	defer l.Unlock()
	if store.Exists() {
		return nil, existsErr(h)
	}

	var created []string
	track := func(paths ...string) {
		for _, p := range paths {
			if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
				created = append(created, p)
			}
		}
	}
	defer func() {
		if err != nil {
			for i := len(created) - 1; i >= 0; i-- {
				os.Remove(created[i])
			}
		}
	}()

	ca := o.CA
	if ca == nil {
		if ca, err = pki.NewCA(o.DomainName); err != nil {
			return nil, err
		}
	}
	track(pki.KeyFile(h), pki.CertFile(h))
	if err := ca.Save(h); err != nil {
		return nil, err
	}
	track(h.AdminUsersFile())
	if err := rbac.InitAdmins(h, o.Username, o.Password); err != nil {
		return nil, fmt.Errorf("creating admin user: %w", err)
	}
	track(rbac.ACLFile(h))
	if err := rbac.WriteDefaultACL(h); err != nil {
		return nil, fmt.Errorf("writing the access control list: %w", err)
	}
	track(rbac.SessionKeyFile(h))
	if err := rbac.CreateSessionKey(h); err != nil {
		return nil, fmt.Errorf("creating the domain session key: %w", err)
	}

	t := &topology.Topology{ID: newUUID(), DomainName: o.DomainName, Counters: map[string]int{}, Hosts: []topology.Host{}, Groups: []topology.Group{}}
	hostID := t.NextID(topology.KindHost)
	t.Hosts = append(t.Hosts, topology.Host{ID: hostID, Name: o.HostName})
	g, err := t.AddGroup(topology.NodeManagerGroupName)
	if err != nil {
		return nil, err
	}
	nm, err := t.AddService(g.ID, topology.Service{
		Name: "Node Manager on " + o.HostName, Type: topology.TypeNodeManager, HostID: hostID,
		ManagementPort: o.Port, Scheme: "https", Enabled: true,
		Tags: map[string]string{topology.TagAdminNM: "true"},
	})
	if err != nil {
		return nil, err
	}
	nmc := NodeManagerConf{HostID: hostID, NodeManagerID: nm.ID, Port: o.Port, Address: o.Address}
	track(h.NodeManagerConf())
	if err := writeNodeManagerConf(h, nmc); err != nil {
		return nil, err
	}
	if o.Exe != "" {
		track(filepath.Join(h.BinDir(), "gatehouse"))
		for _, n := range o.ToolNames {
			track(filepath.Join(h.BinDir(), n))
		}
		if err := InstallBinary(h, o.Exe, o.ToolNames); err != nil {
			return nil, err
		}
	}
	if err := store.Create(ctx, o.Actor, t); err != nil {
		return nil, err
	}
	return t, nil
}

func existsErr(h home.Home) error {
	return fmt.Errorf("a domain %w in %s (groups/topology.json); use another install directory (%s) or remove this one first", topology.ErrExists, h.Dir, home.EnvHome)
}

func validateInit(o *InitOptions) error {
	if err := topology.ValidateName("domain", o.DomainName); err != nil {
		return err
	}
	if o.HostName == "" {
		hn, err := os.Hostname()
		if err != nil || hn == "" {
			hn = "localhost"
		}
		o.HostName = hn
	}
	if err := topology.ValidateName("host", o.HostName); err != nil {
		return err
	}
	if o.Username == "" {
		return errors.New("the first admin user needs a name (--username)")
	}
	if err := rbac.ValidateUserName(o.Username); err != nil {
		return err
	}
	if o.Password.IsZero() {
		return errors.New("the first admin user needs a password")
	}
	if err := rbac.CheckPassword(o.Password); err != nil {
		return err
	}
	if o.Port == 0 {
		o.Port = DefaultNodeManagerPort
	}
	if err := checkPort("node manager port", o.Port); err != nil {
		return err
	}
	if err := CheckListenAddress(o.Address); err != nil {
		return err
	}
	for _, n := range o.ToolNames {
		if err := checkLinkName(n); err != nil {
			return err
		}
	}
	return nil
}

func checkPort(what string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%s %d: %w (want 1 to 65535)", what, p, topology.ErrInvalid)
	}
	return nil
}

func writeNodeManagerConf(h home.Home, c NodeManagerConf) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding node manager settings: %w", err)
	}
	data = append([]byte("# This host's node manager: its topology ids and management port.\n# Written by managedomain -i; read by every tool to know which host it runs on.\n"), data...)
	if err := os.MkdirAll(h.SystemConfDir(), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", h.SystemConfDir(), err)
	}
	return home.WriteFileAtomic(h.NodeManagerConf(), data, 0o644)
}

// LoadNodeManagerConf reads system/conf/nodemanager.yaml.
func LoadNodeManagerConf(h home.Home) (NodeManagerConf, error) {
	var c NodeManagerConf
	data, err := os.ReadFile(h.NodeManagerConf())
	if errors.Is(err, os.ErrNotExist) {
		if derr := h.CheckDomain(); derr != nil {
			return c, derr
		}
		return c, fmt.Errorf("this host has no node manager settings: %s is missing", h.NodeManagerConf())
	}
	if err != nil {
		return c, fmt.Errorf("reading node manager settings: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("parsing %s: %w", h.NodeManagerConf(), err)
	}
	if c.HostID == "" {
		return c, fmt.Errorf("parsing %s: no hostID", h.NodeManagerConf())
	}
	if err := checkPassphraseExec(c.PassphraseExec); err != nil {
		return c, fmt.Errorf("%s: passphraseExec: %w", h.NodeManagerConf(), err)
	}
	if _, err := c.Backup.Parse(h); err != nil {
		return c, fmt.Errorf("%s: %w", h.NodeManagerConf(), err)
	}
	return c, nil
}

// checkPassphraseExec refuses a passphraseExec that anyone but its owner
// could replace: the node manager runs it and trusts what it prints.
func checkPassphraseExec(argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	if !filepath.IsAbs(argv[0]) {
		return fmt.Errorf("%q is not an absolute path", argv[0])
	}
	fi, err := os.Stat(argv[0])
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", argv[0])
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by others than its owner (mode %v)", argv[0], fi.Mode().Perm())
	}
	return nil
}

// LocalHost returns the topology id of this host, from
// system/conf/nodemanager.yaml.
func LocalHost(h home.Home) (hostID string, err error) {
	c, err := LoadNodeManagerConf(h)
	if err != nil {
		return "", err
	}
	return c.HostID, nil
}

func checkLinkName(n string) error {
	if n == "" || n == "." || n == ".." || n == "gatehouse" || strings.ContainsAny(n, "/\x00") {
		return fmt.Errorf("tool link name %q: %w (want a plain file name other than gatehouse)", n, topology.ErrInvalid)
	}
	return nil
}

// InstallBinary copies exe to posix/bin/gatehouse (mode 0755, atomically;
// nothing is copied when exe already is that file) and makes each of names a
// relative symbolic link posix/bin/<name> -> gatehouse, replacing what is
// there atomically.
func InstallBinary(h home.Home, exe string, names []string) error {
	for _, n := range names {
		if err := checkLinkName(n); err != nil {
			return err
		}
	}
	bin := h.BinDir()
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", bin, err)
	}
	dest := filepath.Join(bin, "gatehouse")
	src, err := os.Stat(exe)
	if err != nil {
		return fmt.Errorf("installing binary: %w", err)
	}
	if dst, err := os.Stat(dest); err != nil || !os.SameFile(src, dst) {
		data, err := os.ReadFile(exe)
		if err != nil {
			return fmt.Errorf("installing binary: %w", err)
		}
		if err := home.WriteFileAtomic(dest, data, 0o755); err != nil {
			return fmt.Errorf("installing binary: %w", err)
		}
	}
	for _, n := range names {
		link := filepath.Join(bin, n)
		if target, err := os.Readlink(link); err == nil && target == "gatehouse" {
			continue
		}
		tmp := filepath.Join(bin, "."+n+".tmp-"+randHex(6))
		if err := os.Symlink("gatehouse", tmp); err != nil {
			return fmt.Errorf("linking %s: %w", link, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("linking %s: %w", link, err)
		}
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	io.ReadFull(rand.Reader, b)
	return fmt.Sprintf("%x", b)
}

func newUUID() string {
	b := make([]byte, 16)
	io.ReadFull(rand.Reader, b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// SaveNodeManagerConf writes system/conf/nodemanager.yaml atomically (a
// restore that maps the host's ports or addresses).
func SaveNodeManagerConf(h home.Home, c NodeManagerConf) error { return writeNodeManagerConf(h, c) }
