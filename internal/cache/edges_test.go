package cache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestShardBounds: the shards' bounds add up to the cache's, remainders
// included; small caches have one shard.
func TestShardBounds(t *testing.T) {
	for _, cfg := range []Config{
		{MaxEntries: 10, MaxBytes: 1 << 20},
		{MaxEntries: 511, MaxBytes: 1 << 30},
		{MaxEntries: 512, MaxBytes: 2 << 20},
		{MaxEntries: 100_003, MaxBytes: 64<<20 + 5},
		{MaxEntries: 5000, MaxBytes: 3 << 20},
	} {
		c := New(cfg, Options{})
		var n int
		var b int64
		for i := range c.shards {
			n += c.shards[i].maxEntries
			b += c.shards[i].maxBytes
		}
		if n != cfg.MaxEntries || b != cfg.MaxBytes {
			t.Errorf("%+v: shards hold %d entries and %d bytes in all", cfg, n, b)
		}
		want := 1
		switch {
		case cfg.MaxEntries == 512:
			want = 2
		case cfg.MaxEntries == 100_003:
			want = 16
		case cfg.MaxEntries == 5000:
			want = 2 // 3 MiB: 1.5 MiB per shard, not 0.75
		}
		if len(c.shards) != want {
			t.Errorf("%+v: %d shards, want %d", cfg, len(c.shards), want)
		}
	}
	if c := New(Config{}, Options{}); c.cfg.MaxEntries != 1 || c.cfg.MaxBytes != EntryOverhead || c.cfg.Eviction != LRU || c.cfg.Mode != Sync || c.cfg.BatchInterval != 100*time.Millisecond || c.cfg.MaxBatch != 256 {
		t.Errorf("defaults: %+v", c.cfg)
	}
}

// TestExactBounds: an entry of exactly the byte bound fits; a cache
// filled exactly to its bound does not evict; replacing a key counts it
// once.
func TestExactBounds(t *testing.T) {
	c := New(Config{Name: "x", MaxEntries: 2, MaxBytes: 1000}, Options{})
	if err := c.Put(t.Context(), "k", make([]byte, 1000-EntryOverhead-1), 0); err != nil {
		t.Fatalf("an entry of exactly maxBytes: %v", err)
	}
	if err := c.Put(t.Context(), "k", make([]byte, 1000-EntryOverhead), 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: got %v, want ErrTooLarge", err)
	}
	c = New(Config{Name: "x", MaxEntries: 2, MaxBytes: 2 * (EntryOverhead + 11)}, Options{})
	put(t, c, "a", "0123456789")
	put(t, c, "b", "0123456789")
	if st := c.Stats(); st.Entries != 2 || st.Evictions != 0 || st.Bytes != 2*(EntryOverhead+11) {
		t.Errorf("filled exactly: %+v", st)
	}
	put(t, c, "b", "9876543210")
	if st := c.Stats(); st.Entries != 2 || st.Evictions != 0 || st.Bytes != 2*(EntryOverhead+11) || len(c.shards[0].h) != 2 {
		t.Errorf("after replacing b: %+v, heap %d", st, len(c.shards[0].h))
	}
	if v, _ := c.Get("b"); string(v) != "9876543210" {
		t.Errorf("b: %q", v)
	}
}

// TestLFUKeepsFrequency: a key written again keeps the reads it had.
func TestLFUKeepsFrequency(t *testing.T) {
	c := New(Config{Name: "f", MaxEntries: 2, MaxBytes: 1 << 20, Eviction: LFU}, Options{})
	put(t, c, "hot", "1")
	for range 5 {
		c.Get("hot")
	}
	put(t, c, "hot", "2") // an update, not a new entry
	put(t, c, "cold", "1")
	c.Get("cold")
	put(t, c, "new", "1")
	if !has(c, "hot") || has(c, "cold") {
		t.Errorf("hot %v cold %v; want the updated hot entry kept, cold evicted", has(c, "hot"), has(c, "cold"))
	}
}

