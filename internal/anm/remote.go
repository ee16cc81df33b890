package anm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The Admin Node Manager's management API for instances of other hosts:
// each call goes to the node manager of the instance's host (/nm paths,
// mutual TLS with this node manager's certificate). When that node manager
// cannot be reached the answer is 502 naming the host, and the instance's
// state is "unknown".

// manageRemote starts, stops or reports on s through its host's node
// manager.
func (a *API) manageRemote(ctx context.Context, t *topology.Topology, s *topology.Service, action, doing string) (supervisor.InstanceState, error) {
	doingWhat := fmt.Sprintf("instance %s (%q) on host %s could not be %s", s.ID, s.Name, nodeapi.HostLabel(t, s.HostID), doing)
	peer, err := nodeapi.PeerOfHost(t, s.HostID)
	if err != nil {
		return supervisor.InstanceState{}, &apihttp.Error{Code: http.StatusBadGateway, Msg: doingWhat + ": " + err.Error(), Err: err}
	}
	a.log.Info("asking the node manager of the instance's host", "action", action, "instanceId", s.ID, "host", s.HostID, "nodeManager", peer.NodeManagerID, "user", apihttp.UserOf(ctx))
	var st supervisor.InstanceState
	if err := a.net.InstanceCall(ctx, peer, s.ID, action, nil, &st); err != nil {
		return supervisor.InstanceState{}, nodeapi.AsAPIError(err, doingWhat)
	}
	return st, nil
}

// remoteStatuses asks the node manager of every other host for its
// instances' states, concurrently and briefly (nodeapi.StatusTimeout): the map
// holds a status per service id of those hosts, "unknown" for the
// instances of a node manager that did not answer, and for each node
// manager "running" or "unreachable".
func (a *API) remoteStatuses(ctx context.Context, t *topology.Topology) map[string]string {
	out, _ := a.remoteStates(ctx, t)
	return out
}

// remoteStates is remoteStatuses and, by service id, the full states of
// the instances of the node managers that answered.
func (a *API) remoteStates(ctx context.Context, t *topology.Topology) (map[string]string, map[string]supervisor.InstanceState) {
	out, states := map[string]string{}, map[string]supervisor.InstanceState{}
	ps := nodeapi.Peers(t, a.conf.HostID)
	if len(ps) == 0 {
		return out, states
	}
	ctx, cancel := context.WithTimeout(ctx, nodeapi.StatusTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st nodeapi.Status
			err := a.net.Call(ctx, p, http.MethodGet, "/nm/status", nil, &st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out[p.NodeManagerID] = "unreachable"
				return
			}
			out[p.NodeManagerID] = "running"
			for _, is := range st.Instances {
				if is.Status != "" {
					out[is.ID] = is.Status
				}
				states[is.ID] = is
			}
		}()
	}
	wg.Wait()
	return out, states
}

