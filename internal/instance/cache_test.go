package instance

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// cacheYAML: an API /c with a responseCache on cache "r" (maxEntries n),
// its responses edited by a headers policy setting X-Gen: gen.
func cacheYAML(backend string, n int, gen string) string {
	return fmt.Sprintf(`
caches:
  - {name: r, maxEntries: %d, maxBytes: 1048576}
backends:
  - name: be
    url: %s
apis:
  - name: c
    pathPrefix: /c
    backend: be
    policies:
      - headers: {response: {set: {X-Gen: %q}}}
      - responseCache: {cache: r}
`, n, backend, gen)
}

// TestResponseCacheSwap: a swap that keeps a cache's settings keeps its
// entries (the new chains find them; their edits apply to the hits); a
// swap that changes them starts the cache empty. Concurrent clients with
// many keys exercise the miss and hit paths (run with -race).
func TestResponseCacheSwap(t *testing.T) {
	var hits atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "answer for %s", r.URL.RequestURI())
	}))
	t.Cleanup(be.Close)
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, cacheYAML(be.URL, 1000, "one")))
	get := func(path string) response {
		t.Helper()
		r := do(t, nil, "GET", ti.base+path, nil)
		if r.status != 200 || r.body != "answer for "+path {
			t.Fatalf("GET %s: %d %q", path, r.status, r.body)
		}
		return r
	}
	get("/c/a")
	if r := get("/c/a"); hits.Load() != 1 || r.header.Get("X-Gen") != "one" {
		t.Fatalf("second GET: back end %d times, X-Gen %q", hits.Load(), r.header.Get("X-Gen"))
	}
	if err := ti.Swap(loadConfig(t, quickstartYAML(p, cacheYAML(be.URL, 1000, "two")))); err != nil {
		t.Fatal(err)
	}
	if r := get("/c/a"); hits.Load() != 1 || r.header.Get("X-Gen") != "two" || r.header.Get("Cache-Status") == "" {
		t.Errorf("after a swap keeping the cache: back end %d times (want 1), X-Gen %q (want two), %v", hits.Load(), r.header.Get("X-Gen"), r.header)
	}
	if err := ti.Swap(loadConfig(t, quickstartYAML(p, cacheYAML(be.URL, 999, "two")))); err != nil {
		t.Fatal(err)
	}
	if get("/c/a"); hits.Load() != 2 {
		t.Errorf("after a swap changing the cache: back end %d times, want 2 (the cache starts empty)", hits.Load())
	}

	// Many clients, 50 keys each requested 4 times: every key reaches
	// the back end at least once and, racing misses aside, not much more.
	before := hits.Load()
	var wg sync.WaitGroup
	client := &http.Client{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				path := "/c/k" + strconv.Itoa((i*7+g)%50)
				res, err := client.Get(ti.base + path)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n := hits.Load() - before; n < 50 || n > 50+8*50/2 {
		t.Errorf("1600 requests for 50 keys reached the back end %d times", n)
	}
}
