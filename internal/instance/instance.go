// Package instance is the gateway instance process (the data plane), as a
// library that the startinstance tool runs. An Instance serves three
// listeners: traffic (API requests, health checks), management (status,
// loopback only) and, when enabled, the sample back-end service.
//
// Lifecycle: New → Start → Shutdown(ctx) → Wait, with Close for an immediate
// stop. Start binds every listener before it returns (all or none) and the
// instance is then ready. Shutdown walks the phases (see Phase): with
// zero-downtime shutdown enabled, /healthchecklb turns 503 at once and
// everything else is served for zeroDowntime.shutdown.delay; then the traffic
// listener closes, in-flight requests finish within
// zeroDowntime.shutdown.drainTimeout (after which their connections are
// closed), then the management listener, and the sample service last (so that
// requests forwarded to it finish). Cancelling Shutdown's context, or calling
// Close, stops everything at once. Wait returns when everything has stopped.
//
// The instance serves from one immutable runtime configuration held in an
// atomic pointer; each request loads it once. Swap replaces it without
// dropping connections, and rebinds a listener only when its settings
// changed (new socket first, then the old one drains: socket.go); Reload
// loads the configuration again (Options.Load) and swaps it. The management
// listener offers both to node managers (POST /deployment/reload), and
// POST /deployment/lb takes the instance out of the load balancer and back.
//
// Logs (JSON, rotated) go to logs/instance.log and logs/access.log in the
// instance directory; see docs/instance.md.
package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/cache/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/cluster"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/portinfo"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/remotehost"
	"github.com/gatehouse-gw/gatehouse/internal/sample"
)

// Options configure an Instance.
type Options struct {
	Home         home.Home // the install directory
	GroupID      string    // e.g. "group-2"
	InstanceID   string    // e.g. "instance-1"
	GroupName    string
	InstanceName string
	Config       *groupconf.Config // loaded and validated; never modified
	Quiet        bool              // when false, the instance log also goes to Console as text
	Console      io.Writer         // usually os.Stderr; nil means nowhere

	// ManagementTLS, when set, makes the management listener serve TLS with
	// this configuration; startinstance sets LoadManagementTLS's (mutual TLS
	// with the domain CA). Nil serves plain HTTP (in-process tests).
	ManagementTLS *tls.Config
	// NodeManager is the common name of the certificate of this host's
	// node manager (pki.NodeManagerCommonName): with ManagementTLS, the
	// management listener takes POSTs only from it. Empty: from any node
	// manager of the domain (in-process tests).
	NodeManager string

	// Load, when set, loads the configuration again for Reload (POST
	// /deployment/reload, SIGHUP in startinstance): startinstance loads it
	// exactly as at start (groupconf.LoadInstance with the same -D
	// properties). Nil makes Reload fail.
	Load func() (*groupconf.Config, error)
}

// Instance is one gateway instance. Its methods are safe for concurrent use.
type Instance struct {
	opts     Options
	logs     *logs
	log      *slog.Logger // component=instance
	proxyLog *slog.Logger // component=proxy
	jwtLog   *slog.Logger // component=jwt (the jwt policies' key sources)
	ids      *idSource

	remoteHosts *remotehost.Registry // per-address state across configurations; watchdogs
	caches      *cache.Registry      // the group's named caches across configurations (caches.go)

	rt       atomic.Pointer[runtime]
	phase    atomic.Int32
	inFlight atomic.Int64

	metrics                         *metrics.Metrics // served at /metrics on the management listener
	apiHealth, apiNone, apiRejected *metrics.API     // requests outside any API

	inService atomic.Bool // false: taken out of the load balancer (POST /deployment/lb); /healthchecklb answers 503
	lease     lbLease     // the out-of-service lease, when the instance was taken out with one

	// Lock order: reloadMu, then swapMu, then mu, then a socket's mu.
	reloadMu sync.Mutex // serializes Reload (Load and Swap)
	swapMu   sync.Mutex // serializes Start and Swap (the listener generations)

	mu         sync.Mutex // guards the fields below
	started    bool
	stopping   bool // Shutdown or Close is driving the stop
	startedAt  time.Time
	shutdownAt time.Time
	servers    []*server            // the current generation of each listener: traffic, management, sample (the close order)
	retired    map[*server]struct{} // generations replaced by a swap, still draining
	serveErr   error                // the first listener failure, or the Start error
	serveWG    sync.WaitGroup
	abort      chan struct{} // closed by Close
	abortOnce  sync.Once
	done       chan struct{} // closed when stopped
	finishOnce sync.Once

	bus atomic.Pointer[cluster.Bus] // the group's cluster bus (cluster.go); nil when disabled
	// cacheRepl carries the replicated caches over the bus (cluster.go).
	cacheRepl *cluster.CacheReplicator

	rateLimits *ratelimit.Service // the rateLimit policies' counters across configurations (ratelimits.go)

	ticketsMu sync.Mutex
	tickets   *ticketShare // the TLS session-ticket keys shared with the group (tickets.go)

	// Test hooks, set before Start.
	testHookRequest func(*h1.Request) // called as a traffic request enters
	testHookPhase   func(Phase)       // called on each phase change
	// testHookKPSForget is called after a KPS change from the bus was applied.
	testHookKPSForget func(cluster.KPSChange)
}