// createRemote creates gateway instance b on host b.HostID: in one
// topology change, the instance is added, its host's node manager writes
// its files (POST /nm/instances, with this group's configuration), and only
// then is the topology written (and pushed by the API's middleware). When
// the node manager refuses or cannot be reached nothing is written.
func (a *API) createRemote(w http.ResponseWriter, r *http.Request, expect int64, groupID string, b serviceBody) {
	tp, mp := b.TrafficPort, b.ManagementPort
	if tp == 0 {
		tp = domain.DefaultTrafficPort
	}
	if mp == 0 {
		mp = domain.DefaultManagementPort
	}
	var created topology.Service
	t, err := a.store.Update(r.Context(), actor(r), "create instance", expect, func(t *topology.Topology) (string, error) {
		g, err := t.Group(groupID)
		if err != nil {
			return "", err
		}
		if g.IsNodeManagerGroup() {
			return "", fmt.Errorf("the %q holds node managers, not gateway instances: %w", g.Name, topology.ErrInvalid)
		}
		if _, err := g.InstanceByName(b.Name); err == nil {
			return "", fmt.Errorf("instance %q in group %q %w", b.Name, g.Name, topology.ErrExists)
		}
		peer, err := nodeapi.PeerOfHost(t, b.HostID)
		if errors.Is(err, topology.ErrNotFound) {
			if _, herr := t.Host(b.HostID); herr == nil {
				err = &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s has no node manager to create the instance; register the host with managedomain -a on it (docs/adding-a-host.md)", nodeapi.HostLabel(t, b.HostID)), Err: err}
			}
		}
		if err != nil {
			return "", err
		}
		s, err := t.AddService(g.ID, topology.Service{Name: b.Name, Type: topology.TypeGateway, HostID: b.HostID,
			ManagementPort: mp, TrafficPort: tp, Scheme: "http", Enabled: true})
		if err != nil {
			return "", err
		}
		created = *s
		detail := fmt.Sprintf("instance %q (%s) in group %q (%s) on host %s", b.Name, s.ID, g.Name, g.ID, b.HostID)
		body := nodeapi.PrepareRequest{Topology: t, GroupID: g.ID, InstanceID: s.ID}
		if conf, err := os.ReadFile(a.h.GroupConfFile(g.ID)); err == nil {
			c := string(conf)
			body.GroupConfig = &c
		}
		doing := fmt.Sprintf("instance %q could not be created on host %s", b.Name, nodeapi.HostLabel(t, b.HostID))
		var ans nodeapi.PrepareAnswer
		if err := a.net.Call(r.Context(), peer, http.MethodPost, "/nm/instances", body, &ans); err != nil {
			return detail, nodeapi.AsAPIError(err, doing)
		}
		if err := a.net.SignInstance(r.Context(), peer, g.ID, s.ID, ans.CSR); err != nil {
			return detail, nodeapi.AsAPIError(err, doing)
		}
		return detail, nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.groupHasArchives(groupID) {
		// The host must know the instance before it is set to an archive.
		pctx, cancel := context.WithTimeout(r.Context(), nodeapi.HeaderTimeout)
		a.net.Push.PushAll(pctx, false)
		cancel()
		a.adoptGroupArchive(r.Context(), groupID, created.ID)
	}
	w.Header().Set("Location", "/api/topology/services/"+groupID+"/"+created.ID)
	apihttp.WriteChange(w, http.StatusCreated, serviceView{Service: created, Status: "stopped"}, t.Version)
}

// pushAfterChange runs next and, when it answered a change with success
// (a method other than GET or HEAD, status 2xx), pushes the topology to
// every node manager before the answer leaves: a client that reads the
// answer knows every reachable host holds the new version. The answer is
// buffered (changes answer small bodies); unreachable hosts are retried by
// the pusher's loop and do not fail the change.
func (a *API) pushAfterChange(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || isRouterPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		bw := &bufferedWriter{h: http.Header{}, code: http.StatusOK}
		next.ServeHTTP(bw, r)
		if bw.code >= 200 && bw.code < 300 && !isManagementPath(r.URL.Path) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), nodeapi.HeaderTimeout)
			rep := a.net.Push.PushAll(ctx, false)
			cancel()
			for _, h := range rep.Hosts {
				if h.Error != "" {
					a.log.Warn("host not in step after a change; the push is retried", "host", h.HostID, "version", rep.Version, "err", h.Error)
				}
			}
		}
		for k, v := range bw.h {
			w.Header()[k] = v
		}
		w.WriteHeader(bw.code)
		w.Write(bw.buf.Bytes())
	})
}

func isRouterPath(p string) bool     { return len(p) >= 12 && p[:12] == "/api/router/" }
func isManagementPath(p string) bool { return len(p) >= 16 && p[:16] == "/api/management/" }

type bufferedWriter struct {
	h     http.Header
	code  int
	buf   bytes.Buffer
	wrote bool
}

func (b *bufferedWriter) Header() http.Header { return b.h }
func (b *bufferedWriter) WriteHeader(code int) {
	if !b.wrote {
		b.code, b.wrote = code, true
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.wrote = true
	return b.buf.Write(p)
}
