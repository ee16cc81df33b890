package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// Limit is the limit in force on this instance: the group's, or its
	// share while the group is partitioned.
	Limit int64
	// Remaining is the group-wide estimate of the requests the key may
	// still make in the sliding window (0 when refused).
	Remaining int64
	// Reset is the time until the current window ends.
	Reset time.Duration
	// RetryAfter is when a refused key may try again (0 when allowed).
	RetryAfter time.Duration
}

const nShards = 64

type shard struct {
	mu     sync.RWMutex
	byKey  map[string]*entry
	byHash map[[16]byte]*entry
}

// claim is what an instance says of a key: in window idx it admitted c,
// holds r more reserved, and admitted p in window idx-1.
type claim struct{ idx, c, r, p int64 }

type peerClaim struct {
	id string
	claim
}

// entry is one key's counters on this instance. The atomics are read and
// written on the request path; mu guards the rest and serializes window
// rolls, new reservations and peers' claims.
type entry struct {
	hash  [16]byte
	key   string // "" for a key known only from peers' claims
	idx   atomic.Int64
	c     atomic.Int64 // admitted here in window idx
	r     atomic.Int64 // reserved here in window idx, not used yet
	p     atomic.Int64 // admitted here in window idx-1
	oc    atomic.Int64 // the live peers' claims (c+r) in window idx
	op    atomic.Int64 // the live peers' counts in window idx-1
	gen   atomic.Uint64
	tried atomic.Int64 // requests seen since the last tick

	touchGen atomic.Uint64
	urgent   atomic.Bool

	mu       sync.Mutex
	demand   int64 // requests seen in the last tick
	peers    []peerClaim
	pub      claim // the last claim published
	measured int64 // the window whose overshoot was measured
}

// Limiter is one rateLimit policy's counters on this instance. It is safe
// for concurrent use.
type Limiter struct {
	svc    *Service
	spec   Spec
	id     [8]byte
	window int64 // nanoseconds
	seed   maphash.Seed
	shards [nShards]shard
	nkeys  atomic.Int64

	overflowKey  []byte
	overflowHash [16]byte

	tickGen   atomic.Uint64
	touchedMu sync.Mutex
	touched   []*entry
	urgentMu  sync.Mutex
	urgentQ   []*entry

	allowed, limited atomic.Int64
	overshootReqs    atomic.Int64 // requests admitted beyond the limit, as measured after each window
	overshootMax     atomic.Uint64
	exactRemote      atomic.Int64 // exact-mode decisions asked of another instance
	exactFallback    atomic.Int64 // exact-mode decisions taken alone (owner unreachable)
	overflowed       atomic.Int64 // requests counted on the shared counter of keys beyond maxKeys
}

func newLimiter(s *Service, sp Spec, id [8]byte) *Limiter {
	l := &Limiter{svc: s, spec: sp, id: id, window: int64(sp.Window), seed: maphash.MakeSeed(),
		overflowKey: []byte("\x00gatehouse-ratelimit-overflow")}
	l.overflowHash = keyHash(l.overflowKey)
	for i := range l.shards {
		l.shards[i].byKey = map[string]*entry{}
		l.shards[i].byHash = map[[16]byte]*entry{}
	}
	l.tickGen.Store(1)
	return l
}

// Spec returns the limiter's settings.
func (l *Limiter) Spec() Spec { return l.spec }

// ID is the limiter's identity on the bus (hex).
func (l *Limiter) ID() string { return idString(l.id) }

// at is the window index of t and how far into it t is (0 to 1).
func (l *Limiter) at(t time.Time) (int64, float64) {
	n := t.UnixNano()
	return n / l.window, float64(n%l.window) / float64(l.window)
}

// limitFor is the limit in force with view m: limit × live / size, at
// least 1.
func (l *Limiter) limitFor(m *members) int64 {
	if m.size <= 1 || len(m.live) >= m.size {
		return l.spec.Requests
	}
	return max(1, l.spec.Requests*int64(len(m.live))/int64(m.size))
}

