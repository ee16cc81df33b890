package kps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStore answers Get and GetBySecondary on table "t" from a map and
// counts the calls.
// The other methods are the nil embedded interface's (not called here).
type fakeStore struct {
	Store
	mu    sync.Mutex
	rows  map[string]Row // by fmt.Sprint(secondary, key)
	err   error
	calls atomic.Int64
	gate  chan struct{} // when set, each call waits for it
}

func (f *fakeStore) get(table string, key any, secondary bool) (Row, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Row{}, f.err
	}
	r, ok := f.rows[fmt.Sprint(table, secondary, key)]
	if !ok {
		return Row{}, &Error{Op: "get", Err: ErrNotFound}
	}
	return r, nil
}

func (f *fakeStore) Get(_ context.Context, table string, key any) (Row, error) {
	return f.get(table, key, false)
}
func (f *fakeStore) GetBySecondary(_ context.Context, table string, key any) (Row, error) {
	return f.get(table, key, true)
}

func (f *fakeStore) set(key any, secondary bool, r Row) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows[fmt.Sprint("t", secondary, key)] = r
}

// watchdog fails the test binary if the test hangs (a lock never released):
// a hang must fail, not time out.
func watchdog(t *testing.T) {
	name := t.Name()
	tm := time.AfterFunc(10*time.Second, func() { panic(name + " hung for 10 s") })
	t.Cleanup(func() { tm.Stop() })
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func row(v string) Row               { return Row{Values: map[string]any{"v": v}, Version: 1} }
func value(r Row) any                { return r.Values["v"] }
func newFake() *fakeStore            { return &fakeStore{rows: map[string]Row{}} }
func (f *fakeStore) n() int64        { return f.calls.Load() }
func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func TestCacheTTL(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set("a", false, row("1"))
	clk := &clock{t: time.Unix(1000, 0)}
	c := NewCache(f, CacheOptions{TTL: 10 * time.Second, NegativeTTL: 2 * time.Second, Now: clk.now})
	ctx := t.Context()
	r, err := c.Get(ctx, "t", "a")
	if err != nil || value(r) != "1" {
		t.Fatalf("get: %v %v", r, err)
	}
	f.set("a", false, row("2"))
	clk.add(10*time.Second - 1)
	r, _ = c.Get(ctx, "t", "a")
	expect(t, "within the TTL", value(r), "1")
	expect(t, "store calls", f.n(), int64(1))
	clk.add(1)
	r, _ = c.Get(ctx, "t", "a")
	expect(t, "at the TTL", value(r), "2")
	expect(t, "store calls", f.n(), int64(2))
	// Not found is kept for NegativeTTL.
	_, err = c.Get(ctx, "t", "b")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: got %v", err)
	}
	f.set("b", false, row("b"))
	clk.add(2*time.Second - 1)
	_, err = c.Get(ctx, "t", "b")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `kps get t "b"`) {
		t.Errorf("missing, from the cache: got %v, want ErrNotFound naming t and b", err)
	}
	expect(t, "store calls", f.n(), int64(3))
	clk.add(1)
	r, err = c.Get(ctx, "t", "b")
	if err != nil || value(r) != "b" {
		t.Errorf("after the negative TTL: got %v %v", r, err)
	}
	st := c.Stats()
	if st.Hits != 2 || st.Misses != 4 || st.Entries != 2 || st.Bytes != EntrySize(cacheKey("t", "a", false), row("2"))+EntrySize(cacheKey("t", "b", false), row("b")) {
		t.Errorf("stats: got %+v", st)
	}
}

func TestCacheDefaults(t *testing.T) {
	watchdog(t)
	c := NewCache(newFake(), CacheOptions{})
	if c.opt.TTL != DefaultCacheTTL || c.opt.NegativeTTL != DefaultCacheNegativeTTL || c.opt.MaxBytes != DefaultCacheMaxBytes || c.opt.Now == nil {
		t.Errorf("defaults: got %+v", c.opt)
	}
	if DefaultCacheTTL != 5*time.Second || DefaultCacheNegativeTTL != time.Second || DefaultCacheMaxBytes != 16<<20 {
		t.Errorf("documented defaults changed")
	}
	c = NewCache(newFake(), CacheOptions{TTL: 1, NegativeTTL: 1, MaxBytes: 1})
	if c.opt.TTL != 1 || c.opt.NegativeTTL != 1 || c.opt.MaxBytes != 1 {
		t.Errorf("the smallest options: got %+v", c.opt)
	}
	c = NewCache(newFake(), CacheOptions{TTL: -1, NegativeTTL: -1, MaxBytes: -1})
	if c.opt.TTL != DefaultCacheTTL || c.opt.NegativeTTL != DefaultCacheNegativeTTL || c.opt.MaxBytes != DefaultCacheMaxBytes {
		t.Errorf("negative options: got %+v", c.opt)
	}
}

