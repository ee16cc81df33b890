package anm

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// topologyArea is /api/topology: hosts, groups and services. Every change
// goes through the topology store, which records it in the audit log.
func (a *API) topologyArea() area {
	byStore := recorded("by the topology store (topology.Store.Update, domain's changes)")
	rd, wr := "topology.read", "topology.write"
	return area{name: "topology", routes: []route{
		{pattern: "/api/topology", ops: map[string]op{http.MethodGet: read(a.getTopology, "getTopology", rd)}},
		{pattern: "/api/topology/hosts", ops: map[string]op{
			http.MethodGet:  read(a.listHosts, "listHosts", rd),
			http.MethodPost: change(a.createHost, "createHost", byStore, wr),
			http.MethodPut:  change(a.updateHost, "renameHostByBody", byStore, wr),
		}},
		{pattern: "/api/topology/hosts/{hostID}", ops: map[string]op{
			http.MethodGet:    read(a.getHost, "getHost", rd),
			http.MethodPut:    change(a.updateHost, "renameHost", byStore, wr),
			http.MethodDelete: change(a.deleteHost, "deleteHost", byStore, wr),
		}},
		{pattern: "/api/topology/groups", ops: map[string]op{
			http.MethodGet:  read(a.listGroups, "listGroups", rd),
			http.MethodPost: change(a.createGroup, "createGroup", byStore, wr),
		}},
		{pattern: "/api/topology/groups/{groupID}", ops: map[string]op{
			http.MethodGet:    read(a.getGroup, "getGroup", rd),
			http.MethodDelete: change(a.deleteGroup, "deleteGroup", byStore, wr),
		}},
		{pattern: "/api/topology/services/{groupID}", ops: map[string]op{
			http.MethodGet:  read(a.listServices, "listServices", rd),
			http.MethodPost: change(a.createService, "createService", byStore, wr),
		}},
		{pattern: "/api/topology/services/{groupID}/{serviceID}", ops: map[string]op{
			http.MethodGet:    read(a.getService, "getService", rd),
			http.MethodDelete: change(a.deleteService, "deleteService", byStore, wr),
		}},
	}}
}

// Views: the vendor's shape of GET /api/topology, with each service's state
// as this Admin Node Manager knows it.

type topologyView struct {
	ID         string          `json:"id"`
	Version    int64           `json:"version"`
	Timestamp  int64           `json:"timestamp"`
	DomainName string          `json:"domainName"`
	Hosts      []topology.Host `json:"hosts"`
	Groups     []groupView     `json:"groups"`
}

type groupView struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Tags     map[string]string `json:"tags,omitempty"`
	Services []serviceView     `json:"services"`
	// Deployment: whether every instance is on one archive (GET
	// /api/topology only; details at GET /api/deployment/group/{groupID}).
	Deployment *deploymentSummary `json:"deployment,omitempty"`
}

type deploymentSummary struct {
	Archive    int  `json:"archive"`
	Consistent bool `json:"consistent"`
}

type serviceView struct {
	topology.Service
	// Status: running, stopped, starting, stopping, failed (as the
	// supervisor knows an instance of this host), or unknown (other hosts).
	Status string `json:"status"`
}

// status of a service: this node manager is running; instances of this host
// are as the supervisor says; those of other hosts as their node manager
// said in remote (remoteStatuses), unknown when it did not answer.
func (a *API) status(s *topology.Service, remote map[string]string) string {
	if st, ok := remote[s.ID]; ok {
		return st
	}
	switch {
	case s.Type == topology.TypeNodeManager && s.ID == a.conf.NodeManagerID:
		return "running"
	case s.Type == topology.TypeGateway && s.HostID == a.conf.HostID:
		st, err := a.sup.Status(s.ID)
		if err != nil || st.Status == "" {
			return "unknown"
		}
		return st.Status
	}
	return "unknown"
}

func (a *API) groupView(g *topology.Group, serviceType string, remote map[string]string) groupView {
	v := groupView{ID: g.ID, Name: g.Name, Tags: g.Tags, Services: []serviceView{}}
	for i := range g.Services {
		s := &g.Services[i]
		if serviceType != "" && s.Type != serviceType {
			continue
		}
		v.Services = append(v.Services, serviceView{Service: *s, Status: a.status(s, remote)})
	}
	return v
}

