// Package responsecache is the responseCache policy: it answers GET and
// HEAD requests with a response of the back end's kept in one of the
// group's caches, without forwarding, and keeps the responses that may be
// kept (docs/cache.md#responsecache).
//
// The key is a SHA-256 of the API, the method (HEAD shares GET's entries),
// the host, whether the connection is TLS, the path, the query (whole, chosen parameters, or none), the
// chosen request fields, and whether the request carried credentials
// (Authorization or Cookie, when not keyed):
// keys have one size whatever the request, and two requests share an entry
// only when every keyed part is equal.
//
// A response is stored only when all of these hold: the request was a GET
// without a body, a Range or an Upgrade; its status is one of the
// policy's (every 2xx but 206 by default); the back end's Cache-Control
// has none of no-store, private or no-cache, and no max-age or s-maxage
// of 0; it has no Set-Cookie (unless storeSetCookie); its Vary names only
// keyed fields (never "*"); a request with credentials (not keyed) got
// a response marked public, s-maxage or must-revalidate (RFC 9111 section
// 3.5); its body is whole and no larger than maxBodyBytes. It lives for
// the policy's ttl, never longer than the cache's timeToLive nor the back
// end's s-maxage (or max-age, or Expires).
//
// A hit answers with the stored status, fields and body (a 304 when the
// request's If-None-Match matches the stored ETag), an Age field (seconds
// since the back end answered), and Cache-Status: gatehouse; hit; the
// API's response edits (cors, headers) run on it as on a forwarded
// response. A miss is forwarded with Cache-Status: gatehouse;
// fwd=uri-miss, and the reason when it will not be stored.
//
// How it sits in the request path: Apply answers a hit (ErrHandled) or
// wraps ex.W in a recorder; ObserveResponse (policy.ResponseObserver)
// sees the back end's head before any edit and decides; the recorder
// copies the body as it streams; Finish (policy.Finisher) stores it once
// forwarding ended without error.
package responsecache

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// Policy is one responseCache policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	api                    string
	c                      *cache.Cache
	ttl                    time.Duration
	get, head              bool
	headers                []string // keyed request fields, lower case
	query                  []string
	allQuery               bool
	statuses               [600]bool
	setCookie              bool
	maxBody                int64
	authKeyed, cookieKeyed bool // Authorization, Cookie are keyed fields
	now                    func() time.Time
	// replicatedSync: a put waits for the peers; it is made off the
	// request's goroutine, at most cap(syncPuts) at once (beyond, the
	// response is not stored).
	replicatedSync bool
	syncPuts       chan struct{}
}

// New makes the policy of spec (validated by groupconf) for the API named
// api, keeping responses in c.
func New(spec groupconf.ResponseCachePolicy, api string, c *cache.Cache) *Policy {
	p := &Policy{api: api, c: c, ttl: spec.TTL.D(), setCookie: spec.StoreSetCookie, maxBody: spec.MaxBodyBytes, now: time.Now,
		query: spec.Query, allQuery: !spec.IgnoreQuery && len(spec.Query) == 0}
	if p.maxBody == 0 {
		p.maxBody = groupconf.DefaultResponseCacheMaxBody
	}
	if len(spec.Methods) == 0 {
		p.get, p.head = true, true
	}
	for _, m := range spec.Methods {
		p.get = p.get || m == "GET"
		p.head = p.head || m == "HEAD"
	}
	for _, h := range spec.Headers {
		p.headers = append(p.headers, strings.ToLower(h))
		p.authKeyed = p.authKeyed || strings.EqualFold(h, "Authorization")
		p.cookieKeyed = p.cookieKeyed || strings.EqualFold(h, "Cookie")
	}
	if len(spec.Statuses) == 0 {
		for s := 200; s < 300; s++ {
			p.statuses[s] = s != 206
		}
	}
	for _, s := range spec.Statuses {
		p.statuses[s] = true
	}
	cfg := c.Config()
	p.replicatedSync = cfg.Replicated && cfg.Mode == cache.Sync
	p.syncPuts = make(chan struct{}, 64)
	return p
}

// Name is "responseCache".
func (p *Policy) Name() string { return "responseCache" }

