package nodeapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// A node manager's port change (managedomain --edit_host --nm_port, through
// PUT /api/topology/hosts/{hostID} on the Admin Node Manager): the ANM asks
// the host's node manager to move (POST /nm/nodemanager/port, ANM's
// certificate), or its own node manager when the host is its own, and
// writes the topology only once the node manager listens on the new port.

// PortSwitch is a node manager's listener moved to Port: it serves on
// both ports until Commit retires OldPort (which lets the requests in
// flight, the one that asked for the switch among them, finish), or Abort
// closes the new listener and writes OldPort back to nodemanager.yaml. One
// of them must be called, once.
type PortSwitch struct {
	Port, OldPort int
	Commit        func()
	Abort         func() error
}

// PortRequest is the body of POST /nm/nodemanager/port.
type PortRequest struct {
	Port int `json:"port"`
}

// PortAnswer is its answer: the node manager listens on Port now; OldPort
// is closed once the answer is sent.
type PortAnswer struct {
	HostID        string `json:"hostID"`
	NodeManagerID string `json:"nodeManagerID"`
	Port          int    `json:"port"`
	OldPort       int    `json:"oldPort"`
}

// POST /nm/nodemanager/port {"port"}: this node manager moves its listener
// to port (checked against this host's instances, bound, nodemanager.yaml
// written) and answers; the old port is closed once the answer is sent.
// Instances keep running.
func (s *Server) putPort(w http.ResponseWriter, r *http.Request) {
	var b PortRequest
	if err := apihttp.ReadBody(w, r, &b, `"port"`); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	if b.Port < 1 || b.Port > 65535 {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("port %d: want 1 to 65535", b.Port)})
		return
	}
	if s.switchPort == nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "this node manager cannot change its port"})
		return
	}
	sw, err := s.switchPort(b.Port)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	s.log.Info("node manager port changed for the Admin Node Manager", "port", sw.Port, "oldPort", sw.OldPort, "by", peerNodeManager(r))
	sw.Commit() // the old listener finishes this request first
	apihttp.WriteResult(w, http.StatusOK, PortAnswer{HostID: s.conf.HostID, NodeManagerID: s.conf.NodeManagerID, Port: sw.Port, OldPort: sw.OldPort})
}

// SetNodeManagerPort asks the node manager peer to move to port (POST
// /nm/nodemanager/port). On success it listens on port only.
func (nn *Net) SetNodeManagerPort(ctx context.Context, peer Peer, port int) (PortAnswer, error) {
	var a PortAnswer
	err := nn.Call(ctx, peer, http.MethodPost, "/nm/nodemanager/port", PortRequest{Port: port}, &a)
	return a, err
}

// followANMPort keeps this joined host's nodemanager.yaml anmPort equal to
// the Admin Node Manager's port in t, the topology just taken from it: the
// tools of this host (managedomain's options 14 to 17, --deploy) find the
// ANM there after its port changed.
func (s *Server) followANMPort(t *topology.Topology) {
	anm, err := t.AdminNodeManager()
	if err != nil || anm.ManagementPort == 0 {
		return
	}
	c, err := domain.LoadNodeManagerConf(s.h)
	if err != nil || c.ANMAddress == "" || c.ANMPort == anm.ManagementPort {
		return
	}
	if err := domain.SetANMPort(s.h, anm.ManagementPort); err != nil {
		s.log.Error("the Admin Node Manager's port changed; writing it to nodemanager.yaml (anmPort) failed", "port", anm.ManagementPort, "err", err)
		return
	}
	s.log.Info("the Admin Node Manager's port changed; nodemanager.yaml's anmPort follows", "anmPort", anm.ManagementPort, "was", c.ANMPort)
}
