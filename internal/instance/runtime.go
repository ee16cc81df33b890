package instance

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
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
	chain      policy.Chain
	clients    *clientResolver // trusted proxies, client-certificate header
	apiMetrics []*metrics.API  // indexed by route.Route.Index; set by Instance.resolveMetrics
}

func buildRuntime(cfg *groupconf.Config, log *slog.Logger, reg *remotehost.Registry) (*runtime, error) {
	table, err := route.Compile(cfg.APIs)
	if err != nil {
		return nil, fmt.Errorf("compiling routes: %w", err)
	}
	rt := &runtime{cfg: cfg, loadedAt: time.Now(), table: table, forwarders: make([]*proxy.Forwarder, len(cfg.APIs))}
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
	for _, r := range table.Routes() {
		be := byName[r.Backend]
		if be == nil {
			return nil, fmt.Errorf("API %q: back end %q is not defined", r.Name, r.Backend)
		}
		rt.forwarders[r.Index] = proxy.NewForwarder(be, r, opts)
	}
	return rt, nil
}

func (rt *runtime) closeIdle() { rt.hosts.CloseIdle() }

// ErrRestartRequired is returned by Swap for a configuration that changes
// what only a restart can change (the listeners and the sample service).
var ErrRestartRequired = errors.New("change needs a restart")

// Swap builds a runtime for cfg beside the current one and swaps it in
// atomically: requests that already started finish with the old one, the next
// ones use the new one. Connections of clients stay open. Listener and
// sample-service settings cannot change this way (ErrRestartRequired); the log
// level follows cfg, other log settings keep their start-up values. The old
// back ends' idle connections are closed; their busy ones close when done.
func (i *Instance) Swap(cfg *groupconf.Config) error {
	if cfg == nil {
		return errors.New("swapping configuration: no configuration")
	}
	cur := i.rt.Load()
	switch {
	case !reflect.DeepEqual(cfg.Traffic, cur.cfg.Traffic):
		return fmt.Errorf("swapping configuration: traffic listener settings: %w", ErrRestartRequired)
	case cfg.Management != cur.cfg.Management:
		return fmt.Errorf("swapping configuration: management listener settings: %w", ErrRestartRequired)
	case cfg.Sample != cur.cfg.Sample:
		return fmt.Errorf("swapping configuration: sample settings: %w", ErrRestartRequired)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("swapping configuration: log level: %w", err)
	}
	rt, err := buildRuntime(cfg, i.proxyLog, i.remoteHosts)
	if err != nil {
		return fmt.Errorf("swapping configuration: %w", err)
	}
	i.resolveMetrics(rt)
	old := i.rt.Swap(rt)
	i.remoteHosts.Activate(rt.hosts) // address state kept; watchdogs follow
	i.logs.level.Set(level)
	old.closeIdle()
	i.log.Info("configuration swapped", "apis", len(cfg.APIs), "backends", len(cfg.Backends))
	return nil
}