var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendPart appends a length-prefixed part to the key's material.
func appendPart(b []byte, part []byte) []byte {
	b = strconv.AppendInt(b, int64(len(part)), 10)
	b = append(b, ':')
	return append(b, part...)
}

// key is the request's key; ok is false when the request is not served
// from the cache nor stored (a method not cached, a body, a Range, an
// Upgrade).
func (p *Policy) key(r *h1.Request) (key string, isHead, ok bool) {
	m := b2s(r.Method)
	switch {
	case m == "GET" && p.get:
	case m == "HEAD" && p.head:
		isHead = true
	default:
		return "", false, false
	}
	if r.ContentLength != 0 || r.Upgrade != nil || r.Header.Has("Range") {
		return "", false, false
	}
	bp := keyBufPool.Get().(*[]byte)
	b := append((*bp)[:0], "gatehouse responseCache 1\n"...)
	b = appendPart(b, s2b(p.api))
	n := len(b)
	b = appendPart(b, r.Host)
	for i := n; i < len(b); i++ { // host names compare without case
		if c := b[i]; c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	if r.TLS != nil {
		b = append(b, "https"...)
	}
	b = appendPart(b, r.Path)
	switch {
	case p.allQuery:
		if r.Query != nil {
			b = append(b, '?')
		}
		b = appendPart(b, r.Query)
	case len(p.query) > 0:
		for _, name := range p.query {
			b = appendPart(b, s2b(name))
			b = appendQueryValues(b, r.Query, name)
		}
	}
	for _, name := range p.headers {
		b = appendPart(b, s2b(name))
		r.Header.Each(func(n, v []byte) bool {
			if h1.EqualFoldString(n, name) {
				b = append(b, '=')
				b = appendPart(b, v)
			}
			return true
		})
		b = append(b, ';')
	}
	if p.credentials(r) {
		b = append(b, "credentials"...)
	}
	sum := sha256.Sum256(b)
	*bp = b
	keyBufPool.Put(bp)
	k := make([]byte, 1+len(sum))
	k[0] = 'R'
	copy(k[1:], sum[:])
	return b2s(k), isHead, true
}

// credentials reports whether r carries credentials that are not keyed:
// its response is shared only with other such requests, and stored only
// when the back end marks it public (RFC 9111 section 3.5, Cookie
// treated as Authorization).
func (p *Policy) credentials(r *h1.Request) bool {
	return !p.authKeyed && r.Header.Has("Authorization") || !p.cookieKeyed && r.Header.Has("Cookie")
}

// appendQueryValues appends every value of parameter name in the raw
// query q, decoded, in order.
func appendQueryValues(b, q []byte, name string) []byte {
	rest := b2s(q)
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != name {
			uk, err := url.QueryUnescape(k)
			if err != nil || uk != name {
				continue
			}
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		b = append(b, '=')
		b = appendPart(b, s2b(v))
	}
	return append(b, ';')
}

// Apply answers from the cache, or arranges for the response to be
// recorded.
func (p *Policy) Apply(ex *policy.Exchange) error {
	key, isHead, ok := p.key(ex.R)
	if !ok {
		return nil
	}
	v, at, found := p.c.GetWithAge(key)
	if found {
		e, err := decode(v)
		if err == nil {
			p.answer(ex, e, at, isHead)
			return policy.ErrHandled
		}
		// Never answered; removed without waiting for peers (this miss
		// may store a good copy over it meanwhile).
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p.c.Remove(ctx, key)
		}()
	}
	if isHead {
		return nil // a HEAD response has no body to store
	}
	ex.W = &recorder{ResponseWriter: ex.W, p: p, key: key}
	return nil
}

var (
	nameAge         = []byte("Age")
	nameCacheStatus = []byte("Cache-Status")
	valueHit        = []byte("gatehouse; hit")
	valueMiss       = []byte("gatehouse; fwd=uri-miss")
)

// notModifiedFields are the stored fields a 304 carries (RFC 9110
// section 15.4.5).
var notModifiedFields = []string{"Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Vary"}

