// Package nodeapi is the node-to-node API of the node managers of a domain,
// both sides of /nm: the server every node manager serves (Server: status,
// instances created and started for the Admin Node Manager, archives
// installed, the topology taken, and on the ANM joining and CSR signing),
// its clients (NodeClient, Net for the node manager's own calls, ANMClient
// and RequestJoin for managedomain), the Pusher that keeps every host's
// topology in step, the router that relays to a local instance's
// management listener (Router), and the node manager's certificate and TLS
// settings (tls.go).
//
// It may use internal/supervisor (through the Instances interface) and
// internal/apihttp, and never the management API (internal/anm): what it
// needs of the ANM — authenticating POST /nm/join — is handed in as a
// function (Config.JoinAuth). layers_test.go in internal/nodemanager
// enforces this.
package nodeapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
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
//	PUT  /nm/instances/{instanceID}/certificate      the instance's certificate, signed for the CSR POST /nm/instances answered (ANM's certificate; csr.go)
//	ANY  /nm/router/{instanceID}/{path...}           relayed to a local instance's management listener (ANM's certificate)
//	POST /nm/certs/renew                             new keys for this node manager and its instances, answered with CSRs (ANM's certificate; certs.go)
//	PUT  /nm/certs/pending                           their certificates, signed by the domain CA (ANM's certificate)
//	DELETE /nm/certs/pending                         drop them (ANM's certificate)
//	POST /nm/certs/commit                            put them in place (ANM's certificate)
//	GET  /nm/topology                                this host's topology document
//	GET  /nm/topology/state                          its version and checksum
//	PUT  /nm/topology                                take the ANM's topology when newer (ANM's certificate);
//	                                                 a joined host's nodemanager.yaml anmPort follows the ANM's port
//	POST /nm/nodemanager/port                        move this node manager's listener to another port, instances
//	                                                 untouched; the old port closes after the answer (ANM's certificate; nmport.go)
//	GET  /nm/sync                                    ANM only: every host's version and checksum
//	POST /nm/sync                                    ANM only: push the topology to every host

// Instances is what the node-to-node and management APIs need of this
// host's supervisor (a *supervisor.Supervisor; tests give a fake).
type Instances interface {
	StartInstance(ctx context.Context, id string) (supervisor.InstanceState, error)
	StopInstance(ctx context.Context, id string) (supervisor.InstanceState, error)
	Status(id string) (supervisor.InstanceState, error)
	States() []supervisor.InstanceState
	Deploy(ctx context.Context, id string, m deploy.Meta) (supervisor.InstanceState, error)
	SetInService(ctx context.Context, id string, in bool, lease time.Duration) (supervisor.InstanceState, error)
	SetArchive(ctx context.Context, id string, m deploy.Meta) (supervisor.InstanceState, error)
}

// Config is what the /nm server needs.
type Config struct {
	Home      home.Home
	Conf      domain.NodeManagerConf // this node manager
	Admin     bool                   // this is the Admin Node Manager
	Store     *topology.Store
	Logger    *slog.Logger
	Instances Instances
	Net       *Net    // the node manager's client side (the ANM's pusher)
	Router    *Router // /nm/router
	// Audit records the node-to-node calls that change the domain on
	// their own (POST /nm/sync); zero: not recorded.
	Audit audit.Recorder
	// JoinAuth authenticates POST /nm/join with an admin user's
	// credentials and lets through only a user who may create hosts (the
	// management API's AuthorizeJoin); it puts the user in the context
	// (apihttp.UserOf).
	JoinAuth func(http.Handler) http.Handler
	// SwitchPort moves this node manager's listener to another port
	// (nmport.go); nil: POST /nm/nodemanager/port answers 503.
	SwitchPort func(port int) (PortSwitch, error)
	// Version is the Gatehouse version (written into this host's backups).
	Version string
	// Restart asks the program running this node manager to restart it on
	// the install directory's binary (POST /nm/nodemanager/restart); nil:
	// 503.
	Restart func() error
}