// TestCacheUnavailable: an outage is never cached: every look-up asks again,
// and the answer after it is fresh.
func TestCacheUnavailable(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set("a", false, row("1"))
	c := NewCache(f, CacheOptions{})
	f.err = Unavailable(errors.New("down"))
	for i := range 3 {
		if _, err := c.Get(t.Context(), "t", "a"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("get %d while down: got %v", i, err)
		}
	}
	expect(t, "store calls while down", f.n(), int64(3))
	expect(t, "entries", c.Stats().Entries, 0)
	f.err = errors.New("something else")
	c.Get(t.Context(), "t", "a")
	expect(t, "entries after another error", c.Stats().Entries, 0)
	f.err = nil
	if r, err := c.Get(t.Context(), "t", "a"); err != nil || value(r) != "1" {
		t.Errorf("after the outage: %v %v", r, err)
	}
	// An entry that expires during an outage is dropped, not kept.
	clk := &clock{t: time.Unix(0, 0)}
	c = NewCache(f, CacheOptions{Now: clk.now})
	c.Get(t.Context(), "t", "a")
	clk.add(time.Hour)
	f.err = Unavailable(errors.New("down"))
	c.Get(t.Context(), "t", "a")
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("an expired entry during an outage: %+v, want none", st)
	}
}

func TestCacheKeys(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set(5, false, row("five"))
	f.set("5", false, row("string"))
	f.set("5", true, row("secondary"))
	c := NewCache(f, CacheOptions{})
	ctx := t.Context()
	r, _ := c.Get(ctx, "t", 5)
	expect(t, "int", value(r), "five")
	r, _ = c.Get(ctx, "t", int32(5))
	expect(t, "int32 meets int", value(r), "five")
	r, _ = c.Get(ctx, "t", int64(5))
	expect(t, "int64 meets int", value(r), "five")
	expect(t, "store calls", f.n(), int64(1))
	r, _ = c.Get(ctx, "t", "5")
	expect(t, "string", value(r), "string")
	r, _ = c.GetBySecondary(ctx, "t", "5")
	expect(t, "secondary", value(r), "secondary")
	_, err := c.Get(ctx, "u", "5")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("another table: got %v", err)
	}
	expect(t, "store calls", f.n(), int64(4))
	// Keys of other types are not cached: the store answers each time.
	c.Get(ctx, "t", true)
	c.Get(ctx, "t", true)
	expect(t, "store calls for an uncacheable key", f.n(), int64(6))
	for _, c := range []struct {
		key  any
		want string
	}{
		{"x", "t\x00psx"}, {99, "t\x00pi99"}, {int32(-99), "t\x00pi-99"}, {int64(1) << 40, "t\x00pi1099511627776"}, {1.5, ""},
	} {
		expect(t, fmt.Sprintf("cacheKey(%v)", c.key), cacheKey("t", c.key, false), c.want)
	}
	expect(t, "cacheKey secondary", cacheKey("t", "x", true), "t\x00ssx")
}

