package nodemanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Node-to-node deployment calls (mutual TLS, from the ANM only):
//
//	PUT  /nm/archives/{groupID}/{archiveID}    {"meta": deploy.Meta, "archive": base64 canonical tar.gz}
//	POST /nm/instances/{instanceID}/deploy     deploy.Meta of an installed archive
//	POST /nm/instances/{instanceID}/inservice  {"inService": bool}
//	POST /nm/instances/{instanceID}/setarchive deploy.Meta: a stopped instance starts from it
//
// The ANM does the same for its own host directly (installOn, deployTo,
// inServiceOn below pick the way).

// maxArchiveBody bounds PUT /nm/archives: the largest upload, base64
// encoded, and its metadata.
const maxArchiveBody = deploy.MaxUpload*4/3 + 64<<10

type archiveBody struct {
	Meta    deploy.Meta `json:"meta"`
	Archive []byte      `json:"archive"`
}

// PUT /nm/archives/{groupID}/{archiveID}: install an archive on this host.
func (s *server) putArchive(w http.ResponseWriter, r *http.Request) {
	var b archiveBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxArchiveBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		writeError(w, r, s.log, bodyError(err, dec, "an archive"))
		return
	}
	id, err := strconv.Atoi(r.PathValue("archiveID"))
	if err != nil || id != b.Meta.ID || r.PathValue("groupID") != b.Meta.Group {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the path names %s/%s but the archive is %s/%d", r.PathValue("groupID"), r.PathValue("archiveID"), b.Meta.Group, b.Meta.ID)})
		return
	}
	arch, err := deploy.Open(b.Archive)
	if err != nil {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: "the archive does not open: " + err.Error(), Err: err})
		return
	}
	if arch.Checksum != b.Meta.Checksum {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the archive's checksum is %s, its metadata says %s", arch.Checksum, b.Meta.Checksum)})
		return
	}
	if err := installAndPrune(s.n.opts.Home, s.log, b.Meta, arch); err != nil {
		writeError(w, r, s.log, &apiError{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("installing archive %d of %s on host %s: %v", b.Meta.ID, b.Meta.Group, s.n.conf.HostID, err), Err: err})
		return
	}
	s.log.Info("archive installed for the Admin Node Manager", "group", b.Meta.Group, "archive", b.Meta.ID, "checksum", b.Meta.Checksum)
	writeResult(w, http.StatusOK, b.Meta)
}

// POST /nm/instances/{instanceID}/deploy and …/inservice.
func (s *server) deployAction(w http.ResponseWriter, r *http.Request, id, action string) {
	var st InstanceState
	var err error
	switch action {
	case "setarchive":
		var m deploy.Meta
		if err = readBody(w, r, &m, "archive metadata"); err != nil {
			break
		}
		st, err = s.api.sup.SetArchive(r.Context(), id, m)
	case "deploy":
		var m deploy.Meta
		if err = readBody(w, r, &m, "archive metadata"); err != nil {
			break
		}
		s.log.Info("deploying for the Admin Node Manager", "instanceId", id, "group", m.Group, "archive", m.ID)
		st, err = s.api.sup.Deploy(r.Context(), id, m)
	case "inservice":
		var b struct {
			InService *bool `json:"inService"`
		}
		if err = readBody(w, r, &b, `{"inService": true|false}`); err != nil {
			break
		}
		if b.InService == nil {
			err = &apiError{Code: http.StatusBadRequest, Msg: `want {"inService": true|false}`}
			break
		}
		st, err = s.api.sup.SetInService(r.Context(), id, *b.InService)
	}
	if err != nil {
		writeError(w, r, s.log, deployError(err))
		return
	}
	writeResult(w, http.StatusOK, st)
}

