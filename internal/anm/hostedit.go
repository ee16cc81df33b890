package anm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// hostEdit is the answer of PUT /api/topology/hosts/{hostID}: the host and
// its node manager as they are now. ManagementAPI is set when the Admin
// Node Manager's own port changed: where its management API is from now on
// (this answer is the last one given on the old port).
type hostEdit struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Tags          map[string]string `json:"tags,omitempty"`
	NodeManager   *hostEditNM       `json:"nodeManager,omitempty"`
	ManagementAPI string            `json:"managementAPI,omitempty"`
	version       int64             // of the topology written
}

type hostEditNM struct {
	ID      string `json:"id"`
	Port    int    `json:"port"`
	Address string `json:"address"` // host:port the other node managers dial
	Metrics bool   `json:"metrics"`
}

// editHost changes host id as b says, in one topology change recorded in
// the audit log by the store ("rename host" for a name alone, else "edit
// host" listing each change). A new node manager port is taken in this
// order, so that a failure leaves nothing half-done:
//
//  1. checks: the port is free of the host's instances (as the topology
//     has them);
//  2. the host's node manager moves (checks the port against its
//     instances' effective ports, binds it — a port in use is refused with
//     the pid holding it —, writes its nodemanager.yaml, serves on it): for
//     another host through POST /nm/nodemanager/port, which needs the host
//     reachable (else 502, nothing changed); for this host directly;
//  3. the topology is written (under its lock, held since 1) and pushed
//     to every host by pushAfterChange.
//
// When writing the topology fails after step 2, the node manager is moved
// back. On this host the old listener is retired only once the answer is
// sent (PortSwitch.Commit); its instances are never touched.
func (a *API) editHost(r *http.Request, id string, b hostBody, expect int64) (hostEdit, error) {
	ctx := r.Context()
	action := "rename host"
	if b.NodeManagerPort != 0 || b.Metrics != nil {
		action = "edit host"
	}
	var (
		out        hostEdit
		local      *nodeapi.PortSwitch // this host's listener moved
		remote     *nodeapi.Peer       // another host's node manager moved: where it is now
		remoteFrom int
	)
	t, err := a.store.Update(ctx, actor(r), action, expect, func(t *topology.Topology) (string, error) {
		h, err := t.Host(id)
		if err != nil {
			return "", err
		}
		var changes []string
		if b.Name != "" {
			if err := t.HostNameFree(b.Name, id); err != nil {
				return "", err
			}
			changes = append(changes, fmt.Sprintf("host %s %q to %q", id, h.Name, b.Name))
			h.Name = b.Name
		}
		nm := hostNodeManager(t, id)
		if nm == nil && (b.NodeManagerPort != 0 || b.Metrics != nil) {
			return "", &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s has no node manager (it was registered without joining): no port or metrics to change", id)}
		}
		if b.Metrics != nil {
			if *b.Metrics {
				if nm.Tags == nil {
					nm.Tags = map[string]string{}
				}
				nm.Tags[topology.TagMetrics] = "true"
				changes = append(changes, fmt.Sprintf("metrics of node manager %s on", nm.ID))
			} else {
				delete(nm.Tags, topology.TagMetrics)
				changes = append(changes, fmt.Sprintf("metrics of node manager %s off", nm.ID))
			}
		}
		if p := b.NodeManagerPort; p != 0 && p != nm.ManagementPort {
			if err := portFreeOfInstances(t, id, p); err != nil {
				return "", err
			}
			from := nm.ManagementPort
			if id == a.conf.HostID {
				if a.switchPort == nil {
					return "", &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "this Admin Node Manager cannot change its port"}
				}
				sw, err := a.switchPort(p)
				if err != nil {
					return "", err
				}
				local = &sw
			} else {
				peer := nodeapi.PeerOf(t, nm)
				if _, err := a.net.SetNodeManagerPort(ctx, peer, p); err != nil {
					return "", nodeapi.AsAPIError(err, fmt.Sprintf("moving node manager %s of host %s to port %d (nothing was changed)", nm.ID, id, p))
				}
				remoteFrom = from
			}
			nm.ManagementPort = p
			if local == nil {
				moved := nodeapi.PeerOf(t, nm)
				remote = &moved
			}
			changes = append(changes, fmt.Sprintf("node manager %s port %d to %d", nm.ID, from, p))
		}
		if len(changes) == 0 {
			return "", &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("nothing to change: host %s already is as asked", id)}
		}
		out = hostEdit{ID: h.ID, Name: h.Name, Tags: h.Tags}
		if nm != nil {
			out.NodeManager = &hostEditNM{ID: nm.ID, Port: nm.ManagementPort, Address: nodeapi.PeerOf(t, nm).Addr, Metrics: nm.Tags[topology.TagMetrics] == "true"}
		}
		if action == "rename host" {
			return changes[0], nil
		}
		return strings.Join(changes, "; "), nil
	})
	if err != nil {
		err = a.undoPortSwitch(ctx, err, local, remote, remoteFrom)
		return hostEdit{}, err
	}
	if local != nil {
		local.Commit()
		out.ManagementAPI = a.managementURL(r, local.Port)
		a.log.Info("the Admin Node Manager's port changed; its management API moved", "port", local.Port, "oldPort", local.OldPort, "url", out.ManagementAPI)
	}
	out.version = t.Version
	return out, nil
}

// undoPortSwitch moves a node manager back after the topology could not
// be written, and says so in the error.
func (a *API) undoPortSwitch(ctx context.Context, err error, local *nodeapi.PortSwitch, remote *nodeapi.Peer, from int) error {
	switch {
	case local != nil:
		if uerr := local.Abort(); uerr != nil {
			return errors.Join(err, fmt.Errorf("putting back port %d in nodemanager.yaml: %w", local.OldPort, uerr))
		}
	case remote != nil:
		if _, uerr := a.net.SetNodeManagerPort(context.WithoutCancel(ctx), *remote, from); uerr != nil {
			a.log.Error("a node manager moved to a new port and the topology could not be written; moving it back failed", "host", remote.HostID, "at", remote.Addr, "err", uerr)
			return errors.Join(err, fmt.Errorf("node manager %s of host %s listens at %s although the topology was not changed; moving it back to port %d failed: %w", remote.NodeManagerID, remote.HostID, remote.Addr, from, uerr))
		}
	}
	return err
}

// hostNodeManager is the node manager service on host id; nil when it has
// none.
func hostNodeManager(t *topology.Topology, id string) *topology.Service {
	for gi := range t.Groups {
		for si := range t.Groups[gi].Services {
			if s := &t.Groups[gi].Services[si]; s.Type == topology.TypeNodeManager && s.HostID == id {
				return s
			}
		}
	}
	return nil
}

// portFreeOfInstances refuses port when an instance of host id has it as
// the topology records (the node manager checks the effective ports too).
func portFreeOfInstances(t *topology.Topology, id string, port int) error {
	for _, g := range t.Groups {
		for _, s := range g.Services {
			if s.HostID != id || s.Type != topology.TypeGateway {
				continue
			}
			if s.TrafficPort == port || s.ManagementPort == port {
				return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("port %d is a port of instance %q (%s) in group %q on host %s; choose another (nothing was changed)", port, s.Name, s.ID, g.Name, id)}
			}
		}
	}
	return nil
}

// managementURL is the management API's base URL on port, as the client of
// r reached it (the host it asked for).
func (a *API) managementURL(r *http.Request, port int) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/api"
}
