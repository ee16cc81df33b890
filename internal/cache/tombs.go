package cache

import (
	"time"
)

// Tombstones. A replicated cache remembers what it removed — each key's
// removal (a local Remove, or a peer's) and the last clear — for
// tombLife, so that its snapshot tells a peer that missed them (a peer back
// from a partition, holding its stale copy) and so that an older put that
// arrives late does not bring a removed entry back. At most maxTombs are
// kept (the oldest go first); a local cache keeps none.

// maxTombs bounds the tombstones of a cache.
const maxTombs = 100000

type tomb struct {
	v  Version
	at int64 // unix nanos when it was recorded (its life)
}

// tombLife is how long a tombstone is kept: the cache's time-to-live (a
// stale copy expires by then anyway), or 1 h without one.
func (c *Cache) tombLife() int64 {
	if c.cfg.TTL > 0 {
		return int64(c.cfg.TTL)
	}
	return int64(time.Hour)
}

// bury records key's removal at v.
func (c *Cache) bury(key string, v Version, now int64) {
	if !c.cfg.Replicated {
		return
	}
	c.tombMu.Lock()
	defer c.tombMu.Unlock()
	if c.tombs == nil {
		c.tombs = map[string]tomb{}
	}
	if t, ok := c.tombs[key]; ok && v.Less(t.v) {
		return
	}
	if len(c.tombs) >= maxTombs {
		oldest := ""
		for k, t := range c.tombs {
			if oldest == "" || t.at < c.tombs[oldest].at {
				oldest = k
			}
		}
		delete(c.tombs, oldest)
	}
	c.tombs[key] = tomb{v: v, at: now}
}

// buryAll records a clear at v: every tombstone older is implied by it.
func (c *Cache) buryAll(v Version) {
	if !c.cfg.Replicated {
		return
	}
	c.tombMu.Lock()
	defer c.tombMu.Unlock()
	if c.cleared.Less(v) {
		c.cleared = v
	}
	for k, t := range c.tombs {
		if t.v.Less(v) {
			delete(c.tombs, k)
		}
	}
}

// buried reports whether a put of key at v is older than its removal or
// than the last clear.
func (c *Cache) buried(key string, v Version) bool {
	if !c.cfg.Replicated {
		return false // mutate:equivalent delete-stmt a local cache records no tombstone (bury, buryAll)
	}
	c.tombMu.Lock()
	defer c.tombMu.Unlock()
	if v.Less(c.cleared) {
		return true
	}
	t, ok := c.tombs[key]
	return ok && v.Less(t.v)
}

// pruneTombs drops the tombstones older than their life (the sweep calls
// it).
func (c *Cache) pruneTombs(now int64) {
	if !c.cfg.Replicated {
		return // mutate:equivalent delete-stmt a local cache records no tombstone
	}
	c.tombMu.Lock()
	defer c.tombMu.Unlock()
	life := c.tombLife()
	for k, t := range c.tombs {
		if now-t.at > life {
			delete(c.tombs, k)
		}
	}
}

// tombEntries are the tombstones as snapshot entries.
func (c *Cache) tombEntries() []Entry {
	if !c.cfg.Replicated {
		return nil // mutate:equivalent delete-stmt a local cache records no tombstone
	}
	c.tombMu.Lock()
	defer c.tombMu.Unlock()
	var out []Entry
	if c.cleared != (Version{}) {
		out = append(out, Entry{Removed: true, Version: c.cleared})
	}
	for k, t := range c.tombs {
		out = append(out, Entry{Key: k, Removed: true, Version: t.v})
	}
	return out
}
