package instance

import (
	"context"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// The group's named caches (caches:, docs/cache.md) live in a registry of
// the instance, across configurations: a swap that keeps a cache's
// settings keeps its entries. The cluster bus attaches itself with
// Caches().SetReplicator and finds a cache by name with Caches().Get.

// newCaches makes the instance's cache registry, its metrics registered.
func (i *Instance) newCaches() {
	i.caches = cache.NewRegistry(cache.Options{Origin: i.opts.InstanceID, Logger: i.log.With("component", "cache")})
	i.metrics.Registry().MustRegister(i.caches.Collector())
}

// runCaches sweeps expired entries every second until the instance stops.
func (i *Instance) runCaches() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-i.done; cancel() }()
	go i.caches.Run(ctx, time.Second)
}

// Caches is the instance's cache registry, for the cluster bus.
func (i *Instance) Caches() *cache.Registry { return i.caches }

// cacheConfigs are the caches of cfg in internal/cache's terms.
func cacheConfigs(cfg *groupconf.Config) []cache.Config {
	out := make([]cache.Config, 0, len(cfg.Caches))
	for _, c := range cfg.Caches {
		out = append(out, cache.Config{
			Name: c.Name, MaxEntries: c.MaxEntries, MaxBytes: c.MaxBytes, TTL: c.TimeToLive.D(), TTI: c.TimeToIdle.D(),
			Eviction: cache.Eviction(c.Eviction), Replicated: c.Replicated, Mode: cache.Mode(c.Replication), BatchInterval: c.BatchInterval.D(),
		})
	}
	return out
}
