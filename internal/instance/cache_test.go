package instance

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
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

	// Eight clients, 50 keys each requested 32 times in all: every key
	// reaches the back end at least once, and at most once per client
	// (misses racing before the first store), never once per request.
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
	if n := hits.Load() - before; n < 50 || n > 8*50 {
		t.Errorf("1600 requests for 50 keys reached the back end %d times", n)
	}
}

// hub stands in for the cluster bus between instances of one process:
// Publish applies the events to the same-named cache of every other
// registry before it returns.
type hub struct {
	mu   sync.Mutex
	regs map[string]*cache.Registry
}

type hubPeer struct {
	h    *hub
	self string
}

func (p hubPeer) Publish(ctx context.Context, name string, events []cache.Event) error {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	for id, r := range p.h.regs {
		if id == p.self {
			continue
		}
		if c := r.Get(name); c != nil {
			for _, ev := range events {
				c.ApplyRemote(ev)
			}
		}
	}
	return nil
}

// TestReplicatedCacheInstances: two instances whose registries are joined
// (as the cluster bus joins them): a value cacheStore puts on one is
// found by cacheLookup on the other at once (sync replication); a third
// instance joining bootstraps the entries from a peer's snapshot.
func TestReplicatedCacheInstances(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "v=%s", r.Header.Get("X-V"))
	}))
	t.Cleanup(be.Close)
	yaml := fmt.Sprintf(`
caches:
  - {name: kv, replicated: true, replication: sync}
backends:
  - name: be
    url: %s
apis:
  - name: put
    path: /put/{id}
    backend: be
    policies:
      - cacheStore: {cache: kv, key: param:id, value: "stored here"}
  - name: get
    path: /get/{id}
    backend: be
    policies:
      - cacheLookup: {cache: kv, key: param:id, as: v, required: true, notFoundStatus: 404}
      - headers: {request: {set: {X-V: "${v.value}"}}}
`, be.URL)
	h := &hub{regs: map[string]*cache.Registry{}}
	var tis []*testInstance
	for i := range 2 {
		ti := startInstance(t, quickstartYAML(newPorts(t), yaml))
		id := fmt.Sprint("i", i)
		h.regs[id] = ti.Caches()
		ti.Caches().SetReplicator(hubPeer{h, id})
		tis = append(tis, ti)
	}
	if r := do(t, nil, "GET", tis[1].base+"/get/7", nil); r.status != 404 {
		t.Fatalf("before any put: %d", r.status)
	}
	if r := do(t, nil, "GET", tis[0].base+"/put/7", nil); r.status != 200 {
		t.Fatalf("put on i0: %d", r.status)
	}
	if r := do(t, nil, "GET", tis[1].base+"/get/7", nil); r.status != 200 || r.body != "v=stored here" {
		t.Errorf("get on i1: %d %q, want 200 v=stored here", r.status, r.body)
	}

	// A third instance bootstraps from i0.
	ti := startInstance(t, quickstartYAML(newPorts(t), yaml))
	entries, sum := tis[0].Caches().Get("kv").Snapshot()
	if n, err := ti.Caches().Get("kv").Bootstrap(entries, sum); err != nil || n != 1 {
		t.Fatalf("bootstrap: %d, %v", n, err)
	}
	if r := do(t, nil, "GET", ti.base+"/get/7", nil); r.status != 200 || r.body != "v=stored here" {
		t.Errorf("get on the bootstrapped instance: %d %q", r.status, r.body)
	}
}
