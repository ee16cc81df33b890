// Package ratelimit is the rateLimit policy and the engine behind it: at
// most N requests per window for each key (client IP, application, API key,
// OAuth client, a header's value), enforced across the instances of a
// group without a round trip on the request path (docs/rate-limits.md).
//
// Algorithm: a sliding window counter (the previous fixed window's count
// weighted by the part of it still inside the sliding window, plus the
// current window's count), in windows aligned to the Unix epoch so that
// every instance counts the same windows. Its counts add up across
// instances, which is what lets each instance hold only numbers.
//
// Across the group (mode approximate): each instance admits from a
// reservation, a small block of the group's remaining quota that it claims
// before it uses it. A claim is its count in the current window plus the
// reservation not used yet; claims travel on the cluster bus (subject
// SyncSubject, batched every Options.SyncInterval, and at once, within
// about a millisecond, when a reservation is taken). An instance takes a
// new reservation when its own is used up: 1/live of the free quota as it
// sees it (the limit minus every claim it knows and the weighted previous
// window), capped by its own recent demand. The request path touches only
// atomics of the key's entry while the reservation lasts, and the entry's
// mutex to take a new one. The overshoot is bounded by the reservations
// two instances take within one bus latency of each other
// (docs/rate-limits.md has the numbers measured at 2, 4 and 8 instances).
//
// Mode exact: one owner instance per key, chosen by rendezvous hashing over
// the live instances, holds its counter; the others ask it on every
// request (Transport.Request, subject ExactSubject + "." + owner): a round
// trip on the request path, for small limits.
//
// Partition: each instance enforces limit × live / size, where live is the
// number of instances it sees (itself and the peers whose routes are up
// and that were heard from within silentAfter sync intervals: every
// instance publishes at least a heartbeat every heartbeatEvery) and size
// the group's size known from the topology; never unlimited, never zero
// (at least 1). A group of one instance counts locally.
//
// A Service is one instance's engine, kept across configurations: a limiter
// whose settings stay keeps its counts through a hot swap. Lock order:
// Service.mu, then a shard's mu, then an entry's mu.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Subjects on the bus.
const (
	// SyncSubject carries batches of claims (Publish).
	SyncSubject = "gatehouse.ratelimit.sync"
	// ExactSubject + "." + instance id carries exact-mode requests to the
	// key's owner (Request).
	ExactSubject = "gatehouse.ratelimit.take"
)

// Defaults of Options.
const (
	DefaultSyncInterval = 50 * time.Millisecond
	// urgentDelay coalesces the claims of new reservations before they
	// are published.
	urgentDelay = time.Millisecond
	// fullEvery: every so many sync intervals, every active entry's claim
	// is published even when unchanged (a lost message heals).
	fullEvery = 20
	// heartbeatEvery: every so many sync intervals an instance publishes
	// a batch, empty when it has nothing to say, so that its peers hear
	// from it; a peer connected on the bus but not heard for silentAfter
	// sync intervals is counted out (a route that passes nothing: the bus
	// notices it only after its pings go unanswered, about 7 s).
	heartbeatEvery = 5
	silentAfter    = 20
)

// Transport is what the engine needs of the group's bus (BusTransport
// adapts a *cluster.Bus). Every method is safe for concurrent use.
type Transport interface {
	// Publish sends data to the group's other instances (at most once).
	Publish(subject string, data []byte) error
	// Subscribe calls fn for each message from another instance on
	// subject; respond answers a Request (nil for a Publish).
	Subscribe(subject string, fn func(data []byte, respond func([]byte) error)) (unsubscribe func())
	// Request sends data on subject and waits for the first answer.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
	// Members are the instances this one sees: live holds the instance
	// ids of itself and of the peers connected now; size is the group's
	// size (itself and every peer known from the topology or the manual
	// list, connected or not).
	Members() (live []string, size int)
}

// Options configure a Service.
type Options struct {
	InstanceID string
	// Transport is the bus; nil: local counting only (a group of one).
	Transport    Transport
	Logger       *slog.Logger
	Now          func() time.Time // the clock; default time.Now
	SyncInterval time.Duration    // how often claims are published; default 50 ms
	// Manual: no background loop; the caller calls Tick (unit tests with
	// an injected clock).
	Manual bool
}