// answer writes the stored response e, put at at: a 304 when the
// request's If-None-Match matches the stored ETag.
func (p *Policy) answer(ex *policy.Exchange, e entry, at time.Time, isHead bool) {
	h := ex.W.Header()
	status := e.status
	if inm := ex.R.Header.Get("If-None-Match"); inm != nil && status == 200 {
		var etag []byte
		e.each(func(name, value []byte) {
			if etag == nil && h1.EqualFoldString(name, "etag") {
				etag = value
			}
		})
		if etag != nil && etagMatch(b2s(inm), b2s(etag)) {
			status = 304
		}
	}
	e.each(func(name, value []byte) {
		if status == 304 {
			keep := false
			for _, f := range notModifiedFields {
				keep = keep || h1.EqualFoldString(name, f)
			}
			if !keep {
				return
			}
		}
		h.AddBytes(name, value)
	})
	age := int64(e.age) + int64(p.now().Sub(at)/time.Second)
	var buf [20]byte
	h.AddCopy(nameAge, strconv.AppendInt(buf[:0], max(age, 0), 10))
	h.AddBytes(nameCacheStatus, valueHit)
	if status != 204 && status != 304 {
		h.SetContentLength(int64(len(e.body)))
	}
	if ex.Edit != nil {
		ex.Edit(status, h)
	}
	ex.W.WriteHeader(status)
	if !isHead && status != 304 && len(e.body) > 0 {
		_, _ = ex.W.Write(e.body)
	}
}