// Server serves the /nm paths of a node manager. It is safe for
// concurrent use.
type Server struct {
	h      home.Home
	conf   domain.NodeManagerConf
	admin  bool
	store  *topology.Store
	log    *slog.Logger
	sup    Instances
	net    *Net
	router *Router
	auth   func(http.Handler) http.Handler
	audit  audit.Recorder

	switchPort func(port int) (PortSwitch, error)
	version    string
	backups    chan struct{} // backup.go: one at a time
	restart    func() error
}

// NewServer makes the /nm server of c.
func NewServer(c Config) *Server {
	return &Server{h: c.Home, conf: c.Conf, admin: c.Admin, store: c.Store, log: c.Logger, sup: c.Instances, net: c.Net, router: c.Router, auth: c.JoinAuth, audit: c.Audit, switchPort: c.SwitchPort,
		version: c.Version, backups: make(chan struct{}, 1), restart: c.Restart}
}

// Route is one entry of the node-to-node API's table: a mux pattern and
// its methods, or relay for a pattern that takes any method (the router).
// Open routes need no client certificate.
type Route struct {
	Pattern string
	Methods apihttp.Methods
	Relay   http.HandlerFunc
	Open    bool
	wrap    func(http.Handler) http.Handler // /nm/join: HTTP Basic
}

// peerNodeManager is the node manager id of the verified client
// certificate of r; "" when it is not a node manager's.
func peerNodeManager(r *http.Request) string {
	id, _ := peerIdentity(r)
	return id
}

// Handler is the /nm tree: the routes of Routes, the open ones first,
// requirePeer for the rest.
func (s *Server) Handler() http.Handler {
	open, peer := http.NewServeMux(), http.NewServeMux()
	for _, rt := range s.Routes() {
		var h http.Handler = rt.Relay
		if rt.Relay == nil {
			h = rt.Methods.With(s.log)
		}
		if rt.wrap != nil {
			h = rt.wrap(h)
		}
		if rt.Open {
			open.Handle(rt.Pattern, h)
		} else {
			peer.Handle(rt.Pattern, h)
		}
	}
	peer.Handle("/nm/", s.notFound())
	open.Handle("/nm/", s.requirePeer(peer))
	return open
}

// Routes is the node-to-node API: every path under /nm. Open routes need
// no client certificate. api/openapi.yaml documents them all
// (openapi_test.go).
func (s *Server) Routes() []Route {
	return []Route{
		{Pattern: "/nm/ca", Methods: apihttp.Methods{http.MethodGet: s.getCA}, Open: true},
		{Pattern: "/nm/join", Methods: apihttp.Methods{http.MethodPost: s.join}, Open: true, wrap: s.auth},
		{Pattern: "/nm/status", Methods: apihttp.Methods{http.MethodGet: s.getStatus}},
		{Pattern: "/nm/instances", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.prepareInstance)}},
		{Pattern: "/nm/instances/{instanceID}/{action}", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.instanceAction), http.MethodPut: s.fromANM(s.putInstanceCert)}},
		{Pattern: "/nm/certs/renew", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.renewCerts)}},                                                  // certs.go
		{Pattern: "/nm/certs/pending", Methods: apihttp.Methods{http.MethodPut: s.fromANM(s.pendingCerts), http.MethodDelete: s.fromANM(s.pendingCerts)}}, // certs.go
		{Pattern: "/nm/certs/commit", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.commitCerts)}},                                                // certs.go
		{Pattern: "/nm/archives/{groupID}/{archiveID}", Methods: apihttp.Methods{http.MethodPut: s.fromANM(s.putArchive)}},                                // archives.go
		{Pattern: "/nm/router/{instanceID}/{path...}", Relay: s.fromANM(s.routeLocal)},
		{Pattern: "/nm/topology", Methods: apihttp.Methods{http.MethodGet: s.getTopologyDoc, http.MethodPut: s.fromANM(s.putTopology)}},
		{Pattern: "/nm/topology/state", Methods: apihttp.Methods{http.MethodGet: s.getTopologyState}},
		{Pattern: "/nm/binary", Methods: apihttp.Methods{http.MethodPut: s.fromANM(s.putBinary)}},                                         // binary.go
		{Pattern: "/nm/binary/previous", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.postPreviousBinary)}},                      // binary.go
		{Pattern: "/nm/nodemanager/restart", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.postRestart)}},                         // binary.go
		{Pattern: "/nm/config", Methods: apihttp.Methods{http.MethodGet: s.fromANM(s.getConfig), http.MethodPut: s.fromANM(s.putConfig)}}, // config.go
		{Pattern: "/nm/backup", Methods: apihttp.Methods{http.MethodGet: s.fromANM(s.getBackup)}},                                         // backup.go
		{Pattern: "/nm/nodemanager/port", Methods: apihttp.Methods{http.MethodPost: s.fromANM(s.putPort)}},                                // nmport.go
		{Pattern: "/nm/sync", Methods: apihttp.Methods{http.MethodGet: s.adminOnly(s.checkSync), http.MethodPost: s.adminOnly(s.syncAll)}},
	}
}

