package nodemanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The node-to-node API under /nm (docs/adding-a-host.md lists every path).
// Two paths need no client certificate, because the host calling them has
// none yet:
//
//	GET  /nm/ca      the domain CA certificate (the caller decides whether
//	                 to trust it by its fingerprint)
//	POST /nm/join    ANM only, HTTP Basic with an admin user: a new host's
//	                 CSR is signed and the host added to the topology
//
// Every other path needs a client certificate signed by the domain CA
// (requirePeer); those marked "ANM's certificate" accept only the Admin
// Node Manager's (its node manager id is in the certificate's common name,
// which only the domain CA writes):
//
//	GET  /nm/status                                  this node manager and its instances
//	POST /nm/instances                               create an instance's files here (ANM's certificate)
//	POST /nm/instances/{instanceID}/{start|stop|status}  through the Supervisor (ANM's certificate)
//	PUT  /nm/instances/{instanceID}/certificate      the instance's certificate, signed for the CSR POST /nm/instances answered (ANM's certificate; csr_instance.go)
//	ANY  /nm/router/{instanceID}/{path...}           relayed to a local instance's management listener (ANM's certificate)
//	GET  /nm/topology                                this host's topology document
//	GET  /nm/topology/state                          its version and checksum
//	PUT  /nm/topology                                take the ANM's topology when newer (ANM's certificate)
//	GET  /nm/sync                                    ANM only: every host's version and checksum
//	POST /nm/sync                                    ANM only: push the topology to every host

// nmCNPrefix starts the common name of every node manager certificate.
const nmCNPrefix = pki.NodeManagerCNPrefix

func nodeManagerCN(nmID, hostID string) string { return pki.NodeManagerCommonName(nmID, hostID) }

// peerNodeManager is the node manager id of the verified client
// certificate of r; "" when it is not a node manager's.
func peerNodeManager(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	rest, ok := strings.CutPrefix(cn, nmCNPrefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	return id
}

// nmRoutes is the /nm tree: the routes of nmRouteTable, the open ones
// first, requirePeer for the rest.
func (s *server) nmRoutes() http.Handler {
	open, peer := http.NewServeMux(), http.NewServeMux()
	for _, rt := range s.nmRouteTable() {
		var h http.Handler = rt.relay
		if rt.relay == nil {
			h = rt.methods.with(s.log)
		}
		if rt.wrap != nil {
			h = rt.wrap(h)
		}
		if rt.open {
			open.Handle(rt.pattern, h)
		} else {
			peer.Handle(rt.pattern, h)
		}
	}
	peer.Handle("/nm/", s.nmHandler())
	open.Handle("/nm/", s.requirePeer(peer))
	return open
}

// nmRouteTable is the node-to-node API: every path under /nm. Open routes
// need no client certificate. api/openapi.yaml documents them all
// (openapi_test.go).
func (s *server) nmRouteTable() []route {
	return []route{
		{pattern: "/nm/ca", methods: methods{http.MethodGet: s.getCA}, open: true},
		{pattern: "/nm/join", methods: methods{http.MethodPost: s.join}, open: true, wrap: s.api.auth.middleware},
		{pattern: "/nm/status", methods: methods{http.MethodGet: s.getStatus}},
		{pattern: "/nm/instances", methods: methods{http.MethodPost: s.fromANM(s.prepareInstance)}},
		{pattern: "/nm/instances/{instanceID}/{action}", methods: methods{http.MethodPost: s.fromANM(s.instanceAction), http.MethodPut: s.fromANM(s.putInstanceCert)}},
		{pattern: "/nm/archives/{groupID}/{archiveID}", methods: methods{http.MethodPut: s.fromANM(s.putArchive)}}, // deploy_nm.go
		{pattern: "/nm/router/{instanceID}/{path...}", relay: s.fromANM(s.routeLocal)},
		{pattern: "/nm/topology", methods: methods{http.MethodGet: s.getTopologyDoc, http.MethodPut: s.fromANM(s.putTopology)}},
		{pattern: "/nm/topology/state", methods: methods{http.MethodGet: s.getTopologyState}},
		{pattern: "/nm/sync", methods: methods{http.MethodGet: s.adminOnly(s.checkSync), http.MethodPost: s.adminOnly(s.syncAll)}},
	}
}

// fromANM lets through only the Admin Node Manager's certificate.
func (s *server) fromANM(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := peerNodeManager(r)
		t, err := s.n.store.Load()
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		anm, err := t.AdminNodeManager()
		if err != nil || id == "" || id != anm.ID {
			writeError(w, r, s.log, &apiError{Code: http.StatusForbidden, Msg: fmt.Sprintf("%s is only for the Admin Node Manager's certificate; this one is %q", r.URL.Path, id)})
			return
		}
		next(w, r)
	}
}

