package apps

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// heapInUse is the live heap after two collections.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestCacheMemoryEstimate: what the row cache and the verified keys count
// against kps.cache.maxBytes (kps.EntrySize, VerifiedEntryBytes) is what
// they hold on the heap, within 20 %, for API key rows as the store
// returns them. The instance's memory bound (docs/kps.md#memory) rests on it.
func TestCacheMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a store with 20,000 keys")
	}
	ctx := context.Background()
	s := openStoreB(t) // no kpstest.Faulty: its list of calls would be on the heap measured
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	const n = 20000
	keys := make([]string, 0, n)
	if err := m.CreateKeys(ctx, a.ID, n, func(_ Key, k secret.Value) error { keys = append(keys, k.RevealString()); return nil }); err != nil {
		t.Fatal(err)
	}
	cache := kps.NewCache(s, kps.CacheOptions{TTL: time.Hour, MaxBytes: 1 << 30})
	ck := NewChecker(cache, testHashKey)
	if _, err := ck.Check(ctx, keys[0]); err != nil { // the application's row, the pools
		t.Fatal(err)
	}
	before, bytesBefore := heapInUse(), cache.Stats().Bytes
	for _, k := range keys[1:] {
		if _, err := ck.Check(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	heap := heapInUse() - before
	counted := cache.Stats().Bytes - bytesBefore + int64(ck.verified.len()-1)*(VerifiedEntryBytes+64)
	ratio := float64(heap) / float64(counted)
	t.Logf("%d keys: heap %d bytes (%.0f per key), counted %d (%.0f per key), heap/counted %.2f",
		n-1, heap, float64(heap)/(n-1), counted, float64(counted)/(n-1), ratio)
	if ratio < 0.8 || ratio > 1.2 {
		t.Errorf("the caches hold %.2f × what they count against maxBytes, want 0.8 to 1.2", ratio)
	}
	runtime.KeepAlive(keys)
}
