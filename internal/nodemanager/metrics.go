package nodemanager

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// GET /metrics on the node manager's port: Prometheus metrics of the node
// manager and of its host's instances (metrics.NodeManager), when the
// topology turns them on for this node manager (topology.TagMetrics, set
// by managedomain --edit_host --metrics on; read at each request, so a
// pushed topology switches them). Who may read them:
//
//   - a client certificate signed by the domain CA (a node manager's, an
//     instance's, or a scraper's signed with managedomain --sign_csr);
//   - on the Admin Node Manager, an admin user (HTTP Basic or a session)
//     whose roles hold metrics.read, as the management API authorizes its
//     reads.
//
// Others get 403 (401 without credentials on the ANM); authorized callers
// get 404 while metrics are off.
func (n *NodeManager) metricsHandler() http.Handler {
	o := metrics.NodeManagerOptions{HostID: n.conf.HostID, NodeManagerID: n.conf.NodeManagerID, Admin: n.admin,
		Instances: n.instanceMetrics}
	if b := n.backups; b != nil {
		o.Backups = func() metrics.BackupStats {
			st := b.State()
			return metrics.BackupStats{Succeeded: st.Succeeded, Failed: st.Failed, LastSuccess: st.LastSuccess}
		}
	}
	m := metrics.NewNodeManager(o)
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apihttp.WriteError(w, r, n.log, &apihttp.Error{Code: http.StatusMethodNotAllowed, Msg: "method " + r.Method + " is not allowed on /metrics; use GET"})
			return
		}
		if !n.metricsOn() {
			apihttp.WriteError(w, r, n.log, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("metrics are off for node manager %s of host %s; turn them on with managedomain --edit_host --host %s --metrics on", n.conf.NodeManagerID, n.conf.HostID, n.conf.HostID)})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		m.ServeHTTP(w, r)
	})
	var byUser http.Handler
	if n.admin {
		byUser = n.api.AuthorizeMetrics(serve)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case nodeapi.VerifiedPeer(r.TLS):
			serve.ServeHTTP(w, r)
		case byUser != nil:
			byUser.ServeHTTP(w, r)
		default:
			apihttp.WriteError(w, r, n.log, &apihttp.Error{Code: http.StatusForbidden, Msg: "/metrics of a node manager other than the Admin Node Manager needs a client certificate signed by the domain CA (managedomain --sign_csr signs one for a scraper)"})
		}
	})
}

// metricsOn reports whether the topology turns this node manager's
// metrics on.
func (n *NodeManager) metricsOn() bool {
	t, err := n.store.Load()
	if err != nil {
		return false
	}
	for _, g := range t.Groups {
		for _, s := range g.Services {
			if s.ID == n.conf.NodeManagerID {
				return s.Tags[topology.TagMetrics] == "true"
			}
		}
	}
	return false
}

// instanceMetrics is the supervisor's view of the host's instances, for
// the metrics.
func (n *NodeManager) instanceMetrics() []metrics.NodeInstance {
	states := n.sup.States()
	out := make([]metrics.NodeInstance, 0, len(states))
	for _, st := range states {
		in := metrics.NodeInstance{GroupID: st.GroupID, InstanceID: st.ID, GroupName: st.GroupName, InstanceName: st.Name,
			Status: st.Status, Phase: st.Phase, Restarts: st.Restarts, InService: st.InService}
		in.LastExitCode, in.HasLastExit = exitCode(st.LastExit)
		out = append(out, in)
	}
	return out
}

// exitCode reads the supervisor's LastExit: "exit status N" is N, "killed
// by signal N (NAME)" 128 + N (as a shell reports it); anything else is
// unknown.
func exitCode(lastExit string) (int, bool) {
	if rest, ok := strings.CutPrefix(lastExit, "exit status "); ok {
		n, err := strconv.Atoi(rest)
		return n, err == nil
	}
	if rest, ok := strings.CutPrefix(lastExit, "killed by signal "); ok {
		num, _, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(num)
		return 128 + n, err == nil
	}
	return 0, false
}
