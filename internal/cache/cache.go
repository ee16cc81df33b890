// Package cache holds the group's named caches (caches: in the group
// configuration, docs/cache.md): each is a bounded map of keys to byte
// values, local to the instance or replicated to the other instances of
// the group through a Replicator (the cluster bus).
//
// A Cache bounds its entries (maxEntries) and the bytes they hold
// (maxBytes: keys, values and a fixed overhead per entry); a put that
// would exceed either evicts the least recently used (LRU) or the least
// frequently used (LFU, ties broken by recency) entries first, and an entry
// larger than a shard's share of the bytes is never stored. An entry
// expires timeToLive after it was put, or timeToIdle after it was last
// read, whichever comes first.
//
// A Cache is split into shards by a hash of the key, each with its own
// lock held for a map look-up and a heap update: a read never waits for
// another shard, and nothing is allocated on a hit. Every method is safe
// for concurrent use.
//
// Replication: every local put, remove, clear and expiry becomes an Event.
// A replicated cache hands events to its Replicator, at once and waiting
// for the acknowledgement of every live peer (mode sync) or in batches
// (mode async); the Replicator calls ApplyRemote on the peers' caches of
// the same name. A peer that starts or reconnects copies another's
// Snapshot with Bootstrap, which checks its checksum. Conflicts are
// resolved by the last writer (the event's Version: wall-clock time, then
// origin). docs/cache.md describes the contract for the bus.
package cache

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Eviction is the order in which entries leave a full cache.
type Eviction string

// Evictions.
const (
	LRU Eviction = "LRU" // least recently used first
	LFU Eviction = "LFU" // least frequently used first; among equals, the least recently used
)

// Mode is how a replicated cache sends its events.
type Mode string

// Modes.
const (
	Sync  Mode = "sync"  // each put returns once every live peer acknowledged it
	Async Mode = "async" // events are batched and sent every BatchInterval
)

// EntryOverhead is what an entry costs besides its key and value, counted
// in the byte bound (the map slot, the heap slot, the entry's fields).
const EntryOverhead = 96

// Config is one cache's settings (from groupconf's caches).
type Config struct {
	Name          string
	MaxEntries    int           // > 0
	MaxBytes      int64         // > 0
	TTL           time.Duration // 0: no limit
	TTI           time.Duration // 0: no limit
	Eviction      Eviction
	Replicated    bool
	Mode          Mode          // with Replicated
	BatchInterval time.Duration // Async: longest wait before a batch is sent
	MaxBatch      int           // Async: most events in one batch (and the queue holds 64 batches)
}

// Options are what a cache needs besides its settings.
type Options struct {
	// Now is the clock; nil: time.Now. Expiry and versions read it.
	Now func() time.Time
	// Origin names this instance in the versions of its events.
	Origin string
	// Replicator sends a replicated cache's events; nil: the cache stays
	// local (a group of one, or a bus that is not running).
	Replicator Replicator
	// Logger for replication failures (each transition once); nil discards.
	Logger *slog.Logger
}

// Errors.
var (
	// ErrTooLarge: the entry alone exceeds what the cache may hold.
	ErrTooLarge = errors.New("cache: entry larger than the cache's byte bound allows")
	// ErrChecksum: a bootstrap's entries do not match their checksum.
	ErrChecksum = errors.New("cache: snapshot checksum mismatch")
	// ErrReplication wraps a failure to replicate a local change (the
	// change stays local).
	ErrReplication = errors.New("cache: replication failed")
)

// Stats are a cache's counters since it was made.
type Stats struct {
	Hits, Misses         uint64
	Evictions            uint64 // entries removed to make room
	Expirations          uint64 // entries removed because their TTL or TTI passed
	Entries              int
	Bytes                int64
	ReplicationFailures  uint64 // Publish calls that failed
	ReplicationDropped   uint64 // async events dropped because the queue was full
	RemoteApplied        uint64 // events from peers applied
	RemoteIgnored        uint64 // events from peers older than the local copy
	BootstrappedEntries  uint64
	ReplicationLastError string
}

// Cache is one named cache. Make it with New.
type Cache struct {
	cfg    Config
	opts   Options
	now    func() time.Time
	seed   maphash.Seed
	shards []shard

	hits, misses, evictions, expirations atomic.Uint64
	replFailures, replDropped            atomic.Uint64
	remoteApplied, remoteIgnored         atomic.Uint64
	bootstrapped                         atomic.Uint64
	lastSeq                              atomic.Int64 // versions: strictly increasing per origin

	// replication
	repl      Replicator
	queue     chan Event // Async
	stop      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
	failing   atomic.Bool // a transition of the replication's health is logged once
	lastErr   atomic.Pointer[string]
	log       *slog.Logger

	// Tombstones of a replicated cache (tombs.go): the removals and the
	// last clear, so that a snapshot carries them to a peer that missed
	// them (one back from a partition with a stale copy).
	tombMu  sync.Mutex
	tombs   map[string]tomb
	cleared Version
}

type shard struct {
	mu         sync.Mutex
	m          map[string]*entry
	h          entryHeap
	bytes      int64
	maxEntries int
	maxBytes   int64
	tick       uint64 // recency: incremented on each access
}

