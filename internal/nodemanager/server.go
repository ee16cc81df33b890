package nodemanager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/portinfo"
)

// Server timeouts (documented in docs/management-api.md).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	// maxHeaderBytes is the standard library's bound on a request head;
	// apihttp.Guard refuses a head over apihttp.MaxHeadBytes (64 KiB) with
	// the API's JSON 431 below it (docs/management-api.md).
	maxHeaderBytes = apihttp.ServerMaxHeaderBytes
)

// readTimeout bounds a whole request, body included (a client sending a
// login one byte at a time is cut off); uploads lift it for their body
// (apihttp.AllowSlowUpload). A variable so that a test can shorten it.
var readTimeout = 30 * time.Second

// server is the node manager's HTTPS listener on NodeManagerConf.Address
// and Port (8090 by default). It serves
//
//	/nm/...   node-to-node paths (internal/nodeapi): a client certificate signed by the domain CA is required
//	/api/...  the management API (internal/anm), on the Admin Node Manager only: HTTP Basic or a session
//	/metrics  Prometheus metrics of the node manager and its instances, when on (metrics.go)
//
// Its certificate is signed by the domain CA (nodeapi.NodeManagerCert).
// start and shutdown are called once each, by NodeManager.Start and
// Shutdown.
type server struct {
	n       *NodeManager
	log     *slog.Logger
	nm      http.Handler // /nm/
	api     http.Handler // /api/
	metrics http.Handler // /metrics (metrics.go)

	mu      sync.Mutex
	port    int // the port served; 0 before start (then nodemanager.yaml's)
	srv     *http.Server
	ln      net.Listener
	cancel  context.CancelFunc // of the requests' base context
	served  chan struct{}
	tls     *tls.Config    // the listener's, kept for a port switch
	retired sync.WaitGroup // listeners left by a port switch, shutting down
	moving  bool           // a port switch is under way (switchPort to Commit or Abort)
}

func newServer(n *NodeManager, log *slog.Logger, nm, api, metrics http.Handler) *server {
	return &server{n: n, log: log, nm: nm, api: api, metrics: metrics}
}

// listenAddress is Address:Port from nodemanager.yaml (8090 when no port),
// or the port a switch moved to.
func (s *server) listenAddress() string {
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	if port == 0 {
		port = s.n.conf.Port
	}
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
	dns, ips := nodeapi.CertNames(hostName, s.n.conf.Address)
	// A certificate regeneration whose commit a crash cut short is
	// finished first (pki.Pending).
	if done, err := pki.FinishPendingCommit(s.n.opts.Home); err != nil {
		return fmt.Errorf("finishing the certificates' regeneration: %w", err)
	} else if done {
		s.log.Info("certificates of an interrupted regeneration put in place", "dir", pki.PendingFor(s.n.opts.Home).Dir())
	}
	live, err := nodeapi.NodeManagerLive(s.n.opts.Home, s.log, pki.NodeManagerCommonName(s.n.conf.NodeManagerID, s.n.conf.HostID), dns, ips)
	if err != nil {
		return fmt.Errorf("node manager certificate: %w", err)
	}
	s.n.mgmt.SetIdentity(live) // also its client certificate towards instances
	ln, err := net.Listen("tcp", s.listenAddress())
	if err != nil {
		return fmt.Errorf("node manager listener: %w", err)
	}
	s.mu.Lock()
	s.tls = nodeapi.ServerTLSConfig(live)
	s.srv, s.cancel, s.served = s.serve(ln)
	s.ln, s.port = ln, ln.Addr().(*net.TCPAddr).Port
	s.mu.Unlock()
	return nil
}

// serve serves ln in the background with a new http.Server; served is
// closed when it has stopped. s.mu is held.
func (s *server) serve(ln net.Listener) (srv *http.Server, cancel context.CancelFunc, served chan struct{}) {
	base, cancel := context.WithCancel(context.Background())
	srv = &http.Server{
		Handler:           s.handler(),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
	}
	served = make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("node manager listener failed", "err", err)
		}
	}()
	return srv, cancel, served
}

// retireGrace bounds how long a listener left by a port switch finishes the
// requests it has (the one that asked for the switch among them).
const retireGrace = 30 * time.Second

