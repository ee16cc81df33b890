package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
)

// The group's replicated caches over the bus (docs/cache.md): a
// CacheReplicator is the cache.Replicator of an instance's registry. A
// change is published on gatehouse.cache.events.<cache> with a reply inbox;
// every live peer applies it and answers, and a synchronous put returns
// once as many answers came as PeersUp counts (or fails with the cache's
// ErrReplication after AckTimeout: the change stays local). A peer whose
// bus comes up (at start, or back after a partition) asks one peer for
// each replicated cache's snapshot on gatehouse.cache.snapshot.<cache> and
// merges it after checking its checksum (cache.Bootstrap: the last writer
// wins per key).

// Subjects of the caches.
const (
	cacheEventsSubject   = "gatehouse.cache.events."
	cacheSnapshotSubject = "gatehouse.cache.snapshot."
)

// DefaultAckTimeout bounds how long a synchronous put waits for the
// peers' answers when its context has no earlier deadline.
const DefaultAckTimeout = 500 * time.Millisecond

// cacheEvents is the wire form of a published batch.
type cacheEvents struct {
	Events []cache.Event `json:"events"`
}

// cacheSnapshot is the wire form of a snapshot's answer.
type cacheSnapshot struct {
	Entries  []cache.Entry `json:"entries"`
	Checksum string        `json:"checksum"`
	Missing  bool          `json:"missing,omitempty"` // no such cache on the answering instance
}

// CacheReplicator carries an instance's replicated caches over its bus.
type CacheReplicator struct {
	b          *Bus
	caches     func() *cache.Registry
	log        *slog.Logger
	AckTimeout time.Duration

	unsub []func()
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	acks *prometheus.HistogramVec // publish to the last peer's answer
	lag  *prometheus.HistogramVec // a change's time on its origin to its application here
}

// replication's histogram buckets: 50 µs to 2.5 s.
var replicationBuckets = prometheus.ExponentialBuckets(50e-6, 2.2, 14)

// NewCacheReplicator attaches reg's caches to b: it answers the peers'
// events and snapshot requests, and bootstraps reg's replicated caches
// each time the bus comes up with peers. Close detaches it.
func NewCacheReplicator(b *Bus, reg *cache.Registry, log *slog.Logger) *CacheReplicator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &CacheReplicator{b: b, caches: func() *cache.Registry { return reg }, log: log, AckTimeout: DefaultAckTimeout,
		quit: make(chan struct{}), done: make(chan struct{}),
		acks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gatehouse_cache_replication_ack_seconds",
			Help: "From publishing a replicated cache's change (a sync put, an async batch) to the last live peer's acknowledgement.", Buckets: replicationBuckets}, []string{"cache"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gatehouse_cache_replication_lag_seconds",
			Help: "Replication lag: from a change on its origin (its version's time) to its application here; includes the instances' clock skew.", Buckets: replicationBuckets}, []string{"cache"})}
	r.unsub = append(r.unsub,
		b.Subscribe(cacheEventsSubject+"*", r.onEvents),
		b.Subscribe(cacheSnapshotSubject+"*", r.onSnapshot))
	go r.bootstrapLoop()
	return r
}

// Collector is the replication's histograms, for the instance's registry
// (docs/metrics.md).
func (r *CacheReplicator) Collector() prometheus.Collector { return replCollector{r} }

type replCollector struct{ r *CacheReplicator }

func (c replCollector) Describe(ch chan<- *prometheus.Desc) {
	c.r.acks.Describe(ch)
	c.r.lag.Describe(ch)
}

func (c replCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.acks.Collect(ch)
	c.r.lag.Collect(ch)
}

// Close ends the subscriptions and the bootstrap loop.
func (r *CacheReplicator) Close() {
	r.once.Do(func() {
		for _, u := range r.unsub {
			u()
		}
		close(r.quit)
		<-r.done
	})
}