// servable is what serves a listener.
type servable interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// drainer is a servable that can ask clients to reconnect elsewhere.
type drainer interface{ SetDraining(bool) }

// New prepares an instance: it opens the logs in the instance's logs/
// directory and compiles the configuration. It binds nothing.
func New(opts Options) (*Instance, error) {
	if opts.Config == nil {
		return nil, errors.New("creating instance: no configuration")
	}
	if opts.GroupID == "" || opts.InstanceID == "" {
		return nil, errors.New("creating instance: group and instance ids are required")
	}
	if opts.Home.Dir == "" {
		return nil, errors.New("creating instance: no install directory")
	}
	cfg := opts.Config
	lg, err := openLogs(opts.Home.InstanceLogsDir(opts.GroupID, opts.InstanceID), cfg.Log, opts.Quiet, opts.Console)
	if err != nil {
		return nil, fmt.Errorf("creating instance: %w", err)
	}
	ids, err := newIDSource()
	if err != nil {
		lg.close()
		return nil, fmt.Errorf("creating instance: %w", err)
	}
	base := lg.instance.With("groupId", opts.GroupID, "instanceId", opts.InstanceID)
	i := &Instance{
		opts:     opts,
		logs:     lg,
		log:      base.With("component", "instance"),
		proxyLog: base.With("component", "proxy"),
		jwtLog:   base.With("component", "jwt"),
		ids:      ids,
		abort:    make(chan struct{}),
		done:     make(chan struct{}),
		retired:  map[*server]struct{}{},
	}
	i.inService.Store(true)
	i.initMetrics()
	i.remoteHosts = remotehost.NewRegistry(remotehost.Options{Dir: opts.Home.Dir, Logger: base.With("component", "remotehost")})
	i.metrics.SetAddressSource(func(dst []metrics.AddressState) []metrics.AddressState {
		for _, a := range i.remoteHosts.AppendMetrics(nil) {
			dst = append(dst, metrics.AddressState(a))
		}
		return dst
	})
	i.newCaches()
	gs, _, err := i.groupStoreFor(cfg, nil)
	if err != nil {
		lg.close()
		return nil, fmt.Errorf("creating instance: %w", err)
	}
	i.newRateLimits()
	rt, err := buildRuntime(cfg, i.proxyLog, i.remoteHosts, gs, i.jwtOptions(nil), i.caches, i.rateLimits)
	if err != nil {
		gs.close()
		lg.close()
		return nil, fmt.Errorf("creating instance: %w", err)
	}
	i.resolveMetrics(rt)
	i.rt.Store(rt)
	i.remoteHosts.Activate(rt.hosts)
	i.caches.Activate(rt.caches)
	i.runCaches()
	return i, nil
}

// Phase returns the current phase.
func (i *Instance) Phase() Phase { return Phase(i.phase.Load()) }

// setPhase moves to phase p; phases never move backwards.
func (i *Instance) setPhase(p Phase) {
	var old Phase
	for {
		o := i.phase.Load()
		if Phase(o) >= p {
			return
		}
		if i.phase.CompareAndSwap(o, int32(p)) {
			old = Phase(o)
			break
		}
	}
	attrs := []any{"phase", p.String(), "from", old.String()}
	i.mu.Lock()
	if !i.shutdownAt.IsZero() {
		attrs = append(attrs, "sinceShutdownMs", time.Since(i.shutdownAt).Milliseconds())
	}
	i.mu.Unlock()
	i.log.Info("phase changed", attrs...)
	if i.testHookPhase != nil {
		i.testHookPhase(p)
	}
}

// Ports returns the bound ports (zero before Start).
func (i *Instance) Ports() Ports {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.portsLocked()
}

