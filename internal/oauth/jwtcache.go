package oauth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// jwtCache remembers JWT access tokens whose signature and claims were
// verified, so that the same token checked again (by the oauth policy on
// every request, by a resource server's introspection) costs a SHA-256 and
// a map look-up instead of an ECDSA verification. Only successes are kept,
// keyed by the SHA-256 of the whole token, until the token expires; a hit
// is still checked for expiry, for its key still being in the key set and
// for its grant's revocation. At most jwtCacheMax entries: when full, the
// expired ones are dropped, then an arbitrary half.
type jwtCache struct {
	mu  sync.RWMutex
	m   map[[sha256.Size]byte]cachedJWT
	max int // 0: jwtCacheMax
}

type cachedJWT struct {
	claims jwtClaims
	kid    string
	exp    time.Time
}

const jwtCacheMax = 100_000

func (c *jwtCache) get(tok string) (cachedJWT, bool) {
	k := sha256.Sum256([]byte(tok))
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[k]
	return e, ok
}

func (c *jwtCache) put(tok string, e cachedJWT, now time.Time) {
	k := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[sha256.Size]byte]cachedJWT{}
	}
	max := c.max
	if max == 0 {
		max = jwtCacheMax
	}
	if len(c.m) >= max {
		for k, v := range c.m {
			if !now.Before(v.exp) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < max/2 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = e
}
