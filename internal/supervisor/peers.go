package supervisor

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/cluster"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The cluster bus's peers (docs/cluster.md): the supervisor tells each
// running instance of this host where its group's other instances' route
// listeners are, with PUT /cluster/peers on its management listener, when
// it starts running (or is adopted) and whenever the topology changes that
// list; an instance alone in its group is told an empty list (no bus).

// clusterPeers are the route listeners of the other instances of ref's
// group, in topology order. An instance of this host is reached on
// 127.0.0.1 (or its cluster.address) at the route port its settings give;
// one of another host at that host's address (its node manager's address
// tag, or the host's name) and groupconf.DefaultRoutePort of its management
// port, since its settings are not readable here.
func (s *Supervisor) clusterPeers(t *topology.Topology, ref topology.InstanceRef) []cluster.Peer {
	peers := []cluster.Peer{}
	for i := range ref.Group.Services {
		svc := &ref.Group.Services[i]
		if svc.Type != topology.TypeGateway || svc.ID == ref.Service.ID {
			continue
		}
		addr, port := hostAddress(t, svc.HostID), groupconf.DefaultRoutePort(svc.ManagementPort)
		if svc.HostID == s.hostID {
			addr = "127.0.0.1"
			if cfg, err := groupconf.LoadInstance(s.h, ref.Group.ID, svc.ID, nil, nil); err == nil {
				port = cfg.RoutePort()
				if a := cfg.Cluster.Address; a != "" && a != "0.0.0.0" && a != "::" {
					addr = a
				}
			}
		}
		peers = append(peers, cluster.Peer{ID: svc.ID, URL: net.JoinHostPort(addr, strconv.Itoa(port))})
	}
	return peers
}

// hostAddress is where hostID's services are reached: its node manager's
// address tag, or else the host's name.
func hostAddress(t *topology.Topology, hostID string) string {
	for _, g := range t.Groups {
		for _, svc := range g.Services {
			if svc.Type == topology.TypeNodeManager && svc.HostID == hostID && svc.Tags[domain.TagAddress] != "" {
				return svc.Tags[domain.TagAddress]
			}
		}
	}
	if h, err := t.Host(hostID); err == nil {
		return h.Name
	}
	return hostID
}

// pushPeers tells si's running process its peers when they differ from what
// that process was last told. A refusal is logged once per list; the next
// poll tries again after a failure to reach it.
func (s *Supervisor) pushPeers(si *supervised, t *topology.Topology) {
	if t == nil {
		return
	}
	s.mu.Lock()
	rec, addr, ref := si.rec, si.mgmtAddr, si.ref
	sent, sentTo := si.peersSent, si.peersRec
	s.mu.Unlock()
	if rec == nil || ref.Group == nil {
		return
	}
	peers := s.clusterPeers(t, ref)
	key := peersKey(peers)
	if sentTo == rec && sent == key {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout*4)
	defer cancel()
	err := s.mgmt.call(ctx, http.MethodPut, addr, "/cluster/peers", struct {
		Peers []cluster.Peer `json:"peers"`
	}{peers}, nil)
	if err != nil {
		if _, refused := err.(*RefusedError); !refused {
			s.log.Debug("telling the instance its cluster peers", append(s.attrs(si), "error", err.Error())...)
			return // not reached: the next poll tries again
		}
		s.log.Warn("the instance refused its cluster peers", append(s.attrs(si), "error", err.Error())...)
	} else {
		ids := make([]string, len(peers))
		for i, p := range peers {
			ids[i] = p.ID + "@" + p.URL
		}
		s.log.Info("cluster peers sent to the instance", append(s.attrs(si), "peers", ids)...)
	}
	s.mu.Lock()
	if si.rec == rec {
		si.peersSent, si.peersRec = key, rec
	}
	s.mu.Unlock()
}

func peersKey(peers []cluster.Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "@" + p.URL
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
