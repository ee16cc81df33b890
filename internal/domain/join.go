package domain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// TagAddress is the tag of a node manager service that holds the address
// (IP or DNS name) its host's node manager listens on, as given with
// managedomain -a --nm_address. The Admin Node Manager dials
// TagAddress:managementPort; without the tag it dials the host's name.
const TagAddress = "address"

// CheckListenAddress accepts "" (every interface) or an IP address.
func CheckListenAddress(a string) error {
	if a == "" || net.ParseIP(a) != nil {
		return nil
	}
	return fmt.Errorf("node manager address %q: %w (want an IP address such as 127.0.0.3, or nothing for every interface)", a, topology.ErrInvalid)
}

// JoinOptions are what a host that joins a domain received from the Admin
// Node Manager, and what it knows of itself.
type JoinOptions struct {
	CACertPEM []byte       // the domain CA certificate (its fingerprint was confirmed)
	CertPEM   []byte       // this node manager's certificate, signed by the domain CA
	KeyPEM    secret.Value // its key, generated on this host
	Topology  *topology.Topology
	Conf      NodeManagerConf // hostID, nodeManagerID, address, port, the ANM's address and port
	Actor     topology.Actor
	Exe       string   // copied into posix/bin ("" skips)
	ToolNames []string // links to make in posix/bin
}

// Join makes h a host of an existing domain: the directories (without
// groups/certs/private: this host has no CA key), the domain CA certificate,
// the node manager's key (0600) and certificate under system/conf/certs,
// system/conf/nodemanager.yaml, the binary and its links, and last the
// topology. It refuses, wrapping topology.ErrExists, an install directory
// that has a domain; when it fails part-way the files it wrote are removed.
func Join(ctx context.Context, h home.Home, o JoinOptions) (err error) {
	store := audit.StoreFor(h)
	if store.Exists() {
		return existsErr(h)
	}
	if o.Topology == nil || o.Conf.HostID == "" || o.Conf.NodeManagerID == "" {
		return errors.New("joining the domain: the Admin Node Manager's answer has no topology or ids")
	}
	caCert, err := pki.ParseCertPEM(o.CACertPEM)
	if err != nil {
		return fmt.Errorf("domain CA certificate: %w", err)
	}
	leaf, err := pki.ParseCertPEM(o.CertPEM)
	if err != nil {
		return fmt.Errorf("node manager certificate: %w", err)
	}
	if err := pki.CheckLeaf(leaf, caCert, nil, nil, 0); err != nil {
		return fmt.Errorf("the certificate the Admin Node Manager returned is %w", err)
	}
	for _, d := range home.Skeleton {
		if d.Rel == "groups/certs/private" {
			continue // the CA key stays on the Admin Node Manager's host
		}
		if err := os.MkdirAll(h.Path(filepath.FromSlash(d.Rel)), d.Mode); err != nil {
			return fmt.Errorf("creating %s: %w", d.Rel, err)
		}
	}
	l, err := home.TryLock(filepath.Join(h.RunDir(), "init.lock"))
	if err != nil {
		return fmt.Errorf("joining a domain in %s: another initialisation is running: %w", h.Dir, err)
	}
	defer l.Unlock()
	if store.Exists() {
		return existsErr(h)
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
	track(pki.CertFile(h))
	if err := pki.SaveCACert(h, o.CACertPEM); err != nil {
		return err
	}
	certFile, keyFile := pki.NodeManagerCertFile(h), pki.NodeManagerKeyFile(h)
	track(filepath.Dir(certFile), filepath.Dir(keyFile), keyFile, certFile)
	if err := (&pki.KeyPair{Cert: leaf, CertPEM: o.CertPEM, KeyPEM: o.KeyPEM}).Save(h, certFile, keyFile); err != nil {
		return fmt.Errorf("saving node manager certificate: %w", err)
	}
	track(h.NodeManagerConf())
	if err := writeNodeManagerConf(h, o.Conf); err != nil {
		return err
	}
	if o.Exe != "" {
		track(filepath.Join(h.BinDir(), "gatehouse"))
		for _, n := range o.ToolNames {
			track(filepath.Join(h.BinDir(), n))
		}
		if err := InstallBinary(h, o.Exe, o.ToolNames); err != nil {
			return err
		}
	}
	return store.Replace(ctx, o.Actor, "join domain", o.Topology)
}

// PrepareInstance writes, on this host, the files of gateway instance
// instanceID of group groupID as the Admin Node Manager's topology t (which
// already holds the instance) describes it: groups/<gid>/conf/group.yaml
// (groupConfig, or a template, when this host has none),
// groups/<gid>/<iid>/{conf,logs,trace} and conf/instance.yaml with the
// instance's ports. The ports must not clash with anything else this host
// runs (a *PortClashError). It changes no topology: the ANM writes the
// topology and pushes it. Nothing is left behind on failure.
func PrepareInstance(h home.Home, t *topology.Topology, groupID, instanceID string, groupConfig []byte) (err error) {
	hostID, err := LocalHost(h)
	if err != nil {
		return err
	}
	g, err := t.Group(groupID)
	if err != nil {
		return err
	}
	s, err := g.Service(instanceID)
	if err != nil {
		return err
	}
	if s.Type != topology.TypeGateway || s.HostID != hostID {
		return fmt.Errorf("%s is not a gateway instance of this host (%s): %w", instanceID, hostID, topology.ErrInvalid)
	}
	if err := checkPort("traffic port", s.TrafficPort); err != nil {
		return err
	}
	if err := checkPort("management port", s.ManagementPort); err != nil {
		return err
	}
	var cleanup []string
	defer func() {
		if err != nil {
			for _, d := range cleanup {
				os.RemoveAll(d)
			}
		}
	}()
	if _, serr := os.Stat(h.GroupDir(g.ID)); errors.Is(serr, os.ErrNotExist) {
		cleanup = append(cleanup, h.GroupDir(g.ID))
	}
	if err := os.MkdirAll(h.GroupConfDir(g.ID), 0o755); err != nil {
		return fmt.Errorf("creating group directory: %w", err)
	}
	if _, serr := os.Stat(h.GroupConfFile(g.ID)); errors.Is(serr, os.ErrNotExist) {
		conf := groupConfig
		if conf == nil {
			conf = groupTemplate(g.Name, g.ID)
		}
		if err := home.WriteFileAtomic(h.GroupConfFile(g.ID), conf, 0o644); err != nil {
			return err
		}
	}
	idir := h.InstanceDir(g.ID, s.ID)
	if _, serr := os.Stat(idir); errors.Is(serr, os.ErrNotExist) {
		cleanup = append(cleanup, idir)
	}
	for _, d := range []string{h.Path("groups", g.ID, s.ID, "conf"), h.InstanceLogsDir(g.ID, s.ID), h.InstanceTraceDir(g.ID, s.ID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating instance directory: %w", err)
		}
	}
	keys := map[string]string{"traffic.port": strconv.Itoa(s.TrafficPort), "management.port": strconv.Itoa(s.ManagementPort)}
	if err := groupconf.SetKeys(h.InstanceConfFile(g.ID, s.ID), keys, []string{"traffic.port", "management.port"}, instanceHeader); err != nil {
		return err
	}
	cfg, err := groupconf.LoadInstance(h, g.ID, s.ID, nil, nil)
	if err != nil {
		return err
	}
	return checkPortsFree(h, t, hostID, s.ID, cfg, nil)
}