// requirePeer lets through only requests whose TLS client certificate was
// verified against the domain CA and names a node manager of the current
// topology, on its host: an instance's certificate (also signed by the
// CA) is refused on every /nm path, and so is the certificate of a node
// manager whose host was removed from the domain.
func (s *Server) requirePeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !VerifiedPeer(r.TLS) {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusForbidden, Msg: "node manager paths need a client certificate signed by the domain CA"})
			return
		}
		nmID, hostID := peerIdentity(r)
		if nmID == "" {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusForbidden, Msg: "node manager paths need a node manager's certificate; this one is not a node manager's"})
			return
		}
		if !s.knownNodeManager(nmID, hostID) {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusForbidden, Msg: fmt.Sprintf("node manager %s of %s is not in this node's topology (removed from the domain, or not yet known here)", nmID, hostID)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// peerIdentity is the node manager and host ids of the verified client
// certificate of r ("Gatehouse Node Manager nodemanager-2 (host-2)"); empty
// when it is not a node manager's.
func peerIdentity(r *http.Request) (nmID, hostID string) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", ""
	}
	rest, ok := strings.CutPrefix(r.TLS.VerifiedChains[0][0].Subject.CommonName, pki.NodeManagerCNPrefix)
	if !ok {
		return "", ""
	}
	id, host, ok := strings.Cut(rest, " (")
	host, closed := strings.CutSuffix(host, ")")
	if !ok || !closed || id == "" || host == "" {
		return "", ""
	}
	return id, host
}

// knownNodeManager reports whether the topology holds node manager nmID on
// host hostID.
func (s *Server) knownNodeManager(nmID, hostID string) bool {
	t, err := s.store.Load()
	if err != nil {
		return false
	}
	for _, g := range t.Groups {
		for _, svc := range g.Services {
			if svc.ID == nmID {
				return svc.Type == topology.TypeNodeManager && svc.HostID == hostID
			}
		}
	}
	return false
}

// notFound answers the /nm paths that Routes does not have: 404.
func (s *Server) notFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("no node manager resource %s; try /nm/status", r.URL.Path)})
	})
}

// GET /nm/status: this node manager and the states of its host's instances.
func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	var version int64
	if t, err := s.store.Load(); err == nil {
		version = t.Version
	}
	apihttp.WriteResult(w, http.StatusOK, Status{
		HostID: s.conf.HostID, NodeManagerID: s.conf.NodeManagerID, Admin: s.admin,
		TopologyVersion: version, Instances: s.sup.States(),
		Backups: LocalBackupStatus(s.h, s.conf),
		PID:     os.Getpid(), Binary: runningBinary(),
		ClearSecrets: ClearScopesOf(s.h, s.store),
	})
}

// Status is the answer of GET /nm/status.
type Status struct {
	HostID          string                     `json:"hostID"`
	NodeManagerID   string                     `json:"nodeManagerID"`
	Admin           bool                       `json:"admin"`
	TopologyVersion int64                      `json:"topologyVersion"`
	Instances       []supervisor.InstanceState `json:"instances"`
	// Backups are the host's scheduled backups; absent without a schedule.
	Backups *BackupStatus `json:"backups,omitempty"`
	// PID is the node manager's process; Binary the SHA-256 of the program
	// it runs (an upgrade checks both after restarting it).
	PID    int    `json:"pid,omitempty"`
	Binary string `json:"binary,omitempty"`
	// ClearSecrets are this host's scopes whose secrets no passphrase
	// seals (a backup of the host holds them in clear).
	ClearSecrets []string `json:"clearSecrets,omitempty"`
}

