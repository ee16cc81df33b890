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

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
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
//
// Its certificate is signed by the domain CA (nodeapi.NodeManagerCert).
// start and shutdown are called once each, by NodeManager.Start and
// Shutdown.
type server struct {
	n   *NodeManager
	log *slog.Logger
	nm  http.Handler // /nm/
	api http.Handler // /api/

	mu     sync.Mutex
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // of the requests' base context
	served chan struct{}
}

func newServer(n *NodeManager, log *slog.Logger, nm, api http.Handler) *server {
	return &server{n: n, log: log, nm: nm, api: api}
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
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           s.handler(),
		TLSConfig:         nodeapi.ServerTLSConfig(live),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
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
// shape. apihttp.Guard refuses oversized heads (431) and lets a client
// still sending a body it was refused read its answer.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/nm/", s.nm) // /nm/ca and /nm/join open, the rest need a domain certificate
	mux.Handle("/api/", s.api)
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
