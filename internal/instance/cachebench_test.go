package instance

import (
	"bufio"
	"net"
	"testing"
)

// cacheBenchPolicy puts a responseCache on the bench API and declares its
// cache (the caches key follows the policies, at the top level).
const cacheBenchPolicy = "      - responseCache: {cache: bench}\ncaches:\n  - {name: bench, maxEntries: 1000, maxBytes: 1048576, timeToLive: 600}\n"

// BenchmarkResponseCache compares a responseCache hit with forwarding the
// same request to the back end (BenchmarkProxy's request, API and back
// end), over one keep-alive connection (seq) and eight (parallel). The
// issue's target: the hit at least 1.5 times the forwarding throughput
// (docs/cache.md).
func BenchmarkResponseCache(b *testing.B) {
	for _, bc := range []struct {
		name     string
		policies []string
	}{{"forward", nil}, {"hit", []string{cacheBenchPolicy}}} {
		b.Run(bc.name+"/seq", func(b *testing.B) {
			addr := benchGateway(b, bc.policies...)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cl := &client{c: c, br: bufio.NewReaderSize(c, 16<<10)}
			for range 100 { // warm the pools, fill the cache
				if err := cl.do(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := cl.do(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			addr := benchGateway(b, bc.policies...)
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				cl := &client{c: c, br: bufio.NewReaderSize(c, 16<<10)}
				for pb.Next() {
					if err := cl.do(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