func (s *server) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.n.admin {
			writeError(w, r, s.log, &apiError{Code: http.StatusNotFound, Msg: fmt.Sprintf("%s is served by the Admin Node Manager; this is %s of host %s", r.URL.Path, s.n.conf.NodeManagerID, s.n.conf.HostID)})
			return
		}
		next(w, r)
	}
}

// caAnswer is GET /nm/ca.
type caAnswer struct {
	Certificate string `json:"certificate"` // PEM
	Fingerprint string `json:"fingerprint"` // SHA-256, AB:CD:...
}

func (s *server) getCA(w http.ResponseWriter, r *http.Request) {
	data, err := os.ReadFile(pki.CertFile(s.n.opts.Home))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	c, err := pki.ParseCertPEM(data)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeResult(w, http.StatusOK, caAnswer{Certificate: string(data), Fingerprint: pki.Fingerprint(c)})
}

// JoinRequest is the body of POST /nm/join.
type JoinRequest struct {
	HostName string `json:"hostName"`
	Address  string `json:"address,omitempty"` // the IP the new node manager listens on
	Port     int    `json:"port,omitempty"`    // its port; 0: 8090
	CSR      string `json:"csr"`               // PEM CERTIFICATE REQUEST for its key
}

const joinFields = `"hostName", "address", "port", "csr"`

// JoinAnswer is the answer of POST /nm/join.
type JoinAnswer struct {
	HostID        string             `json:"hostID"`
	NodeManagerID string             `json:"nodeManagerID"`
	Certificate   string             `json:"certificate"`   // PEM, signed by the domain CA
	CACertificate string             `json:"caCertificate"` // PEM
	Topology      *topology.Topology `json:"topology"`
}