// skipped are response fields never stored: the gateway's own, the
// framing, and what a hit sets itself.
var skipped = []string{"X-Correlationid", "Age", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Cache-Status", "Trailer"}

// ObserveResponse decides, from the back end's head, whether the response
// is stored, and copies its fields.
func (p *Policy) ObserveResponse(ex *policy.Exchange, status int, h *h1.Header) {
	rec, ok := ex.W.(*recorder)
	if !ok || rec.p != p || rec.observed {
		return
	}
	rec.observed = true
	if status < 200 || status >= 600 || !p.statuses[status] {
		rec.detail = "status"
		return
	}
	if cl := h.Get("Content-Length"); cl != nil {
		n, err := strconv.ParseInt(string(cl), 10, 64)
		if err != nil || n > p.maxBody {
			rec.detail = "too-large"
			return
		}
	}
	d := directives{maxAge: -1, sMaxAge: -1}
	stop := ""
	var age uint32
	var expires, date []byte
	h.Each(func(name, value []byte) bool {
		switch {
		case h1.EqualFoldString(name, "expires"):
			expires = value
		case h1.EqualFoldString(name, "date"):
			date = value
		case h1.EqualFoldString(name, "cache-control"):
			parseCacheControl(&d, string(value))
		case h1.EqualFoldString(name, "set-cookie"):
			if !p.setCookie {
				stop = "set-cookie"
			}
		case h1.EqualFoldString(name, "vary"):
			if !varyCovered(string(value), p.headers) {
				stop = "vary"
			}
		case h1.EqualFoldString(name, "age"):
			if n, err := strconv.ParseUint(strings.TrimSpace(string(value)), 10, 32); err == nil {
				age = uint32(n)
			}
		}
		return stop == ""
	})
	switch {
	case stop != "":
		rec.detail = stop
		return
	case d.noStore || d.private || d.noCache:
		rec.detail = "cache-control"
		return
	case p.credentials(ex.R) && !d.public:
		rec.detail = "credentials"
		return
	}
	ttl := p.ttl
	if lim := d.sMaxAge; lim >= 0 || d.maxAge >= 0 {
		if lim < 0 {
			lim = d.maxAge
		}
		lim -= int64(age)
		if lim <= 0 {
			rec.detail = "stale"
			return
		}
		if l := time.Duration(lim) * time.Second; ttl == 0 || l < ttl {
			ttl = l
		}
	} else if expires != nil {
		// Expires counts only without max-age (RFC 9111 section 5.3):
		// its distance from the back end's Date (or now); a date that
		// does not parse, or is not later, means already stale.
		exp, err := http.ParseTime(string(expires))
		base := p.now()
		if dt, derr := http.ParseTime(string(date)); date != nil && derr == nil {
			base = dt
		}
		l := exp.Sub(base) - time.Duration(age)*time.Second
		if err != nil || l < time.Second {
			rec.detail = "stale"
			return
		}
		if ttl == 0 || l < ttl {
			ttl = l
		}
	}
	b := &rec.b
	b.start(status, age)
	ok = true
	h.Each(func(name, value []byte) bool {
		for _, s := range skipped {
			if h1.EqualFoldString(name, s) {
				return true
			}
		}
		ok = b.field(name, value)
		return ok
	})
	if !ok {
		rec.detail = "too-many-fields"
		return
	}
	b.finishHead()
	rec.capturing, rec.ttl, rec.status, rec.head = true, ttl, status, len(b.buf)
	if cl := h.Get("Content-Length"); cl != nil {
		rec.want, _ = strconv.ParseInt(string(cl), 10, 64)
	} else {
		rec.want = -1
	}
}

// EditResponse tells the client of a miss that the response was
// forwarded (RFC 9211 Cache-Status: fwd=uri-miss), and why it is not
// stored when it is not (detail: status, too-large, set-cookie, vary,
// cache-control, credentials, stale, too-many-fields). A hit has its own
// Cache-Status.
func (p *Policy) EditResponse(ex *policy.Exchange, status int, h *h1.Header) {
	rec, ok := ex.W.(*recorder)
	if !ok || rec.p != p {
		return
	}
	if rec.detail == "" { // appended: a cache behind the gateway keeps its own member
		h.AddBytes(nameCacheStatus, valueMiss)
		return
	}
	h.AddString("Cache-Status", "gatehouse; fwd=uri-miss; detail="+rec.detail)
}

// Finish stores the recorded response when it was whole.
func (p *Policy) Finish(ex *policy.Exchange, err error) {
	rec, ok := ex.W.(*recorder)
	if !ok || rec.p != p || !rec.capturing || err != nil || ex.W.Status() != rec.status {
		return
	}
	body := len(rec.b.buf) - rec.head
	if rec.want >= 0 && int64(body) != rec.want {
		return
	}
	value, key, ttl := rec.b.buf, rec.key, rec.ttl
	if p.replicatedSync {
		select {
		case p.syncPuts <- struct{}{}:
		default:
			return // too many puts waiting for peers: this one is not stored
		}
		go func() {
			defer func() { <-p.syncPuts }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p.c.Put(ctx, key, value, ttl)
		}()
		return
	}
	p.c.Put(context.Background(), key, value, ttl)
}

// recorder passes the response to the client and keeps a copy of it
// while it may be stored.
type recorder struct {
	h1.ResponseWriter
	p         *Policy
	key       string
	observed  bool
	detail    string // why the response is not stored ("": it may be)
	capturing bool
	status    int
	ttl       time.Duration
	want      int64 // Content-Length; -1: unknown
	head      int   // length of the encoded head in b.buf
	b         entryBuilder
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.capturing {
		if int64(len(r.b.buf)-r.head+len(p)) > r.p.maxBody {
			r.capturing = false
			r.b.buf = nil
		} else {
			r.b.buf = append(r.b.buf, p...)
		}
	}
	return r.ResponseWriter.Write(p)
}

// Abort passes an abort on (h1.Aborter).
func (r *recorder) Abort() {
	r.capturing = false
	if a, ok := r.ResponseWriter.(h1.Aborter); ok {
		a.Abort()
	}
}

var _ h1.Aborter = (*recorder)(nil)

// etagMatch is If-None-Match's weak comparison (RFC 9110 section
// 13.1.2): "*", or one of the listed entity tags equal to etag once the
// weakness prefixes are set aside.
func etagMatch(inm, etag string) bool {
	inm = strings.TrimSpace(inm)
	if inm == "*" {
		return true
	}
	etag = strings.TrimPrefix(etag, "W/")
	for inm != "" {
		var item string
		item, inm, _ = strings.Cut(inm, ",")
		item = strings.TrimPrefix(strings.TrimSpace(item), "W/")
		if item != "" && item == etag && strings.HasPrefix(item, `"`) {
			return true
		}
	}
	return false
}