func TestCacheInvalidate(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set("a", false, row("1"))
	f.set("b", false, row("b"))
	c := NewCache(f, CacheOptions{})
	ctx := t.Context()
	c.Get(ctx, "t", "a")
	c.Get(ctx, "t", "b")
	f.set("a", false, row("2"))
	c.Invalidate("t", "a")
	c.Invalidate("t", "zz") // absent: nothing happens
	r, _ := c.Get(ctx, "t", "a")
	expect(t, "after Invalidate", value(r), "2")
	r, _ = c.Get(ctx, "t", "b")
	expect(t, "another key stays", value(r), "b")
	expect(t, "store calls", f.n(), int64(3))
	c.Purge()
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("after Purge: %+v", st)
	}
	c.Get(ctx, "t", "b")
	expect(t, "store calls after Purge", f.n(), int64(4))
	expect(t, "entries after Purge", c.Stats().Entries, 1)

	// A fetch that began before an invalidation does not fill the cache.
	f.gate = make(chan struct{})
	done := make(chan struct{})
	go func() { c.Get(ctx, "t", "a"); close(done) }()
	for f.n() < 5 {
		time.Sleep(time.Millisecond)
	}
	c.Invalidate("t", "a")
	close(f.gate)
	<-done
	f.gate = nil
	expect(t, "entries after a fetch overtaken by Invalidate", c.Stats().Entries, 1)
	c.Get(ctx, "t", "a")
	expect(t, "store calls", f.n(), int64(6))
}

func TestCacheBound(t *testing.T) {
	watchdog(t)
	f := newFake()
	for _, k := range []string{"a", "b", "c", "d"} {
		f.set(k, false, row(strings.Repeat(k, 100)))
	}
	one := EntrySize(cacheKey("t", "a", false), row(strings.Repeat("a", 100)))
	c := NewCache(f, CacheOptions{MaxBytes: 3 * one})
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c"} {
		c.Get(ctx, "t", k)
	}
	expect(t, "bytes at the bound", c.Stats().Bytes, 3*one)
	c.Get(ctx, "t", "a") // a is now the most recent; b the least
	c.Get(ctx, "t", "d") // evicts b
	st := c.Stats()
	if st.Entries != 3 || st.Bytes != 3*one {
		t.Errorf("after eviction: %+v", st)
	}
	n := f.n()
	c.Get(ctx, "t", "a")
	c.Get(ctx, "t", "c")
	c.Get(ctx, "t", "d")
	expect(t, "kept entries are hits", f.n(), n)
	c.Get(ctx, "t", "b")
	expect(t, "the evicted entry is a miss", f.n(), n+1)
	// A row larger than the whole bound is not kept.
	f.set("huge", false, row(strings.Repeat("h", int(3*one))))
	c.Get(ctx, "t", "huge")
	c.Get(ctx, "t", "huge")
	expect(t, "a huge row is fetched each time", f.n(), n+3)
	c.Get(ctx, "t", "d")
	c.Get(ctx, "t", "b")
	expect(t, "a huge row evicts nothing", f.n(), n+3)
	if st := c.Stats(); st.Bytes > 3*one {
		t.Errorf("bytes over the bound: %+v", st)
	}
	// Exactly the bound fits.
	exact := NewCache(f, CacheOptions{MaxBytes: one})
	exact.Get(ctx, "t", "a")
	expect(t, "an entry of exactly MaxBytes is kept", exact.Stats().Entries, 1)
	// Replacing an entry after expiry does not count it twice.
	clk := &clock{t: time.Unix(0, 0)}
	re := NewCache(f, CacheOptions{Now: clk.now})
	re.Get(ctx, "t", "a")
	clk.add(time.Hour)
	re.Get(ctx, "t", "a")
	if st := re.Stats(); st.Entries != 1 || st.Bytes != one {
		t.Errorf("after a refresh: %+v, want 1 entry of %d bytes", st, one)
	}
}

func TestEntrySize(t *testing.T) {
	watchdog(t)
	r := Row{Values: map[string]any{
		"s": "abcd",                                // 48+1+4
		"l": []string{"x", "yz"},                   // 48+1 + 24+1 + 24+2
		"m": map[string]string{"k": "vv", "": "w"}, // 48+1 + 48+1+2 + 48+0+1
		"n": int64(1),                              // 48+1
	}}
	want := int64(160+3) + 53 + 100 + 149 + 49
	expect(t, "EntrySize", EntrySize("abc", r), want)
	expect(t, "EntrySize of an empty row", EntrySize("", Row{}), int64(160))
}

