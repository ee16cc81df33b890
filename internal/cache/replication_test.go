package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// hub is an in-memory stand-in for the cluster bus: Publish delivers each
// event to the same-named cache of every other live peer before it
// returns (the acknowledgement), in order.
type hub struct {
	mu    sync.Mutex
	peers map[string]*Registry
	down  map[string]bool // known to be gone: not waited for
	stuck map[string]bool // live but not answering: Publish fails
	calls int
}

func newHub() *hub {
	return &hub{peers: map[string]*Registry{}, down: map[string]bool{}, stuck: map[string]bool{}}
}

// peerRepl is the Replicator of one peer.
type peerRepl struct {
	h    *hub
	self string
}

func (p peerRepl) Publish(ctx context.Context, name string, events []Event) error {
	p.h.mu.Lock()
	p.h.calls++
	var targets []*Registry
	for id, r := range p.h.peers {
		if id == p.self || p.h.down[id] {
			continue
		}
		if p.h.stuck[id] {
			p.h.mu.Unlock()
			<-ctx.Done()
			return fmt.Errorf("peer %s: %w", id, ctx.Err())
		}
		targets = append(targets, r)
	}
	p.h.mu.Unlock()
	for _, r := range targets {
		c := r.Get(name)
		if c == nil {
			continue
		}
		for _, ev := range events {
			c.ApplyRemote(ev)
		}
	}
	return nil
}

// group makes n peers, each with the caches cfgs, joined by a hub.
func group(t *testing.T, n int, clk *clock, cfgs ...Config) (*hub, []*Registry) {
	h := newHub()
	var regs []*Registry
	for i := range n {
		id := fmt.Sprintf("i%d", i)
		r := NewRegistry(Options{Origin: id, Now: clk.Now})
		r.SetReplicator(peerRepl{h, id})
		r.Activate(r.Prepare(cfgs))
		h.peers[id] = r
		regs = append(regs, r)
		t.Cleanup(func() {
			for _, c := range r.Current().Caches() {
				c.Close()
			}
		})
	}
	return h, regs
}

func getS(r *Registry, cache, key string) string {
	v, ok := r.Get(cache).Get(key)
	if !ok {
		return "<none>"
	}
	return string(v)
}

// TestReplicationSync: a put, remove and clear on one peer are on every
// live peer when the call returns; a peer known to be gone is not waited
// for; a live peer that does not answer makes Put fail with
// ErrReplication, the entry kept locally.
func TestReplicationSync(t *testing.T) {
	clk := newClock()
	cfg := Config{Name: "r", MaxEntries: 100, MaxBytes: 1 << 20, TTL: time.Minute, Replicated: true, Mode: Sync}
	h, p := group(t, 3, clk, cfg)
	ctx := t.Context()
	if err := p[0].Get("r").Put(ctx, "k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	for i := range p {
		if got := getS(p[i], "r", "k"); got != "v1" {
			t.Errorf("peer %d after put: got %q, want v1", i, got)
		}
	}
	clk.Add(time.Millisecond)
	p[1].Get("r").Put(ctx, "k", []byte("v2"), 0)
	for i := range p {
		if got := getS(p[i], "r", "k"); got != "v2" {
			t.Errorf("peer %d after update: got %q, want v2", i, got)
		}
	}
	p[2].Get("r").Remove(ctx, "k")
	for i := range p {
		if got := getS(p[i], "r", "k"); got != "<none>" {
			t.Errorf("peer %d after remove: got %q", i, got)
		}
	}
	p[0].Get("r").Put(ctx, "a", []byte("1"), 0)
	p[0].Get("r").Put(ctx, "b", []byte("2"), 0)
	p[1].Get("r").Clear(ctx)
	for i := range p {
		if n := p[i].Get("r").Len(); n != 0 {
			t.Errorf("peer %d after clear: %d entries", i, n)
		}
	}

	h.mu.Lock()
	h.down["i2"] = true
	h.mu.Unlock()
	if err := p[0].Get("r").Put(ctx, "d", []byte("x"), 0); err != nil {
		t.Errorf("with a peer gone: %v", err)
	}
	if getS(p[1], "r", "d") != "x" || getS(p[2], "r", "d") != "<none>" {
		t.Errorf("with i2 gone: i1 %q, i2 %q; want x and none", getS(p[1], "r", "d"), getS(p[2], "r", "d"))
	}

	h.mu.Lock()
	h.stuck["i1"] = true
	h.mu.Unlock()
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := p[0].Get("r").Put(tctx, "s", []byte("y"), 0)
	if !errors.Is(err, ErrReplication) {
		t.Errorf("a live peer not answering: got %v, want ErrReplication", err)
	}
	if getS(p[0], "r", "s") != "y" {
		t.Errorf("the entry was not kept locally")
	}
	if st := p[0].Get("r").Stats(); st.ReplicationFailures != 1 || st.ReplicationLastError == "" {
		t.Errorf("stats: %+v", st)
	}
}

