package cachekv

import (
	"errors"
	"strings"
	"testing"

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
