package instance

import "testing"

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
		b.Run(bc.name+"/seq", func(b *testing.B) { benchSeq(b, benchGateway(b, bc.policies...)) })
		b.Run(bc.name+"/parallel", func(b *testing.B) { benchParallel(b, benchGateway(b, bc.policies...)) })
	}
}