// PortInUseError is returned by Start when a listener's port is taken. PID
// and Command name the process holding it when it could be found.
type PortInUseError struct {
	Listener string // "traffic", "management" or "sample"
	Address  string // as configured; empty means every interface
	Port     int
	PID      int
	Command  string
	Err      error
}

func (e *PortInUseError) Error() string {
	addr := e.Address
	if addr == "" {
		addr = "0.0.0.0"
	}
	s := fmt.Sprintf("%s listener: port %d on %s is in use", e.Listener, e.Port, addr)
	if e.PID > 0 {
		return s + fmt.Sprintf(" by pid %d (%s)", e.PID, e.Command)
	}
	return s + " (holder not found)"
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// Start binds every listener and starts serving. When one cannot be bound,
// the others are closed and the error names the listener (a
// *PortInUseError for a port in use). When Start returns nil the instance is
// ready: health checks answer 200.
func (i *Instance) Start() error {
	i.swapMu.Lock()
	defer i.swapMu.Unlock()
	i.mu.Lock()
	if i.started || i.stopping {
		i.mu.Unlock()
		return errors.New("starting instance: already started or stopped")
	}
	i.started = true
	next, _, _, err := i.plan(i.rt.Load().cfg, nil) // binds everything or nothing
	if err != nil {
		i.serveErr = err
		i.stopping = true
		i.mu.Unlock()
		i.log.Error("start failed", "error", err.Error())
		i.finish()
		return fmt.Errorf("starting instance: %w", err)
	}
	i.startedAt = time.Now()
	i.servers = next
	for _, g := range next {
		i.launchLocked(g)
	}
	p := i.portsLocked()
	i.mu.Unlock()
	i.startBus()
	i.setPhase(PhaseServing)
	i.log.Info("instance started", "groupName", i.opts.GroupName, "instanceName", i.opts.InstanceName,
		"trafficPort", p.Traffic, "managementPort", p.Management, "samplePort", p.Sample)
	warnGroupFile(i.log, i.rt.Load().cfg)
	return nil
}

// plan builds the listener generations that cfg needs, beside the current
// ones (cur; nil at Start): next is the new list of current generations (the
// kept ones and the new ones, in close order), fresh the new ones (socket
// bound or shared with the generation they replace; nothing started), and old
// the generations they replace or that cfg drops. On error the sockets it
// bound are closed again and nothing has changed.
func (i *Instance) plan(cfg *groupconf.Config, cur []*server) (next, fresh, old []*server, err error) {
	byName := map[string]*server{}
	for _, g := range cur {
		byName[g.name] = g
	}
	var bound []*socket
	defer func() {
		if err != nil {
			for _, s := range bound {
				s.close()
			}
		}
	}()
	for _, sp := range listenerSpecs(cfg) {
		o := byName[sp.name]
		delete(byName, sp.name)
		if o != nil && o.spec.sameSettings(sp) {
			next = append(next, o)
			continue
		}
		srv, err := i.newServable(sp, cfg)
		if err != nil {
			return nil, nil, nil, withKind(ErrConfig, err)
		}
		var sock *socket
		if o != nil && o.spec.sameSocket(sp) {
			sock = o.sock
		} else {
			if sock, err = bindSocket(sp); err != nil {
				return nil, nil, nil, withKind(ErrListen, err)
			}
			bound = append(bound, sock)
		}
		g := &server{name: sp.name, spec: sp, sock: sock, cl: newChanListener(sock.ln.Addr()), srv: srv}
		g.ln = g.cl
		if sp.name == "traffic" && cfg.Traffic.ProxyProtocol {
			g.ln = i.newProxyProtocolListener(g.ln, cfg.Traffic) // plain and TLS alike: under the TLS front
		}
		if sp.name == "management" && i.opts.ManagementTLS != nil {
			g.ln = tls.NewListener(g.ln, i.opts.ManagementTLS)
		}
		next = append(next, g)
		fresh = append(fresh, g)
		if o != nil {
			old = append(old, o)
		}
	}
	for _, g := range cur {
		if byName[g.name] == g { // not wanted any more (sample turned off)
			old = append(old, g)
		}
	}
	return next, fresh, old, nil
}

// newServable builds what serves the listener of sp.
func (i *Instance) newServable(sp listenerSpec, cfg *groupconf.Config) (servable, error) {
	switch sp.name {
	case "traffic":
		return i.trafficServer(cfg)
	case "management":
		return newHTTPServer(cfg.Management, managementHandler{i}, i.lgWith("http")), nil
	default:
		return newHTTPServer(sp.l, sample.New(i.lgWith("sample")), i.lgWith("http")), nil
	}
}

// launchLocked starts serving g (and its socket's accept loop when the
// socket is new), then points the socket at g. Called with i.mu held.
func (i *Instance) launchLocked(g *server) {
	i.serveWG.Add(1)
	go i.serve(g)
	if !g.sock.started {
		g.sock.started = true
		i.serveWG.Add(1)
		go i.accept(g.sock)
	}
	g.sock.setTarget(g.cl)
}

func (i *Instance) portsLocked() Ports {
	var p Ports
	for _, s := range i.servers {
		switch s.name {
		case "traffic":
			p.Traffic = s.port()
		case "management":
			p.Management = s.port()
		case "sample":
			p.Sample = s.port()
		}
	}
	return p
}

func (i *Instance) lgWith(component string) *slog.Logger {
	return i.logs.instance.With("groupId", i.opts.GroupID, "instanceId", i.opts.InstanceID, "component", component)
}

// listen binds one listener; a port in use gives a *PortInUseError.
func listen(name string, l groupconf.Listener) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(l.Address, strconv.Itoa(l.Port)))
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		e := &PortInUseError{Listener: name, Address: l.Address, Port: l.Port, Err: err}
		e.PID, e.Command, _ = portinfo.Holder(l.Port)
		return nil, e
	}
	return nil, fmt.Errorf("%s listener: listening on %s port %d: %w", name, l.Address, l.Port, err)
}

