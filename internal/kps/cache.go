package kps

import (
	"container/list"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Cache defaults.
const (
	DefaultCacheTTL         = 5 * time.Second
	DefaultCacheNegativeTTL = 1 * time.Second
	DefaultCacheMaxBytes    = 16 << 20
)

// CacheOptions configure a Cache; zero fields take the defaults.
type CacheOptions struct {
	// TTL is how long a found row is served from memory (default 5 s): a
	// change made elsewhere is seen at most TTL late.
	TTL time.Duration
	// NegativeTTL is how long a not-found answer is served from memory
	// (default 1 s): a row inserted elsewhere is seen at most that late.
	NegativeTTL time.Duration
	// MaxBytes bounds the memory the cache holds, as estimated by EntrySize
	// (default 16 MiB). The least recently used entries go first.
	MaxBytes int64
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Cache serves Get and GetBySecondary from memory in front of a Store, for
// the request path. Found rows are kept for TTL, not-found answers for
// NegativeTTL, and any other error (ErrUnavailable above all) is never kept:
// the next look-up asks the store again. Concurrent misses of the same key
// make one store call (singleflight). Its memory is bounded by MaxBytes.
//
// Rows returned are shared between callers: treat them as read-only.
// A Cache is safe for concurrent use.
type Cache struct {
	store Store
	opt   CacheOptions

	mu    sync.Mutex // guards the fields below
	lru   *list.List // of *cacheEntry, most recently used first
	items map[string]*list.Element
	bytes int64
	gen   uint64 // bumped by Invalidate and Purge: a fetch begun before does not fill

	sf           singleflight.Group
	hits, misses atomic.Int64
}

type cacheEntry struct {
	key     string
	row     Row
	found   bool
	expires time.Time
	size    int64
}

// NewCache returns a cache in front of s.
func NewCache(s Store, opt CacheOptions) *Cache {
	if opt.TTL <= 0 {
		opt.TTL = DefaultCacheTTL
	}
	if opt.NegativeTTL <= 0 {
		opt.NegativeTTL = DefaultCacheNegativeTTL
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultCacheMaxBytes
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Cache{store: s, opt: opt, lru: list.New(), items: map[string]*list.Element{}}
}

// CacheStats counts look-ups and what the cache holds.
type CacheStats struct {
	Hits, Misses int64
	Entries      int
	Bytes        int64
}

// MaxBytes is the bound of the cache's memory (CacheOptions.MaxBytes, or
// its default).
func (c *Cache) MaxBytes() int64 { return c.opt.MaxBytes }

// Now is the cache's clock (CacheOptions.Now).
func (c *Cache) Now() time.Time { return c.opt.Now() }

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Entries: c.lru.Len(), Bytes: c.bytes}
}

// Get is Store.Get through the cache.
func (c *Cache) Get(ctx context.Context, table string, key any) (Row, error) {
	row, _, err := c.lookup(ctx, table, key, false)
	return row, err
}

// GetUntil is Get that also tells until when the row may be served from
// memory (the cache entry's expiry): what a caller derives from the row
// and keeps must not be kept longer, so that a change is still seen within
// the TTL. A row that could not be cached expires at once (the zero time).
func (c *Cache) GetUntil(ctx context.Context, table string, key any) (Row, time.Time, error) {
	return c.lookup(ctx, table, key, false)
}

// GetBySecondary is Store.GetBySecondary through the cache.
func (c *Cache) GetBySecondary(ctx context.Context, table string, key any) (Row, error) {
	row, _, err := c.lookup(ctx, table, key, true)
	return row, err
}

// Invalidate forgets the entry for a primary key (call it after writing
// that row through this process). Entries by secondary key expire by TTL.
func (c *Cache) Invalidate(table string, key any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if el, ok := c.items[cacheKey(table, key, false)]; ok {
		c.remove(el)
	}
}

// Forget forgets what a change to a row of table may have made stale: the
// entry of its primary key and every entry of the table found by a
// secondary key (which key a row had there is not known); a nil key forgets
// the whole table. The cluster bus calls it when another instance announces
// a change (docs/cluster.md). It scans the entries: changes are rare.
func (c *Cache) Forget(table string, key any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if key != nil {
		if el, ok := c.items[cacheKey(table, key, false)]; ok {
			c.remove(el)
		}
	}
	sec := table + "\x00s"
	prim := table + "\x00p"
	for k, el := range c.items {
		if strings.HasPrefix(k, sec) || (key == nil && strings.HasPrefix(k, prim)) {
			c.remove(el)
		}
	}
}

// Purge forgets everything.
func (c *Cache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.lru.Init()
	clear(c.items)
	c.bytes = 0
}

// cacheKey is the map key: table, which key, and the key's text tagged by
// kind, so that int32(5) and int64(5) meet and "5" does not.
func cacheKey(table string, key any, secondary bool) string {
	kind := byte('p')
	if secondary {
		kind = 's'
	}
	b := make([]byte, 0, len(table)+24) // mutate:equivalent const a capacity: append grows it as needed
	b = append(b, table...)
	b = append(b, 0, kind)
	switch k := key.(type) {
	case string:
		b = append(b, 's')
		b = append(b, k...)
	case int:
		b = append(b, 'i')
		b = strconv.AppendInt(b, int64(k), 10)
	case int32:
		b = append(b, 'i')
		b = strconv.AppendInt(b, int64(k), 10)
	case int64:
		b = append(b, 'i')
		b = strconv.AppendInt(b, k, 10)
	default:
		return "" // not cacheable: the store decides (ErrInvalid)
	}
	return string(b)
}

func (c *Cache) lookup(ctx context.Context, table string, key any, secondary bool) (Row, time.Time, error) {
	k := cacheKey(table, key, secondary)
	if k == "" {
		row, err := c.fetch(ctx, table, key, secondary)
		return row, time.Time{}, err
	}
	now := c.opt.Now()
	c.mu.Lock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			c.hits.Add(1)
			if !e.found {
				return Row{}, e.expires, &Error{Op: "get", Table: table, Key: k[len(table)+3:], Err: ErrNotFound}
			}
			return e.row, e.expires, nil
		}
		c.remove(el)
	}
	gen := c.gen
	c.mu.Unlock()
	c.misses.Add(1)

	ch := c.sf.DoChan(k, func() (any, error) {
		// The store call outlives a waiter that gives up: it is shared.
		row, err := c.fetch(context.WithoutCancel(ctx), table, key, secondary)
		var until time.Time
		switch {
		case err == nil:
			until = c.put(k, row, true, gen)
		case errors.Is(err, ErrNotFound):
			c.put(k, Row{}, false, gen)
		}
		return fetched{row, until}, err
	})
	select {
	case r := <-ch:
		f := r.Val.(fetched)
		return f.row, f.until, r.Err
	case <-ctx.Done():
		return Row{}, time.Time{}, &Error{Op: "get", Table: table, Err: Unavailable(ctx.Err())}
	}
}

