package kpstest

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// BenchRows is the number of rows the benchmarks read among.
const BenchRows = 1000

// Bench measures a backend's Get (uncached), the same through a kps.Cache
// (hits), and Insert. Besides ns/op it reports the median and the 99th
// percentile of the single operations (p50-ns, p99-ns), from a loop that
// times each call.
func Bench(b *testing.B, h Harness) {
	s, err := kps.Open(b.Context(), h.New(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Define(b.Context(), Things, Counters); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, BenchRows)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%06d", i)
		_, err := s.Insert(b.Context(), "things", map[string]any{"id": keys[i], "email": keys[i] + "@example.com",
			"name": "bench", "small": int32(i), "tags": []string{"a", "b"}, "attrs": map[string]string{"k": "v"}, "color": "red"})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Get", func(b *testing.B) {
		timed(b, func(i int) error { _, err := s.Get(b.Context(), "things", keys[i%BenchRows]); return err })
	})
	b.Run("GetCached", func(b *testing.B) {
		c := kps.NewCache(s, kps.CacheOptions{TTL: time.Hour})
		for _, k := range keys {
			c.Get(b.Context(), "things", k)
		}
		timed(b, func(i int) error { _, err := c.Get(b.Context(), "things", keys[i%BenchRows]); return err })
	})
	run := 0 // -count runs each sub-benchmark several times on this store
	b.Run("Insert", func(b *testing.B) {
		run++
		timed(b, func(i int) error {
			_, err := s.Insert(b.Context(), "counters", map[string]any{"name": fmt.Sprintf("c-%d-%d", run, i), "n": int64(i)})
			return err
		})
	})
	// InsertParallel: 64 writers at once (the token endpoint under load):
	// what a backend's commits cost when writers can share them.
	b.Run("InsertParallel", func(b *testing.B) {
		run++
		var n atomic.Int64
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if _, err := s.Insert(b.Context(), "counters", map[string]any{"name": fmt.Sprintf("p-%d-%d", run, i), "n": i}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// timed runs op b.N times, timing each call, and reports p50 and p99.
func timed(b *testing.B, op func(i int) error) {
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	b.StopTimer()
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
}
