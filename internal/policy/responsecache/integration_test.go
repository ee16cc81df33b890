package responsecache_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// countingBackend is a real back end on loopback that counts the requests
// of each path and answers by path: fields and statuses the cache must
// honour.
type countingBackend struct {
	mu   sync.Mutex
	hits map[string]int
	url  string
}

func (b *countingBackend) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[path]
}

func startBackend(t *testing.T) *countingBackend {
	t.Helper()
	b := &countingBackend{hits: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits[r.URL.Path]++
		n := b.hits[r.URL.Path]
		b.mu.Unlock()
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("X-Backend", "yes")
		switch strings.TrimPrefix(r.URL.Path, "/c/") {
		case "nostore":
			h.Set("Cache-Control", "no-store")
		case "private":
			h.Set("Cache-Control", "private, max-age=60")
		case "cookie":
			h.Set("Set-Cookie", "session=secret")
		case "404":
			w.WriteHeader(404)
		case "500":
			w.WriteHeader(500)
		case "vary":
			h.Set("Vary", "Accept-Language")
		case "varykeyed":
			h.Set("Vary", "Accept")
		case "etag":
			h.Set("ETag", `"v1"`)
		case "expired":
			h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
		case "future":
			h.Set("Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		case "badexpires":
			h.Set("Expires", "0")
		case "maxage0":
			h.Set("Cache-Control", "max-age=0")
		case "big":
			fmt.Fprint(w, strings.Repeat("b", 5000))
			return
		case "chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
			return
		}
		if r.URL.Path == "/kv/echo" {
			fmt.Fprintf(w, "seen=%s", r.Header.Get("X-Seen"))
			return
		}
		fmt.Fprintf(w, "%s #%d q=%s accept=%s", r.URL.Path, n, r.URL.RawQuery, r.Header.Get("Accept"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

const groupYAML = `caches:
  - {name: responses, maxEntries: 1000, maxBytes: 1048576, timeToLive: 60}
  - {name: kv, maxEntries: 100, maxBytes: 65536, eviction: LFU}
backends:
  - name: be
    url: %s
apis:
  - name: cached
    pathPrefix: /c
    backend: be
    policies:
      - headers: {response: {set: {X-Edited: "yes"}}}
      - responseCache: {cache: responses, headers: [Accept], maxBodyBytes: 1024}
  - name: kvput
    path: /kvput/{id}
    backend: be
    policies:
      - cacheStore: {cache: kv, key: param:id, value: "seen-it"}
  - name: kvget
    path: /kvget/{id}
    backend: be
    stripPrefix: false
    policies:
      - cacheLookup: {cache: kv, key: param:id, as: s, required: true, notFoundStatus: 404}
      - headers: {request: {set: {X-Seen: "${s.value}"}}}
`

type reply struct {
	status int
	header http.Header
	body   string
}

// TestResponseCacheInstance runs a real instance process (the built
// binary, started with startinstance) in front of a real back end on
// loopback: a cached GET is answered without reaching the back end, with
// Age and Cache-Status and the API's response edits (a miss says
// fwd=uri-miss, and why it is not stored); HEAD is answered
// from the GET's entry; responses marked no-store or private, that set a
// cookie, with a Vary not keyed, a status other than 2xx, max-age=0, an
// Expires past or malformed, a body over maxBodyBytes, are forwarded every time; the query, a keyed
// field and Authorization separate entries; a chunked response is stored
// whole. Then cacheStore and cacheLookup through the same process, and
// the cache metrics.
func TestResponseCacheInstance(t *testing.T) {
	be := startBackend(t)
	h := gwtest.NewHome(t)
	h.InitDomain()
	traffic, mgmt := gwtest.FreePort(t), gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-c", "-n", "S", "-g", "G", "--traffic_port", strconv.Itoa(traffic), "--management_port", strconv.Itoa(mgmt))
	gdirs, _ := filepath.Glob(h.Path("groups", "group-*", "conf"))
	if len(gdirs) != 1 {
		t.Fatalf("group directories: %v", gdirs)
	}
	if err := os.WriteFile(filepath.Join(gdirs[0], "group.yaml"), []byte(fmt.Sprintf(groupYAML, be.url)), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })

	do := func(method, path string, hdr ...string) reply {
		t.Helper()
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", traffic, path), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header, string(body)}
	}

	// A plain 200: the second GET is a hit.
	first := do("GET", "/c/plain")
	if first.status != 200 || first.header.Get("Age") != "" || first.header.Get("Cache-Status") != "gatehouse; fwd=uri-miss" || first.header.Get("X-Edited") != "yes" {
		t.Fatalf("first GET: %d %v %q", first.status, first.header, first.body)
	}
	second := do("GET", "/c/plain")
	if second.body != first.body || be.count("/c/plain") != 1 {
		t.Errorf("second GET: body %q (first %q), back end reached %d times; want the first body and 1", second.body, first.body, be.count("/c/plain"))
	}
	if second.header.Get("Age") == "" || second.header.Get("Cache-Status") != "gatehouse; hit" || second.header.Get("X-Backend") != "yes" || second.header.Get("X-Edited") != "yes" {
		t.Errorf("hit fields: %v", second.header)
	}
	if id1, id2 := first.header.Get("X-Correlationid"), second.header.Get("X-Correlationid"); id2 == "" || id1 == id2 {
		t.Errorf("the hit's correlation id %q is not its own (first %q)", id2, id1)
	}
	if v := second.header.Values("X-Edited"); len(v) != 1 {
		t.Errorf("X-Edited on the hit: %q, want one value", v)
	}
	if r := do("HEAD", "/c/plain"); r.status != 200 || r.header.Get("Cache-Status") != "gatehouse; hit" || r.header.Get("Content-Length") != strconv.Itoa(len(first.body)) || be.count("/c/plain") != 1 {
		t.Errorf("HEAD after GET: %d %v, back end %d", r.status, r.header, be.count("/c/plain"))
	}

	// The key: query, keyed field, Authorization.
	do("GET", "/c/plain?a=1")
	if r := do("GET", "/c/plain?a=1"); be.count("/c/plain") != 2 || !strings.Contains(r.body, "q=a=1") {
		t.Errorf("a query: back end %d times (want 2), body %q", be.count("/c/plain"), r.body)
	}
	do("GET", "/c/plain", "Accept", "text/html")
	if r := do("GET", "/c/plain", "Accept", "text/html"); be.count("/c/plain") != 3 || !strings.Contains(r.body, "accept=text/html") {
		t.Errorf("a keyed field: back end %d times (want 3), body %q", be.count("/c/plain"), r.body)
	}
	if r := do("GET", "/c/plain", "Authorization", "Bearer x"); r.header.Get("Cache-Status") != "gatehouse; fwd=uri-miss; detail=credentials" || be.count("/c/plain") != 4 {
		t.Errorf("with Authorization: served %v from the anonymous entry, back end %d times (want 4)", r.header, be.count("/c/plain"))
	}
	do("GET", "/c/plain", "Authorization", "Bearer x")
	if be.count("/c/plain") != 5 {
		t.Errorf("a response to an authorized request without public was stored (back end %d times, want 5)", be.count("/c/plain"))
	}
	do("GET", "/c/plain", "Cookie", "session=a")
	if r := do("GET", "/c/plain", "Cookie", "session=b"); r.header.Get("Cache-Status") != "gatehouse; fwd=uri-miss; detail=credentials" || be.count("/c/plain") != 7 {
		t.Errorf("with a Cookie: %v, back end %d times (want 7: never stored without public)", r.header, be.count("/c/plain"))
	}

	// Never stored.
	for _, p := range [][2]string{{"nostore", "cache-control"}, {"private", "cache-control"}, {"cookie", "set-cookie"}, {"404", "status"}, {"500", "status"},
		{"vary", "vary"}, {"maxage0", "stale"}, {"expired", "stale"}, {"badexpires", "stale"}, {"big", ""}} {
		path := "/c/" + p[0]
		want := do("GET", path).status
		cs := "gatehouse; fwd=uri-miss"
		if p[1] != "" {
			cs += "; detail=" + p[1]
		}
		for range 2 {
			r := do("GET", path)
			if r.status != want || r.header.Get("Cache-Status") != cs {
				t.Errorf("%s: %d, Cache-Status %q, want %q", path, r.status, r.header.Get("Cache-Status"), cs)
			}
		}
		if n := be.count(path); n != 3 {
			t.Errorf("%s: the back end saw %d of 3 requests; want every one (not cached)", path, n)
		}
	}
	// Stored: a Vary on a keyed field, a chunked body, an Expires ahead.
	for _, p := range []string{"varykeyed", "chunked", "future"} {
		path := "/c/" + p
		a, b := do("GET", path), do("GET", path)
		if be.count(path) != 1 || a.body != b.body || b.header.Get("Cache-Status") != "gatehouse; hit" {
			t.Errorf("%s: back end %d times (want 1), bodies %q and %q, %v", path, be.count(path), a.body, b.body, b.header)
		}
	}

	// A conditional GET matching the stored ETag: 304 from the cache.
	do("GET", "/c/etag")
	if r := do("GET", "/c/etag", "If-None-Match", `W/"v0", "v1"`); r.status != 304 || r.body != "" || r.header.Get("ETag") != `"v1"` || r.header.Get("X-Backend") != "" || be.count("/c/etag") != 1 {
		t.Errorf("If-None-Match matching: %d %q %v, back end %d; want 304 from the cache", r.status, r.body, r.header, be.count("/c/etag"))
	}
	if r := do("GET", "/c/etag", "If-None-Match", `"v0"`); r.status != 200 || r.header.Get("Cache-Status") != "gatehouse; hit" {
		t.Errorf("If-None-Match not matching: %d %v; want 200 from the cache", r.status, r.header)
	}

	// cacheLookup and cacheStore.
	if r := do("GET", "/kvget/7"); r.status != 404 {
		t.Errorf("lookup before any store: %d, want 404", r.status)
	}
	if r := do("GET", "/kvput/7"); r.status != 200 {
		t.Errorf("store: %d", r.status)
	}
	if r := do("GET", "/kvget/7"); r.status != 200 || be.count("/kvget/7") != 1 {
		t.Errorf("lookup after the store: %d, back end %d", r.status, be.count("/kvget/7"))
	}

	// Metrics.
	code, body := h.MgmtGet(mgmt, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, re := range []string{
		`gatehouse_cache_hits_total\{cache="responses"\} [1-9]`,
		`gatehouse_cache_misses_total\{cache="responses"\} [1-9]`,
		`gatehouse_cache_entries\{cache="responses"\} [1-9]`,
		`gatehouse_cache_bytes\{cache="responses"\} [1-9]`,
		`gatehouse_cache_entries\{cache="kv"\} 1`,
		`gatehouse_cache_max_bytes\{cache="kv"\} 65536`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("metrics lack %s", re)
		}
	}
}