type entry struct {
	key      string
	value    []byte
	version  Version
	expires  int64 // unix nanos; 0: never (TTL)
	lastRead int64 // unix nanos of the last read or the put (TTI)
	freq     uint64
	tick     uint64
	index    int // in the heap
	lfu      bool
}

func (e *entry) size() int64 { return int64(len(e.key)+len(e.value)) + EntryOverhead }

// New makes a cache. cfg must be valid (groupconf validates it): positive
// bounds, LRU or LFU.
func New(cfg Config, opts Options) *Cache {
	if cfg.MaxEntries < 1 {
		cfg.MaxEntries = 1
	}
	if cfg.MaxBytes < EntryOverhead {
		cfg.MaxBytes = EntryOverhead
	}
	if cfg.Eviction == "" {
		cfg.Eviction = LRU
	}
	if cfg.Mode == "" {
		cfg.Mode = Sync
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = 100 * time.Millisecond
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	c := &Cache{cfg: cfg, opts: opts, now: opts.Now, seed: maphash.MakeSeed(), log: opts.Logger}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	// Shards: one for a small cache (exact LRU/LFU order), up to 16 for
	// large ones; each holds its share of both bounds.
	n := 1
	for n < 16 && cfg.MaxEntries/(n*2) >= 256 && cfg.MaxBytes/int64(n*2) >= 1<<20 {
		n *= 2
	}
	c.shards = make([]shard, n)
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[string]*entry)
		s.maxEntries = cfg.MaxEntries / n
		s.maxBytes = cfg.MaxBytes / int64(n)
		if i == 0 { // the remainders
			s.maxEntries += cfg.MaxEntries % n
			s.maxBytes += cfg.MaxBytes % int64(n)
		}
	}
	if cfg.Replicated && opts.Replicator != nil {
		c.repl = opts.Replicator
		if cfg.Mode == Async {
			c.queue = make(chan Event, cfg.MaxBatch*64)
		}
	}
	return c
}

// Config returns the cache's settings.
func (c *Cache) Config() Config { return c.cfg }

// Name is the cache's name.
func (c *Cache) Name() string { return c.cfg.Name }

func (c *Cache) shard(key string) *shard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, key)&uint64(len(c.shards)-1)]
}

// expired reports whether e is past its TTL or TTI at now.
func (c *Cache) expired(e *entry, now int64) bool {
	if e.expires != 0 && now >= e.expires {
		return true
	}
	return c.cfg.TTI > 0 && now-e.lastRead >= int64(c.cfg.TTI)
}

// Get returns the value of key and whether it was found (and not
// expired). The value is shared: the caller must not modify it. A read
// counts for LRU, LFU and time-to-idle; an expired entry found is removed.
// Get never waits for peers.
func (c *Cache) Get(key string) ([]byte, bool) {
	v, _, ok := c.GetWithAge(key)
	return v, ok
}

// GetWithAge is Get that also says when the entry was put (its version's
// time).
func (c *Cache) GetWithAge(key string) ([]byte, time.Time, bool) {
	now := c.now().UnixNano()
	s := c.shard(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		s.mu.Unlock()
		c.misses.Add(1)
		return nil, time.Time{}, false
	}
	if c.expired(e, now) {
		// Removed here; the expiry is not announced from the request
		// path (a sync cache would wait for its peers): each peer
		// expires its copy by the same TTL, and by its own reads for
		// TTI.
		s.remove(e)
		s.mu.Unlock()
		c.misses.Add(1)
		c.expirations.Add(1)
		return nil, time.Time{}, false
	}
	s.touch(e, now)
	v, at := e.value, e.version.Time
	s.mu.Unlock()
	c.hits.Add(1)
	return v, time.Unix(0, at), true
}

// Put stores value under key for the cache's TTL, or for ttl when it is
// shorter and not 0. The cache keeps value: the caller must not modify it
// afterwards. A replicated cache in sync mode returns once every live peer
// acknowledged the put (or ctx ends); an error wrapping ErrReplication
// means the entry is stored here but perhaps not on every peer.
func (c *Cache) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	now := c.now()
	expires := int64(0)
	if c.cfg.TTL > 0 && (ttl <= 0 || ttl > c.cfg.TTL) {
		ttl = c.cfg.TTL
	}
	if ttl > 0 {
		expires = now.Add(ttl).UnixNano()
	}
	ev := Event{Kind: Put, Key: key, Value: value, Version: c.version(now), Expires: expires}
	if err := c.apply(ev, now.UnixNano()); err == errOlder {
		return nil // a peer's newer copy stays (the last writer wins)
	} else if err != nil {
		return err
	}
	return c.publish(ctx, ev)
}

// version returns a version for a local change at now: strictly greater
// than every earlier local version.
func (c *Cache) version(now time.Time) Version {
	t := now.UnixNano()
	for {
		last := c.lastSeq.Load()
		if t <= last {
			t = last + 1
		}
		if c.lastSeq.CompareAndSwap(last, t) {
			return Version{Time: t, Origin: c.opts.Origin}
		}
	}
}

