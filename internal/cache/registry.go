package cache

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds an instance's caches across configurations: a new
// configuration's Set reuses every cache whose settings did not change
// (its entries stay), makes the others, and Activate retires the caches
// the new configuration no longer has. The Replicator (the cluster bus)
// may be attached at any time, and replaced or removed when the bus
// restarts: replicated caches see no peers until it is. Safe for
// concurrent use.
type Registry struct {
	now    func() time.Time
	origin string
	log    *slog.Logger
	repl   atomic.Pointer[replHolder]

	mu  sync.Mutex
	cur *Set
}

type replHolder struct{ r Replicator }

// NewRegistry makes an empty registry. opts.Replicator, when set, is the
// initial replicator (see SetReplicator).
func NewRegistry(opts Options) *Registry {
	r := &Registry{now: opts.Now, origin: opts.Origin, log: opts.Logger, cur: &Set{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.SetReplicator(opts.Replicator)
	return r
}

// SetReplicator attaches the bus (nil detaches it: replicated caches then
// behave as local ones, and their Put returns without waiting).
func (r *Registry) SetReplicator(rep Replicator) {
	r.repl.Store(&replHolder{rep})
}

// Publish forwards to the attached Replicator (none: no peers, nil).
func (r *Registry) Publish(ctx context.Context, cache string, events []Event) error {
	h := r.repl.Load()
	if h == nil || h.r == nil {
		return nil
	}
	return h.r.Publish(ctx, cache, events)
}

// Set is the caches of one configuration, by name. Immutable.
type Set struct{ m map[string]*Cache }

// Get returns the cache named name, or nil.
func (s *Set) Get(name string) *Cache {
	if s == nil {
		return nil
	}
	return s.m[name]
}

// Caches returns the set's caches sorted by name.
func (s *Set) Caches() []*Cache {
	if s == nil {
		return nil
	}
	out := make([]*Cache, 0, len(s.m))
	for _, c := range s.m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cfg.Name < out[j].cfg.Name })
	return out
}

// Prepare returns the Set of cfgs: the current cache of a name when its
// settings are the same, a new one otherwise. Nothing changes until
// Activate; a Set never activated is dropped by the garbage collector.
func (r *Registry) Prepare(cfgs []Config) *Set {
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	s := &Set{m: make(map[string]*Cache, len(cfgs))}
	for _, cfg := range cfgs {
		if c := cur.Get(cfg.Name); c != nil && c.cfg == normalize(cfg) {
			s.m[cfg.Name] = c
			continue
		}
		var rep Replicator
		if cfg.Replicated {
			rep = r
		}
		s.m[cfg.Name] = New(cfg, Options{Now: r.now, Origin: r.origin, Replicator: rep, Logger: r.log})
	}
	return s
}

// normalize is cfg with New's defaults, for comparing settings.
func normalize(cfg Config) Config { return New(cfg, Options{}).cfg }

// Activate makes s the current set: its new caches start, the caches of
// the previous set that s does not hold are closed.
func (r *Registry) Activate(s *Set) {
	r.mu.Lock()
	old := r.cur
	r.cur = s
	r.mu.Unlock()
	for _, c := range s.m {
		c.Start()
	}
	for name, c := range old.m {
		if s.m[name] != c {
			c.Close()
		}
	}
}

// Current is the active set.
func (r *Registry) Current() *Set {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Get is Current().Get(name): the bus finds the cache of an event or a
// bootstrap with it.
func (r *Registry) Get(name string) *Cache { return r.Current().Get(name) }

// Run sweeps the current caches' expired entries every interval until ctx
// ends, then closes them.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, c := range r.Current().Caches() {
				c.Close()
			}
			return
		case <-t.C:
			for _, c := range r.Current().Caches() {
				c.Sweep()
			}
		}
	}
}