func (a *API) load(w http.ResponseWriter, r *http.Request) (*topology.Topology, bool) {
	t, err := a.store.Load()
	if err != nil {
		a.fail(w, r, err)
		return nil, false
	}
	w.Header().Set("ETag", apihttp.ETag(t.Version))
	return t, true
}

// GET /api/topology[?serviceType=gateway|nodemanager]
func (a *API) getTopology(w http.ResponseWriter, r *http.Request) {
	st := r.URL.Query().Get("serviceType")
	if st != "" && st != topology.TypeGateway && st != topology.TypeNodeManager {
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("serviceType %q: want %q or %q", st, topology.TypeGateway, topology.TypeNodeManager)})
		return
	}
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	v := topologyView{ID: t.ID, Version: t.Version, Timestamp: t.Timestamp, DomainName: t.DomainName, Hosts: t.Hosts, Groups: []groupView{}}
	remote, states := a.allStates(r.Context(), t)
	if v.Hosts == nil {
		v.Hosts = []topology.Host{}
	}
	for i := range t.Groups {
		gv := a.groupView(&t.Groups[i], st, remote)
		if st != topology.TypeNodeManager && !hasNodeManager(&t.Groups[i]) {
			d := a.groupDeployment(&t.Groups[i], states)
			gv.Deployment = &deploymentSummary{Archive: d.Archive, Consistent: d.Consistent}
		}
		v.Groups = append(v.Groups, gv)
	}
	apihttp.WriteResult(w, http.StatusOK, v)
}

// ---- request bodies -------------------------------------------------------

// hostBody is the body of POST and PUT /api/topology/hosts. PUT changes
// what it names: the name, the port of the host's node manager
// (nodeManagerPort) and whether that node manager serves metrics
// (metrics); POST takes the name only.
type hostBody struct {
	ID              string `json:"id,omitempty"`
	Name            string `json:"name,omitempty"`
	NodeManagerPort int    `json:"nodeManagerPort,omitempty"`
	Metrics         *bool  `json:"metrics,omitempty"`
}

const hostFields = `"name" (and in PUT "nodeManagerPort", "metrics", and "id" in PUT /api/topology/hosts)`

func parseHostBody(body io.Reader) (hostBody, error) {
	var b hostBody
	if err := apihttp.DecodeJSON(body, &b, hostFields); err != nil {
		return b, err
	}
	return b, b.Validate()
}

func (b hostBody) Validate() error {
	if b.Name != "" || (b.NodeManagerPort == 0 && b.Metrics == nil) {
		if err := topology.ValidateName("host", b.Name); err != nil {
			return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()}
		}
	}
	if b.ID != "" && !strings.HasPrefix(b.ID, topology.KindHost+"-") {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("id %q is not a host id (host-N)", b.ID)}
	}
	if b.NodeManagerPort < 0 || b.NodeManagerPort > 65535 {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("nodeManagerPort %d: want 1 to 65535", b.NodeManagerPort)}
	}
	return nil
}

// groupBody is the body of POST /api/topology/groups.
type groupBody struct {
	Name string `json:"name"`
}

const groupFields = `"name"`

func parseGroupBody(body io.Reader) (groupBody, error) {
	var b groupBody
	if err := apihttp.DecodeJSON(body, &b, groupFields); err != nil {
		return b, err
	}
	return b, b.Validate()
}

func (b groupBody) Validate() error {
	if err := topology.ValidateName("group", b.Name); err != nil {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	return nil
}

// serviceBody is the body of POST /api/topology/services/{groupID}: a
// gateway instance. Ports 0 or absent: 8080 and 8085; hostID absent: this
// host.
type serviceBody struct {
	Name           string `json:"name"`
	Type           string `json:"type,omitempty"` // "gateway" when given
	HostID         string `json:"hostID,omitempty"`
	TrafficPort    int    `json:"trafficPort,omitempty"`
	ManagementPort int    `json:"managementPort,omitempty"`
}

const serviceFields = `"name", "hostID", "trafficPort", "managementPort", "type" ("gateway")`

func parseServiceBody(body io.Reader) (serviceBody, error) {
	var b serviceBody
	if err := apihttp.DecodeJSON(body, &b, serviceFields); err != nil {
		return b, err
	}
	return b, b.Validate()
}

func (b serviceBody) Validate() error {
	if err := topology.ValidateName("instance", b.Name); err != nil {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if b.Type != "" && b.Type != topology.TypeGateway {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("type %q: only gateway instances are created here (node managers join with managedomain)", b.Type)}
	}
	if b.HostID != "" && !strings.HasPrefix(b.HostID, topology.KindHost+"-") {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("hostID %q is not a host id (host-N)", b.HostID)}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"trafficPort", b.TrafficPort}, {"managementPort", b.ManagementPort}} {
		if p.v < 0 || p.v > 65535 {
			return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s %d: want 1 to 65535 (or leave it out for the default)", p.name, p.v)}
		}
	}
	if b.TrafficPort != 0 && b.TrafficPort == b.ManagementPort {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("trafficPort and managementPort are both %d; they need different ports", b.TrafficPort)}
	}
	return nil
}