// ClearScopesOf is ClearScopes with the topology of store (none when it
// cannot be read).
func ClearScopesOf(h home.Home, store *topology.Store) []string {
	t, _ := store.Load()
	return ClearScopes(h, t)
}

// NotAdmin is the 404 of a path that only the Admin Node Manager serves,
// on another node manager (conf): it names the ANM, its host and port.
func NotAdmin(store *topology.Store, conf domain.NodeManagerConf) error {
	msg := fmt.Sprintf("this is the node manager %s of host %s, not the Admin Node Manager; the management API is not served here", conf.NodeManagerID, conf.HostID)
	if t, err := store.Load(); err == nil {
		if anm, err := t.AdminNodeManager(); err == nil {
			where := anm.HostID
			if h, err := t.Host(anm.HostID); err == nil {
				where = fmt.Sprintf("%s (%s)", h.Name, h.ID)
			}
			msg = fmt.Sprintf("this is the node manager %s of host %s, not the Admin Node Manager; the management API is served by %s on host %s, port %d", conf.NodeManagerID, conf.HostID, anm.ID, where, anm.ManagementPort)
		}
	}
	return &apihttp.Error{Code: http.StatusNotFound, Msg: msg}
}

// fromANM lets through only the Admin Node Manager's certificate.
func (s *Server) fromANM(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := peerNodeManager(r)
		t, err := s.store.Load()
		if err != nil {
			apihttp.WriteError(w, r, s.log, err)
			return
		}
		anm, err := t.AdminNodeManager()
		if err != nil || id == "" || id != anm.ID {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusForbidden, Msg: fmt.Sprintf("%s is only for the Admin Node Manager's certificate; this one is %q", r.URL.Path, id)})
			return
		}
		next(w, r)
	}
}

func (s *Server) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.admin {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("%s is served by the Admin Node Manager; this is %s of host %s", r.URL.Path, s.conf.NodeManagerID, s.conf.HostID)})
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

func (s *Server) getCA(w http.ResponseWriter, r *http.Request) {
	data, err := os.ReadFile(pki.CertFile(s.h))
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	c, err := pki.ParseCertPEM(data)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, caAnswer{Certificate: string(data), Fingerprint: pki.Fingerprint(c)})
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

// Validate checks the request and sets the default port.
func (b *JoinRequest) Validate() error {
	if err := topology.ValidateName("host", b.HostName); err != nil {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if err := domain.CheckListenAddress(b.Address); err != nil {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if b.Port == 0 {
		b.Port = domain.DefaultNodeManagerPort
	}
	if b.Port < 1 || b.Port > 65535 {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("port %d: want 1 to 65535", b.Port)}
	}
	return nil
}

// POST /nm/join: adds a host and its node manager (nodemanager-N in the
// Node Manager Group) to the topology and signs the node manager's CSR with
// the domain CA, in one topology change: when either fails nothing is
// written.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	if !s.admin {
		apihttp.WriteError(w, r, s.log, NotAdmin(s.store, s.conf))
		return
	}
	var b JoinRequest
	if err := apihttp.ReadBody(w, r, &b, joinFields); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	csr, dns, ips, err := checkJoinCSR([]byte(b.CSR), b.HostName, b.Address)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	ca, err := pki.LoadCA(s.h)
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "this Admin Node Manager's host has no domain CA key; it cannot sign the new host's certificate", Err: err})
		return
	}
	var ans JoinAnswer
	t, err := s.store.Update(r.Context(), topology.Actor{User: apihttp.UserOf(r.Context()), Via: "nm/join", Remote: apihttp.RemoteIP(r)}, "add host", 0, func(t *topology.Topology) (string, error) {
		if err := t.HostNameFree(b.HostName, ""); err != nil {
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
		want := PeerOf(t, &topology.Service{HostID: "-", ManagementPort: b.Port, Tags: map[string]string{domain.TagAddress: b.Address}}).Addr
		for _, p := range Peers(t, "") {
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
		cert, err := ca.Issue(pki.NodeManagerCommonName(nm.ID, hostID), dns, ips, csr.PublicKey, true)
		if err != nil {
			return "", err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		ans = JoinAnswer{HostID: hostID, NodeManagerID: nm.ID, Certificate: string(certPEM), CACertificate: string(ca.CertPEM())}
		return fmt.Sprintf("host %q (%s) with node manager %s at %s", b.HostName, hostID, nm.ID, want), nil
	})
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	ans.Topology = t
	s.log.Info("host joined the domain", "host", ans.HostID, "nodeManager", ans.NodeManagerID, "user", apihttp.UserOf(r.Context()), "remote", apihttp.RemoteIP(r))
	go func() {
		// Every other host learns of the new one; the new host has the
		// topology in the answer.
		ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
		defer cancel()
		s.net.Push.PushAll(ctx, false)
	}()
	apihttp.WriteChange(w, http.StatusCreated, ans, t.Version)
}

// checkJoinCSR parses the CSR of a joining node manager (pki.ParseCSR: its
// signature, key type and limits) and returns the names the domain CA will
// sign for it: its own only (the loopback names, hostName, address:
// CertNames), never names the CSR adds (400 naming them). FuzzJoinCSR
// holds it to that.
func checkJoinCSR(csrPEM []byte, hostName, address string) (*x509.CertificateRequest, []string, []net.IP, error) {
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return nil, nil, nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: "csr: " + err.Error()}
	}
	dns, ips := CertNames(hostName, address)
	if extra := foreignNames(csr, dns, ips); len(extra) > 0 {
		return nil, nil, nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the CSR asks for names that are not this node manager's (%s): the domain CA signs only its host name %q, its address %q and the loopback names",
			strings.Join(extra, ", "), hostName, address)}
	}
	return csr, dns, ips, nil
}

