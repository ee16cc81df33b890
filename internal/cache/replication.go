package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Replicator carries a replicated cache's events to the caches of the same
// name on the group's other instances (the cluster bus implements it;
// docs/cache.md). It must be safe for concurrent use.
type Replicator interface {
	// Publish sends events, in order, to every live peer's cache named
	// cache, where they are given to ApplyRemote in the same order. It
	// returns nil once every live peer acknowledged them all; an error
	// when a live peer did not within ctx (a peer that is known to be
	// gone does not count). With no peers it returns nil at once.
	Publish(ctx context.Context, cache string, events []Event) error
}

// EventKind is what an event does.
type EventKind uint8

// Event kinds.
const (
	Put    EventKind = 1 // Key now holds Value until Expires
	Remove EventKind = 2 // Key was removed
	Clear  EventKind = 3 // every entry older than Version was removed
	Expire EventKind = 4 // the copy of Key with Version expired on its origin
)

func (k EventKind) String() string {
	switch k {
	case Put:
		return "put"
	case Remove:
		return "remove"
	case Clear:
		return "clear"
	case Expire:
		return "expire"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Version orders the changes to a key across the group: the wall-clock
// time of the change in unix nanoseconds (strictly increasing per origin),
// then the origin's name. The last writer wins.
type Version struct {
	Time   int64
	Origin string
}

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	if v.Time != o.Time {
		return v.Time < o.Time
	}
	return v.Origin < o.Origin
}

// Event is one change of a cache, as published to peers. Value is shared
// with the cache: neither side modifies it.
type Event struct {
	Kind    EventKind
	Key     string // Put, Remove, Expire
	Value   []byte // Put
	Version Version
	Expires int64 // Put: unix nanoseconds when it expires (TTL); 0: never
}

// Entry is one entry of a Snapshot. Removed marks a tombstone: Key was
// removed at Version (Key "": every entry older than Version was cleared).
type Entry struct {
	Key     string
	Value   []byte
	Version Version
	Expires int64
	Removed bool `json:",omitempty"`
}

// Start starts the async sender of a replicated cache (a no-op otherwise).
// Close stops it.
func (c *Cache) Start() {
	if c.queue == nil {
		return
	}
	c.startOnce.Do(func() {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.sendLoop()
	})
}

// Close stops the async sender after sending what is queued (within 2 s).
func (c *Cache) Close() {
	c.stopOnce.Do(func() {
		if c.stop != nil {
			close(c.stop)
			<-c.done
		}
	})
}

// Flush sends what the async queue holds now and returns when it was
// acknowledged (tests, shutdown). A sync or local cache has nothing queued.
func (c *Cache) Flush(ctx context.Context) error {
	if c.queue == nil {
		return nil
	}
	var batch []Event
	for {
		select {
		case ev := <-c.queue:
			batch = append(batch, ev)
			continue
		default:
		}
		break
	}
	return c.send(ctx, batch)
}

func (c *Cache) sendLoop() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.BatchInterval)
	defer t.Stop()
	var batch []Event
	flush := func(timeout time.Duration) {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		c.send(ctx, batch)
		cancel()
		batch = batch[:0]
	}
	for {
		select {
		case ev := <-c.queue:
			batch = append(batch, ev)
			if len(batch) >= c.cfg.MaxBatch {
				flush(5 * time.Second)
			}
		case <-t.C:
			flush(5 * time.Second)
		case <-c.stop:
			for {
				select {
				case ev := <-c.queue:
					batch = append(batch, ev)
					continue
				default:
				}
				break
			}
			flush(2 * time.Second)
			return
		}
	}
}

// send publishes events and keeps the replication's health: a failure is
// logged when it starts, the recovery when it ends.
func (c *Cache) send(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	err := c.repl.Publish(ctx, c.cfg.Name, events)
	if err != nil {
		c.replFailures.Add(1)
		msg := err.Error()
		c.lastErr.Store(&msg)
		if !c.failing.Swap(true) {
			c.log.Warn("cache replication failing; changes stay local until it recovers", "cache", c.cfg.Name, "error", msg)
		}
		return fmt.Errorf("%w: cache %q: %w", ErrReplication, c.cfg.Name, err)
	}
	if c.failing.Swap(false) {
		c.log.Info("cache replication recovered", "cache", c.cfg.Name)
	}
	return nil
}

// publish hands a local change to the replicator: at once (sync, waiting
// for the acknowledgements) or to the async queue. A local cache does
// nothing.
func (c *Cache) publish(ctx context.Context, ev Event) error {
	if c.repl == nil {
		return nil
	}
	if c.queue == nil {
		return c.send(ctx, []Event{ev})
	}
	select {
	case c.queue <- ev:
	default:
		c.replDropped.Add(1)
	}
	return nil
}

