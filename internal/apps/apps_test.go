package apps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

var testHashKey = secret.FromString(strings.Repeat("h", HashKeyBytes))

// callBudget bounds the store calls of a test: from the next one on, every
// call fails (kpstest.ErrInjected, "call 5001"), so that a loop that never
// ends (a listing that reads its first page again and again) fails its test
// within a second or two instead of running until the test binary's
// deadline. No test makes a third as many.
const callBudget = 5000

// openStore is an embedded store for one test, behind a kpstest.Faulty
// that fails every call past callBudget.
func openStore(t *testing.T) kps.Store {
	f := kpstest.NewFaulty(openStoreB(t))
	f.Fail(kpstest.From(callBudget + 1))
	return f
}

func openStoreB(t testing.TB) kps.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable clock for the Manager and the Checker.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newManager(t *testing.T, s kps.Store, c *clock) *Manager {
	t.Helper()
	m, err := NewManager(context.Background(), s, testHashKey)
	if err != nil {
		t.Fatal(err)
	}
	m.now = c.now
	return m
}

func TestApplications(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	if _, err := NewManager(ctx, s, secret.FromString("short")); err == nil {
		t.Error("NewManager took a hashing key of the wrong length")
	}
	if _, err := NewManager(ctx, s, testHashKey); err != nil {
		t.Errorf("NewManager again on the same store: %v", err)
	}
	a, err := m.CreateApp(ctx, App{ID: "chosen", Name: "Shop", Description: "the web shop", Contact: "ops@example.com", Enabled: true, APIs: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || a.ID == "chosen" || a.Version != 1 || !a.CreatedAt.Equal(c.t) || a.Contact != "ops@example.com" {
		t.Errorf("created: %+v", a)
	}
	if _, err := m.CreateApp(ctx, App{Name: "Shop"}); !errors.Is(err, kps.ErrExists) {
		t.Errorf("a second application named Shop: %v", err)
	}
	for _, bad := range []App{{Name: ""}, {Name: " Shop2"}, {Name: "a\x01b"}, {Name: strings.Repeat("n", MaxNameLen+1)},
		{Name: "x", Description: strings.Repeat("d", MaxDescriptionLen+1)}, {Name: "x", APIs: []string{""}}, {Name: "x", Contact: strings.Repeat("c", MaxNameLen+1)}} {
		if _, err := m.CreateApp(ctx, bad); !errors.Is(err, kps.ErrInvalid) {
			t.Errorf("CreateApp(%q): %v, want ErrInvalid", bad.Name, err)
		}
	}
	byName, err := m.App(ctx, "Shop")
	if err != nil || byName.ID != a.ID {
		t.Errorf("by name: %+v %v", byName, err)
	}
	byID, err := m.App(ctx, a.ID)
	if err != nil || byID.Name != "Shop" || byID.APIs[0] != "orders" {
		t.Errorf("by id: %+v %v", byID, err)
	}
	if _, err := m.App(ctx, "nobody"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	// Update with the version read; a stale one is a conflict.
	a.APIs = []string{"orders", "stock"}
	a.CreatedAt = time.Time{}
	up, err := m.UpdateApp(ctx, a)
	if err != nil || up.Version != 2 || len(up.APIs) != 2 || !up.CreatedAt.Equal(c.t) {
		t.Fatalf("update: %+v %v", up, err)
	}
	if _, err := m.UpdateApp(ctx, a); !errors.Is(err, kps.ErrConflict) {
		t.Errorf("update with a stale version: %v", err)
	}
	b, _ := m.CreateApp(ctx, App{Name: "Other", Enabled: true})
	list, next, err := m.Apps(ctx, kps.Page{})
	if err != nil || len(list) != 2 || next != "" {
		t.Errorf("list: %d %q %v", len(list), next, err)
	}
	// Keys.
	k1, key1, err := m.CreateKey(ctx, "Shop", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if k1.AppID != a.ID || !k1.Enabled || !k1.ExpiresAt.IsZero() || !strings.HasPrefix(key1.RevealString(), k1.ID+"_") {
		t.Errorf("key: %+v", k1)
	}
	if _, _, err := m.CreateKey(ctx, a.ID, c.t.Add(-time.Second)); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("a key that expired already: %v", err)
	}
	if _, _, err := m.CreateKey(ctx, "nobody", time.Time{}); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("a key for no application: %v", err)
	}
	k2, _, _ := m.CreateKey(ctx, a.ID, c.t.Add(time.Hour))
	m.CreateKey(ctx, b.ID, time.Time{})
	keys, err := m.Keys(ctx, a.ID)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys of Shop: %v %v", keys, err)
	}
	// The store holds the keyed hash, never the key.
	r, err := s.Get(ctx, KeysTable, k1.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range r.Values {
		if sv, ok := v.(string); ok && strings.Contains(sv, key1.RevealString()[len(k1.ID):]) {
			t.Errorf("the key's secret part is in the store: %v", r.Values)
		}
	}
	if r.Values["hash"] != Hash(testHashKey.Reveal(), key1.RevealString()) {
		t.Errorf("stored hash: %v", r.Values["hash"])
	}
	// Rotation: the old key expires after the grace, not later than it did.
	old, fresh, key3, err := m.RotateKey(ctx, k2.ID, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !old.ExpiresAt.Equal(c.t.Add(10*time.Minute)) || fresh.AppID != a.ID || !fresh.ExpiresAt.Equal(k2.ExpiresAt) || key3.IsZero() {
		t.Errorf("rotate: old %+v fresh %+v", old, fresh)
	}
	old, _, _, err = m.RotateKey(ctx, k2.ID, 2*time.Hour)
	if err != nil || !old.ExpiresAt.Equal(c.t.Add(10*time.Minute)) {
		t.Errorf("rotate with a grace longer than the remaining life: %+v %v", old, err)
	}
	if _, _, _, err := m.RotateKey(ctx, k2.ID, -time.Second); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("negative grace: %v", err)
	}
	// Delete the application: its keys go too.
	if err := m.DeleteApp(ctx, a.ID, 1); !errors.Is(err, kps.ErrConflict) {
		t.Errorf("delete with a stale version: %v", err)
	}
	if err := m.DeleteApp(ctx, a.ID, up.Version); err != nil {
		t.Fatal(err)
	}
	if keys, _ := m.Keys(ctx, a.ID); len(keys) != 0 {
		t.Errorf("keys left after the application was deleted: %v", keys)
	}
	if keys, _ := m.Keys(ctx, b.ID); len(keys) != 1 {
		t.Errorf("another application's keys: %v", keys)
	}
}

// TestChecker: what opens an API and what does not, and how late a change
// is seen (the cache's lifetime).
func TestChecker(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	a, _ := m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	k, key, _ := m.CreateKey(ctx, a.ID, c.t.Add(time.Hour))
	cache := kps.NewCache(s, kps.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Now: c.now})
	ck := NewChecker(cache, testHashKey)
	ck.now = c.now
	got, err := ck.Check(ctx, key.RevealString())
	if err != nil || got.ID != a.ID || got.Name != "Shop" || !got.Allows("orders") || got.Allows("stock") {
		t.Fatalf("a good key: %+v %v", got, err)
	}
	_, other := NewKey()
	forged := k.ID + other.RevealString()[len(k.ID):]
	for name, bad := range map[string]string{"malformed": "hello", "unknown": other.RevealString(), "right id, wrong secret": forged} {
		if _, err := ck.Check(ctx, bad); !errors.Is(err, apikey.ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", name, err)
		}
	}
	// Disabled: seen after the cache's lifetime, not before.
	if _, err := m.SetKey(ctx, k.ID, false, k.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	if _, err := ck.Check(ctx, key.RevealString()); err != nil {
		t.Errorf("disabled, within the cache's lifetime: %v (the cache serves the old row)", err)
	}
	c.t = c.t.Add(time.Minute + time.Millisecond)
	if _, err := ck.Check(ctx, key.RevealString()); !errors.Is(err, apikey.ErrInvalidKey) {
		t.Errorf("disabled, after the cache's lifetime: %v", err)
	}
	// Enabled again, then expired.
	m.SetKey(ctx, k.ID, true, c.t.Add(30*time.Second))
	cache.Purge()
	if _, err := ck.Check(ctx, key.RevealString()); err != nil {
		t.Errorf("enabled again: %v", err)
	}
	c.t = c.t.Add(30 * time.Second)
	if _, err := ck.Check(ctx, key.RevealString()); !errors.Is(err, apikey.ErrInvalidKey) {
		t.Errorf("at its expiry: %v", err)
	}
	// The application disabled.
	m.SetKey(ctx, k.ID, true, time.Time{})
	a.Enabled = false
	if _, err := m.UpdateApp(ctx, a); err != nil {
		t.Fatal(err)
	}
	cache.Purge()
	if _, err := ck.Check(ctx, key.RevealString()); !errors.Is(err, apikey.ErrInvalidKey) {
		t.Errorf("application disabled: %v", err)
	}
	// The store closed: not ErrInvalidKey (the policy answers 503).
	cache.Purge()
	s.Close()
	if _, err := ck.Check(ctx, key.RevealString()); err == nil || errors.Is(err, apikey.ErrInvalidKey) {
		t.Errorf("store closed: %v, want an error that is not ErrInvalidKey", err)
	}
}

func TestHashKeyFile(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	k1, err := LoadOrCreateHashKey(h, "group-2")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(HashKeyFile(h, "group-2"))
	if err != nil || fi.Mode().Perm() != 0o600 || len(k1.Reveal()) != HashKeyBytes {
		t.Fatalf("key file: %v %v", fi, err)
	}
	k2, err := LoadOrCreateHashKey(h, "group-2")
	if err != nil || string(k2.Reveal()) != string(k1.Reveal()) {
		t.Errorf("a second load made another key: %v", err)
	}
	k3, _ := LoadOrCreateHashKey(h, "group-3")
	if string(k3.Reveal()) == string(k1.Reveal()) {
		t.Error("two groups share a key")
	}
	// Many at once on a fresh group: one key for all.
	var wg sync.WaitGroup
	keys := make([]string, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateHashKey(h, "group-4")
			if err != nil {
				t.Error(err)
			}
			keys[i] = string(k.Reveal())
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if k != keys[0] {
			t.Fatal("concurrent creators ended with different keys")
		}
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(HashKeyFile(h, "group-4")), "*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	// A damaged file is an error naming it, not a new key.
	os.WriteFile(HashKeyFile(h, "group-2"), []byte("short"), 0o600)
	if _, err := LoadOrCreateHashKey(h, "group-2"); err == nil || !strings.Contains(err.Error(), "apikeys.key has 5 bytes") {
		t.Errorf("damaged key file: %v", err)
	}
}
