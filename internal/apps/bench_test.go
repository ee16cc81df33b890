package apps

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
)

// BenchmarkAPIKeyPolicy is the apiKey policy's Apply with a valid key whose
// rows are in the cache: what the request path pays per request.
func BenchmarkAPIKeyPolicy(b *testing.B) {
	ctx := context.Background()
	s := openStoreB(b)
	m, err := NewManager(ctx, s, testHashKey)
	if err != nil {
		b.Fatal(err)
	}
	a, err := m.CreateApp(ctx, App{Name: "bench", Enabled: true, APIs: []string{"orders"}})
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := m.CreateKey(ctx, a.ID, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	p := apikey.New(groupconf.APIKeyPolicy{}, "orders", NewChecker(kps.NewCache(s, kps.CacheOptions{TTL: time.Hour}), testHashKey))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := &h1.Request{Method: []byte("GET"), Path: []byte("/orders")}
		ex := &policy.Exchange{R: r}
		for pb.Next() {
			r.Header.Reset()
			r.Header.AddString("Host", "gw")
			r.Header.AddString("KeyId", key.RevealString())
			ex.Vars = ex.Vars[:0]
			if err := p.Apply(ex); err != nil {
				b.Fatal(err)
			}
		}
	})
}