// Publish implements cache.Replicator.
func (r *CacheReplicator) Publish(ctx context.Context, name string, events []cache.Event) error {
	want := r.b.PeersUp()
	if want == 0 {
		return nil
	}
	data, err := json.Marshal(cacheEvents{Events: events})
	if err != nil {
		return err // mutate:equivalent * events are strings, bytes and numbers
	}
	ctx, cancel := context.WithTimeout(ctx, r.AckTimeout)
	defer cancel()
	t0 := time.Now()
	got, err := r.b.requestAll(ctx, cacheEventsSubject+name, data, want)
	if err == nil {
		r.acks.WithLabelValues(name).Observe(time.Since(t0).Seconds())
	}
	if err != nil {
		return fmt.Errorf("%d of %d peers acknowledged cache %q's change: %w", got, want, name, err)
	}
	return nil
}

// onEvents applies a peer's batch and acknowledges it.
func (r *CacheReplicator) onEvents(m Msg) {
	name := strings.TrimPrefix(m.Subject, cacheEventsSubject)
	var ce cacheEvents
	if err := json.Unmarshal(m.Data, &ce); err != nil {
		r.log.Warn("cluster bus: a cache batch that does not decode", "cache", name, "error", err.Error())
		return
	}
	if c := r.caches().Get(name); c != nil {
		now := time.Now().UnixNano()
		for _, ev := range ce.Events {
			c.ApplyRemote(ev)
			if ev.Version.Time > 0 {
				r.lag.WithLabelValues(name).Observe(max(0, float64(now-ev.Version.Time)/1e9))
			}
		}
	}
	// Acknowledged even for a cache this instance does not have (another
	// configuration during a rollout): the publisher does not wait for it.
	if m.Reply != "" {
		_ = m.Respond([]byte("ok"))
	}
}

// onSnapshot answers a peer's bootstrap with this instance's copy.
func (r *CacheReplicator) onSnapshot(m Msg) {
	name := strings.TrimPrefix(m.Subject, cacheSnapshotSubject)
	var s cacheSnapshot
	if c := r.caches().Get(name); c != nil {
		s.Entries, s.Checksum = c.Snapshot()
	} else {
		s.Missing = true
	}
	data, err := json.Marshal(s)
	if err == nil && m.Reply != "" {
		_ = m.Respond(data)
	}
}

// bootstrapLoop bootstraps the replicated caches each time the bus is up
// with peers after it was not.
func (r *CacheReplicator) bootstrapLoop() {
	defer close(r.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	wasUp := false
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
		}
		up := r.b.State() == StateUp && r.b.PeersUp() > 0
		if up && !wasUp {
			r.Bootstrap(context.Background())
		}
		wasUp = up
	}
}

// Bootstrap merges each replicated cache with a peer's snapshot. It
// returns the entries taken per cache.
func (r *CacheReplicator) Bootstrap(ctx context.Context) map[string]int {
	out := map[string]int{}
	set := r.caches().Current()
	if set == nil {
		return out
	}
	for _, c := range set.Caches() {
		if !c.Config().Replicated {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		data, err := r.b.Request(rctx, cacheSnapshotSubject+c.Name(), nil)
		cancel()
		if err != nil {
			r.log.Warn("cluster bus: no peer gave its copy of a cache", "cache", c.Name(), "error", err.Error())
			continue
		}
		var s cacheSnapshot
		if err := json.Unmarshal(data, &s); err != nil || s.Missing {
			continue
		}
		n, err := c.Bootstrap(s.Entries, s.Checksum)
		if err != nil {
			r.log.Warn("cluster bus: a peer's copy of a cache refused", "cache", c.Name(), "error", err.Error())
			continue
		}
		out[c.Name()] = n
		r.log.Info("cluster bus: cache bootstrapped from a peer", "cache", c.Name(), "entries", n)
	}
	return out
}

// requestAll publishes data on subject with a reply inbox and waits, within
// ctx, for want answers. It returns how many came.
func (b *Bus) requestAll(ctx context.Context, subject string, data []byte, want int) (int, error) {
	b.mu.Lock()
	nc := b.nc
	b.mu.Unlock()
	if nc == nil {
		return 0, ErrNotRunning
	}
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return 0, err
	}
	b.msgsOut.Add(1)
	got := 0
	for got < want {
		if _, err := sub.NextMsgWithContext(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return got, ctx.Err()
			}
			return got, err
		}
		b.msgsIn.Add(1)
		got++
	}
	return got, nil
}
