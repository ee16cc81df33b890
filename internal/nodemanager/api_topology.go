package nodemanager

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

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
func (a *api) status(s *topology.Service, remote map[string]string) string {
	if st, ok := remote[s.ID]; ok {
		return st
	}
	switch {
	case s.Type == topology.TypeNodeManager && s.ID == a.n.conf.NodeManagerID:
		return "running"
	case s.Type == topology.TypeGateway && s.HostID == a.n.conf.HostID:
		st, err := a.sup.Status(s.ID)
		if err != nil || st.Status == "" {
			return "unknown"
		}
		return st.Status
	}
	return "unknown"
}

func (a *api) groupView(g *topology.Group, serviceType string, remote map[string]string) groupView {
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

func (a *api) load(w http.ResponseWriter, r *http.Request) (*topology.Topology, bool) {
	t, err := a.n.store.Load()
	if err != nil {
		a.fail(w, r, err)
		return nil, false
	}
	w.Header().Set("ETag", etag(t.Version))
	return t, true
}

// GET /api/topology[?serviceType=gateway|nodemanager]
func (a *api) getTopology(w http.ResponseWriter, r *http.Request) {
	st := r.URL.Query().Get("serviceType")
	if st != "" && st != topology.TypeGateway && st != topology.TypeNodeManager {
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("serviceType %q: want %q or %q", st, topology.TypeGateway, topology.TypeNodeManager)})
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
	writeResult(w, http.StatusOK, v)
}

// ---- request bodies -------------------------------------------------------

// hostBody is the body of POST and PUT /api/topology/hosts.
type hostBody struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
}

const hostFields = `"name" (and "id" in PUT /api/topology/hosts)`

func parseHostBody(body io.Reader) (hostBody, error) {
	var b hostBody
	if err := decodeJSON(body, &b, hostFields); err != nil {
		return b, err
	}
	return b, b.validate()
}