// members is one view of the group.
type members struct {
	gen  uint64
	live []string // sorted, self included
	set  map[string]bool
	size int
}

func (m *members) partitioned() bool { return len(m.live) < m.size }

// Service is one instance's rate-limit engine.
type Service struct {
	opts Options
	self string
	trp  atomic.Pointer[trBox] // the bus, once attached
	log  *slog.Logger
	now  func() time.Time

	members atomic.Pointer[members]

	mu       sync.Mutex // guards limiters
	limiters map[[8]byte]*Limiter

	urgent chan struct{}
	quit   chan struct{}
	done   chan struct{}
	unsubs []func()
	ticks  int

	partitionedSince atomic.Int64         // unix nanos; 0 when whole
	membersMu        sync.Mutex           // serializes refreshMembers
	wasWhole         bool                 // every instance was seen once (membersMu)
	liveSince        map[string]time.Time // when each peer last became connected on the bus (membersMu)
	heardMu          sync.Mutex
	heard            map[string]time.Time // when each peer was last heard from (heardMu)
	syncOut, syncIn  atomic.Int64         // messages
	syncErrors       atomic.Int64
}

// New makes a Service and starts its sync loop (unless Options.Manual).
// Close stops it.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	s := &Service{opts: o, self: o.InstanceID, log: o.Logger, now: o.Now,
		limiters: map[[8]byte]*Limiter{}, liveSince: map[string]time.Time{}, heard: map[string]time.Time{},
		urgent: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.members.Store(&members{live: []string{s.self}, set: map[string]bool{s.self: true}, size: 1})
	if o.Transport != nil {
		s.Attach(o.Transport)
	}
	if o.Manual {
		close(s.done)
	} else {
		go s.loop()
	}
	return s
}

type trBox struct{ t Transport }

// tr is the attached transport, nil before Attach.
func (s *Service) tr() Transport {
	if b := s.trp.Load(); b != nil {
		return b.t
	}
	return nil
}

// Attach gives the service its bus (once: the instance's bus starts after
// its first configuration is built). Until then it counts locally with the
// whole limit.
func (s *Service) Attach(t Transport) {
	if t == nil || !s.trp.CompareAndSwap(nil, &trBox{t}) {
		return
	}
	u1 := t.Subscribe(SyncSubject, func(data []byte, _ func([]byte) error) { s.receive(data) })
	u2 := t.Subscribe(ExactSubject+"."+s.self, s.serveExact)
	s.mu.Lock()
	s.unsubs = append(s.unsubs, u1, u2)
	s.mu.Unlock()
	s.refreshMembers()
}

// Close stops the sync loop and the subscriptions.
func (s *Service) Close() {
	select {
	case <-s.quit:
		return
	default:
	}
	close(s.quit)
	<-s.done
	s.mu.Lock()
	unsubs := s.unsubs
	s.unsubs = nil
	s.mu.Unlock()
	for _, u := range unsubs {
		u()
	}
}

// Spec is what a limiter counts.
type Spec struct {
	API      string        // the API's name (metrics, identity)
	Name     string        // the policy's name (RateLimit fields)
	Requests int64         // the limit per window, group-wide
	Window   time.Duration // whole seconds in configurations; any positive duration here
	Key      string        // the key setting (identity only)
	Exact    bool
	MaxKeys  int           // default 100000
	Timeout  time.Duration // exact mode; default 50 ms
}

// id identifies a limiter across instances and configurations: the same
// settings (all of them, defaults filled in) on the same API count
// together.
func (sp Spec) id() [8]byte {
	h := sha256.New()
	var b [8]byte
	for _, s := range []string{sp.API, sp.Name, sp.Key} {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	binary.BigEndian.PutUint64(b[:], uint64(sp.Requests))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(sp.Window))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(sp.MaxKeys))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(sp.Timeout))
	h.Write(b[:])
	if sp.Exact {
		h.Write([]byte{1})
	}
	var id [8]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Limiter returns the limiter of sp: the existing one when a limiter with