// TestStatsCount: hits, misses (absent and expired), expirations.
func TestStatsCount(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "s", MaxEntries: 10, MaxBytes: 1 << 20, TTI: 2 * time.Second}, Options{Now: clk.Now})
	put(t, c, "a", "1")
	c.Get("a")
	c.Get("a")
	c.Get("b")
	clk.Add(2*time.Second - 1)
	if _, ok := c.Get("a"); !ok {
		t.Errorf("read 1 ns before its TTI: missed")
	}
	clk.Add(2 * time.Second)
	c.Get("a")
	st := c.Stats()
	if st.Hits != 3 || st.Misses != 2 || st.Expirations != 1 || st.Entries != 0 {
		t.Errorf("got %+v, want 3 hits, 2 misses, 1 expiration, 0 entries", st)
	}
}

// TestVersionLess orders by time, then origin.
func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b Version
		want bool
	}{
		{Version{1, "b"}, Version{2, "a"}, true},
		{Version{2, "a"}, Version{1, "b"}, false},
		{Version{1, "a"}, Version{1, "b"}, true},
		{Version{1, "b"}, Version{1, "a"}, false},
		{Version{1, "a"}, Version{1, "a"}, false},
	} {
		if got := tc.a.Less(tc.b); got != tc.want {
			t.Errorf("%v.Less(%v): got %v", tc.a, tc.b, got)
		}
	}
	// Local versions strictly increase, even on a frozen clock.
	clk := newClock()
	c := New(Config{Name: "v"}, Options{Now: clk.Now, Origin: "o"})
	a, b := c.version(clk.Now()), c.version(clk.Now())
	if !a.Less(b) {
		t.Errorf("versions %v then %v: not increasing", a, b)
	}
}

// TestRemoteCounts: applied and ignored remote events are counted; an
// expiry removes a copy within a second of its TTL even when read.
func TestRemoteCounts(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "r", MaxEntries: 10, MaxBytes: 1 << 20, TTI: time.Minute}, Options{Now: clk.Now})
	now := clk.Now().UnixNano()
	v := Version{Time: now, Origin: "p"}
	c.ApplyRemote(Event{Kind: Put, Key: "a", Value: []byte("1"), Version: v, Expires: now + int64(500*time.Millisecond)})
	c.ApplyRemote(Event{Kind: Put, Key: "a", Value: []byte("0"), Version: Version{Time: now - 1, Origin: "p"}}) // older: ignored
	c.ApplyRemote(Event{Kind: Put, Key: "late", Value: []byte("0"), Version: v, Expires: now})                  // expired: ignored
	c.ApplyRemote(Event{Kind: 9})                                                                               // unknown: ignored
	c.Get("a")
	c.ApplyRemote(Event{Kind: Expire, Key: "a", Version: v}) // read just now, but its TTL is within a second
	if has(c, "a") || has(c, "late") {
		t.Errorf("a held %v, late held %v; want neither", has(c, "a"), has(c, "late"))
	}
	c.ApplyRemote(Event{Kind: Put, Key: "b", Value: []byte("1"), Version: v})
	c.Get("b")
	c.ApplyRemote(Event{Kind: Expire, Key: "b", Version: v}) // read within its TTI: kept, ignored
	if st := c.Stats(); st.RemoteApplied != 3 || st.RemoteIgnored != 4 || !has(c, "b") {
		t.Errorf("got %+v (b held %v), want 3 applied, 4 ignored", st, has(c, "b"))
	}
}

// TestBootstrapSkipsExpired: entries expired on the way are not taken.
func TestBootstrapSkipsExpired(t *testing.T) {
	clk := newClock()
	now := clk.Now().UnixNano()
	entries := []Entry{{Key: "a", Value: []byte("1"), Version: Version{1, "p"}, Expires: now}, {Key: "b", Value: []byte("2"), Version: Version{1, "p"}}}
	c := New(Config{Name: "b", MaxEntries: 10, MaxBytes: 1 << 20}, Options{Now: clk.Now})
	n, err := c.Bootstrap(entries, Checksum(entries))
	if err != nil || n != 1 || has(c, "a") || !has(c, "b") || c.Stats().BootstrappedEntries != 1 {
		t.Errorf("got %d, %v, a %v, b %v; want 1 entry (b)", n, err, has(c, "a"), has(c, "b"))
	}
}

