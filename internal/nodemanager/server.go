package nodemanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
)

// Server timeouts (documented in docs/management-api.md).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// server is the node manager's HTTPS listener on NodeManagerConf.Address
// and Port (8090 by default). It serves
//
//	/nm/...   node-to-node paths: a client certificate signed by the domain CA is required
//	/api/...  the management API (api*.go), on the Admin Node Manager only: HTTP Basic
//
// Its certificate is signed by the domain CA (tls.go). start and shutdown
// are called once each, by NodeManager.Start and Shutdown.
type server struct {
	n   *NodeManager
	log *slog.Logger
	api *api

	mu     sync.Mutex
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // of the requests' base context
	served chan struct{}
}

func newServer(n *NodeManager) *server {
	s := &server{n: n, log: n.log.With("subsystem", "server")}
	s.api = newAPI(n, n.sup)
	return s
}

// listenAddress is Address:Port from nodemanager.yaml (8090 when no port).
func (s *server) listenAddress() string {
	port := s.n.conf.Port
	if port == 0 {
		port = domain.DefaultNodeManagerPort
	}
	return net.JoinHostPort(s.n.conf.Address, strconv.Itoa(port))
}

// start loads (or issues) the certificate, binds the listener and serves in
// the background. When it returns nil the listener accepts connections.
func (s *server) start() error {
	hostName := ""
	if t, err := s.n.store.Load(); err == nil {
		if h, err := t.Host(s.n.conf.HostID); err == nil {
			hostName = h.Name
		}
	}
	dns, ips := certNames(hostName, s.n.conf.Address)
	cert, caCert, err := nodeManagerCert(s.n.opts.Home, s.log, nodeManagerCN(s.n.conf.NodeManagerID, s.n.conf.HostID), dns, ips)
	if err != nil {
		return fmt.Errorf("node manager certificate: %w", err)
	}
	s.n.mgmt.setIdentity(cert, caCert) // also its client certificate towards instances
	ln, err := net.Listen("tcp", s.listenAddress())
	if err != nil {
		return fmt.Errorf("node manager listener: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           s.handler(),
		TLSConfig:         serverTLSConfig(cert, caCert),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
	}
	s.mu.Lock()
	s.srv, s.ln, s.cancel, s.served = srv, ln, cancel, make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.served)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("node manager listener failed", "err", err)
		}
	}()
	return nil
}

// handler routes /nm and /api; everything else is 404 in the API's error
// shape.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/nm/", s.nmRoutes()) // nm_api.go: /nm/ca and /nm/join open, the rest requirePeer
	mux.Handle("/api/", s.api.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, &apiError{Code: http.StatusNotFound, Msg: fmt.Sprintf("no resource %s; the management API is under /api", r.URL.Path)})
	})
	return mux
}

// shutdown stops accepting, waits for requests in flight within ctx, then
// closes what is left.
func (s *server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, cancel, served := s.srv, s.cancel, s.served
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	cancel()
	if err != nil {
		srv.Close()
	}
	<-served
	if err != nil {
		return fmt.Errorf("stopping node manager listener: %w", err)
	}
	return nil
}

// addr is the bound address ("" before start).
func (s *server) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// requirePeer lets through only requests whose TLS client certificate was
// verified against the domain CA: node managers (and, later, instances).
func (s *server) requirePeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !verifiedPeer(r.TLS) {
			writeError(w, r, s.log, &apiError{Code: http.StatusForbidden, Msg: "node manager paths need a client certificate signed by the domain CA"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// nmHandler answers the /nm paths that nmRouteTable does not have: 404.
func (s *server) nmHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, &apiError{Code: http.StatusNotFound, Msg: fmt.Sprintf("no node manager resource %s; try /nm/status", r.URL.Path)})
	})
}

// GET /nm/status: this node manager and the states of its host's instances.
func (s *server) getStatus(w http.ResponseWriter, r *http.Request) {
	var version int64
	if t, err := s.n.store.Load(); err == nil {
		version = t.Version
	}
	writeResult(w, http.StatusOK, nmStatus{
		HostID: s.n.conf.HostID, NodeManagerID: s.n.conf.NodeManagerID, Admin: s.n.admin,
		TopologyVersion: version, Instances: s.api.sup.States(),
	})
}

type nmStatus struct {
	HostID          string          `json:"hostID"`
	NodeManagerID   string          `json:"nodeManagerID"`
	Admin           bool            `json:"admin"`
	TopologyVersion int64           `json:"topologyVersion"`
	Instances       []InstanceState `json:"instances"`
}
