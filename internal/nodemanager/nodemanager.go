// Package nodemanager is the node manager process of a host: it wires the
// supervisor of the host's gateway instances (internal/supervisor), the
// node-to-node API (internal/nodeapi) and, on the host created with
// managedomain -i, the Admin Node Manager's management API (internal/anm)
// behind one HTTPS listener (server.go) with the node manager's
// certificate.
//
// It is the only package that imports all three; the layering they follow
// (supervisor below nodeapi below anm, none of them importing this one) is
// checked by layers_test.go.
//
// Lifecycle: New → Start (binds the listener, starts supervising; the node
// manager is then ready) → Shutdown(ctx) → Wait. Instances keep running when
// the node manager stops: they are separate processes, and the
// pid-and-lock protocol (internal/home) lets the next node manager find them.
package nodemanager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/anm"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Options configure a NodeManager.
type Options struct {
	Home   home.Home
	Logger *slog.Logger // nil: a JSON logger to the node manager's log file is made by the tool
	// Exe is the gatehouse binary used to start instances (startinstance -d).
	Exe string
	// Console receives human-readable progress when not nil.
	Console io.Writer
	// Version is the Gatehouse version (the management API writes it into
	// backups).
	Version string
}

// NodeManager is one host's node manager. Its methods are safe for
// concurrent use.
type NodeManager struct {
	opts  Options
	log   *slog.Logger
	conf  domain.NodeManagerConf
	store *topology.Store
	admin bool // this host's node manager is the Admin Node Manager

	mgmt *supervisor.MgmtClient // the one client for instances' management listeners (mutual TLS)
	sup  *supervisor.Supervisor
	net  *nodeapi.Net // node-to-node client and, on the ANM, the topology pusher
	api  *anm.API     // /api (answers 404 on a node manager that is not the ANM)
	srv  *server

	backups      *schedule.Scheduler // the scheduled backups (backups.go); nil: none
	stopBackups  context.CancelFunc
	backupsEnded chan struct{}

	restart chan struct{} // POST /nm/nodemanager/restart (RestartRequested)

	mu       sync.Mutex
	started  bool
	stopping bool
	done     chan struct{}
	err      error
}

