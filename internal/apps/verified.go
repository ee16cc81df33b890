package apps

import (
	"crypto/sha256"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
)

// The verified-key cache keeps, per key id, what the last successful check
// found: the key's stored hash and its application. A key presented again
// within that time costs one map read and one HMAC, instead of two row
// look-ups; a change is still seen within the row cache's TTL, because an
// entry never outlives the cache entries of the rows it came from (nor the
// key's own expiry).
//
// Only keys that passed the check are kept, so presenting unknown keys
// cannot fill it. Its size is bounded: at most maxEntries, about
// VerifiedEntryBytes each (a key id and an application's id and name
// besides); when a shard is full and nothing in it has expired, a new key
// is simply not kept (its checks take the row cache's path).

// VerifiedEntryBytes estimates one verified-cache entry's heap bytes
// without its strings: the map slot, the entry and the App value.
const VerifiedEntryBytes = 256

const verifiedShards = 16 // a power of two

type verifiedCache struct {
	seed   maphash.Seed
	max    int // entries per shard
	shards [verifiedShards]verifiedShard
}

type verifiedShard struct {
	mu sync.RWMutex
	m  map[string]*verifiedKey
	_  [40]byte // keeps shards' locks on separate cache lines
}

type verifiedKey struct {
	hash  [sha256.Size]byte // the key's stored HMAC
	app   apikey.App
	until time.Time // after this the rows must be read again
}

// newVerifiedCache holds up to about maxBytes (counting VerifiedEntryBytes
// and the strings of each entry at 64 bytes more).
func newVerifiedCache(maxBytes int64) *verifiedCache {
	per := maxBytes / (VerifiedEntryBytes + 64) / verifiedShards
	v := &verifiedCache{seed: maphash.MakeSeed(), max: int(per)}
	for i := range v.shards {
		v.shards[i].m = map[string]*verifiedKey{}
	}
	return v
}

func (v *verifiedCache) shard(id string) *verifiedShard {
	return &v.shards[maphash.String(v.seed, id)&(verifiedShards-1)]
}

// get returns id's entry if it is still valid at now.
func (v *verifiedCache) get(id string, now time.Time) (*verifiedKey, bool) {
	s := v.shard(id)
	s.mu.RLock()
	e, ok := s.m[id]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e, true
}

// put keeps e under id (a copy of id: the caller's string may be a part
// of the presented key, which must not stay in memory).
func (v *verifiedCache) put(id string, e *verifiedKey, now time.Time) {
	// mutate:equivalent boundary with max 0 the full-shard branch below returns too: nothing is kept either way
	if v.max <= 0 || !now.Before(e.until) {
		return
	}
	s := v.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; !ok && len(s.m) >= v.max {
		for k, old := range s.m {
			if !now.Before(old.until) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= v.max {
			return
		}
	}
	s.m[strings.Clone(id)] = e
}

// len is the number of entries kept (expired ones included).
func (v *verifiedCache) len() int {
	n := 0
	for i := range v.shards {
		s := &v.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