// apply stores a put (local or remote). It refuses an entry too large for
// its shard, and a remote put older than the copy held.
func (c *Cache) apply(ev Event, now int64) error {
	s := c.shard(ev.Key)
	e := &entry{key: ev.Key, value: ev.Value, version: ev.Version, expires: ev.Expires, lastRead: now, lfu: c.cfg.Eviction == LFU}
	if e.size() > s.maxBytes {
		return fmt.Errorf("%w (%d bytes with its key; %d per shard)", ErrTooLarge, e.size(), s.maxBytes)
	}
	s.mu.Lock()
	if old := s.m[ev.Key]; old != nil {
		if ev.Version.Less(old.version) {
			s.mu.Unlock()
			return errOlder
		}
		e.freq = old.freq
		s.remove(old)
	}
	var evicted int
	for len(s.m) >= s.maxEntries || s.bytes+e.size() > s.maxBytes {
		victim := s.h[0]
		s.remove(victim)
		evicted++
	}
	s.tick++
	e.tick = s.tick
	e.freq++
	s.m[e.key] = e
	heap.Push(&s.h, e)
	s.bytes += e.size()
	s.mu.Unlock()
	c.evictions.Add(uint64(evicted))
	return nil
}

var errOlder = errors.New("cache: older than the copy held")

// touch records a read of e.
func (s *shard) touch(e *entry, now int64) {
	s.tick++
	e.tick = s.tick
	e.freq++
	e.lastRead = now
	heap.Fix(&s.h, e.index)
}

// remove takes e out of the shard. The caller holds s.mu.
func (s *shard) remove(e *entry) {
	heap.Remove(&s.h, e.index)
	delete(s.m, e.key)
	s.bytes -= e.size()
}

// Remove removes key (and, replicated, from the peers). Removing a key
// that is not there is not an error.
func (c *Cache) Remove(ctx context.Context, key string) error {
	now := c.now()
	v := c.version(now)
	s := c.shard(key)
	s.mu.Lock()
	if e := s.m[key]; e != nil {
		s.remove(e)
	}
	s.mu.Unlock()
	c.bury(key, v, now.UnixNano())
	return c.publish(ctx, Event{Kind: Remove, Key: key, Version: v})
}

// Clear removes every entry (and, replicated, every peer's).
func (c *Cache) Clear(ctx context.Context) error {
	v := c.version(c.now())
	c.clearLocal(v)
	c.buryAll(v)
	return c.publish(ctx, Event{Kind: Clear, Version: v})
}

// clearLocal removes the entries older than v (all of them for a local
// clear, whose version is the newest).
func (c *Cache) clearLocal(v Version) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if e.version.Less(v) {
				s.remove(e)
			}
		}
		s.mu.Unlock()
	}
}

// sweepLimit bounds the entries a sweep looks at in one shard, so that
// it holds a shard's lock for some 50 µs (BenchmarkSweep); a large shard is
// covered over several sweeps (Go's map order is random). Expired entries
// not yet swept count in the bounds until they are swept, read or evicted
// (in the cache's order); a read never returns them.
const sweepLimit = 4096

// Sweep removes the entries expired at the cache's clock's now (up to
// sweepLimit looked at per shard) and announces the expiries to the peers
// (in one publish); the instance calls it every second so that an expired
// entry does not hold memory until it is read or evicted. It returns how
// many entries it removed.
func (c *Cache) Sweep() int {
	now := c.now().UnixNano()
	var evs []Event
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		seen := 0
		for _, e := range s.m {
			if seen++; seen > sweepLimit {
				break
			}
			if c.expired(e, now) {
				s.remove(e)
				evs = append(evs, Event{Kind: Expire, Key: e.key, Version: e.version})
			}
		}
		s.mu.Unlock()
	}
	c.expirations.Add(uint64(len(evs)))
	c.pruneTombs(now)
	if len(evs) > 0 && c.repl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c.queue == nil {
			c.send(ctx, evs) // one publish for the sweep's expiries
		} else {
			for _, ev := range evs {
				c.publish(ctx, ev)
			}
		}
	}
	return len(evs)
}

// Stats returns the cache's counters and size.
func (c *Cache) Stats() Stats {
	st := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(), Expirations: c.expirations.Load(),
		ReplicationFailures: c.replFailures.Load(), ReplicationDropped: c.replDropped.Load(),
		RemoteApplied: c.remoteApplied.Load(), RemoteIgnored: c.remoteIgnored.Load(), BootstrappedEntries: c.bootstrapped.Load(),
	}
	if p := c.lastErr.Load(); p != nil {
		st.ReplicationLastError = *p
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Entries += len(s.m)
		st.Bytes += s.bytes
		s.mu.Unlock()
	}
	return st
}

// Len is the number of entries held (expired ones not yet swept included).
func (c *Cache) Len() int { return c.Stats().Entries }

// entryHeap orders a shard's entries by eviction priority: the root is
// the next victim.
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.lfu && a.freq != b.freq {
		return a.freq < b.freq
	}
	return a.tick < b.tick
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	e.index = -1
	return e
}