// foreignNames lists the names of csr outside dns and ips.
func foreignNames(csr *x509.CertificateRequest, dns []string, ips []net.IP) []string {
	var out []string
	for _, d := range csr.DNSNames {
		if !slices.Contains(dns, strings.ToLower(d)) {
			out = append(out, d)
		}
	}
	for _, ip := range csr.IPAddresses {
		if !slices.ContainsFunc(ips, ip.Equal) {
			out = append(out, ip.String())
		}
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		out = append(out, "e-mail or URI names")
	}
	return out
}

// PrepareRequest is the body of POST /nm/instances.
type PrepareRequest struct {
	Topology    *topology.Topology `json:"topology"` // the ANM's topology with the new instance, not yet written
	GroupID     string             `json:"groupID"`
	InstanceID  string             `json:"instanceID"`
	GroupConfig *string            `json:"groupConfig,omitempty"` // the group's conf/group.yaml on the ANM
}

// POST /nm/instances: writes the instance's directories and configuration
// on this host (domain.PrepareInstance), checking its ports against this
// host's. The ANM writes the topology when this succeeds, and pushes it.
func (s *Server) prepareInstance(w http.ResponseWriter, r *http.Request) {
	var b PrepareRequest
	if err := apihttp.ReadBody(w, r, &b, `"topology", "groupID", "instanceID", "groupConfig"`); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	if b.Topology == nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: "no topology"})
		return
	}
	if err := b.Topology.Validate(); err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()})
		return
	}
	if cur, err := s.store.Load(); err == nil && cur.ID != b.Topology.ID {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("topology of domain %s; this host is in domain %s", b.Topology.ID, cur.ID)})
		return
	}
	var conf []byte
	if b.GroupConfig != nil {
		conf = []byte(*b.GroupConfig)
	}
	if err := domain.PrepareInstance(s.h, b.Topology, b.GroupID, b.InstanceID, conf); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	csr, err := instanceCSR(s.h, b.GroupID, b.InstanceID)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	s.log.Info("instance files and key created for the Admin Node Manager", "instanceId", b.InstanceID, "groupId", b.GroupID)
	apihttp.WriteResult(w, http.StatusCreated, PrepareAnswer{InstanceID: b.InstanceID, HostID: s.conf.HostID, CSR: csr})
}