// newHTTPServer is the one place listeners get their http.Server: timeouts
// and header limit from the configuration.
func newHTTPServer(l groupconf.Listener, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(),
		ReadTimeout:       l.ReadTimeout.D(),
		WriteTimeout:      l.WriteTimeout.D(),
		IdleTimeout:       l.IdleTimeout.D(),
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func (i *Instance) serve(s *server) {
	defer i.serveWG.Done()
	// A server closed before it started serving returns without closing
	// its listener: close it, so that a socket handing over a connection
	// does not wait for an Accept that never comes.
	defer s.cl.Close()
	err := s.srv.Serve(s.ln)
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, h1.ErrServerClosed) {
		return
	}
	i.failed(s.name, fmt.Errorf("%s listener: serving: %w", s.name, err))
}

// accept runs the accept loop of s until it is closed.
func (i *Instance) accept(s *socket) {
	defer i.serveWG.Done()
	if err := s.acceptLoop(); err != nil {
		i.failed(s.name, fmt.Errorf("%s listener: accepting connections: %w", s.name, err))
	}
}

// failed records the failure of a listener and stops the instance.
func (i *Instance) failed(name string, err error) {
	i.log.Error("listener failed; stopping", "listener", name, "error", err.Error())
	i.mu.Lock()
	if i.serveErr == nil {
		i.serveErr = err
	}
	i.mu.Unlock()
	go i.Close()
}

// ErrDrainTimeout is returned (wrapped) by Shutdown when in-flight requests
// did not finish within the drain timeout and their connections were closed.
var ErrDrainTimeout = errors.New("drain timeout reached; remaining connections closed")

// Shutdown stops the instance gracefully (see the package comment for the
// phases) and returns when it has stopped. Cancelling ctx stops everything at
// once; Shutdown then returns ctx's error. It returns an error wrapping
// ErrDrainTimeout when connections had to be closed. A second call waits for
// the first to finish (cancelling its ctx stops at once).
func (i *Instance) Shutdown(ctx context.Context) error {
	i.mu.Lock()
	switch {
	case !i.started:
		i.mu.Unlock()
		return i.Close()
	case i.stopping:
		i.mu.Unlock()
		select {
		case <-i.done:
			return nil
		case <-ctx.Done():
			_ = i.Close()
			return ctx.Err()
		}
	}
	i.stopping = true
	i.shutdownAt = time.Now()
	servers := i.servers
	i.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-i.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	stopNow := func() error {
		i.closeNow()
		i.finish()
		return ctx.Err()
	}

	zdt := i.rt.Load().cfg.ZeroDowntime.Shutdown
	drain := zdt.DrainTimeout.D()
	i.log.Info("shutdown requested", "zeroDowntime", zdt.Enabled, "delay", zdt.Delay.String(), "drainTimeout", drain.String())
	if zdt.Enabled {
		// Clients are asked to reconnect elsewhere before the phase says
		// draining, so that nobody who sees the phase gets a kept-alive answer.
		for _, s := range servers {
			if d, ok := s.srv.(drainer); ok {
				d.SetDraining(true)
			}
		}
		i.setPhase(PhaseDraining)
		t := time.NewTimer(zdt.Delay.D())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return stopNow()
		}
	}
	i.setPhase(PhaseClosing)
	drainCtx, cancelDrain := context.WithTimeout(ctx, drain)
	defer cancelDrain()
	var forced []string
	for _, s := range servers { // traffic, management, sample
		s.sock.close()
		err := s.srv.Shutdown(drainCtx)
		switch {
		case ctx.Err() != nil:
			return stopNow()
		case err != nil && drainCtx.Err() != nil:
			_ = s.srv.Close()
			forced = append(forced, s.name)
			i.log.Warn("drain timeout reached; closing connections", "listener", s.name, "drainTimeout", drain.String())
		case err != nil:
			i.log.Warn("closing listener", "listener", s.name, "error", err.Error())
		}
	}
	i.finish()
	if forced != nil {
		return fmt.Errorf("shutting down: %w", ErrDrainTimeout)
	}
	return nil
}