// fetched is a store answer shared by the waiters of one fetch.
type fetched struct {
	row   Row
	until time.Time // the cache entry's expiry; zero when it was not kept
}

func (c *Cache) fetch(ctx context.Context, table string, key any, secondary bool) (Row, error) {
	if secondary {
		return c.store.GetBySecondary(ctx, table, key)
	}
	return c.store.Get(ctx, table, key)
}

// put keeps an answer and returns its expiry (zero when it is not kept).
func (c *Cache) put(k string, row Row, found bool, gen uint64) time.Time {
	ttl := c.opt.TTL
	if !found {
		ttl = c.opt.NegativeTTL
	}
	e := &cacheEntry{key: k, row: row, found: found, expires: c.opt.Now().Add(ttl), size: EntrySize(k, row)}
	if e.size > c.opt.MaxBytes {
		return time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return time.Time{} // invalidated while fetching: the row may be older than the invalidation
	}
	if el, ok := c.items[k]; ok {
		// mutate:equivalent delete-stmt defensive: lookup removed k's entry before the fetch and singleflight runs one fetch per key
		c.remove(el)
	}
	c.items[k] = c.lru.PushFront(e)
	c.bytes += e.size
	for c.bytes > c.opt.MaxBytes {
		c.remove(c.lru.Back())
	}
	return e.expires
}

// remove drops an element; c.mu is held.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.bytes -= e.size
}

// Per-entry and per-value overheads of EntrySize, in bytes: the entry, its
// list element and map slot; a map entry with its interface value; the
// header of a string, slice or map.
const (
	entryOverhead = 160
	valueOverhead = 48
	headerSize    = 24
)

// EntrySize estimates the heap bytes a cache entry holds: a fixed overhead
// per entry and per value, plus every string's bytes. It is the measure of
// CacheOptions.MaxBytes.
func EntrySize(key string, row Row) int64 {
	n := int64(entryOverhead + len(key))
	for name, v := range row.Values {
		n += int64(valueOverhead + len(name))
		switch v := v.(type) {
		case string:
			n += int64(len(v))
		case []string:
			for _, s := range v {
				n += int64(headerSize + len(s))
			}
		case map[string]string:
			for k, s := range v {
				n += int64(valueOverhead + len(k) + len(s))
			}
		}
	}
	return n
}