func (b *JoinRequest) validate() error {
	if err := topology.ValidateName("host", b.HostName); err != nil {
		return &apiError{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if err := domain.CheckListenAddress(b.Address); err != nil {
		return &apiError{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if b.Port == 0 {
		b.Port = domain.DefaultNodeManagerPort
	}
	if b.Port < 1 || b.Port > 65535 {
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("port %d: want 1 to 65535", b.Port)}
	}
	return nil
}

// POST /nm/join: adds a host and its node manager (nodemanager-N in the
// Node Manager Group) to the topology and signs the node manager's CSR with
// the domain CA, in one topology change: when either fails nothing is
// written.
func (s *server) join(w http.ResponseWriter, r *http.Request) {
	if !s.n.admin {
		s.api.notAdmin(w, r)
		return
	}
	var b JoinRequest
	if err := readBody(w, r, &b, joinFields); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	csr, err := pki.ParseCSR([]byte(b.CSR))
	if err != nil {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: "csr: " + err.Error()})
		return
	}
	ca, err := pki.LoadCA(s.n.opts.Home)
	if err != nil {
		writeError(w, r, s.log, &apiError{Code: http.StatusServiceUnavailable, Msg: "this Admin Node Manager's host has no domain CA key; it cannot sign the new host's certificate", Err: err})
		return
	}
	var ans JoinAnswer
	t, err := s.n.store.Update(r.Context(), topology.Actor{User: userOf(r.Context()), Via: "nm/join", Remote: remoteIP(r)}, "add host", 0, func(t *topology.Topology) (string, error) {
		if err := hostNameTaken(t, b.HostName, ""); err != nil {
			return "", err
		}
		var nmGroup *topology.Group
		for i := range t.Groups {
			if t.Groups[i].IsNodeManagerGroup() {
				nmGroup = &t.Groups[i]
			}
		}
		if nmGroup == nil {
			return "", fmt.Errorf("the topology has no %q: %w", topology.NodeManagerGroupName, topology.ErrInvalid)
		}
		want := peerOf(t, &topology.Service{HostID: "-", ManagementPort: b.Port, Tags: map[string]string{domain.TagAddress: b.Address}}).Addr
		for _, p := range peers(t, "") {
			if b.Address != "" && p.Addr == want {
				return "", fmt.Errorf("node manager %s of host %s already listens at %s: %w", p.NodeManagerID, p.HostID, p.Addr, topology.ErrExists)
			}
		}
		hostID := t.NextID(topology.KindHost)
		t.Hosts = append(t.Hosts, topology.Host{ID: hostID, Name: b.HostName})
		svc := topology.Service{Name: "Node Manager on " + b.HostName, Type: topology.TypeNodeManager, HostID: hostID,
			ManagementPort: b.Port, Scheme: "https", Enabled: true}
		if b.Address != "" {
			svc.Tags = map[string]string{domain.TagAddress: b.Address}
		}
		nm, err := t.AddService(nmGroup.ID, svc)
		if err != nil {
			return "", err
		}
		certPEM, err := ca.SignCSR(csr, nodeManagerCN(nm.ID, hostID), true)
		if err != nil {
			return "", err
		}
		ans = JoinAnswer{HostID: hostID, NodeManagerID: nm.ID, Certificate: string(certPEM), CACertificate: string(ca.CertPEM())}
		return fmt.Sprintf("host %q (%s) with node manager %s at %s", b.HostName, hostID, nm.ID, want), nil
	})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ans.Topology = t
	s.log.Info("host joined the domain", "host", ans.HostID, "nodeManager", ans.NodeManagerID, "user", userOf(r.Context()), "remote", remoteIP(r))
	go func() {
		// Every other host learns of the new one; the new host has the
		// topology in the answer.
		ctx, cancel := context.WithTimeout(context.Background(), nmCallTimeout)
		defer cancel()
		s.n.net.push.pushAll(ctx, false)
	}()
	writeChange(w, http.StatusCreated, ans, t.Version)
}

// prepareBody is the body of POST /nm/instances.
type prepareBody struct {
	Topology    *topology.Topology `json:"topology"` // the ANM's topology with the new instance, not yet written
	GroupID     string             `json:"groupID"`
	InstanceID  string             `json:"instanceID"`
	GroupConfig *string            `json:"groupConfig,omitempty"` // the group's conf/group.yaml on the ANM
}

// POST /nm/instances: writes the instance's directories and configuration
// on this host (domain.PrepareInstance), checking its ports against this
// host's. The ANM writes the topology when this succeeds, and pushes it.
func (s *server) prepareInstance(w http.ResponseWriter, r *http.Request) {
	var b prepareBody
	if err := readBody(w, r, &b, `"topology", "groupID", "instanceID", "groupConfig"`); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if b.Topology == nil {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: "no topology"})
		return
	}
	if err := b.Topology.Validate(); err != nil {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: err.Error()})
		return
	}
	if cur, err := s.n.store.Load(); err == nil && cur.ID != b.Topology.ID {
		writeError(w, r, s.log, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("topology of domain %s; this host is in domain %s", b.Topology.ID, cur.ID)})
		return
	}
	var conf []byte
	if b.GroupConfig != nil {
		conf = []byte(*b.GroupConfig)
	}
	if err := domain.PrepareInstance(s.n.opts.Home, b.Topology, b.GroupID, b.InstanceID, conf); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	csr, err := instanceCSR(s.n.opts.Home, b.GroupID, b.InstanceID)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.Info("instance files and key created for the Admin Node Manager", "instanceId", b.InstanceID, "groupId", b.GroupID)
	writeResult(w, http.StatusCreated, prepareAnswer{InstanceID: b.InstanceID, HostID: s.n.conf.HostID, CSR: csr})
}