// ---- hosts ----------------------------------------------------------------

func (a *API) listHosts(w http.ResponseWriter, r *http.Request) {
	if t, ok := a.load(w, r); ok {
		hosts := t.Hosts
		if hosts == nil {
			hosts = []topology.Host{}
		}
		apihttp.WriteResult(w, http.StatusOK, hosts)
	}
}

func (a *API) getHost(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	h, err := t.Host(r.PathValue("hostID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, h)
}

// POST /api/topology/hosts {"name"}: registers a host in the topology.
// (A host with a node manager joins through managedomain -a and POST /nm/join.)
func (a *API) createHost(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b hostBody
	if err := apihttp.ReadBody(w, r, &b, hostFields); err != nil {
		a.fail(w, r, err)
		return
	}
	if b.ID != "" {
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: `a new host's id is given by the topology; leave "id" out`})
		return
	}
	if b.NodeManagerPort != 0 || b.Metrics != nil || b.Name == "" {
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: `a new host takes "name" only (a host with a node manager joins with managedomain -a)`})
		return
	}
	var out topology.Host
	t, err := a.store.Update(r.Context(), actor(r), "create host", expect, func(t *topology.Topology) (string, error) {
		if err := t.HostNameFree(b.Name, ""); err != nil {
			return "", err
		}
		out = topology.Host{ID: t.NextID(topology.KindHost), Name: b.Name}
		t.Hosts = append(t.Hosts, out)
		return fmt.Sprintf("host %q (%s)", out.Name, out.ID), nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/topology/hosts/"+out.ID)
	apihttp.WriteChange(w, http.StatusCreated, out, t.Version)
}

// PUT /api/topology/hosts/{hostID} {"name","nodeManagerPort","metrics"}
// or PUT /api/topology/hosts {"id",...}: renames a host, moves its node
// manager to another port, turns its node manager's metrics on or off
// (hostedit.go).
func (a *API) updateHost(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b hostBody
	if err := apihttp.ReadBody(w, r, &b, hostFields); err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("hostID")
	switch {
	case id == "" && b.ID == "":
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: `say which host: {"id":"host-N","name":...} or PUT /api/topology/hosts/{hostID}`})
		return
	case id != "" && b.ID != "" && b.ID != id:
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the body names host %q and the path %q", b.ID, id)})
		return
	case id == "":
		id = b.ID
	}
	out, err := a.editHost(r, id, b, expect)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteChange(w, http.StatusOK, out, out.version)
}