// ApplyRemote applies a peer's event (the Replicator calls it, in the
// order the peer published). A put or remove older than the copy held is
// ignored (the last writer wins); an expiry removes the copy of the same
// version unless it was read here within the time-to-idle; a clear removes
// every entry older than it. Nothing is published again.
func (c *Cache) ApplyRemote(ev Event) {
	now := c.now().UnixNano()
	switch ev.Kind {
	case Put:
		if (ev.Expires != 0 && now >= ev.Expires) || c.buried(ev.Key, ev.Version) {
			c.remoteIgnored.Add(1)
			return
		}
		if err := c.apply(ev, now); err != nil {
			c.remoteIgnored.Add(1)
			return
		}
	case Remove, Expire:
		s := c.shard(ev.Key)
		s.mu.Lock()
		e := s.m[ev.Key]
		switch {
		case e == nil:
			if ev.Kind == Remove {
				defer c.bury(ev.Key, ev.Version, now)
			}
		case ev.Kind == Remove && !ev.Version.Less(e.version):
			s.remove(e)
			s.mu.Unlock()
			c.bury(ev.Key, ev.Version, now)
			c.remoteApplied.Add(1)
			return
		case ev.Kind == Expire && e.version == ev.Version && (c.cfg.TTI == 0 || now-e.lastRead >= int64(c.cfg.TTI) || (e.expires != 0 && now >= e.expires-int64(time.Second))):
			s.remove(e)
		default:
			s.mu.Unlock()
			c.remoteIgnored.Add(1)
			return
		}
		s.mu.Unlock()
	case Clear:
		c.clearLocal(ev.Version)
		c.buryAll(ev.Version)
	default:
		c.remoteIgnored.Add(1)
		return
	}
	c.remoteApplied.Add(1)
}

// Snapshot returns the live entries, sorted by key, and their checksum,
// for a peer's Bootstrap.
func (c *Cache) Snapshot() ([]Entry, string) {
	now := c.now().UnixNano()
	var out []Entry
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if !c.expired(e, now) {
				out = append(out, Entry{Key: e.key, Value: e.value, Version: e.version, Expires: e.expires})
			}
		}
		s.mu.Unlock()
	}
	out = append(out, c.tombEntries()...)
	slices.SortFunc(out, func(a, b Entry) int {
		if d := strings.Compare(a.Key, b.Key); d != 0 {
			return d
		}
		return compareBool(a.Removed, b.Removed)
	})
	return out, Checksum(out)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// Checksum is the SHA-256 (hex) of entries in their order: each key,
// value, version and expiry, length-prefixed.
func Checksum(entries []Entry) string {
	h := sha256.New()
	var b [8]byte
	put := func(p []byte) {
		binary.BigEndian.PutUint64(b[:], uint64(len(p)))
		h.Write(b[:])
		h.Write(p)
	}
	for _, e := range entries {
		put([]byte(e.Key))
		put(e.Value)
		binary.BigEndian.PutUint64(b[:], uint64(e.Version.Time))
		h.Write(b[:])
		put([]byte(e.Version.Origin))
		binary.BigEndian.PutUint64(b[:], uint64(e.Expires))
		h.Write(b[:])
		if e.Removed {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Bootstrap merges a peer's Snapshot into the cache after checking its
// checksum (ErrChecksum: nothing is merged). Entries newer than the local
// copy win; expired ones and ones too large are skipped. It returns the
// number of entries taken.
func (c *Cache) Bootstrap(entries []Entry, checksum string) (int, error) {
	if Checksum(entries) != checksum {
		return 0, ErrChecksum
	}
	return c.merge(entries), nil
}

// Replace makes the cache a copy of a peer's Snapshot: after checking its
// checksum (ErrChecksum: nothing changes), every local entry is dropped
// (nothing is published) and the snapshot's are taken. For a peer that
// returns with a stale copy, which Bootstrap alone would leave holding
// the entries removed elsewhere while it was away.
func (c *Cache) Replace(entries []Entry, checksum string) (int, error) {
	if Checksum(entries) != checksum {
		return 0, ErrChecksum
	}
	c.clearLocal(Version{Time: 1<<63 - 1})
	c.tombMu.Lock()
	c.tombs, c.cleared = nil, Version{}
	c.tombMu.Unlock()
	return c.merge(entries), nil
}

// merge applies a snapshot's live entries and counts them.
func (c *Cache) merge(entries []Entry) int {
	now := c.now().UnixNano()
	n := 0
	// The tombstones first: a removal or a clear the snapshot knows of
	// removes the older local copies, and a put older than one is not
	// taken.
	for _, e := range entries {
		if !e.Removed {
			continue
		}
		if e.Key == "" {
			c.clearLocal(e.Version)
			c.buryAll(e.Version)
			continue
		}
		s := c.shard(e.Key)
		s.mu.Lock()
		if old := s.m[e.Key]; old != nil && old.version.Less(e.Version) {
			s.remove(old)
		}
		s.mu.Unlock()
		c.bury(e.Key, e.Version, now)
	}
	for _, e := range entries {
		if e.Removed || (e.Expires != 0 && now >= e.Expires) || c.buried(e.Key, e.Version) {
			continue
		}
		if c.apply(Event{Kind: Put, Key: e.Key, Value: e.Value, Version: e.Version, Expires: e.Expires}, now) == nil {
			n++
		}
	}
	c.bootstrapped.Add(uint64(n))
	return n
}
