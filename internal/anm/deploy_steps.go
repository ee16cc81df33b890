package anm

import (
	"context"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The ANM's side of a deployment step on one host: on its own host
// directly (the supervisor, deploy.Install), on the others through their
// node manager (nodeapi.Net).

// installOn installs archive m on host hostID.
func (a *API) installOn(ctx context.Context, t *topology.Topology, hostID string, m deploy.Meta, arch deploy.Archive) error {
	if hostID == a.conf.HostID {
		return nodeapi.InstallAndPrune(a.h, a.log, m, arch)
	}
	peer, err := nodeapi.PeerOfHost(t, hostID)
	if err != nil {
		return err
	}
	return a.net.InstallArchive(ctx, peer, m, arch)
}

// deployTo makes instance s run archive m (installed on its host).
func (a *API) deployTo(ctx context.Context, t *topology.Topology, s *topology.Service, m deploy.Meta) error {
	if s.HostID == a.conf.HostID {
		_, err := a.sup.Deploy(ctx, s.ID, m)
		return err
	}
	peer, err := nodeapi.PeerOfHost(t, s.HostID)
	if err != nil {
		return err
	}
	return a.net.InstanceCall(ctx, peer, s.ID, "deploy", m, nil)
}

// inServiceOn puts instance s in or out of its load balancer's pool.
func (a *API) inServiceOn(ctx context.Context, t *topology.Topology, s *topology.Service, in bool, lease time.Duration) error {
	if s.HostID == a.conf.HostID {
		_, err := a.sup.SetInService(ctx, s.ID, in, lease)
		return err
	}
	peer, err := nodeapi.PeerOfHost(t, s.HostID)
	if err != nil {
		return err
	}
	return a.net.InstanceCall(ctx, peer, s.ID, "inservice", nodeapi.InServiceRequest(in, lease), nil)
}

// adoptGroupArchive makes a new instance of group gid start from the
// archive the group's other instances are on, when they are consistent on
// one (a new instance must not serve the group's original group.yaml). It
// is best effort: a failure is logged, and the group shows inconsistent.
func (a *API) adoptGroupArchive(ctx context.Context, gid, iid string) {
	if !a.groupHasArchives(gid) {
		return
	}
	t, err := a.store.Load()
	if err != nil {
		return
	}
	g, err := t.Group(gid)
	if err != nil {
		return
	}
	s, err := g.Service(iid)
	if err != nil {
		return
	}
	others := *g
	others.Services = nil
	for _, o := range g.Services {
		if o.ID != iid {
			others.Services = append(others.Services, o)
		}
	}
	_, states := a.allStates(ctx, t)
	d := a.groupDeployment(&others, states)
	if !d.Consistent || d.Archive == 0 {
		if !d.Consistent {
			a.log.Warn("new instance starts from the group's group.yaml: the group's instances are not on one archive", "group", gid, "instance", iid, "reasons", d.Reasons)
		}
		return
	}
	m, arch, err := a.archives.Get(gid, d.Archive)
	if err == nil {
		err = a.installOn(ctx, t, s.HostID, m, arch)
	}
	if err == nil {
		if s.HostID == a.conf.HostID {
			_, err = a.sup.SetArchive(ctx, iid, m)
		} else {
			var peer nodeapi.Peer
			if peer, err = nodeapi.PeerOfHost(t, s.HostID); err == nil {
				err = a.net.InstanceCall(ctx, peer, iid, "setarchive", m, nil)
			}
		}
	}
	if err != nil {
		a.log.Warn("new instance could not be set to the group's archive", "group", gid, "instance", iid, "archive", d.Archive, "error", err.Error())
		return
	}
	a.log.Info("new instance starts from the group's archive", "group", gid, "instance", iid, "archive", d.Archive)
}

// groupHasArchives tells whether archives were ever stored for group gid.
func (a *API) groupHasArchives(gid string) bool {
	ms, err := a.archives.List(gid)
	return err == nil && len(ms) > 0
}