// TestReplicationAsync: events are sent in batches, not per put, and
// reach the peers within the batch interval (Flush sends at once).
func TestReplicationAsync(t *testing.T) {
	clk := newClock()
	cfg := Config{Name: "a", MaxEntries: 1000, MaxBytes: 1 << 20, Replicated: true, Mode: Async, BatchInterval: 20 * time.Millisecond, MaxBatch: 1000}
	h, p := group(t, 2, clk, cfg)
	for i := range 100 {
		if err := p[0].Get("a").Put(t.Context(), fmt.Sprint(i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for p[1].Get("a").Len() < 100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := p[1].Get("a").Len(); n != 100 {
		t.Fatalf("peer 1 holds %d entries, want 100", n)
	}
	h.mu.Lock()
	calls := h.calls
	h.mu.Unlock()
	if calls > 10 {
		t.Errorf("%d publishes for 100 puts: want them batched", calls)
	}
}

// TestRemoteOrder: the last writer wins whatever the order events arrive
// in; an expiry removes only the copy of the same version; a put that
// expired on the way is not stored.
func TestRemoteOrder(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "o", MaxEntries: 10, MaxBytes: 1 << 20, TTL: time.Minute}, Options{Now: clk.Now})
	v1, v2 := Version{Time: 100, Origin: "a"}, Version{Time: 200, Origin: "b"}
	c.ApplyRemote(Event{Kind: Put, Key: "k", Value: []byte("new"), Version: v2})
	c.ApplyRemote(Event{Kind: Put, Key: "k", Value: []byte("old"), Version: v1})
	if v, _ := c.Get("k"); string(v) != "new" {
		t.Errorf("got %q, want new (an older put arriving late loses)", v)
	}
	c.ApplyRemote(Event{Kind: Remove, Key: "k", Version: v1})
	if _, ok := c.Get("k"); !ok {
		t.Errorf("an older remove removed a newer copy")
	}
	c.ApplyRemote(Event{Kind: Expire, Key: "k", Version: v1})
	if _, ok := c.Get("k"); !ok {
		t.Errorf("an expiry of another version removed the copy")
	}
	c.ApplyRemote(Event{Kind: Expire, Key: "k", Version: v2})
	if _, ok := c.Get("k"); ok {
		t.Errorf("an expiry of the copy's version left it")
	}
	c.ApplyRemote(Event{Kind: Put, Key: "e", Value: []byte("x"), Version: v2, Expires: clk.Now().UnixNano()})
	if _, ok := c.Get("e"); ok {
		t.Errorf("a put already expired was stored")
	}
	// A local put older than a peer's copy (a peer's clock ahead) leaves it.
	c.ApplyRemote(Event{Kind: Put, Key: "f", Value: []byte("peer"), Version: Version{Time: clk.Now().Add(time.Hour).UnixNano(), Origin: "p"}})
	if err := c.Put(t.Context(), "f", []byte("local"), 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("f"); string(v) != "peer" {
		t.Errorf("got %q, want peer (the last writer by version)", v)
	}
}

// TestBootstrap: a new peer copies another's snapshot; a snapshot that
// does not match its checksum is refused whole.
func TestBootstrap(t *testing.T) {
	clk := newClock()
	cfg := Config{Name: "b", MaxEntries: 100, MaxBytes: 1 << 20, TTL: time.Minute}
	src := New(cfg, Options{Now: clk.Now, Origin: "a"})
	for i := range 20 {
		put(t, src, fmt.Sprint(i), fmt.Sprint("v", i))
	}
	entries, sum := src.Snapshot()
	if len(entries) != 20 {
		t.Fatalf("snapshot of %d entries, want 20", len(entries))
	}
	dst := New(cfg, Options{Now: clk.Now, Origin: "b"})
	tampered := append([]Entry(nil), entries...)
	tampered[3].Value = []byte("evil")
	if _, err := dst.Bootstrap(tampered, sum); !errors.Is(err, ErrChecksum) {
		t.Errorf("tampered snapshot: got %v, want ErrChecksum", err)
	}
	if dst.Len() != 0 {
		t.Errorf("a refused snapshot left %d entries", dst.Len())
	}
	n, err := dst.Bootstrap(entries, sum)
	if err != nil || n != 20 {
		t.Fatalf("Bootstrap: %d, %v; want 20, nil", n, err)
	}
	if _, sum2 := dst.Snapshot(); sum2 != sum {
		t.Errorf("the copy's checksum differs from the source's")
	}
	clk.Add(time.Minute)
	if _, ok := dst.Get("3"); ok {
		t.Errorf("a bootstrapped entry outlived the TTL it had on its origin")
	}
}

// TestRegistryKeepsCaches: a configuration with the same settings keeps
// the cache and its entries; changed settings make a new one.
func TestRegistryKeepsCaches(t *testing.T) {
	r := NewRegistry(Options{})
	a := Config{Name: "a", MaxEntries: 10, MaxBytes: 1 << 20}
	b := Config{Name: "b", MaxEntries: 10, MaxBytes: 1 << 20}
	r.Activate(r.Prepare([]Config{a, b}))
	r.Get("a").Put(t.Context(), "k", []byte("v"), 0)
	r.Get("b").Put(t.Context(), "k", []byte("v"), 0)
	b.MaxEntries = 20
	r.Activate(r.Prepare([]Config{a, b}))
	if _, ok := r.Get("a").Get("k"); !ok {
		t.Errorf("an unchanged cache lost its entries")
	}
	if _, ok := r.Get("b").Get("k"); ok {
		t.Errorf("a changed cache kept its entries")
	}
	if r.Get("b").Config().MaxEntries != 20 {
		t.Errorf("the changed cache does not have the new settings")
	}
	r.Activate(r.Prepare(nil))
	if r.Get("a") != nil {
		t.Errorf("a cache removed from the configuration is still there")
	}
}

// TestReplicatedExpiry: a sweep announces its expiries in one publish; a
// peer drops its copy unless it read it within the time-to-idle.
func TestReplicatedExpiry(t *testing.T) {
	clk := newClock()
	cfg := Config{Name: "x", MaxEntries: 10, MaxBytes: 1 << 20, TTI: 3 * time.Second, Replicated: true, Mode: Sync}
	h, p := group(t, 3, clk, cfg)
	for _, k := range []string{"a", "b"} {
		if err := p[0].Get("x").Put(t.Context(), k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(2 * time.Second)
	p[1].Get("x").Get("a") // read on i1 only
	clk.Add(1500 * time.Millisecond)
	h.mu.Lock()
	before := h.calls
	h.mu.Unlock()
	if n := p[0].Get("x").Sweep(); n != 2 {
		t.Fatalf("sweep on i0 removed %d, want 2", n)
	}
	h.mu.Lock()
	if h.calls-before != 1 {
		t.Errorf("%d publishes for one sweep, want 1", h.calls-before)
	}
	h.mu.Unlock()
	if !has(p[1].Get("x"), "a") || has(p[1].Get("x"), "b") {
		t.Errorf("i1: a held %v (want true: read 1.5 s ago), b held %v (want false)", has(p[1].Get("x"), "a"), has(p[1].Get("x"), "b"))
	}
	if has(p[2].Get("x"), "a") || has(p[2].Get("x"), "b") {
		t.Errorf("i2 kept an expired copy")
	}
}

// TestReplace: a stale copy made a copy of the peer's: the entries it
// alone holds go, the peer's come.
func TestReplace(t *testing.T) {
	clk := newClock()
	cfg := Config{Name: "s", MaxEntries: 100, MaxBytes: 1 << 20}
	peer, stale := New(cfg, Options{Now: clk.Now, Origin: "a"}), New(cfg, Options{Now: clk.Now, Origin: "b"})
	put(t, stale, "removed-elsewhere", "x")
	put(t, peer, "k", "v")
	entries, sum := peer.Snapshot()
	if _, err := stale.Replace(entries[:0], sum); !errors.Is(err, ErrChecksum) {
		t.Errorf("a wrong checksum: got %v, want ErrChecksum", err)
	}
	if !has(stale, "removed-elsewhere") {
		t.Errorf("a refused Replace changed the cache")
	}
	if n, err := stale.Replace(entries, sum); err != nil || n != 1 {
		t.Fatalf("Replace: %d, %v", n, err)
	}
	if has(stale, "removed-elsewhere") || !has(stale, "k") {
		t.Errorf("after Replace: removed-elsewhere %v, k %v", has(stale, "removed-elsewhere"), has(stale, "k"))
	}
	if _, sum2 := stale.Snapshot(); sum2 != sum {
		t.Errorf("the copy differs from the peer's")
	}
}

// TestTombstones: a peer back from a partition with a stale copy loses, by
// bootstrapping, the entries removed or cleared elsewhere while it was away
// (and keeps those put since); a put older than a removal does not bring
// the entry back; tombstones are pruned after their life; a local cache
// keeps none.
func TestTombstones(t *testing.T) {
	clk := newClock()
	cfg := Config{Name: "r", MaxEntries: 100, MaxBytes: 1 << 20, TTL: time.Minute, Replicated: true, Mode: Sync}
	h, p := group(t, 2, clk, cfg)
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c"} {
		p[0].Get("r").Put(ctx, k, []byte(k+"1"), 0)
	}
	// Partition: peer 1 misses peer 0's changes.
	h.mu.Lock()
	h.down["i1"] = true
	h.mu.Unlock()
	clk.Add(time.Millisecond)
	p[0].Get("r").Remove(ctx, "a")
	p[0].Get("r").Put(ctx, "b", []byte("b2"), 0)
	if getS(p[1], "r", "a") != "a1" || getS(p[1], "r", "b") != "b1" {
		t.Fatal("the partitioned peer got the changes")
	}
	// Back: peer 1 bootstraps from peer 0.
	entries, sum := p[0].Get("r").Snapshot()
	if _, err := p[1].Get("r").Bootstrap(entries, sum); err != nil {
		t.Fatal(err)
	}
	if got := getS(p[1], "r", "a"); got != "<none>" {
		t.Errorf("a key removed during the partition: %q on the peer back, want none", got)
	}
	if got := getS(p[1], "r", "b"); got != "b2" {
		t.Errorf("a key updated during the partition: %q, want b2", got)
	}
	// Peer 0 bootstrapping from peer 1 does not bring "a" back.
	entries, sum = p[1].Get("r").Snapshot()
	p[0].Get("r").Bootstrap(entries, sum)
	if got := getS(p[0], "r", "a"); got != "<none>" {
		t.Errorf("the removed key came back from the other's snapshot: %q", got)
	}
	// A put older than the removal, arriving late, is ignored.
	p[1].Get("r").ApplyRemote(Event{Kind: Put, Key: "a", Value: []byte("late"), Version: Version{Time: 1, Origin: "i0"}})
	if got := getS(p[1], "r", "a"); got != "<none>" {
		t.Errorf("a late older put brought the removed key back: %q", got)
	}
	// A clear during a partition.
	h.mu.Lock()
	h.down["i1"] = true
	h.mu.Unlock()
	clk.Add(time.Millisecond)
	p[0].Get("r").Clear(ctx)
	entries, sum = p[0].Get("r").Snapshot()
	p[1].Get("r").Bootstrap(entries, sum)
	if n := p[1].Get("r").Len(); n != 0 {
		t.Errorf("after a clear missed and a bootstrap: %d entries", n)
	}
	// Pruned after the TTL; a local cache keeps none.
	if len(p[0].Get("r").tombEntries()) == 0 {
		t.Fatal("no tombstone kept")
	}
	p[0].Get("r").Put(ctx, "x", []byte("1"), 0)
	p[0].Get("r").Remove(ctx, "x")
	clk.Add(2 * time.Minute)
	p[0].Get("r").Sweep()
	for _, e := range p[0].Get("r").tombEntries() {
		if e.Key != "" {
			t.Errorf("tombstone of %q kept past its life", e.Key)
		}
	}
	local := New(Config{Name: "l", MaxEntries: 10, MaxBytes: 1 << 20}, Options{Now: clk.Now})
	put(t, local, "k", "v")
	local.Remove(ctx, "k")
	local.Clear(ctx)
	if len(local.tombEntries()) != 0 || local.buried("k", Version{}) {
		t.Error("a local cache keeps tombstones")
	}
}
