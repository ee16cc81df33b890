// Package cachekv is the cacheLookup and cacheStore policies: values kept
// in one of the group's caches under a key taken from the request (a
// field, a query parameter, a path segment, the client application), for
// other policies to use (docs/cache.md#cachelookup-and-cachestore).
// cacheStore puts a value made of earlier policies' variables; cacheLookup
// gives an entry's value to later policies as ${as.value}.
//
// Their keys live beside the responseCache's in a cache without colliding
// with them (a different first byte), and are at most MaxKeyBytes long: a
// longer key is treated as no key.
package cachekv

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// MaxKeyBytes bounds a key taken from a request.
const MaxKeyBytes = 1024

// MaxValueBytes bounds a stored value.
const MaxValueBytes = 64 << 10

// keyOf is the request's key for source k, with its namespace prefix.
func keyOf(ex *policy.Exchange, k groupconf.LookupKey) (string, bool) {
	var v string
	var ok bool
	switch k.From {
	case "application":
		v, ok = ex.Application, ex.Application != ""
	case "header":
		b := ex.R.Header.Get(k.Name)
		v, ok = string(b), b != nil
	case "param":
		v, ok = ex.Params.Get(k.Name)
	default: // query
		for _, part := range strings.Split(string(ex.R.Query), "&") {
			qk, qv, _ := strings.Cut(part, "=")
			if uk, err := url.QueryUnescape(qk); err == nil && uk == k.Name {
				uv, err := url.QueryUnescape(qv)
				v, ok = uv, err == nil
				break
			}
		}
	}
	if !ok || v == "" || len(v) > MaxKeyBytes {
		return "", false
	}
	return "V" + v, true
}

// Lookup is one cacheLookup policy. Immutable, safe for concurrent use.
type Lookup struct {
	c      *cache.Cache
	key    groupconf.LookupKey
	as     string // the variable: AS.value
	req    bool
	status int
}

// NewLookup makes the cacheLookup policy of spec (validated by groupconf).
func NewLookup(spec groupconf.CacheLookupPolicy, c *cache.Cache) (*Lookup, error) {
	k, err := groupconf.ParseLookupKey(spec.Key)
	if err != nil {
		return nil, err
	}
	p := &Lookup{c: c, key: k, as: spec.As + ".value", req: spec.Required, status: spec.NotFoundStatus}
	if p.status == 0 {
		p.status = http.StatusForbidden
	}
	return p, nil
}

// Name is "cacheLookup".
func (p *Lookup) Name() string { return "cacheLookup" }

// Apply finds the entry and sets ${as.value}.
func (p *Lookup) Apply(ex *policy.Exchange) error {
	key, ok := keyOf(ex, p.key)
	if ok {
		if v, found := p.c.Get(key); found {
			ex.SetVar(p.as, string(v))
			return nil
		}
	}
	if !p.req {
		return nil
	}
	msg := "access denied"
	if p.status == http.StatusNotFound {
		msg = "not found"
	}
	return &policy.Error{Status: p.status, Message: msg, Err: errors.New("no cache entry for the key")}
}

// Store is one cacheStore policy. Immutable, safe for concurrent use.
type Store struct {
	c     *cache.Cache
	key   groupconf.LookupKey
	parts []groupconf.TemplatePart
	ttl   time.Duration
}

// NewStore makes the cacheStore policy of spec (validated by groupconf).
func NewStore(spec groupconf.CacheStorePolicy, c *cache.Cache) (*Store, error) {
	k, err := groupconf.ParseLookupKey(spec.Key)
	if err != nil {
		return nil, err
	}
	parts, err := groupconf.ParseTemplate(spec.Value)
	if err != nil {
		return nil, err
	}
	return &Store{c: c, key: k, parts: parts, ttl: spec.TTL.D()}, nil
}

// Name is "cacheStore".
func (p *Store) Name() string { return "cacheStore" }

// Apply stores the value when the request has a key and every variable
// of the value is set; it never refuses a request. A replicated cache in
// sync mode waits (at most 2 s) for its peers.
func (p *Store) Apply(ex *policy.Exchange) error {
	key, ok := keyOf(ex, p.key)
	if !ok {
		return nil
	}
	var b strings.Builder
	for _, part := range p.parts {
		if part.Var == "" {
			b.WriteString(part.Lit)
			continue
		}
		v, ok := ex.Var(part.Var)
		if !ok {
			return nil
		}
		b.WriteString(v)
	}
	if b.Len() > MaxValueBytes {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.c.Put(ctx, key, []byte(b.String()), p.ttl)
	return nil
}