func (b hostBody) validate() error {
	if err := topology.ValidateName("host", b.Name); err != nil {
		return &apiError{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if b.ID != "" && !strings.HasPrefix(b.ID, topology.KindHost+"-") {
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("id %q is not a host id (host-N)", b.ID)}
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
	if err := decodeJSON(body, &b, groupFields); err != nil {
		return b, err
	}
	return b, b.validate()
}

func (b groupBody) validate() error {
	if err := topology.ValidateName("group", b.Name); err != nil {
		return &apiError{Code: http.StatusBadRequest, Msg: err.Error()}
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
	if err := decodeJSON(body, &b, serviceFields); err != nil {
		return b, err
	}
	return b, b.validate()
}

func (b serviceBody) validate() error {
	if err := topology.ValidateName("instance", b.Name); err != nil {
		return &apiError{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if b.Type != "" && b.Type != topology.TypeGateway {
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("type %q: only gateway instances are created here (node managers join with managedomain)", b.Type)}
	}
	if b.HostID != "" && !strings.HasPrefix(b.HostID, topology.KindHost+"-") {
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("hostID %q is not a host id (host-N)", b.HostID)}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"trafficPort", b.TrafficPort}, {"managementPort", b.ManagementPort}} {
		if p.v < 0 || p.v > 65535 {
			return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s %d: want 1 to 65535 (or leave it out for the default)", p.name, p.v)}
		}
	}
	if b.TrafficPort != 0 && b.TrafficPort == b.ManagementPort {
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("trafficPort and managementPort are both %d; they need different ports", b.TrafficPort)}
	}
	return nil
}

// ---- hosts ----------------------------------------------------------------

func (a *api) listHosts(w http.ResponseWriter, r *http.Request) {
	if t, ok := a.load(w, r); ok {
		hosts := t.Hosts
		if hosts == nil {
			hosts = []topology.Host{}
		}
		writeResult(w, http.StatusOK, hosts)
	}
}

func (a *api) getHost(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	h, err := t.Host(r.PathValue("hostID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeResult(w, http.StatusOK, h)
}

func hostNameTaken(t *topology.Topology, name, except string) error {
	for _, h := range t.Hosts {
		if h.Name == name && h.ID != except {
			return fmt.Errorf("host name %q (%s) %w", name, h.ID, topology.ErrExists)
		}
	}
	return nil
}

// POST /api/topology/hosts {"name"}: registers a host in the topology.
// (A host with a node manager joins through managedomain -a and POST /nm/join.)
func (a *api) createHost(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b hostBody
	if err := readBody(w, r, &b, hostFields); err != nil {
		a.fail(w, r, err)
		return
	}
	if b.ID != "" {
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: `a new host's id is given by the topology; leave "id" out`})
		return
	}
	var out topology.Host
	t, err := a.n.store.Update(r.Context(), actor(r), "create host", expect, func(t *topology.Topology) (string, error) {
		if err := hostNameTaken(t, b.Name, ""); err != nil {
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
	writeChange(w, http.StatusCreated, out, t.Version)
}

// PUT /api/topology/hosts/{hostID} {"name"} or PUT /api/topology/hosts
// {"id","name"}: renames a host.
func (a *api) updateHost(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b hostBody
	if err := readBody(w, r, &b, hostFields); err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("hostID")
	switch {
	case id == "" && b.ID == "":
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: `say which host: {"id":"host-N","name":...} or PUT /api/topology/hosts/{hostID}`})
		return
	case id != "" && b.ID != "" && b.ID != id:
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the body names host %q and the path %q", b.ID, id)})
		return
	case id == "":
		id = b.ID
	}
	var out topology.Host
	t, err := a.n.store.Update(r.Context(), actor(r), "rename host", expect, func(t *topology.Topology) (string, error) {
		h, err := t.Host(id)
		if err != nil {
			return "", err
		}
		if err := hostNameTaken(t, b.Name, id); err != nil {
			return "", err
		}
		detail := fmt.Sprintf("host %s %q to %q", id, h.Name, b.Name)
		h.Name = b.Name
		out = *h
		return detail, nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeChange(w, http.StatusOK, out, t.Version)
}

// DELETE /api/topology/hosts/{hostID}: only a host without services, and
// never this node manager's own host.
func (a *api) deleteHost(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("hostID")
	t, err := a.n.store.Update(r.Context(), actor(r), "delete host", expect, func(t *topology.Topology) (string, error) {
		h, err := t.Host(id)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("host %q (%s)", h.Name, id)
		if id == a.n.conf.HostID {
			return detail, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("host %s is the Admin Node Manager's own host; it cannot be deleted", id)}
		}
		var on []string
		for _, g := range t.Groups {
			for _, s := range g.Services {
				if s.HostID == id {
					on = append(on, fmt.Sprintf("%s (%s in %q)", s.ID, s.Type, g.Name))
				}
			}
		}
		if len(on) > 0 {
			return detail, &apiError{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s still has services: %s; delete them first", id, strings.Join(on, ", "))}
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
	writeChange(w, http.StatusOK, map[string]string{"id": id}, t.Version)
}

// ---- groups ---------------------------------------------------------------

func (a *api) listGroups(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	out := []groupView{}
	remote := a.remoteStatuses(r.Context(), t) // once: it asks every other host
	for i := range t.Groups {
		out = append(out, a.groupView(&t.Groups[i], "", remote))
	}
	writeResult(w, http.StatusOK, out)
}

func (a *api) getGroup(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	g, err := t.Group(r.PathValue("groupID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeResult(w, http.StatusOK, a.groupView(g, "", a.remoteStatuses(r.Context(), t)))
}

// POST /api/topology/groups {"name"}
func (a *api) createGroup(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b groupBody
	if err := readBody(w, r, &b, groupFields); err != nil {
		a.fail(w, r, err)
		return
	}
	g, version, err := domain.CreateGroup(r.Context(), a.h, actor(r), expect, b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/topology/groups/"+g.ID)
	writeChange(w, http.StatusCreated, a.groupView(&g, "", nil), version)
}

// DELETE /api/topology/groups/{groupID}: refused while one of its instances
// runs on this host.
func (a *api) deleteGroup(w http.ResponseWriter, r *http.Request) {
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
	writeChange(w, http.StatusOK, map[string]string{"id": id}, version)
}

// ---- services -------------------------------------------------------------

func (a *api) listServices(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	g, err := t.Group(r.PathValue("groupID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeResult(w, http.StatusOK, a.groupView(g, "", a.remoteStatuses(r.Context(), t)).Services)
}

func (a *api) getService(w http.ResponseWriter, r *http.Request) {
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
	writeResult(w, http.StatusOK, serviceView{Service: *s, Status: a.status(s, a.remoteStatuses(r.Context(), t))})
}

// POST /api/topology/services/{groupID}: a gateway instance on this host,
// or on host hostID through its node manager (createRemote).
func (a *api) createService(w http.ResponseWriter, r *http.Request) {
	expect, err := expectedVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var b serviceBody
	if err := readBody(w, r, &b, serviceFields); err != nil {
		a.fail(w, r, err)
		return
	}
	groupID := r.PathValue("groupID")
	if b.HostID != "" && b.HostID != a.n.conf.HostID {
		a.createRemote(w, r, expect, groupID, b) // nm_remote.go: through that host's node manager
		return
	}
	c, err := domain.CreateInstance(r.Context(), a.h, actor(r), domain.InstanceSpec{
		GroupID: groupID, Name: b.Name, TrafficPort: b.TrafficPort, ManagementPort: b.ManagementPort, ExpectVersion: expect,
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.adoptGroupArchive(r.Context(), c.GroupID, c.InstanceID) // deploy_nm.go
	view := serviceView{Service: topology.Service{ID: c.InstanceID, Name: b.Name, Type: topology.TypeGateway, HostID: a.n.conf.HostID}, Status: "stopped"}
	if t, err := a.n.store.Load(); err == nil {
		if g, err := t.Group(c.GroupID); err == nil {
			if s, err := g.Service(c.InstanceID); err == nil {
				view = serviceView{Service: *s, Status: a.status(s, nil)}
			}
		}
	}
	w.Header().Set("Location", "/api/topology/services/"+c.GroupID+"/"+c.InstanceID)
	writeChange(w, http.StatusCreated, view, c.Version)
}

// DELETE /api/topology/services/{groupID}/{serviceID}: a gateway instance;
// refused while it runs.
func (a *api) deleteService(w http.ResponseWriter, r *http.Request) {
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
	writeChange(w, http.StatusOK, map[string]string{"id": sid}, version)
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