// switchPort moves the listener to port, in the order that leaves nothing
// half-done (docs/managedomain.md, --nm_port):
//
//  1. port is checked against this host's instances (their effective
//     ports) and bound on the node manager's address: a port in use is
//     refused naming the process that holds it, and nothing has changed;
//  2. nodemanager.yaml's port is written (the next start binds it);
//  3. the new listener serves, beside the old one.
//
// Commit then retires the old listener: it stops accepting at once and
// finishes the requests it has, the one that asked for the switch among
// them, so its answer still reaches the caller. Abort closes the new
// listener and writes the old port back. Instances are not touched. One
// switch at a time.
func (s *server) switchPort(port int) (nodeapi.PortSwitch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.srv == nil:
		return nodeapi.PortSwitch{}, errors.New("the node manager's listener is not started")
	case s.moving:
		return nodeapi.PortSwitch{}, &apihttp.Error{Code: http.StatusConflict, Msg: "another change of this node manager's port is under way"}
	case port == s.port:
		return nodeapi.PortSwitch{}, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("node manager %s already listens on port %d", s.n.conf.NodeManagerID, port)}
	case port < 1 || port > 65535:
		return nodeapi.PortSwitch{}, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("port %d: want 1 to 65535", port)}
	}
	if used, err := domain.PortsInUse(s.n.opts.Home); err == nil {
		if who, ok := used[port]; ok {
			return nodeapi.PortSwitch{}, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("port %d is already used by %s on host %s; choose another (nothing was changed)", port, who, s.n.conf.HostID)}
		}
	}
	addr := net.JoinHostPort(s.n.conf.Address, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		msg := fmt.Sprintf("port %d cannot be bound on host %s (%s): %v", port, s.n.conf.HostID, addr, err)
		if pid, cmd, ok := portinfo.Holder(port); ok {
			msg = fmt.Sprintf("port %d on host %s is in use: held by pid %d (%s)", port, s.n.conf.HostID, pid, cmd)
		}
		return nodeapi.PortSwitch{}, &apihttp.Error{Code: http.StatusConflict, Msg: msg + "; nothing was changed", Err: err}
	}
	old, err := domain.SetNodeManagerPort(s.n.opts.Home, port)
	if err != nil {
		ln.Close()
		return nodeapi.PortSwitch{}, fmt.Errorf("writing the new port to nodemanager.yaml (nothing was changed): %w", err)
	}
	oldSrv, oldLn, oldCancel, oldServed, oldPort := s.srv, s.ln, s.cancel, s.served, s.port
	srv, cancel, served := s.serve(ln)
	s.srv, s.ln, s.cancel, s.served, s.port, s.moving = srv, ln, cancel, served, port, true
	s.log.Info("node manager listening on a new port; the old one is retired once the change is written", "port", port, "oldPort", oldPort)
	var once sync.Once
	commit := func() {
		once.Do(func() {
			s.mu.Lock()
			s.moving = false
			s.retired.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.retired.Done()
				ctx, cancelShut := context.WithTimeout(context.Background(), retireGrace)
				defer cancelShut()
				if err := oldSrv.Shutdown(ctx); err != nil {
					oldSrv.Close()
				}
				oldCancel()
				<-oldServed
				s.log.Info("old node manager port closed", "oldPort", oldPort, "port", port)
			}()
		})
	}
	abort := func() error {
		var err error
		once.Do(func() {
			s.mu.Lock()
			s.srv, s.ln, s.cancel, s.served, s.port, s.moving = oldSrv, oldLn, oldCancel, oldServed, oldPort, false
			s.mu.Unlock()
			srv.Close()
			cancel()
			<-served
			if old != 0 {
				_, err = domain.SetNodeManagerPort(s.n.opts.Home, old)
			}
			s.log.Warn("node manager port change undone", "port", oldPort, "abandoned", port, "err", err)
		})
		return err
	}
	return nodeapi.PortSwitch{Port: port, OldPort: oldPort, Commit: commit, Abort: abort}, nil
}

// handler routes /nm and /api; everything else is 404 in the API's error
// shape. apihttp.Guard refuses oversized heads (431) and lets a client
// still sending a body it was refused read its answer.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/nm/", s.nm) // /nm/ca and /nm/join open, the rest need a domain certificate
	mux.Handle("/api/", s.api)
	mux.Handle("/metrics", s.metrics) // when on: a domain certificate, or on the ANM a user with metrics.read
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("no resource %s; the management API is under /api", r.URL.Path)})
	})
	return apihttp.Guard(mux, s.log)
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
	s.retired.Wait()
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