// DELETE /api/topology/hosts/{hostID}: only a host without instances (its
// node manager goes with it), and never this node manager's own host. A
// removed node manager's certificate is then refused by every node that
// has the new topology (nodeapi's requirePeer), and its ids are never
// given again (topology.NextID).
func (a *API) deleteHost(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("hostID")
	t, err := a.store.Update(r.Context(), actor(r), "delete host", expect, func(t *topology.Topology) (string, error) {
		h, err := t.Host(id)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("host %q (%s)", h.Name, id)
		if id == a.conf.HostID {
			return detail, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("host %s is the Admin Node Manager's own host; it cannot be deleted", id)}
		}
		var on []string
		for _, g := range t.Groups {
			for _, s := range g.Services {
				if s.HostID == id && s.Type != topology.TypeNodeManager {
					on = append(on, fmt.Sprintf("%s (%s in %q)", s.ID, s.Type, g.Name))
				}
			}
		}
		if len(on) > 0 {
			return detail, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s still has services: %s; delete them first", id, strings.Join(on, ", "))}
		}
		for gi := range t.Groups {
			g := &t.Groups[gi]
			g.Services = slices.DeleteFunc(g.Services, func(s topology.Service) bool {
				if s.HostID == id && s.Type == topology.TypeNodeManager {
					detail += fmt.Sprintf(" with its node manager %s", s.ID)
					return true
				}
				return false
			})
		}
		for i := range t.Hosts {
			if t.Hosts[i].ID == id {
				t.Hosts = append(t.Hosts[:i], t.Hosts[i+1:]...)
				break
			}
		}
		return detail, nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteChange(w, http.StatusOK, map[string]string{"id": id}, t.Version)
}

// ---- groups ---------------------------------------------------------------

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	out := []groupView{}
	remote := a.remoteStatuses(r.Context(), t) // once: it asks every other host
	for i := range t.Groups {
		out = append(out, a.groupView(&t.Groups[i], "", remote))
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	g, err := t.Group(r.PathValue("groupID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, a.groupView(g, "", a.remoteStatuses(r.Context(), t)))
}

// POST /api/topology/groups {"name"}
func (a *API) createGroup(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b groupBody
	if err := apihttp.ReadBody(w, r, &b, groupFields); err != nil {
		a.fail(w, r, err)
		return
	}
	g, version, err := domain.CreateGroup(r.Context(), a.h, actor(r), expect, b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/topology/groups/"+g.ID)
	apihttp.WriteChange(w, http.StatusCreated, a.groupView(&g, "", nil), version)
}

// DELETE /api/topology/groups/{groupID}: refused while one of its instances
// runs on this host.
func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("groupID")
	version, err := domain.DeleteGroupID(r.Context(), a.h, actor(r), expect, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteChange(w, http.StatusOK, map[string]string{"id": id}, version)
}

// ---- services -------------------------------------------------------------

func (a *API) listServices(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	g, err := t.Group(r.PathValue("groupID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, a.groupView(g, "", a.remoteStatuses(r.Context(), t)).Services)
}

func (a *API) getService(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	g, err := t.Group(r.PathValue("groupID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	s, err := g.Service(r.PathValue("serviceID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, serviceView{Service: *s, Status: a.status(s, a.remoteStatuses(r.Context(), t))})
}

// POST /api/topology/services/{groupID}: a gateway instance on this host,
// or on host hostID through its node manager (createRemote).
func (a *API) createService(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b serviceBody
	if err := apihttp.ReadBody(w, r, &b, serviceFields); err != nil {
		a.fail(w, r, err)
		return
	}
	groupID := r.PathValue("groupID")
	if b.HostID != "" && b.HostID != a.conf.HostID {
		a.createRemote(w, r, expect, groupID, b) // remote.go: through that host's node manager
		return
	}
	c, err := domain.CreateInstance(r.Context(), a.h, actor(r), domain.InstanceSpec{
		GroupID: groupID, Name: b.Name, TrafficPort: b.TrafficPort, ManagementPort: b.ManagementPort, ExpectVersion: expect,
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.adoptGroupArchive(r.Context(), c.GroupID, c.InstanceID) // deploy_steps.go
	view := serviceView{Service: topology.Service{ID: c.InstanceID, Name: b.Name, Type: topology.TypeGateway, HostID: a.conf.HostID}, Status: "stopped"}
	if t, err := a.store.Load(); err == nil {
		if g, err := t.Group(c.GroupID); err == nil {
			if s, err := g.Service(c.InstanceID); err == nil {
				view = serviceView{Service: *s, Status: a.status(s, nil)}
			}
		}
	}
	w.Header().Set("Location", "/api/topology/services/"+c.GroupID+"/"+c.InstanceID)
	apihttp.WriteChange(w, http.StatusCreated, view, c.Version)
}

// DELETE /api/topology/services/{groupID}/{serviceID}: a gateway instance;
// refused while it runs.
func (a *API) deleteService(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	gid, sid := r.PathValue("groupID"), r.PathValue("serviceID")
	version, err := domain.DeleteInstanceID(r.Context(), a.h, actor(r), expect, gid, sid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteChange(w, http.StatusOK, map[string]string{"id": sid}, version)
}

// hasNodeManager tells the node managers' group from gateway groups.
func hasNodeManager(g *topology.Group) bool {
	for _, s := range g.Services {
		if s.Type == topology.TypeNodeManager {
			return true
		}
	}
	return false
}
