package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/cache/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/policy/build"
	"github.com/gatehouse-gw/gatehouse/internal/policy/jwt"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/remotehost"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// runtime is everything a request needs from one configuration, compiled
// once: the routing table, one forwarder per route, the back ends with their
// connection pools, the policy chain. It is immutable; the instance holds the
// current one in an atomic pointer and each request loads it once.
type runtime struct {
	cfg        *groupconf.Config
	loadedAt   time.Time
	table      *route.Table
	forwarders []*proxy.Forwarder // indexed by route.Route.Index
	backends   []*proxy.Backend
	hosts      *remotehost.Set // the back ends' remote hosts (state kept by the instance's registry)
	chains     []policy.Chain  // indexed by route.Route.Index: each API's policies
	clients    *clientResolver // trusted proxies, client-certificate header
	apiMetrics []*metrics.API  // indexed by route.Route.Index; set by Instance.resolveMetrics
	kps        *groupStore     // the group's KPS, when a policy needs it (shared with the next runtime while its settings stay)
	// jwt are the key sources of the jwt policies, their background
	// fetches running until stopJWT (called when the runtime is replaced,
	// not taken, or the instance stops); requests in flight on a replaced
	// runtime still find its cached keys.
	jwt     *jwt.Sources
	stopJWT context.CancelFunc
	// oauth is the group's authorization server (oauth.enabled), its
	// purge running until stopOAuth.
	oauth     *oauthServer
	stopOAuth context.CancelFunc
	caches    *cache.Set // the configuration's caches (activated in the instance's registry with the runtime)
}

// stopPolicies stops the background work of the runtime's policies (the
// jwt key sources' refreshes).
func (rt *runtime) stopPolicies() {
	if rt != nil && rt.stopJWT != nil {
		rt.stopJWT()
	}
	if rt != nil && rt.stopOAuth != nil {
		rt.stopOAuth()
	}
}

// buildRuntime compiles cfg. The jwt key sources it makes (jo; with
// jo.Previous, the replaced runtime's, whose key sets they take over)
// start fetching at once: the caller calls stopPolicies on a runtime it
// does not take.
func buildRuntime(cfg *groupconf.Config, log *slog.Logger, reg *remotehost.Registry, gs *groupStore, jo jwt.SourcesOptions, caches *cache.Registry, rl *ratelimit.Service) (*runtime, error) {
	table, err := route.Compile(cfg.APIs)
	if err != nil {
		return nil, fmt.Errorf("compiling routes: %w", err)
	}
	rt := &runtime{cfg: cfg, loadedAt: time.Now(), table: table, forwarders: make([]*proxy.Forwarder, len(cfg.APIs)), chains: make([]policy.Chain, len(cfg.APIs)), kps: gs}
	if rt.clients, err = newClientResolver(cfg.Traffic); err != nil {
		return nil, err
	}
	if rt.hosts, err = reg.Build(cfg); err != nil {
		return nil, fmt.Errorf("building remote hosts: %w", err)
	}
	byName := map[string]*proxy.Backend{}
	for bi, b := range cfg.Backends {
		be, err := proxy.NewBackendOn(b, cfg.Sample, rt.hosts.Host(bi))
		if err != nil {
			return nil, fmt.Errorf("building back ends: %w", err)
		}
		byName[b.Name] = be
		rt.backends = append(rt.backends, be)
	}
	opts := proxy.Options{Logger: log}
	if rt.oauth, err = buildOAuth(cfg, gs); err != nil {
		return nil, err
	}
	deps := gs.deps()
	rt.caches = caches.Prepare(cacheConfigs(cfg))
	deps.Caches = rt.caches
	deps.JWT = jwt.NewSources(jo)
	deps.OAuth = rt.oauth.verifier()
	deps.RateLimits = rl
	for _, r := range table.Routes() {
		be := byName[r.Backend]
		if be == nil {
			return nil, fmt.Errorf("API %q: back end %q is not defined", r.Name, r.Backend)
		}
		rt.forwarders[r.Index] = proxy.NewForwarder(be, r, opts)
		if rt.chains[r.Index], err = build.Chain(cfg.APIs[r.Index], deps); err != nil {
			return nil, err
		}
	}
	if deps.JWT.Len() > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		rt.jwt, rt.stopJWT = deps.JWT, cancel
		deps.JWT.Start(ctx)
	}
	if rt.oauth != nil {
		ctx, cancel := context.WithCancel(context.Background())
		rt.stopOAuth = cancel
		rt.oauth.start(ctx, cfg.OAuth.AccessTokenLifetime.D())
	}
	return rt, nil
}

