package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// clock is an injectable clock for expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func put(t *testing.T, c *Cache, key, value string) {
	t.Helper()
	if err := c.Put(t.Context(), key, []byte(value), 0); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func has(c *Cache, key string) bool {
	c2 := c.shard(key)
	c2.mu.Lock()
	defer c2.mu.Unlock()
	return c2.m[key] != nil
}

// TestEvictionOrder: a full cache evicts the least recently used entry
// (LRU) or the least frequently used one, the least recently used among
// equals (LFU).
func TestEvictionOrder(t *testing.T) {
	cases := []struct {
		eviction Eviction
		reads    []string // after putting a, b, c
		gone     string   // evicted by putting d
	}{
		{LRU, nil, "a"},
		{LRU, []string{"a"}, "b"},
		{LRU, []string{"a", "b"}, "c"},
		{LFU, nil, "a"},
		{LFU, []string{"a", "a", "b", "c"}, "b"},
		{LFU, []string{"c", "b", "a"}, "c"}, // all read once: c is the least recently used of them
		{LFU, []string{"a", "b", "b", "c", "c"}, "a"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %v", tc.eviction, tc.reads), func(t *testing.T) {
			c := New(Config{Name: "t", MaxEntries: 3, MaxBytes: 1 << 20, Eviction: tc.eviction}, Options{})
			for _, k := range []string{"a", "b", "c"} {
				put(t, c, k, k)
			}
			for _, k := range tc.reads {
				if _, ok := c.Get(k); !ok {
					t.Fatalf("Get(%q) missed", k)
				}
			}
			put(t, c, "d", "d")
			for _, k := range []string{"a", "b", "c", "d"} {
				if got, want := has(c, k), k != tc.gone; got != want {
					t.Errorf("%s present: got %v, want %v", k, got, want)
				}
			}
			if got := c.Stats().Evictions; got != 1 {
				t.Errorf("evictions: got %d, want 1", got)
			}
		})
	}
}

// TestByteBound: a cache filled with large entries never holds more than
// its byte bound, and an entry larger than the bound is refused.
func TestByteBound(t *testing.T) {
	for _, maxBytes := range []int64{100 << 10, 64 << 20} {
		t.Run(strconv.FormatInt(maxBytes, 10), func(t *testing.T) {
			c := New(Config{Name: "big", MaxEntries: 1 << 20, MaxBytes: maxBytes}, Options{})
			value := bytes.Repeat([]byte("v"), 7000)
			for i := range int(2*maxBytes/7000) + 10 {
				if err := c.Put(t.Context(), "k"+strconv.Itoa(i), value, 0); err != nil {
					t.Fatal(err)
				}
				if st := c.Stats(); st.Bytes > maxBytes {
					t.Fatalf("after %d puts: %d bytes held, over the bound %d", i+1, st.Bytes, maxBytes)
				}
			}
			st := c.Stats()
			if st.Evictions == 0 || st.Bytes < maxBytes/2 {
				t.Errorf("got %d bytes, %d evictions; want the cache filled near its bound and evicting", st.Bytes, st.Evictions)
			}
			var sum int64
			for i := range c.shards {
				for _, e := range c.shards[i].m {
					sum += e.size()
				}
			}
			if sum != st.Bytes {
				t.Errorf("bytes counted %d, entries sum to %d", st.Bytes, sum)
			}
			err := c.Put(t.Context(), "huge", make([]byte, maxBytes), 0)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("a value as large as the bound: got %v, want ErrTooLarge", err)
			}
		})
	}
}

// TestMaxEntries: never more entries than maxEntries, with many shards.
func TestMaxEntries(t *testing.T) {
	c := New(Config{Name: "n", MaxEntries: 10000, MaxBytes: 1 << 30}, Options{})
	if len(c.shards) < 2 {
		t.Fatalf("got %d shards, want several for a large cache", len(c.shards))
	}
	for i := range 50000 {
		put(t, c, strconv.Itoa(i), "x")
	}
	if got := c.Len(); got > 10000 || got < 9000 {
		t.Errorf("entries: got %d, want at most 10000 (and near it)", got)
	}
}