// the same settings exists (its counts are kept), a new one otherwise.
func (s *Service) Limiter(sp Spec) (*Limiter, error) {
	if sp.Requests < 1 || sp.Window <= 0 {
		return nil, errors.New("rate limiter: requests and window must be positive")
	}
	if sp.MaxKeys <= 0 {
		sp.MaxKeys = 100000
	}
	if sp.Timeout <= 0 {
		sp.Timeout = 50 * time.Millisecond
	}
	id := sp.id()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.limiters[id]; l != nil {
		return l, nil
	}
	l := newLimiter(s, sp, id)
	s.limiters[id] = l
	return l, nil
}

// Retain drops the limiters not in keep (after a configuration swap: the
// limiters of the new configuration).
func (s *Service) Retain(keep []*Limiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, l := range s.limiters {
		if !slices.Contains(keep, l) {
			delete(s.limiters, id)
		}
	}
}

func (s *Service) limiterList() []*Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Limiter, 0, len(s.limiters))
	for _, l := range s.limiters {
		out = append(out, l)
	}
	return out
}

// kick asks the loop to publish the new reservations soon.
func (s *Service) kick() {
	if s.tr() == nil {
		return
	}
	select {
	case s.urgent <- struct{}{}:
	default:
	}
}

// loop publishes claims every SyncInterval, and new reservations within
// urgentDelay.
func (s *Service) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.Tick()
		case <-s.urgent:
			time.Sleep(urgentDelay)
			s.flushUrgent()
		}
	}
}

// Tick refreshes the view of the group, resizes the reservations of the
// active keys, publishes their claims and forgets expired keys. The loop
// calls it every SyncInterval; with Options.Manual, the caller does.
func (s *Service) Tick() {
	if s.tr() != nil {
		s.refreshMembers()
	}
	s.ticks++
	full := s.ticks%fullEvery == 0
	now := s.now()
	var batch []byte
	for _, l := range s.limiterList() {
		batch = l.tick(now, full, batch)
	}
	if len(batch) == 0 && s.ticks%heartbeatEvery == 0 {
		// A heartbeat: nothing to say, but alive (also to peers counted
		// out as silent, so that they count this one in again).
		if tr := s.tr(); tr != nil && s.members.Load().size > 1 {
			s.publishOne(tr, nil)
		}
		return
	}
	s.publish(batch)
}

// flushUrgent publishes the claims of new reservations.
func (s *Service) flushUrgent() {
	var batch []byte
	for _, l := range s.limiterList() {
		batch = l.flushUrgent(batch)
	}
	s.publish(batch)
}

// refreshMembers reads the group's view from the transport; a change is a
// new generation (entries recompute their peers' sums).
func (s *Service) refreshMembers() {
	s.membersMu.Lock()
	defer s.membersMu.Unlock()
	connected, size := s.tr().Members()
	now := s.now()
	silent := silentAfter * s.opts.SyncInterval
	live := []string{s.self}
	seen := map[string]bool{}
	s.heardMu.Lock()
	for _, id := range connected {
		if id == s.self || seen[id] {
			continue
		}
		seen[id] = true
		since, ok := s.liveSince[id]
		if !ok {
			since = now
			s.liveSince[id] = now
		}
		// Connected, and heard from lately (or connected lately: its first
		// heartbeat may not be here yet).
		if now.Sub(s.heard[id]) < silent || now.Sub(since) < silent {
			live = append(live, id)
		}
	}
	s.heardMu.Unlock()
	for id := range s.liveSince {
		if !seen[id] {
			delete(s.liveSince, id) // disconnected: a return is a new start
		}
	}
	slices.Sort(live)
	size = max(size, len(live), 1)
	old := s.members.Load()
	if slices.Equal(old.live, live) && old.size == size {
		return
	}
	m := &members{gen: old.gen + 1, live: live, set: map[string]bool{}, size: size}
	if !m.partitioned() && size > 1 {
		s.wasWhole = true
	}
	for _, id := range live {
		m.set[id] = true
	}
	s.members.Store(m)
	switch {
	case m.partitioned() && !old.partitioned() && !s.wasWhole:
		s.partitionedSince.Store(s.now().UnixNano())
		s.log.Info("rate limits: waiting for the group's other instances; each limit is enforced at its share here meanwhile", "live", len(live), "size", size)
	case m.partitioned() && !old.partitioned():
		s.partitionedSince.Store(s.now().UnixNano())
		s.log.Warn("rate limits: the group is partitioned; each limit is enforced at its share here", "live", len(live), "size", size)
	case !m.partitioned() && old.partitioned():
		s.partitionedSince.Store(0)
		s.log.Info("rate limits: every instance of the group is connected; limits are group-wide again", "live", len(live), "size", size)
	}
}

