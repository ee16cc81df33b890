package cluster

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkKPSChangeToEviction measures, on loopback with three buses (one
// process, real routes), the time from PublishKPSChange on one to its
// handler running on each of the two others: the change-to-eviction
// latency of issue 22 (target: p99 ≤ 100 ms). It reports p50, p99 and max
// in milliseconds over every delivery.
//
//	go test ./internal/cluster -run '^$' -bench KPSChangeToEviction -benchtime 2000x
func BenchmarkKPSChangeToEviction(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchKPSChange(b, false) })
	b.Run("mutualTLS", func(b *testing.B) { benchKPSChange(b, true) })
}

func benchKPSChange(b *testing.B, withTLS bool) {
	nodes := mesh(b, 3, withTLS)
	var mu sync.Mutex
	var lat []time.Duration
	done := make(chan struct{}, 2*b.N+2)
	for _, nd := range nodes[1:] {
		nd.bus.OnKPSChange(func(c KPSChange) {
			d := time.Since(c.At)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			done <- struct{}{}
		})
	}
	awaitInterest(b, nodes[0].bus, KPSChangedSubject+".t", 2)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := nodes[0].bus.PublishKPSChange(KPSChange{Table: "t", Key: int64(i)}); err != nil {
			b.Fatal(err)
		}
		for range 2 {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				b.Fatalf("change %d: not delivered to both peers within 5 s", i)
			}
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
}