// failing is a replicator that fails on demand.
type failing struct {
	mu   sync.Mutex
	fail bool
	got  []Event
}

func (f *failing) Publish(ctx context.Context, cache string, events []Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("peer i9 did not acknowledge")
	}
	f.got = append(f.got, events...)
	return nil
}

// TestReplicationLogsTransitions: a failing replication is logged once
// when it starts failing and once when it recovers, whatever the number
// of failures between.
func TestReplicationLogsTransitions(t *testing.T) {
	var logs bytes.Buffer
	f := &failing{fail: true}
	c := New(Config{Name: "l", MaxEntries: 10, MaxBytes: 1 << 20, Replicated: true}, Options{Replicator: f, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		if err := c.Put(t.Context(), "k", []byte("v"), 0); !errors.Is(err, ErrReplication) {
			t.Fatalf("got %v, want ErrReplication", err)
		}
	}
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	for range 2 {
		if err := c.Put(t.Context(), "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "cache replication failing"); n != 1 {
		t.Errorf("failing logged %d times, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "cache replication recovered"); n != 1 {
		t.Errorf("recovered logged %d times, want 1:\n%s", n, logs.String())
	}
	if st := c.Stats(); st.ReplicationFailures != 3 || !strings.Contains(st.ReplicationLastError, "i9") {
		t.Errorf("stats: %+v", st)
	}
}

// TestAsyncCloseFlushes: closing an async cache (a configuration that no
// longer has it) sends what was queued; a full queue drops and counts.
func TestAsyncCloseFlushes(t *testing.T) {
	f := &failing{}
	r := NewRegistry(Options{Replicator: f})
	cfg := Config{Name: "a", MaxEntries: 100, MaxBytes: 1 << 20, Replicated: true, Mode: Async, BatchInterval: time.Hour, MaxBatch: 1}
	r.Activate(r.Prepare([]Config{cfg}))
	c := r.Get("a")
	for i := range 70 { // the queue holds 64 batches of 1
		c.Put(t.Context(), string(rune('a'+i)), []byte("v"), 0)
	}
	r.Activate(r.Prepare(nil)) // closes a
	f.mu.Lock()
	sent := len(f.got)
	f.mu.Unlock()
	if dropped := c.Stats().ReplicationDropped; sent+int(dropped) != 70 || sent < 64 {
		t.Errorf("sent %d, dropped %d; want all 70 accounted for, at least 64 sent", sent, dropped)
	}
}

// TestSweepLimit: one sweep looks at sweepLimit entries per shard; a few
// more sweeps remove every expired entry.
func TestSweepLimit(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "w", MaxEntries: 3 * sweepLimit, MaxBytes: 1900 << 10, TTL: time.Second}, Options{Now: clk.Now})
	if len(c.shards) != 1 {
		t.Fatalf("%d shards, want 1", len(c.shards))
	}
	n := 2 * sweepLimit
	for i := range n {
		put(t, c, strconv.Itoa(i), "v")
	}
	clk.Add(time.Second)
	total := 0
	for sweeps := 1; total < n; sweeps++ {
		got := c.Sweep()
		if sweeps == 1 && got != sweepLimit {
			t.Errorf("the first sweep removed %d, want %d", got, sweepLimit)
		}
		if got > sweepLimit*len(c.shards) {
			t.Fatalf("one sweep removed %d, more than %d per shard", got, sweepLimit)
		}
		total += got
		if sweeps > 50 {
			t.Fatalf("after 50 sweeps %d of %d removed", total, n)
		}
	}
	if c.Len() != 0 {
		t.Errorf("%d entries left", c.Len())
	}
}