// Message encoding: a batch is the sender's id (uvarint length, bytes),
// then records of limiter id (8 bytes), key hash (16 bytes), window index,
// count, reservation and previous window's count (uvarints).
const recordMax = 8 + 16 + 4*binary.MaxVarintLen64

func (s *Service) publish(batch []byte) {
	tr := s.tr()
	if len(batch) == 0 || tr == nil {
		return
	}
	m := s.members.Load()
	if len(m.live) < 2 {
		return // nobody to tell
	}
	// Messages of at most maxBatch bytes of records (NATS's payload limit
	// is 1 MiB), cut at record boundaries.
	for len(batch) > maxBatch {
		cut := 0
		for cut < maxBatch {
			cut += recordLen(batch[cut:])
		}
		s.publishOne(tr, batch[:cut])
		batch = batch[cut:]
	}
	s.publishOne(tr, batch)
}

// maxBatch bounds the records of one message.
const maxBatch = 64 << 10

// recordLen is the length of the record at the start of b (b holds whole
// records made by appendRecord).
func recordLen(b []byte) int {
	n := 24
	for range 4 {
		_, k := binary.Uvarint(b[n:])
		n += k
	}
	return n
}

func (s *Service) publishOne(tr Transport, batch []byte) {
	msg := make([]byte, 0, len(s.self)+1+len(batch))
	msg = binary.AppendUvarint(msg, uint64(len(s.self)))
	msg = append(msg, s.self...)
	msg = append(msg, batch...)
	if err := tr.Publish(SyncSubject, msg); err != nil {
		s.syncErrors.Add(1)
		return
	}
	s.syncOut.Add(1)
}

func appendRecord(b []byte, lid [8]byte, kh [16]byte, idx, c, r, p int64) []byte {
	b = append(b, lid[:]...)
	b = append(b, kh[:]...)
	b = binary.AppendUvarint(b, uint64(idx))
	b = binary.AppendUvarint(b, uint64(max(c, 0)))
	b = binary.AppendUvarint(b, uint64(max(r, 0)))
	b = binary.AppendUvarint(b, uint64(max(p, 0)))
	return b
}

// receive applies a batch of another instance's claims.
func (s *Service) receive(data []byte) {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > 256 || uint64(len(data)-k) < n {
		s.syncErrors.Add(1)
		return
	}
	from := string(data[k : k+int(n)])
	data = data[k+int(n):]
	if from == s.self {
		return
	}
	s.syncIn.Add(1)
	s.heardMu.Lock()
	if _, ok := s.heard[from]; ok || len(s.heard) < 4096 {
		s.heard[from] = s.now()
	}
	s.heardMu.Unlock()
	var byID map[[8]byte]*Limiter
	for len(data) > 0 {
		if len(data) < 24 {
			s.syncErrors.Add(1)
			return
		}
		var lid [8]byte
		var kh [16]byte
		copy(lid[:], data[:8])
		copy(kh[:], data[8:24])
		data = data[24:]
		var v [4]int64
		for i := range v {
			x, k := binary.Uvarint(data)
			if k <= 0 || x > 1<<62 {
				s.syncErrors.Add(1)
				return
			}
			v[i] = int64(x)
			data = data[k:]
		}
		if byID == nil {
			s.mu.Lock()
			byID = make(map[[8]byte]*Limiter, len(s.limiters))
			for id, l := range s.limiters {
				byID[id] = l
			}
			s.mu.Unlock()
		}
		if l := byID[lid]; l != nil && !l.spec.Exact {
			l.applyClaim(from, kh, claim{idx: v[0], c: v[1], r: v[2], p: v[3]})
		}
	}
}

// keyHash is the key as it travels on the bus: its SHA-256, cut to 16
// bytes (the key itself, which may be an address or a header's value,
// never leaves the instance).
func keyHash(key []byte) [16]byte {
	sum := sha256.Sum256(key)
	var h [16]byte
	copy(h[:], sum[:16])
	return h
}

// String is a limiter id as logs and tests show it.
func idString(id [8]byte) string { return hex.EncodeToString(id[:]) }
