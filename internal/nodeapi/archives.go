package nodeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
)

// Node-to-node deployment calls (mutual TLS, from the ANM only):
//
//	PUT  /nm/archives/{groupID}/{archiveID}    {"meta": deploy.Meta, "archive": base64 canonical tar.gz}
//	POST /nm/instances/{instanceID}/deploy     deploy.Meta of an installed archive
//	POST /nm/instances/{instanceID}/inservice  {"inService": bool, "leaseSeconds": N}
//	POST /nm/instances/{instanceID}/setarchive deploy.Meta: a stopped instance starts from it
//
// The ANM does the same for its own host directly (its installOn, deployTo
// and inServiceOn pick the way); the Net methods below are its calls to the
// other hosts.

// maxArchiveBody bounds PUT /nm/archives: the largest upload, base64
// encoded, and its metadata.
const maxArchiveBody = deploy.MaxUpload*4/3 + 64<<10

type archiveBody struct {
	Meta    deploy.Meta `json:"meta"`
	Archive []byte      `json:"archive"`
}

// PUT /nm/archives/{groupID}/{archiveID}: install an archive on this host.
func (s *Server) putArchive(w http.ResponseWriter, r *http.Request) {
	var b archiveBody
	apihttp.AllowSlowUpload(w)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxArchiveBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		apihttp.WriteError(w, r, s.log, apihttp.BodyError(err, dec, "an archive"))
		return
	}
	id, err := strconv.Atoi(r.PathValue("archiveID"))
	if err != nil || id != b.Meta.ID || r.PathValue("groupID") != b.Meta.Group {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the path names %s/%s but the archive is %s/%d", r.PathValue("groupID"), r.PathValue("archiveID"), b.Meta.Group, b.Meta.ID)})
		return
	}
	arch, err := deploy.Open(b.Archive)
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: "the archive does not open: " + err.Error(), Err: err})
		return
	}
	if arch.Checksum != b.Meta.Checksum {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the archive's checksum is %s, its metadata says %s", arch.Checksum, b.Meta.Checksum)})
		return
	}
	if err := InstallAndPrune(s.h, s.log, b.Meta, arch); err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("installing archive %d of %s on host %s: %v", b.Meta.ID, b.Meta.Group, s.conf.HostID, err), Err: err})
		return
	}
	s.log.Info("archive installed for the Admin Node Manager", "group", b.Meta.Group, "archive", b.Meta.ID, "checksum", b.Meta.Checksum)
	apihttp.WriteResult(w, http.StatusOK, b.Meta)
}

// InServiceBody is the body of POST /nm/instances/{instanceID}/inservice:
// in or out of the load balancer's pool, out with an optional lease
// (whole seconds, 1 to supervisor.MaxLease) after which the instance goes
// back in by itself unless the lease is renewed.
type InServiceBody struct {
	InService    *bool `json:"inService"`
	LeaseSeconds int64 `json:"leaseSeconds,omitempty"`
}

// InServiceRequest is the body that sets in (or out, with lease).
func InServiceRequest(in bool, lease time.Duration) InServiceBody {
	return InServiceBody{InService: &in, LeaseSeconds: int64((lease + time.Second - 1) / time.Second)}
}

// check returns the lease b asks for, or a 400.
func (b InServiceBody) check() (time.Duration, error) {
	const want = `want {"inService": true|false} or {"inService": false, "leaseSeconds": N}`
	switch {
	case b.InService == nil:
		return 0, &apihttp.Error{Code: http.StatusBadRequest, Msg: want}
	case b.LeaseSeconds != 0 && *b.InService:
		return 0, &apihttp.Error{Code: http.StatusBadRequest, Msg: want + ": leaseSeconds goes with inService false only"}
	case b.LeaseSeconds < 0 || b.LeaseSeconds > int64(supervisor.MaxLease/time.Second):
		return 0, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s: leaseSeconds %d: want 1 to %d", want, b.LeaseSeconds, int64(supervisor.MaxLease/time.Second))}
	}
	return time.Duration(b.LeaseSeconds) * time.Second, nil
}

// POST /nm/instances/{instanceID}/deploy and …/inservice.
func (s *Server) deployAction(w http.ResponseWriter, r *http.Request, id, action string) {
	var st supervisor.InstanceState
	var err error
	switch action {
	case "setarchive":
		var m deploy.Meta
		if err = apihttp.ReadBody(w, r, &m, "archive metadata"); err != nil {
			break
		}
		st, err = s.sup.SetArchive(r.Context(), id, m)
	case "deploy":
		var m deploy.Meta
		if err = apihttp.ReadBody(w, r, &m, "archive metadata"); err != nil {
			break
		}
		s.log.Info("deploying for the Admin Node Manager", "instanceId", id, "group", m.Group, "archive", m.ID)
		st, err = s.sup.Deploy(r.Context(), id, m)
	case "inservice":
		var b InServiceBody
		if err = apihttp.ReadBody(w, r, &b, `{"inService": true|false, "leaseSeconds": N}`); err != nil {
			break
		}
		var lease time.Duration
		if lease, err = b.check(); err != nil {
			break
		}
		st, err = s.sup.SetInService(r.Context(), id, *b.InService, lease)
	}
	if err != nil {
		apihttp.WriteError(w, r, s.log, deployError(err))
		return
	}
	apihttp.WriteResult(w, http.StatusOK, st)
}

// deployError classifies what a deployment step on this host returns: an
// instance's refusal keeps its message (422 for a configuration, 409 for a
// listener), a stopped instance is 409.
func deployError(err error) error {
	if code, _ := apihttp.Classify(err); code != http.StatusInternalServerError {
		return err
	}
	var ir *supervisor.RefusedError
	if errors.As(err, &ir) {
		code := ir.Code
		if code < 400 || code >= 500 {
			code = http.StatusBadGateway
		}
		return &apihttp.Error{Code: code, Msg: err.Error(), Err: err}
	}
	return &apihttp.Error{Code: http.StatusConflict, Msg: err.Error(), Err: err}
}

// InstallArchive installs archive m on peer's host.
func (nn *Net) InstallArchive(ctx context.Context, peer Peer, m deploy.Meta, arch deploy.Archive) error {
	path := "/nm/archives/" + url.PathEscape(m.Group) + "/" + strconv.Itoa(m.ID)
	return nn.Call(ctx, peer, http.MethodPut, path, archiveBody{Meta: m, Archive: arch.Canonical}, nil)
}

// InstanceCall posts body to /nm/instances/{iid}/{action} on peer
// (start, stop, status, deploy, inservice, setarchive) and decodes the
// instance's state into out when not nil.
func (nn *Net) InstanceCall(ctx context.Context, peer Peer, iid, action string, body any, out *supervisor.InstanceState) error {
	var o any
	if out != nil {
		o = out
	}
	return nn.Call(ctx, peer, http.MethodPost, "/nm/instances/"+url.PathEscape(iid)+"/"+action, body, o)
}

// keepInstalled is how many installed archives of a group a host keeps
// beyond those its instances use (deploy.Prune).
const keepInstalled = 10

// InstallAndPrune installs archive m on this host and removes installed
// archives of the group that no instance uses, beyond the newest
// keepInstalled. A failed prune is only logged.
func InstallAndPrune(h home.Home, log *slog.Logger, m deploy.Meta, arch deploy.Archive) error {
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