// TestExpiry: time-to-live counts from the put, time-to-idle from the
// last read; Sweep removes what expired.
func TestExpiry(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "e", MaxEntries: 100, MaxBytes: 1 << 20, TTL: 10 * time.Second, TTI: 3 * time.Second}, Options{Now: clk.Now})
	put(t, c, "read", "1")
	put(t, c, "idle", "2")
	for range 4 { // read every 2 s: TTI never passes, TTL does at 10 s
		clk.Add(2 * time.Second)
		if _, ok := c.Get("read"); !ok {
			t.Fatalf("read at %v: missed", clk.Now())
		}
	}
	if has(c, "idle") && c.Sweep() != 1 {
		t.Errorf("idle for 8 s with a TTI of 3 s: Sweep did not remove it")
	}
	if has(c, "idle") {
		t.Errorf("idle entry still held")
	}
	clk.Add(1999 * time.Millisecond) // 9.999 s
	if _, ok := c.Get("read"); !ok {
		t.Fatalf("read before its TTL: missed")
	}
	clk.Add(time.Millisecond)
	if _, ok := c.Get("read"); ok {
		t.Errorf("read at its TTL: hit, want a miss")
	}
	// A shorter TTL given to Put wins; a longer one does not.
	if err := c.Put(t.Context(), "short", []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(t.Context(), "long", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if _, ok := c.Get("short"); ok {
		t.Errorf("short: a TTL of 1 s given to Put was not kept")
	}
	for range 5 {
		clk.Add(2 * time.Second)
		c.Get("long")
	}
	if _, ok := c.Get("long"); ok {
		t.Errorf("long: a TTL of 1 h given to Put outlived the cache's 10 s")
	}
	st := c.Stats()
	if st.Expirations != 4 || st.Entries != 0 {
		t.Errorf("got %d expirations and %d entries, want 4 and 0", st.Expirations, st.Entries)
	}
}

// TestConcurrent: many goroutines on one cache (run with -race).
func TestConcurrent(t *testing.T) {
	c := New(Config{Name: "c", MaxEntries: 2000, MaxBytes: 8 << 20, TTL: time.Minute, Eviction: LFU}, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				k := strconv.Itoa((i * (g + 1)) % 3000)
				if _, ok := c.Get(k); !ok {
					c.Put(context.Background(), k, []byte(k), 0)
				}
				if i%500 == 0 {
					c.Remove(context.Background(), k)
					c.Sweep()
				}
			}
		}()
	}
	wg.Wait()
	if st := c.Stats(); st.Entries > 2000 || st.Bytes > 8<<20 {
		t.Errorf("over the bounds: %+v", st)
	}
}

// BenchmarkGet: a hit on a cache of 100,000 entries.
func BenchmarkGet(b *testing.B) {
	for _, ev := range []Eviction{LRU, LFU} {
		b.Run(string(ev), func(b *testing.B) {
			c := New(Config{Name: "b", MaxEntries: 100000, MaxBytes: 1 << 30, Eviction: ev}, Options{})
			keys := make([]string, 100000)
			for i := range keys {
				keys[i] = strconv.Itoa(i)
				c.Put(context.Background(), keys[i], []byte("v"), 0)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					c.Get(keys[i%len(keys)])
					i += 7
				}
			})
		})
	}
}

// BenchmarkSweep: one sweep of a one-shard cache of 100,000 live entries
// (sweepLimit of them looked at): how long a shard's lock is held.
func BenchmarkSweep(b *testing.B) {
	c := New(Config{Name: "s", MaxEntries: 100000, MaxBytes: 1 << 30, TTL: time.Hour}, Options{})
	c.shards = c.shards[:1]
	c.shards[0].maxEntries, c.shards[0].maxBytes = 100000, 1<<30
	for i := range 100000 {
		c.Put(context.Background(), strconv.Itoa(i), []byte("v"), 0)
	}
	b.ResetTimer()
	for range b.N {
		c.Sweep()
	}
}