func (rt *runtime) closeIdle() { rt.hosts.CloseIdle() }

// Kinds of Swap and Reload errors, for errors.Is. Whatever the kind, a
// failed swap changed nothing.
var (
	// ErrConfig: the configuration was refused (it does not load or
	// validate, its routes do not compile, a file it names cannot be read).
	ErrConfig = errors.New("configuration refused")
	// ErrListen: a listener of the new configuration cannot be bound (a
	// *PortInUseError for a port in use).
	ErrListen = errors.New("listener cannot be bound")
	// ErrStopping: the instance is stopping (or stopped).
	ErrStopping = errors.New("instance is stopping")
)

// kindError gives err a kind (one of the sentinels above) for errors.Is
// without changing its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string        { return e.err.Error() }
func (e *kindError) Unwrap() error        { return e.err }
func (e *kindError) Is(target error) bool { return target == e.kind }

func withKind(kind, err error) error {
	if err == nil || errors.Is(err, kind) {
		return err
	}
	return &kindError{kind: kind, err: err}
}

// Swap builds a runtime for cfg beside the current one and swaps it in
// atomically: requests that already started finish with the old one, the
// next ones use the new one. Every setting follows cfg; the log files keep
// their place. Swaps are serialized.
//
// Listeners change only when their settings change (see socket.go and
// docs/instance.md): a changed address or port is bound first (when that
// fails the swap is refused: ErrListen), the new listener serves, the
// runtime is swapped, then the old listener stops accepting and drains
// (in-flight requests finish, idle connections close, the rest is closed
// after zeroDowntime.shutdown.drainTimeout). Other listener settings get a
// new server on the same socket and the old server drains the same way. A
// swap that changes no listener setting leaves listeners and connections
// alone: keep-alive connections, WebSockets and streams stay open, requests
// in flight finish on the old runtime.
//
// The old back ends' idle connections are closed; their busy ones close
// when done. Errors wrap ErrConfig, ErrListen or ErrStopping.
func (i *Instance) Swap(cfg *groupconf.Config) error {
	_, err := i.swap(cfg)
	return err
}