// localInstance is instance id of this host in this host's topology.
func (s *Server) localInstance(id string) (*topology.Service, error) {
	t, err := s.store.Load()
	if err != nil {
		return nil, err
	}
	ref, err := t.FindInstanceID(id)
	if err != nil {
		return nil, err
	}
	if ref.Service.HostID != s.conf.HostID {
		return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("instance %s is on host %s, not on this host (%s)", id, ref.Service.HostID, s.conf.HostID)}
	}
	return ref.Service, nil
}

// POST /nm/instances/{instanceID}/{start|stop|status}
func (s *Server) instanceAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("instanceID"), r.PathValue("action")
	svc, err := s.localInstance(id)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	var st supervisor.InstanceState
	switch action {
	case "start":
		s.log.Info("starting instance for the Admin Node Manager", "instanceId", id)
		st, err = s.sup.StartInstance(r.Context(), id)
	case "stop":
		s.log.Info("stopping instance for the Admin Node Manager", "instanceId", id)
		st, err = s.sup.StopInstance(r.Context(), id)
	case "status":
		st, err = s.sup.Status(id)
	case "deploy", "inservice", "setarchive":
		s.deployAction(w, r, id, action)
		return
	default:
		err = &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("no instance action %q; want start, stop, status, deploy, inservice or setarchive", action)}
	}
	if err != nil {
		if code, _ := apihttp.Classify(err); code == http.StatusInternalServerError {
			err = &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("instance %s (%q): %s failed: %v", svc.ID, svc.Name, action, err), Err: err}
		}
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, st)
}

// /nm/router/{instanceID}/{path...}: the router on this host (router.go),
// for a local instance.
func (s *Server) routeLocal(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("instanceID")
	if _, err := s.localInstance(id); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	r.SetPathValue("serviceID", id)
	s.router.ServeHTTP(w, r)
}

func (s *Server) getTopologyDoc(w http.ResponseWriter, r *http.Request) {
	t, err := s.store.Load()
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	w.Header().Set("ETag", apihttp.ETag(t.Version))
	apihttp.WriteResult(w, http.StatusOK, t)
}

func (s *Server) getTopologyState(w http.ResponseWriter, r *http.Request) {
	t, err := s.store.Load()
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, StateOf(s.conf.HostID, t))
}

// PUT /nm/topology: the ANM's topology, taken when its version is higher
// than this host's (409 otherwise) and of the same domain. The Admin Node
// Manager's own topology is changed by Update only: it refuses pushes.
func (s *Server) putTopology(w http.ResponseWriter, r *http.Request) {
	if s.admin {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: "this is the Admin Node Manager: its topology is the domain's and is not replaced by a push"})
		return
	}
	var t topology.Topology
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, apihttp.MaxBodyBytes))
	if err := dec.Decode(&t); err != nil {
		apihttp.WriteError(w, r, s.log, apihttp.BodyError(err, dec, "a topology document"))
		return
	}
	err := s.store.Replace(r.Context(), topology.Actor{User: peerNodeManager(r), Via: "nm/topology", Remote: apihttp.RemoteIP(r)}, "topology push", &t)
	if errors.Is(err, topology.ErrInvalid) {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
	}
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	s.log.Info("topology taken from the Admin Node Manager", "version", t.Version)
	s.followANMPort(&t)
	apihttp.WriteResult(w, http.StatusOK, StateOf(s.conf.HostID, &t))
}

func (s *Server) checkSync(w http.ResponseWriter, r *http.Request) {
	apihttp.WriteResult(w, http.StatusOK, s.net.Push.Check(r.Context()))
}

func (s *Server) syncAll(w http.ResponseWriter, r *http.Request) {
	by := peerNodeManager(r)
	s.log.Info("sync of every host's topology asked", "by", by, "remote", apihttp.RemoteIP(r))
	res := s.net.Push.PushAll(r.Context(), true)
	if s.audit.Log != nil {
		e := audit.Entry{User: "node manager " + by, Via: "nm", Remote: apihttp.RemoteIP(r), Action: "sync topology", Detail: "POST /nm/sync: the topology pushed to every host"}
		if _, err := s.audit.Log.Record(r.Context(), e); err != nil {
			s.audit.Warning(r.Context(), err)
		}
	}
	apihttp.WriteResult(w, http.StatusOK, res)
}