// New prepares the node manager of h. It binds nothing.
func New(opts Options) (*NodeManager, error) {
	if opts.Home.Dir == "" {
		return nil, errors.New("creating node manager: no install directory")
	}
	conf, err := domain.LoadNodeManagerConf(opts.Home)
	if err != nil {
		return nil, fmt.Errorf("creating node manager: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nodemanager", "hostId", conf.HostID, "nodeManagerId", conf.NodeManagerID)
	rec := audit.Recorder{Log: audit.Open(opts.Home), Logger: log}
	n := &NodeManager{opts: opts, log: log, conf: conf, store: topology.NewStore(opts.Home, rec), done: make(chan struct{})}
	topo, err := n.store.Load()
	if err != nil {
		return nil, fmt.Errorf("creating node manager: %w", err)
	}
	if svc, err := topo.AdminNodeManager(); err == nil && svc.ID == conf.NodeManagerID {
		n.admin = true
	}
	n.mgmt = supervisor.NewMgmtClient()
	n.sup = supervisor.New(supervisor.Config{Home: opts.Home, HostID: conf.HostID, Exe: opts.Exe, Topology: n.store, Logger: log, Client: n.mgmt, Passphrase: n.groupPassphrase})
	ctx, cancel := context.WithTimeout(context.Background(), 2*PassphraseExecTimeout)
	n.unlockScopes(ctx)
	cancel()
	if len(conf.PassphraseExec) > 0 {
		// A scope whose key this process lacks, or whose passphrase another
		// process changed meanwhile: passphraseExec is asked again.
		secret.SetUnlocker(opts.Home, func(s secret.Scope) error {
			ctx, cancel := context.WithTimeout(context.Background(), PassphraseExecTimeout+5*time.Second)
			defer cancel()
			p, err := ExecPassphrase(ctx, opts.Home, conf, s)
			p.Wipe()
			if err != nil {
				log.Warn("a passphrase scope stays locked", "scope", string(s), "error", err.Error())
			}
			return err
		})
	}
	n.net = nodeapi.NewNet(opts.Home, conf.HostID, n.store, log)
	apiLog := log.With("subsystem", "api")
	router := nodeapi.NewRouter(apiLog, n.mgmt, n.store, conf.HostID)
	switchPort := func(port int) (nodeapi.PortSwitch, error) { return n.srv.switchPort(port) }
	n.api = anm.New(anm.Config{Home: opts.Home, Conf: conf, Admin: n.admin, Store: n.store, Audit: rec, Logger: apiLog,
		Instances: n.sup, Net: n.net, Router: router, SwitchPort: switchPort, Version: opts.Version})
	if n.backups, err = n.newBackups(); err != nil {
		return nil, fmt.Errorf("creating node manager: %w", err)
	}
	srvLog := log.With("subsystem", "server")
	n.restart = make(chan struct{}, 1)
	requestRestart := func() error {
		select {
		case n.restart <- struct{}{}:
			return nil
		default:
			return errors.New("a restart is already requested")
		}
	}
	nm := nodeapi.NewServer(nodeapi.Config{Home: opts.Home, Conf: conf, Admin: n.admin, Store: n.store, Logger: srvLog,
		Instances: n.sup, Net: n.net, Router: router, JoinAuth: n.api.AuthorizeJoin, Audit: rec, SwitchPort: switchPort, Version: opts.Version,
		Restart: requestRestart})
	n.srv = newServer(n, srvLog, nm.Handler(), n.api.Handler(), n.metricsHandler())
	if n.admin {
		if err := n.api.LoadAccess(); err != nil {
			return nil, fmt.Errorf("creating node manager: %w", err)
		}
		if err := n.api.LoadJobs(); err != nil {
			return nil, fmt.Errorf("creating node manager: %w", err)
		}
	}
	return n, nil
}

// Admin reports whether this is the Admin Node Manager.
func (n *NodeManager) Admin() bool { return n.admin }

// Supervisor returns the supervisor of the host's instances.
func (n *NodeManager) Supervisor() *supervisor.Supervisor { return n.sup }

// Addr is the listener's address once started.
func (n *NodeManager) Addr() string { return n.srv.addr() }

// Start binds the listener and starts supervising. When it returns nil the
// node manager is ready.
func (n *NodeManager) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("starting node manager: already started")
	}
	n.started = true
	if err := n.srv.start(); err != nil {
		close(n.done)
		return fmt.Errorf("starting node manager: %w", err)
	}
	n.sup.Start()
	if n.backups != nil {
		ctx, cancel := context.WithCancel(context.Background())
		n.stopBackups, n.backupsEnded = cancel, make(chan struct{})
		go func() {
			defer close(n.backupsEnded)
			n.backups.Run(ctx)
		}()
	}
	if n.admin {
		n.net.Push.Start()
		n.api.ResumeRollouts(context.Background())
	}
	n.log.Info("node manager started", "admin", n.admin, "address", n.srv.addr())
	return nil
}

// Shutdown stops serving and supervising (instances keep running), within
// ctx.
func (n *NodeManager) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.stopping || !n.started {
		n.mu.Unlock()
		<-n.done
		return nil
	}
	n.stopping = true
	n.mu.Unlock()
	if n.stopBackups != nil {
		n.stopBackups() // a backup being written is cut: its partial file removed
		<-n.backupsEnded
	}
	n.net.Push.Stop()
	err := errors.Join(n.srv.shutdown(ctx), n.api.Wait(ctx), n.sup.Stop(ctx))
	n.api.Close() // the groups' key property stores the API opened
	n.net.Close()
	n.log.Info("node manager stopped")
	n.mu.Lock()
	n.err = err
	n.mu.Unlock()
	close(n.done)
	return err
}

// RestartRequested is told when the Admin Node Manager asks this node
// manager to restart on the install directory's binary (an upgrade): the
// program running it shuts it down and starts the new one (the instances
// keep running, as across nodemanager -k and -d).
func (n *NodeManager) RestartRequested() <-chan struct{} { return n.restart }

// Wait blocks until the node manager has stopped.
func (n *NodeManager) Wait() error {
	<-n.done
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}
