package apps

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// TestCheckerVerifiedKeys: a key that passed is answered from memory,
// without the store, until the first of its rows' cache entries expires;
// a wrong secret under a remembered id is still refused.
func TestCheckerVerifiedKeys(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	k1, key1, _ := m.CreateKey(ctx, a.ID, time.Time{})
	cache := kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Now: c.now})
	ck := NewChecker(cache, testHashKey)
	if _, err := ck.Check(ctx, key1.RevealString()); err != nil {
		t.Fatal(err)
	}
	before := cache.Stats()
	got, err := ck.Check(ctx, key1.RevealString())
	if err != nil || got.ID != a.ID || got.Name != "Shop" {
		t.Fatalf("again: %+v %v", got, err)
	}
	if after := cache.Stats(); after.Hits != before.Hits || after.Misses != before.Misses {
		t.Errorf("a verified key looked its rows up again: %+v, then %+v", before, after)
	}
	_, other := NewKey()
	forged := k1.ID + other.RevealString()[len(k1.ID):]
	if _, err := ck.Check(ctx, forged); !errors.Is(err, apikey.ErrInvalidKey) {
		t.Errorf("a remembered id with another secret: %v, want ErrInvalidKey", err)
	}

	// A second key of the same application, checked 30 s later: its own
	// row is cached until 10:01:30, the application's until 10:01:00. The
	// application disabled at 10:00:31 is seen at 10:01:00, not later.
	c.t = c.t.Add(30 * time.Second)
	_, key2, _ := m.CreateKey(ctx, a.ID, time.Time{})
	if _, err := ck.Check(ctx, key2.RevealString()); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Second)
	a.Enabled = false
	if _, err := m.UpdateApp(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := ck.Check(ctx, key2.RevealString()); err != nil {
		t.Errorf("within the application row's lifetime: %v (the old row is still served)", err)
	}
	c.t = time.Date(2026, 12, 6, 10, 1, 0, 0, time.UTC)
	if _, err := ck.Check(ctx, key2.RevealString()); !errors.Is(err, apikey.ErrInvalidKey) {
		t.Errorf("at the application row's expiry: %v, want ErrInvalidKey", err)
	}
	if n := ck.verified.len(); n != 2 {
		t.Errorf("%d keys remembered, want 2 (only keys that passed)", n)
	}
}