// Close stops the instance at once: listeners and connections are closed,
// in-flight requests are cut. It returns when the instance has stopped. It
// may be called at any time, also during Shutdown, which it cuts short.
func (i *Instance) Close() error {
	i.abortOnce.Do(func() { close(i.abort) })
	i.mu.Lock()
	driving := !i.stopping
	i.stopping = true
	i.mu.Unlock()
	if driving {
		i.closeNow()
		i.finish()
	}
	<-i.done
	return nil
}

// closeNow closes every listener and connection, in the close order.
func (i *Instance) closeNow() {
	if i.Phase() < PhaseClosing {
		i.setPhase(PhaseClosing)
	}
	i.mu.Lock()
	servers := append([]*server(nil), i.servers...)
	for g := range i.retired {
		servers = append(servers, g)
	}
	i.mu.Unlock()
	for _, s := range servers {
		s.sock.close()
		_ = s.srv.Close()
	}
}

// finish ends the stop: it waits for the Serve loops, releases the back
// ends' connections, logs, closes the log files and releases Wait.
func (i *Instance) finish() {
	i.finishOnce.Do(func() {
		i.serveWG.Wait()
		i.closeBus()
		i.rateLimits.Close()
		i.remoteHosts.Close()
		i.rt.Load().closeIdle()
		i.rt.Load().kps.close()
		i.stopTickets()
		i.rt.Load().stopPolicies()
		if s := i.rt.Load().jwt; s != nil {
			s.Wait()
		}
		i.setPhase(PhaseStopped)
		i.log.Info("instance stopped")
		i.logs.close()
		close(i.done)
	})
}

// Wait blocks until the instance has stopped. It returns nil after a stop by
// Shutdown or Close (even a forced one), the error of a listener that failed
// while serving, or the error of a Start that failed.
func (i *Instance) Wait() error {
	<-i.done
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.serveErr
}

// trafficServer builds what serves the traffic listener: the strict
// HTTP/1.1 engine, behind the TLS front (which adds HTTP/2) when TLS is on.
func (i *Instance) trafficServer(cfg *groupconf.Config) (servable, error) {
	t := cfg.Traffic
	h := trafficHandler{i}
	s := &h1.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeaderTimeout.D(),
		ReadTimeout:       t.ReadTimeout.D(),
		BodyIdleTimeout:   t.BodyIdleTimeout.D(),
		WriteTimeout:      t.WriteTimeout.D(),
		IdleTimeout:       t.IdleTimeout.D(),
		MaxHeaderBytes:    t.MaxHeaderBytes,
		MaxHeaderCount:    t.MaxHeaderCount,
		Logger:            i.lgWith("h1"),
		ErrorBody: func(status int, reason string) (string, []byte) {
			return "application/json", proxy.ErrorJSON(status, "the request was refused: "+reason)
		},
	}
	s.OnReject = i.onReject // metrics, and the access log when enabled
	if !t.TLS.Enabled() {
		return s, nil
	}
	tc, err := loadTLS(i.opts.Home, t)
	if err != nil {
		return nil, err
	}
	f := newTLSFront(tc, s, h, t, i.lgWith("tls"))
	switch st := t.TLS.SessionTickets; {
	case !st.Enabled:
		tc.SessionTicketsDisabled = true
	case st.Shared:
		f.onStop = i.ticketRotator(cfg).Attach(tc)
	}
	return f, nil
}