// swap is Swap; it also returns what changed in the listeners, for the log.
func (i *Instance) swap(cfg *groupconf.Config) (changed []string, err error) {
	if cfg == nil {
		return nil, withKind(ErrConfig, errors.New("swapping configuration: no configuration"))
	}
	i.swapMu.Lock()
	defer i.swapMu.Unlock()
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return nil, withKind(ErrConfig, fmt.Errorf("swapping configuration: log level: %w", err))
	}
	i.mu.Lock()
	started, stopping, cur := i.started, i.stopping, i.servers
	i.mu.Unlock()
	if stopping {
		return nil, fmt.Errorf("swapping configuration: %w", ErrStopping)
	}
	gs, freshStore, err := i.groupStoreFor(cfg, i.rt.Load().kps)
	if err != nil {
		return nil, withKind(ErrConfig, fmt.Errorf("swapping configuration: %w", err))
	}
	keep := false // the new store is kept once the runtime is swapped in
	defer func() {
		if freshStore && !keep {
			gs.close()
		}
	}()
	rt, err := buildRuntime(cfg, i.proxyLog, i.remoteHosts, gs, i.jwtOptions(i.rt.Load()), i.caches, i.rateLimits)
	if err != nil {
		return nil, withKind(ErrConfig, fmt.Errorf("swapping configuration: %w", err))
	}
	defer func() {
		if !keep {
			rt.stopPolicies() // not taken: its key sources stop
		}
	}()
	var next, fresh, old []*server
	if started { // before Start, Start binds what the configuration says
		if next, fresh, old, err = i.plan(cfg, cur); err != nil {
			return nil, fmt.Errorf("swapping configuration: %w", err)
		}
	}
	i.resolveMetrics(rt)

	i.mu.Lock()
	if i.stopping {
		i.mu.Unlock()
		for _, g := range fresh {
			if !usesSocket(cur, g.sock) {
				g.sock.close()
			}
		}
		return nil, fmt.Errorf("swapping configuration: %w", ErrStopping)
	}
	for _, g := range fresh {
		i.launchLocked(g) // serving before the runtime swaps
	}
	if started {
		i.servers = next
	}
	for _, g := range old {
		i.retired[g] = struct{}{}
		i.serveWG.Add(1)
	}
	i.mu.Unlock()

	prev := i.rt.Swap(rt)
	keep = true
	// Rate limiters whose settings stayed keep their counts.
	i.rateLimits.Retain(rateLimiters(rt))
	prev.stopPolicies() // the old key sources' refreshes stop; in-flight requests keep their cached keys
	if prev.kps != nil && prev.kps != rt.kps {
		// Requests that started with the old runtime may still look keys
		// up: close its store once they have drained.
		old := prev.kps
		time.AfterFunc(cfg.ZeroDowntime.Shutdown.DrainTimeout.D()+5*time.Second, old.close)
	}
	i.remoteHosts.Activate(rt.hosts) // address state kept; watchdogs follow
	i.caches.Activate(rt.caches)     // caches whose settings stayed keep their entries
	i.logs.apply(cfg.Log, level)
	prev.closeIdle()
	drain := cfg.ZeroDowntime.Shutdown.DrainTimeout.D()
	for _, g := range old {
		if !usesSocket(next, g.sock) {
			g.sock.close() // the old port refuses from now on
		}
		go i.drainOld(g, drain)
	}
	changed = describeChanges(fresh, old)
	i.log.Info("configuration swapped", "apis", len(cfg.APIs), "backends", len(cfg.Backends),
		"checksum", cfg.Checksum(), "listenersChanged", changed)
	i.swapCluster(prev.cfg, cfg) // cluster.go
	return changed, nil
}

// usesSocket reports whether one of gens is fed by s.
func usesSocket(gens []*server, s *socket) bool {
	for _, g := range gens {
		if g.sock == s {
			return true
		}
	}
	return false
}

// describeChanges says, for the log, what a swap did to the listeners.
func describeChanges(fresh, old []*server) []string {
	var out []string
	for _, g := range fresh {
		var o *server
		for _, x := range old {
			if x.name == g.name {
				o = x
			}
		}
		switch {
		case o == nil:
			out = append(out, fmt.Sprintf("%s: started on port %d", g.name, g.port()))
		case o.sock != g.sock:
			out = append(out, fmt.Sprintf("%s: moved from %s port %d to %s port %d", g.name, o.spec.address, o.port(), g.spec.address, g.port()))
		default:
			out = append(out, fmt.Sprintf("%s: new settings on port %d", g.name, g.port()))
		}
	}
	for _, o := range old {
		if !slices.ContainsFunc(fresh, func(g *server) bool { return g.name == o.name }) {
			out = append(out, fmt.Sprintf("%s: stopped on port %d", o.name, o.port()))
		}
	}
	return out
}

// drainOld retires g, a generation that a swap replaced (its socket closed,
// or feeding the new generation): g stops gracefully within drain
// (connections still open after it are closed), or at once when the
// instance is closed.
func (i *Instance) drainOld(g *server, drain time.Duration) {
	defer i.serveWG.Done()
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	go func() {
		select {
		case <-i.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	err := g.shutdown(ctx)
	i.mu.Lock()
	delete(i.retired, g)
	i.mu.Unlock()
	if err != nil {
		i.log.Warn("previous listener closed with connections still open", "listener", g.name, "port", g.port(),
			"drainTimeout", drain.String(), "error", err.Error())
		return
	}
	i.log.Info("previous listener drained", "listener", g.name, "port", g.port(), "durationMs", time.Since(start).Milliseconds())
}

// jwtOptions are the settings of a new runtime's jwt key sources; prev is
// the runtime it replaces (nil at start), whose key sets they take over.
func (i *Instance) jwtOptions(prev *runtime) jwt.SourcesOptions {
	o := jwt.SourcesOptions{Dir: i.opts.Home.Dir, Logger: i.jwtLog}
	if prev != nil {
		o.Previous = prev.jwt
	}
	return o
}
