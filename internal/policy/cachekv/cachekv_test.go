package cachekv

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

func exchange(query string, fields ...string) *policy.Exchange {
	r := &h1.Request{Method: []byte("GET"), Path: []byte("/"), Query: []byte(query)}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.AddString(fields[i], fields[i+1])
	}
	return &policy.Exchange{R: r}
}

// TestStoreLookup: a value stored under a field's value is found by a
// lookup keyed by a query parameter of the same value; a required lookup
// without an entry is refused with its status; a key over MaxKeyBytes is
// no key; a value whose variable is not set is not stored.
func TestStoreLookup(t *testing.T) {
	c := cache.New(cache.Config{Name: "kv", MaxEntries: 10, MaxBytes: 1 << 20}, cache.Options{})
	st, err := NewStore(groupconf.CacheStorePolicy{Cache: "kv", Key: "header:X-User", Value: "plan=${p.value}"}, c)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := NewLookup(groupconf.CacheLookupPolicy{Cache: "kv", Key: "query:user", As: "u", Required: true, NotFoundStatus: 404}, c)
	if err != nil {
		t.Fatal(err)
	}
	ex := exchange("", "X-User", "alice")
	st.Apply(ex) // ${p.value} not set: nothing stored
	if c.Len() != 0 {
		t.Fatalf("stored with a variable not set")
	}
	ex.SetVar("p.value", "gold")
	if err := st.Apply(ex); err != nil || c.Len() != 1 {
		t.Fatalf("store: %v, %d entries", err, c.Len())
	}
	ex = exchange("user=alice")
	if err := lk.Apply(ex); err != nil {
		t.Fatal(err)
	}
	if v, _ := ex.Var("u.value"); v != "plan=gold" {
		t.Errorf("u.value: got %q, want plan=gold", v)
	}
	var pe *policy.Error
	if err := lk.Apply(exchange("user=bob")); !errors.As(err, &pe) || pe.Status != 404 {
		t.Errorf("no entry: got %v, want a 404 refusal", err)
	}
	long := strings.Repeat("a", MaxKeyBytes+1)
	ex = exchange("", "X-User", long)
	ex.SetVar("p.value", "x")
	st.Apply(ex)
	if c.Len() != 1 {
		t.Errorf("a key over %d bytes was stored", MaxKeyBytes)
	}
	if _, ok := c.Get("alice"); ok {
		t.Errorf("the entry is not in its own namespace")
	}
}

// TestKeySources: header, query (the first parameter of the name,
// decoded) and application keys; the bounds of a key and a value; the
// default refusal; a lookup not required lets a request without an entry
// through.
func TestKeySources(t *testing.T) {
	c := cache.New(cache.Config{Name: "kv", MaxEntries: 100, MaxBytes: 1 << 20}, cache.Options{})
	c.Put(t.Context(), "Vk1", []byte("one"), 0)
	c.Put(t.Context(), "Vapp-7", []byte("app"), 0)
	c.Put(t.Context(), "V"+strings.Repeat("a", MaxKeyBytes), []byte("longest"), 0)
	for _, tc := range []struct {
		key, query, header, app string
		want                    string // "" : not found
	}{
		{"header:X-K", "", "k1", "", "one"},
		{"header:X-K", "", "", "", ""},
		{"query:k", "a=b&k=k%31&k=k2", "", "", "one"},
		{"query:k", "k=", "", "", ""},
		{"query:k", "kk=k1", "", "", ""},
		{"query:k", "k=%zz", "", "", ""},
		{"application", "", "", "app-7", "app"},
		{"application", "", "", "", ""},
		{"header:X-K", "", strings.Repeat("a", MaxKeyBytes), "", "longest"},
		{"header:X-K", "", strings.Repeat("a", MaxKeyBytes+1), "", ""},
	} {
		lk, err := NewLookup(groupconf.CacheLookupPolicy{Cache: "kv", Key: tc.key, As: "v", Required: true}, c)
		if err != nil {
			t.Fatal(err)
		}
		var fields []string
		if tc.header != "" {
			fields = []string{"X-K", tc.header}
		}
		ex := exchange(tc.query, fields...)
		ex.Application = tc.app
		err = lk.Apply(ex)
		got, _ := ex.Var("v.value")
		var pe *policy.Error
		switch {
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%s %q %q %q: got %q, %v; want %q", tc.key, tc.query, tc.header, tc.app, got, err, tc.want)
		case tc.want == "" && (!errors.As(err, &pe) || pe.Status != 403 || pe.Message != "access denied"):
			t.Errorf("%s %q %q: got %v, want a 403 refusal", tc.key, tc.query, tc.header, err)
		}
	}
	free, _ := NewLookup(groupconf.CacheLookupPolicy{Cache: "kv", Key: "header:X-K", As: "v"}, c)
	if err := free.Apply(exchange("")); err != nil {
		t.Errorf("a lookup not required: %v", err)
	}
	if _, err := NewLookup(groupconf.CacheLookupPolicy{Cache: "kv", Key: "cookie:x", As: "v"}, c); err == nil {
		t.Errorf("a bad key source: no error")
	}
	if _, err := NewStore(groupconf.CacheStorePolicy{Cache: "kv", Key: "header:X", Value: "${unclosed"}, c); err == nil {
		t.Errorf("a bad template: no error")
	}
	// Value bounds: MaxValueBytes stored, one more not.
	st, _ := NewStore(groupconf.CacheStorePolicy{Cache: "kv", Key: "header:X-K", Value: "${x.value}"}, c)
	for _, n := range []int{MaxValueBytes, MaxValueBytes + 1} {
		ex := exchange("", "X-K", "size"+strconv.Itoa(n))
		ex.SetVar("x.value", strings.Repeat("v", n))
		st.Apply(ex)
		if _, ok := c.Get("Vsize" + strconv.Itoa(n)); ok != (n == MaxValueBytes) {
			t.Errorf("a value of %d bytes: stored %v", n, ok)
		}
	}
}

// TestStoreTTL: a cacheStore's ttl is the entry's life.
func TestStoreTTL(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := cache.New(cache.Config{Name: "kv", MaxEntries: 10, MaxBytes: 1 << 20, TTL: time.Hour}, cache.Options{Now: clock})
	st, _ := NewStore(groupconf.CacheStorePolicy{Cache: "kv", Key: "header:X-K", Value: "v", TTL: groupconf.Seconds(10)}, c)
	st.Apply(exchange("", "X-K", "k"))
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	if _, ok := c.Get("Vk"); ok {
		t.Errorf("the entry outlived its ttl of 10 s")
	}
}