// get finds or makes the entry of key.
func (l *Limiter) get(key []byte) *entry {
	sh := &l.shards[maphash.Bytes(l.seed, key)%nShards]
	sh.mu.RLock()
	e := sh.byKey[string(key)]
	sh.mu.RUnlock()
	if e != nil {
		return e
	}
	e, _ = l.byHash(keyHash(key), true)
	if e == nil { // full: the shared counter
		l.overflowed.Add(1)
		return l.getOverflow()
	}
	sh.mu.Lock()
	if old := sh.byKey[string(key)]; old != nil {
		e = old
	} else {
		if e.key == "" {
			e.key = string(key)
		}
		sh.byKey[e.key] = e
	}
	sh.mu.Unlock()
	return e
}

// getOverflow is the entry shared by the keys beyond maxKeys (it does not
// count against the bound).
func (l *Limiter) getOverflow() *entry {
	kh := l.overflowHash
	sh := &l.shards[kh[0]%nShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.byHash[kh]
	if e == nil {
		e = &entry{hash: kh}
		sh.byHash[kh] = e
	}
	return e
}

// byHash finds the entry of a key hash, making it when make is true and
// the limiter holds fewer than maxKeys keys (nil when full).
func (l *Limiter) byHash(kh [16]byte, mk bool) (*entry, bool) {
	sh := &l.shards[kh[0]%nShards]
	sh.mu.RLock()
	e := sh.byHash[kh]
	sh.mu.RUnlock()
	if e != nil || !mk {
		return e, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e = sh.byHash[kh]; e != nil {
		return e, false
	}
	if l.nkeys.Load() >= int64(l.spec.MaxKeys) {
		return nil, false
	}
	l.nkeys.Add(1)
	e = &entry{hash: kh}
	sh.byHash[kh] = e
	return e, true
}

// touch puts e on the list of entries the next tick looks at.
func (l *Limiter) touch(e *entry) {
	g := l.tickGen.Load()
	if e.touchGen.Load() == g || e.touchGen.Swap(g) == g {
		return
	}
	l.touchedMu.Lock()
	l.touched = append(l.touched, e)
	l.touchedMu.Unlock()
}

// Allow counts one request of key and says whether it may go on.
func (l *Limiter) Allow(key []byte) Decision {
	now := l.svc.now()
	if l.spec.Exact {
		return l.allowExact(key, now)
	}
	e := l.get(key)
	e.tried.Add(1)
	l.touch(e)
	idx, frac := l.at(now)
	m := l.svc.members.Load()
	if e.idx.Load() == idx && e.gen.Load() == m.gen {
		if d, ok := l.fromReservation(e, m, idx, frac, now); ok {
			return d
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	l.roll(e, idx, m)
	if d, ok := l.fromReservation(e, m, idx, frac, now); ok {
		return d
	}
	limit := l.limitFor(m)
	used := l.used(e, frac)
	free := float64(limit) - used
	if free < 1 {
		l.limited.Add(1)
		return Decision{Limit: limit, Reset: l.reset(now), RetryAfter: l.retryAfter(limit, e, frac)}
	}
	// 1/live of the free quota (at least the one request), capped by the
	// demand of two sync intervals.
	n := float64(len(m.live))
	res := int64(free / n)
	target := max(2*e.demand, 2*e.tried.Load(), 1)
	res = max(min(res, target), 1)
	e.r.Store(res - 1)
	e.c.Add(1)
	if len(m.live) > 1 && !e.urgent.Swap(true) {
		l.urgentMu.Lock()
		l.urgentQ = append(l.urgentQ, e)
		l.urgentMu.Unlock()
		l.svc.kick()
	}
	l.allowed.Add(1)
	return Decision{Allowed: true, Limit: limit, Remaining: max(0, int64(free)-1), Reset: l.reset(now)}
}

// fromReservation admits from e's reservation, if any is left.
func (l *Limiter) fromReservation(e *entry, m *members, idx int64, frac float64, now time.Time) (Decision, bool) {
	for r := e.r.Load(); r > 0; r = e.r.Load() {
		if e.r.CompareAndSwap(r, r-1) {
			e.c.Add(1)
			l.allowed.Add(1)
			limit := l.limitFor(m)
			rem := float64(limit) - l.used(e, frac)
			return Decision{Allowed: true, Limit: limit, Remaining: max(0, int64(rem)), Reset: l.reset(now)}, true
		}
	}
	return Decision{}, false
}

// used is the group-wide estimate of e's sliding window without this
// instance's unused reservation: the counts and claims of the current
// window and the previous window's counts weighted by the part of it
// still inside the sliding window.
func (l *Limiter) used(e *entry, frac float64) float64 {
	return float64(e.c.Load()+e.oc.Load()) + float64(e.p.Load()+e.op.Load())*(1-frac)
}

func (l *Limiter) reset(now time.Time) time.Duration {
	n := now.UnixNano()
	return time.Duration(l.window - n%l.window)
}

// retryAfter is how long until the group-wide estimate of e leaves room for
// one request, if nothing more is admitted meanwhile.
func (l *Limiter) retryAfter(limit int64, e *entry, frac float64) time.Duration {
	cur := float64(e.c.Load() + e.oc.Load() + e.r.Load())
	prev := float64(e.p.Load() + e.op.Load())
	return retryAfter(float64(limit), cur, prev, frac, time.Duration(l.window))
}

// retryAfter: in window terms, the estimate is cur + prev×(1−f); room for
// one more needs it at most limit−1.
func retryAfter(limit, cur, prev, frac float64, w time.Duration) time.Duration {
	room := limit - 1
	if cur <= room {
		f := 0.0
		if prev > 0 {
			f = 1 - (room-cur)/prev
		}
		if f <= frac {
			return 0
		}
		return time.Duration((f - frac) * float64(w))
	}
	// The current window's count becomes the previous one.
	f := 1 - room/cur
	return time.Duration((1 - frac + max(f, 0)) * float64(w))
}

// roll moves e to window idx and recomputes the peers' sums when the
// window or the view of the group changed. e.mu is held.
func (l *Limiter) roll(e *entry, idx int64, m *members) {
	old := e.idx.Load()
	if old < idx {
		if old == idx-1 {
			e.p.Store(e.c.Load())
		} else {
			e.p.Store(0)
		}
		e.c.Store(0)
		e.r.Store(0)
		e.idx.Store(idx)
		e.gen.Store(0) // recompute below
	}
	if e.gen.Load() != m.gen || old < idx {
		l.recompute(e, m)
	}
}

// recompute sums the live peers' claims for e's window. e.mu is held.
func (l *Limiter) recompute(e *entry, m *members) {
	idx := e.idx.Load()
	var oc, op int64
	keep := e.peers[:0]
	for _, pc := range e.peers {
		if pc.idx < idx-1 {
			continue // too old to matter: forget it
		}
		keep = append(keep, pc)
		if !m.set[pc.id] {
			continue // not connected: its side enforces its own share
		}
		switch pc.idx {
		case idx:
			oc += pc.c + pc.r
			op += pc.p
		case idx - 1:
			op += pc.c
		}
	}
	e.peers = keep
	e.oc.Store(oc)
	e.op.Store(op)
	e.gen.Store(m.gen)
}

// applyClaim records a peer's claim for the key of hash kh.
func (l *Limiter) applyClaim(from string, kh [16]byte, cl claim) {
	e, _ := l.byHash(kh, true)
	if e == nil {
		return // full: the peer's keys beyond the bound are not followed
	}
	now := l.svc.now()
	idx, _ := l.at(now)
	m := l.svc.members.Load()
	e.mu.Lock()
	l.roll(e, idx, m)
	found := false
	for i := range e.peers {
		if e.peers[i].id == from {
			if cl.idx >= e.peers[i].idx {
				e.peers[i].claim = cl
			}
			found = true
			break
		}
	}
	if !found {
		e.peers = append(e.peers, peerClaim{id: from, claim: cl})
	}
	l.recompute(e, m)
	e.mu.Unlock()
	l.touch(e)
}

// tick resizes the reservations of the entries used since the last tick,
// appends the claims to publish to batch and, every so often, forgets the
// entries that no longer count.
func (l *Limiter) tick(now time.Time, full bool, batch []byte) []byte {
	idx, frac := l.at(now)
	m := l.svc.members.Load()
	limit := l.limitFor(m)
	n := int64(len(m.live))
	l.touchedMu.Lock()
	list := l.touched
	l.touched = nil
	l.tickGen.Add(1)
	l.touchedMu.Unlock()
	if l.spec.Exact { // counters only: nothing to reserve or publish
		for _, e := range list {
			if e.tried.Swap(0) > 0 {
				l.touch(e)
			}
		}
		list = nil
	}
	for _, e := range list {
		e.mu.Lock()
		l.roll(e, idx, m)
		tried := e.tried.Swap(0)
		e.demand = tried
		// Reserve for the next two intervals of demand: 1/live of the free
		// quota at most; an idle key gives its reservation back.
		for {
			r := e.r.Load()
			free := float64(limit) - l.used(e, frac)
			want := min(2*tried, int64(free)/n)
			want = max(want, 0)
			if e.r.CompareAndSwap(r, want) {
				break
			}
		}
		// The overshoot of the previous window, once its counts are in.
		if frac >= 0.5 && e.measured != idx-1 {
			e.measured = idx - 1
			total := e.p.Load() + e.op.Load()
			if over := total - l.spec.Requests; over > 0 && e.p.Load() > 0 {
				l.overshootReqs.Add(over)
				ratio := float64(over) / float64(l.spec.Requests)
				for {
					old := l.overshootMax.Load()
					if ratio <= math.Float64frombits(old) || l.overshootMax.CompareAndSwap(old, math.Float64bits(ratio)) {
						break
					}
				}
			}
		}
		cl := claim{idx: idx, c: e.c.Load(), r: e.r.Load(), p: e.p.Load()}
		if n > 1 && (cl != e.pub || full) && (cl.c > 0 || cl.r > 0 || cl.p > 0 || e.pub != (claim{})) {
			batch = appendRecord(batch, l.id, e.hash, cl.idx, cl.c, cl.r, cl.p)
			e.pub = cl
		}
		e.urgent.Store(false)
		keep := tried > 0 || cl.r > 0 || cl.c > 0 || (cl.p > 0 && e.measured != idx-1) // until the last window is measured
		e.mu.Unlock()
		if keep {
			l.touch(e)
		}
	}
	if full {
		l.sweep(idx)
	}
	return batch
}

// flushUrgent appends the claims of the entries that took a reservation
// since the last flush.
func (l *Limiter) flushUrgent(batch []byte) []byte {
	l.urgentMu.Lock()
	list := l.urgentQ
	l.urgentQ = nil
	l.urgentMu.Unlock()
	for _, e := range list {
		e.mu.Lock()
		cl := claim{idx: e.idx.Load(), c: e.c.Load(), r: e.r.Load(), p: e.p.Load()}
		if cl != e.pub {
			batch = appendRecord(batch, l.id, e.hash, cl.idx, cl.c, cl.r, cl.p)
			e.pub = cl
		}
		e.urgent.Store(false)
		e.mu.Unlock()
	}
	return batch
}

// sweep forgets the entries with nothing in the current or the previous
// window, here or at a peer. A request that found an entry just before it
// was forgotten counts on it alone: at most that request is not seen by
// the next ones.
func (l *Limiter) sweep(idx int64) {
	m := l.svc.members.Load()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for kh, e := range sh.byHash {
			e.mu.Lock()
			l.roll(e, idx, m) // forgets what is older than the previous window
			stale := e.c.Load() == 0 && e.r.Load() == 0 && e.p.Load() == 0 && e.tried.Load() == 0 && len(e.peers) == 0
			e.mu.Unlock()
			if !stale {
				continue
			}
			delete(sh.byHash, kh)
			if kh != l.overflowHash {
				l.nkeys.Add(-1)
			}
			if e.key != "" {
				ks := &l.shards[maphash.String(l.seed, e.key)%nShards]
				if ks != sh {
					ks.mu.Lock()
				}
				delete(ks.byKey, e.key)
				if ks != sh {
					ks.mu.Unlock()
				}
			}
		}
		sh.mu.Unlock()
	}
}

// Keys is the number of keys the limiter counts now.
func (l *Limiter) Keys() int64 { return l.nkeys.Load() }