// deployError classifies what a deployment step on this host returns: an
// instance's refusal keeps its message (422 for a configuration, 409 for a
// listener), a stopped instance is 409.
func deployError(err error) error {
	if code, _ := classify(err); code != http.StatusInternalServerError {
		return err
	}
	var ir *errInstanceRefused
	if errors.As(err, &ir) {
		code := ir.Code
		if code < 400 || code >= 500 {
			code = http.StatusBadGateway
		}
		return &apiError{Code: code, Msg: err.Error(), Err: err}
	}
	return &apiError{Code: http.StatusConflict, Msg: err.Error(), Err: err}
}

// installOn installs archive m on host hostID.
func (a *api) installOn(ctx context.Context, t *topology.Topology, hostID string, m deploy.Meta, arch deploy.Archive) error {
	if hostID == a.n.conf.HostID {
		return installAndPrune(a.h, a.log, m, arch)
	}
	peer, err := peerOfHost(t, hostID)
	if err != nil {
		return err
	}
	path := "/nm/archives/" + url.PathEscape(m.Group) + "/" + strconv.Itoa(m.ID)
	return a.n.net.call(ctx, peer, http.MethodPut, path, archiveBody{Meta: m, Archive: arch.Canonical}, nil)
}

// deployTo makes instance s run archive m (installed on its host).
func (a *api) deployTo(ctx context.Context, t *topology.Topology, s *topology.Service, m deploy.Meta) error {
	if s.HostID == a.n.conf.HostID {
		_, err := a.sup.Deploy(ctx, s.ID, m)
		return err
	}
	peer, err := peerOfHost(t, s.HostID)
	if err != nil {
		return err
	}
	return a.n.net.call(ctx, peer, http.MethodPost, "/nm/instances/"+url.PathEscape(s.ID)+"/deploy", m, nil)
}

// inServiceOn puts instance s in or out of its load balancer's pool.
func (a *api) inServiceOn(ctx context.Context, t *topology.Topology, s *topology.Service, in bool) error {
	if s.HostID == a.n.conf.HostID {
		_, err := a.sup.SetInService(ctx, s.ID, in)
		return err
	}
	peer, err := peerOfHost(t, s.HostID)
	if err != nil {
		return err
	}
	return a.n.net.call(ctx, peer, http.MethodPost, "/nm/instances/"+url.PathEscape(s.ID)+"/inservice", map[string]bool{"inService": in}, nil)
}

// keepInstalled is how many installed archives of a group a host keeps
// beyond those its instances use (deploy.Prune).
const keepInstalled = 10

// installAndPrune installs archive m on this host and removes installed
// archives of the group that no instance uses, beyond the newest
// keepInstalled. A failed prune is only logged.
func installAndPrune(h home.Home, log *slog.Logger, m deploy.Meta, arch deploy.Archive) error {
	if err := deploy.Install(h, m, arch); err != nil {
		return err
	}
	removed, err := deploy.Prune(h, m.Group, keepInstalled)
	if err != nil {
		log.Warn("pruning installed archives", "group", m.Group, "error", err.Error())
	} else if len(removed) > 0 {
		log.Info("pruned installed archives", "group", m.Group, "removed", removed)
	}
	return nil
}

// adoptGroupArchive makes a new instance of group gid start from the
// archive the group's other instances are on, when they are consistent on
// one (a new instance must not serve the group's original group.yaml). It
// is best effort: a failure is logged, and the group shows inconsistent.
func (a *api) adoptGroupArchive(ctx context.Context, gid, iid string) {
	if !a.groupHasArchives(gid) {
		return
	}
	t, err := a.n.store.Load()
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
		if s.HostID == a.n.conf.HostID {
			_, err = a.sup.SetArchive(ctx, iid, m)
		} else {
			var peer nmPeer
			if peer, err = peerOfHost(t, s.HostID); err == nil {
				err = a.n.net.call(ctx, peer, http.MethodPost, "/nm/instances/"+url.PathEscape(iid)+"/setarchive", m, nil)
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
func (a *api) groupHasArchives(gid string) bool {
	ms, err := a.archives.List(gid)
	return err == nil && len(ms) > 0
}