// localInstance is instance id of this host in this host's topology.
func (s *server) localInstance(id string) (*topology.Service, error) {
	t, err := s.n.store.Load()
	if err != nil {
		return nil, err
	}
	ref, err := t.FindInstanceID(id)
	if err != nil {
		return nil, err
	}
	if ref.Service.HostID != s.n.conf.HostID {
		return nil, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("instance %s is on host %s, not on this host (%s)", id, ref.Service.HostID, s.n.conf.HostID)}
	}
	return ref.Service, nil
}

// POST /nm/instances/{instanceID}/{start|stop|status}
func (s *server) instanceAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("instanceID"), r.PathValue("action")
	svc, err := s.localInstance(id)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var st InstanceState
	switch action {
	case "start":
		s.log.Info("starting instance for the Admin Node Manager", "instanceId", id)
		st, err = s.api.sup.StartInstance(r.Context(), id)
	case "stop":
		s.log.Info("stopping instance for the Admin Node Manager", "instanceId", id)
		st, err = s.api.sup.StopInstance(r.Context(), id)
	case "status":
		st, err = s.api.sup.Status(id)
	case "deploy", "inservice", "setarchive":
		s.deployAction(w, r, id, action)
		return
	default:
		err = &apiError{Code: http.StatusNotFound, Msg: fmt.Sprintf("no instance action %q; want start, stop, status, deploy, inservice or setarchive", action)}
	}
	if err != nil {
		if code, _ := classify(err); code == http.StatusInternalServerError {
			err = &apiError{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("instance %s (%q): %s failed: %v", svc.ID, svc.Name, action, err), Err: err}
		}
		writeError(w, r, s.log, err)
		return
	}
	writeResult(w, http.StatusOK, st)
}

// /nm/router/{instanceID}/{path...}: the management API's router on this
// host (api_router.go), for a local instance.
func (s *server) routeLocal(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("instanceID")
	if _, err := s.localInstance(id); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	r.SetPathValue("serviceID", id)
	s.api.route(w, r)
}

func (s *server) getTopologyDoc(w http.ResponseWriter, r *http.Request) {
	t, err := s.n.store.Load()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.Header().Set("ETag", etag(t.Version))
	writeResult(w, http.StatusOK, t)
}

func (s *server) getTopologyState(w http.ResponseWriter, r *http.Request) {
	t, err := s.n.store.Load()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeResult(w, http.StatusOK, stateOf(s.n.conf.HostID, t))
}

// PUT /nm/topology: the ANM's topology, taken when its version is higher
// than this host's (409 otherwise) and of the same domain. The Admin Node
// Manager's own topology is changed by Update only: it refuses pushes.
func (s *server) putTopology(w http.ResponseWriter, r *http.Request) {
	if s.n.admin {
		writeError(w, r, s.log, &apiError{Code: http.StatusConflict, Msg: "this is the Admin Node Manager: its topology is the domain's and is not replaced by a push"})
		return
	}
	var t topology.Topology
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err := dec.Decode(&t); err != nil {
		writeError(w, r, s.log, bodyError(err, dec, "a topology document"))
		return
	}
	err := s.n.store.Replace(r.Context(), topology.Actor{User: peerNodeManager(r), Via: "nm/topology", Remote: remoteIP(r)}, "topology push", &t)
	if errors.Is(err, topology.ErrInvalid) {
		err = &apiError{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.Info("topology taken from the Admin Node Manager", "version", t.Version)
	writeResult(w, http.StatusOK, stateOf(s.n.conf.HostID, &t))
}

func (s *server) checkSync(w http.ResponseWriter, r *http.Request) {
	writeResult(w, http.StatusOK, s.n.net.push.check(r.Context()))
}

func (s *server) syncAll(w http.ResponseWriter, r *http.Request) {
	s.log.Info("sync of every host's topology asked", "by", peerNodeManager(r), "remote", remoteIP(r))
	writeResult(w, http.StatusOK, s.n.net.push.pushAll(r.Context(), true))
}