// TestVerifiedCacheBounded: the cache keeps at most its share of entries,
// sweeps expired ones when full, and keeps nothing already expired.
func TestVerifiedCacheBounded(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	v := newVerifiedCache(4 * verifiedShards * (VerifiedEntryBytes + 64)) // 4 per shard
	if v.max != 4 {
		t.Fatalf("max %d per shard, want 4", v.max)
	}
	live := &verifiedKey{until: now.Add(time.Minute)}
	// 1,000 ids: every shard (chosen by a hash with a random seed) gets
	// more than 4 (with 200, one in forty runs left a shard short).
	ids := make([]string, 0, 1000)
	for i := range 1000 {
		id := fmt.Sprintf("gk_%010d", i)
		ids = append(ids, id)
		v.put(id, live, now)
	}
	if n := v.len(); n != 4*verifiedShards {
		t.Errorf("%d entries after 1,000 puts, want %d (4 per shard)", n, 4*verifiedShards)
	}
	kept := 0
	for _, id := range ids {
		if _, ok := v.get(id, now); ok {
			kept++
		}
	}
	if kept != 4*verifiedShards {
		t.Errorf("%d found, want %d", kept, 4*verifiedShards)
	}
	// Later, every entry has expired: new ones take their places.
	later := now.Add(2 * time.Minute)
	for _, id := range ids {
		if _, ok := v.get(id, later); ok {
			t.Fatalf("%s found after its expiry", id)
		}
	}
	fresh := &verifiedKey{until: later.Add(time.Minute)}
	v.put("gk_zzzzzzzzzzzz", fresh, later)
	if e, ok := v.get("gk_zzzzzzzzzzzz", later); !ok || e != fresh {
		t.Errorf("a full shard of expired entries did not take a new one")
	}
	if n := v.len(); n > 4*verifiedShards {
		t.Errorf("%d entries, more than the bound", n)
	}
	// Already expired: not kept; no room at all: nothing kept.
	v.put("gk_yyyyyyyyyyyy", &verifiedKey{until: later}, later)
	if _, ok := v.get("gk_yyyyyyyyyyyy", later.Add(-time.Second)); ok {
		t.Error("an entry that had expired when put was kept")
	}
	none := newVerifiedCache(0)
	none.put("gk_zzzzzzzzzzzz", fresh, later)
	if none.len() != 0 {
		t.Error("a cache of size 0 kept an entry")
	}
	// One per shard: one is kept.
	one := newVerifiedCache(verifiedShards * (VerifiedEntryBytes + 64))
	one.put("gk_zzzzzzzzzzzz", fresh, later)
	if one.max != 1 || one.len() != 1 {
		t.Errorf("a cache of one per shard: max %d, %d kept, want 1", one.max, one.len())
	}
	// A key kept already is replaced even when its shard is full of live
	// entries (only a new key is refused then).
	v = newVerifiedCache(4 * verifiedShards * (VerifiedEntryBytes + 64))
	var full []string
	for _, id := range ids {
		if v.shard(id) == v.shard(ids[0]) && len(full) < 4 {
			full = append(full, id)
		}
	}
	for _, id := range full {
		v.put(id, live, now)
	}
	v.put("gk_zzzzzzzzzzzz", live, now) // refused, or kept in another shard
	longer := &verifiedKey{until: now.Add(time.Hour)}
	v.put(full[0], longer, now)
	if e, ok := v.get(full[0], now); !ok || e != longer {
		t.Errorf("a kept key's entry in a full shard: %v %v, want it replaced", e, ok)
	}
	for _, id := range full[1:] {
		if e, ok := v.get(id, now); !ok || e != live {
			t.Errorf("%s: %v %v, want it kept", id, e, ok)
		}
	}
}

// plainStore hides the store's kps.Bulk: keys are inserted one by one.
type plainStore struct{ kps.Store }

// TestCreateKeys: a bulk load makes working keys, in batches on a store
// that takes them and one by one on one that does not.
func TestCreateKeys(t *testing.T) {
	ctx := context.Background()
	for _, bulk := range []bool{true, false} {
		s := openStore(t)
		var store kps.Store = s
		if !bulk {
			store = plainStore{s}
		}
		if _, ok := store.(kps.Bulk); ok != bulk {
			t.Fatalf("bulk %v: the store's kps.Bulk is %v", bulk, ok)
		}
		c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
		m := newManager(t, store, c)
		a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
		if err := m.CreateKeys(ctx, "nobody", 3, nil); !errors.Is(err, kps.ErrNotFound) {
			t.Errorf("bulk %v: an unknown application: %v", bulk, err)
		}
		n := bulkBatch + 7
		if !bulk {
			n = 9
		}
		var got []string
		err := m.CreateKeys(ctx, a.ID, n, func(k Key, key secret.Value) error {
			if k.AppID != a.ID || !k.Enabled || !k.ExpiresAt.IsZero() {
				t.Errorf("key %+v", k)
			}
			got = append(got, key.RevealString())
			return nil
		})
		if err != nil || len(got) != n {
			t.Fatalf("bulk %v: %d keys, %v; want %d", bulk, len(got), err, n)
		}
		if cnt, _ := s.Count(ctx, KeysTable); cnt != int64(n) {
			t.Errorf("bulk %v: %d rows stored, want %d", bulk, cnt, n)
		}
		ck := NewChecker(kps.NewCache(s, kps.CacheOptions{}), testHashKey)
		for _, i := range []int{0, n / 2, n - 1} {
			if app, err := ck.Check(ctx, got[i]); err != nil || app.ID != a.ID {
				t.Errorf("bulk %v: key %d: %+v %v", bulk, i, app, err)
			}
		}
		stop := errors.New("enough")
		calls := 0
		if err := m.CreateKeys(ctx, a.ID, 3, func(Key, secret.Value) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Errorf("bulk %v: out's error: %v after %d calls", bulk, err, calls)
		}
	}
}