// TestCacheSingleflight: concurrent misses of one key make one store call.
func TestCacheSingleflight(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set("a", false, row("1"))
	f.gate = make(chan struct{})
	c := NewCache(f, CacheOptions{})
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Get(t.Context(), "t", "a")
			if err == nil && value(r) != "1" {
				err = fmt.Errorf("got %v", r)
			}
			errs <- err
		}()
	}
	for c.misses.Load() < n {
		time.Sleep(time.Millisecond)
	}
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// One call, or two if the scheduler let a goroutine that had counted its
	// miss reach singleflight only after the first call had ended.
	if calls := f.n(); calls > 2 {
		t.Errorf("store calls for 20 concurrent misses: got %d, want 1", calls)
	}
}

// TestCacheWaiterGivesUp: a caller whose context ends stops waiting (with
// ErrUnavailable); the shared fetch goes on and fills the cache.
func TestCacheWaiterGivesUp(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set("a", false, row("1"))
	f.gate = make(chan struct{})
	c := NewCache(f, CacheOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { _, err := c.Get(ctx, "t", "a"); done <- err }()
	for f.n() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled waiter: got %v, want ErrUnavailable and Canceled", err)
	}
	close(f.gate)
	for c.Stats().Entries == 0 {
		time.Sleep(time.Millisecond)
	}
	r, err := c.Get(t.Context(), "t", "a")
	if err != nil || value(r) != "1" || f.n() != 1 {
		t.Errorf("after: %v %v, %d store calls", r, err, f.n())
	}
}

// TestCacheGetUntil: the expiry GetUntil reports is the entry's (from the
// fetch, not from the look-up), and zero for what is not kept.
func TestCacheGetUntil(t *testing.T) {
	watchdog(t)
	f := newFake()
	f.set("a", false, row("1"))
	clk := &clock{t: time.Unix(1000, 0)}
	c := NewCache(f, CacheOptions{TTL: 10 * time.Second, MaxBytes: 1 << 20, Now: clk.now})
	ctx := t.Context()
	want := clk.t.Add(10 * time.Second)
	r, until, err := c.GetUntil(ctx, "t", "a")
	if err != nil || value(r) != "1" || !until.Equal(want) {
		t.Fatalf("fetched: %v %v %v, want until %v", r, until, err, want)
	}
	clk.add(3 * time.Second)
	if _, until, _ = c.GetUntil(ctx, "t", "a"); !until.Equal(want) {
		t.Errorf("from the cache: until %v, want %v", until, want)
	}
	if c.MaxBytes() != 1<<20 || !c.Now().Equal(clk.t) {
		t.Errorf("MaxBytes %d, Now %v", c.MaxBytes(), c.Now())
	}
	// Not cacheable (a key of another type): asked every time, kept for no time.
	if _, until, _ = c.GetUntil(ctx, "t", 1.5); !until.IsZero() {
		t.Errorf("a key the cache cannot hold: until %v, want zero", until)
	}
	// Too big for the cache: not kept.
	big := Row{Values: map[string]any{"v": strings.Repeat("x", 2<<20)}}
	f.set("big", false, big)
	if _, until, err = c.GetUntil(ctx, "t", "big"); err != nil || !until.IsZero() {
		t.Errorf("a row larger than the cache: until %v, %v; want zero", until, err)
	}
}

func TestCacheForget(t *testing.T) {
	ctx := context.Background()
	store := newFake()
	c := NewCache(store, CacheOptions{TTL: time.Hour, NegativeTTL: time.Hour})
	for _, k := range []string{"a", "b"} {
		c.Get(ctx, "t", k)
		c.GetBySecondary(ctx, "t", "s"+k)
	}
	c.Get(ctx, "u", "a")
	before := store.calls.Load()
	c.Forget("t", "a")
	c.Get(ctx, "t", "a")             // forgotten: asks
	c.Get(ctx, "t", "b")             // kept
	c.GetBySecondary(ctx, "t", "sb") // every secondary entry of t forgotten: asks
	c.Get(ctx, "u", "a")             // another table: kept
	if got := store.calls.Load() - before; got != 2 {
		t.Errorf("store calls after Forget(t, a): got %d, want 2 (t/a and t's secondary sb)", got)
	}
	before = store.calls.Load()
	c.Forget("t", nil)
	c.Get(ctx, "t", "b")
	c.Get(ctx, "u", "a")
	if got := store.calls.Load() - before; got != 1 {
		t.Errorf("store calls after Forget(t, nil): got %d, want 1 (t/b only)", got)
	}
}
