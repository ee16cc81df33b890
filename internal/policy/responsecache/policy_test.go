package responsecache

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// writer is an h1.ResponseWriter that keeps what it is given.
type writer struct {
	h       h1.Header
	status  int
	body    []byte
	aborted bool
}

func (w *writer) Header() *h1.Header { return &w.h }
func (w *writer) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *writer) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	w.body = append(w.body, p...)
	return len(p), nil
}
func (w *writer) Flush() error                             { return nil }
func (w *writer) Hijack() (net.Conn, *bufio.Reader, error) { return nil, nil, errors.New("no") }
func (w *writer) Written() int64                           { return int64(len(w.body)) }
func (w *writer) Status() int                              { return w.status }
func (w *writer) Abort()                                   { w.aborted = true }

// forward plays the instance's part for a miss: the back end's head
// through the chain's observers, the body through ex.W, then Finish.
func forward(p *Policy, ex *policy.Exchange, status int, fields []string, body string, err error) {
	w := ex.W
	h := w.Header()
	for i := 0; i+1 < len(fields); i += 2 {
		h.AddString(fields[i], fields[i+1])
	}
	policy.Chain{p}.EditResponse(ex, status, h)
	w.WriteHeader(status)
	for i := 0; i < len(body); i += 3 { // in pieces
		w.Write([]byte(body[i:min(i+3, len(body))]))
	}
	p.Finish(ex, err)
}

func newExchange(method, path string, fields ...string) (*policy.Exchange, *writer) {
	w := &writer{}
	w.h.AddString("X-Correlationid", "Id-test")
	return &policy.Exchange{W: w, R: request(method, "h", path, "-", fields...)}, w
}

// TestMissThenHit: a miss records the response and stores it when whole;
// the hit answers it with Age from the injected clock, the chain's edits,
// and the request's own correlation id.
func TestMissThenHit(t *testing.T) {
	var clkNanos atomic.Int64 // read by the goroutine removing a malformed entry
	clkNanos.Store(time.Unix(1_700_000_000, 0).UnixNano())
	now := func() time.Time { return time.Unix(0, clkNanos.Load()) }
	advance := func(d time.Duration) { clkNanos.Add(int64(d)) }
	c := cache.New(cache.Config{Name: "c", MaxEntries: 10, MaxBytes: 1 << 20, TTL: time.Minute}, cache.Options{Now: now})
	p := New(groupconf.ResponseCachePolicy{Cache: "c", MaxBodyBytes: 100}, "api", c)
	p.now = now

	cases := []struct {
		name   string
		path   string
		status int
		fields []string
		body   string
		err    error
		stored bool
	}{
		{"plain", "/plain", 200, []string{"Content-Type", "text/plain", "Content-Length", "5", "Age", "3", "X-Correlationid", "Id-backend"}, "hello", nil, true},
		{"chunked", "/chunked", 200, []string{"Content-Type", "text/plain"}, "chunked body", nil, true},
		{"failed", "/failed", 200, nil, "cut", errors.New("back end broke off"), false},
		{"short", "/short", 200, []string{"Content-Length", "10"}, "12345", nil, false},
		{"too large", "/large", 200, nil, string(make([]byte, 101)), nil, false},
		{"length too large", "/cl", 200, []string{"Content-Length", "101"}, "", nil, false},
		{"201 stored", "/created", 201, nil, "x", nil, true},
		{"206 not", "/partial", 206, nil, "x", nil, false},
		{"302 not", "/moved", 302, nil, "", nil, false},
		{"s-maxage stale by Age", "/aged", 200, []string{"Cache-Control", "s-maxage=10", "Age", "10"}, "x", nil, false},
	}
	for _, tc := range cases {
		ex, _ := newExchange("GET", tc.path)
		if err := p.Apply(ex); err != nil {
			t.Fatalf("%s: miss: %v", tc.name, err)
		}
		if _, ok := ex.W.(*recorder); !ok {
			t.Fatalf("%s: no recorder on a miss", tc.name)
		}
		forward(p, ex, tc.status, tc.fields, tc.body, tc.err)
		k, _, _ := p.key(ex.R)
		if _, ok := c.Get(k); ok != tc.stored {
			t.Errorf("%s: stored %v, want %v", tc.name, ok, tc.stored)
		}
	}

	advance(7 * time.Second)
	ex, w := newExchange("GET", "/plain")
	edits := 0
	ex.Edit = func(status int, h *h1.Header) {
		edits++
		h.SetString("X-Edited", "1")
	}
	if err := p.Apply(ex); !errors.Is(err, policy.ErrHandled) {
		t.Fatalf("hit: got %v, want ErrHandled", err)
	}
	if w.status != 200 || string(w.body) != "hello" || edits != 1 {
		t.Errorf("hit: %d %q, %d edits", w.status, w.body, edits)
	}
	for name, want := range map[string]string{"Age": "10", "Content-Length": "5", "Content-Type": "text/plain", "X-Correlationid": "Id-test", "Cache-Status": "gatehouse; hit", "X-Edited": "1"} {
		if got := string(w.h.Get(name)); got != want || w.h.Count(name) != 1 {
			t.Errorf("hit %s: got %q (%d fields), want %q", name, got, w.h.Count(name), want)
		}
	}

	// HEAD: the GET's entry, no body; a HEAD miss is not recorded.
	ex, w = newExchange("HEAD", "/chunked")
	if err := p.Apply(ex); !errors.Is(err, policy.ErrHandled) || len(w.body) != 0 || string(w.h.Get("Content-Length")) != "12" {
		t.Errorf("HEAD: %v, body %q, %v", err, w.body, w.h.Get("Content-Length"))
	}
	ex, _ = newExchange("HEAD", "/other")
	if err := p.Apply(ex); err != nil {
		t.Fatal(err)
	}
	if _, ok := ex.W.(*recorder); ok {
		t.Errorf("a HEAD miss is recorded")
	}

	// A malformed entry is never answered.
	ex, _ = newExchange("GET", "/bad")
	k, _, _ := p.key(ex.R)
	c.Put(t.Context(), k, []byte("R\x01garbage"), 0)
	if err := p.Apply(ex); err != nil {
		t.Errorf("a malformed entry: %v, want a miss", err)
	}

	// Abort passes through and stops the recording.
	ex, w = newExchange("GET", "/aborted")
	p.Apply(ex)
	ex.W.(h1.Aborter).Abort()
	if !w.aborted || ex.W.(*recorder).capturing {
		t.Errorf("Abort not passed on")
	}

	// After the TTL: a miss.
	advance(time.Minute)
	ex, _ = newExchange("GET", "/plain")
	if err := p.Apply(ex); err != nil {
		t.Errorf("after the TTL: %v, want a miss", err)
	}
}

// TestStoredTTL: the life of a stored response is the least of the
// policy's ttl, the cache's, and the back end's s-maxage, max-age or
// Expires.
func TestStoredTTL(t *testing.T) {
	clk := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clk }
	c := cache.New(cache.Config{Name: "c", MaxEntries: 10, MaxBytes: 1 << 20, TTL: time.Hour}, cache.Options{Now: now})
	for _, tc := range []struct {
		ttl    time.Duration
		fields []string
		want   time.Duration
	}{
		{0, nil, 0}, // 0: the cache's timeToLive
		{time.Minute, nil, time.Minute},
		{time.Minute, []string{"Cache-Control", "max-age=30"}, 30 * time.Second},
		{time.Minute, []string{"Cache-Control", "max-age=90"}, time.Minute},
		{0, []string{"Cache-Control", "max-age=90, s-maxage=20"}, 20 * time.Second},
		{0, []string{"Cache-Control", "max-age=90", "Age", "30"}, time.Minute},
		{0, []string{"Expires", clk.Add(40 * time.Second).UTC().Format(http.TimeFormat)}, 40 * time.Second},
		{0, []string{"Date", clk.Add(-10 * time.Second).UTC().Format(http.TimeFormat), "Expires", clk.Add(40 * time.Second).UTC().Format(http.TimeFormat)}, 50 * time.Second},
		{0, []string{"Cache-Control", "max-age=5", "Expires", clk.Add(40 * time.Second).UTC().Format(http.TimeFormat)}, 5 * time.Second},
	} {
		p := New(groupconf.ResponseCachePolicy{Cache: "c", TTL: groupconf.Duration(tc.ttl)}, "api", c)
		p.now = now
		ex, _ := newExchange("GET", fmt.Sprint("/t", tc))
		p.Apply(ex)
		forward(p, ex, 200, tc.fields, "x", nil)
		rec := ex.W.(*recorder)
		if !rec.capturing || rec.ttl != tc.want {
			t.Errorf("ttl %v, %q: stored %v for %v, want %v", tc.ttl, tc.fields, rec.capturing, rec.ttl, tc.want)
		}
	}
}

// TestStoreRules: what the back end's head and the request decide, one
// rule at a time (the in-process twin of the integration test's cases).
func TestStoreRules(t *testing.T) {
	c := cache.New(cache.Config{Name: "c", MaxEntries: 100, MaxBytes: 1 << 20}, cache.Options{})
	plain := New(groupconf.ResponseCachePolicy{Cache: "c", Headers: []string{"Accept"}}, "api", c)
	cookies := New(groupconf.ResponseCachePolicy{Cache: "c", StoreSetCookie: true}, "api2", c)
	keyedAuth := New(groupconf.ResponseCachePolicy{Cache: "c", Headers: []string{"Authorization", "Cookie"}}, "api3", c)
	only404 := New(groupconf.ResponseCachePolicy{Cache: "c", Statuses: []int{404}}, "api4", c)
	cases := []struct {
		name   string
		p      *Policy
		req    []string // request fields
		status int
		fields []string // response fields
		stored bool
	}{
		{"plain", plain, nil, 200, nil, true},
		{"no-store", plain, nil, 200, []string{"Cache-Control", "no-store"}, false},
		{"private", plain, nil, 200, []string{"Cache-Control", "private"}, false},
		{"no-cache", plain, nil, 200, []string{"Cache-Control", "no-cache"}, false},
		{"set-cookie", plain, nil, 200, []string{"Set-Cookie", "a=b"}, false},
		{"set-cookie allowed", cookies, nil, 200, []string{"Set-Cookie", "a=b"}, true},
		{"vary keyed", plain, nil, 200, []string{"Vary", "accept"}, true},
		{"vary not keyed", plain, nil, 200, []string{"Vary", "Accept, Origin"}, false},
		{"authorization", plain, []string{"Authorization", "Bearer a"}, 200, nil, false},
		{"authorization public", plain, []string{"Authorization", "Bearer a"}, 200, []string{"Cache-Control", "public"}, true},
		{"cookie", plain, []string{"Cookie", "s=1"}, 200, nil, false},
		{"cookie s-maxage", plain, []string{"Cookie", "s=1"}, 200, []string{"Cache-Control", "s-maxage=60"}, true},
		{"authorization keyed", keyedAuth, []string{"Authorization", "Bearer a", "Cookie", "s=1"}, 200, nil, true},
		{"204", plain, nil, 204, nil, true},
		{"299", plain, nil, 299, nil, true},
		{"300", plain, nil, 300, nil, false},
		{"404 listed", only404, nil, 404, nil, true},
		{"200 not listed", only404, nil, 200, nil, false},
		{"max-age less than Age", plain, nil, 200, []string{"Cache-Control", "max-age=5", "Age", "6"}, false},
		{"max-age more than Age", plain, nil, 200, []string{"Cache-Control", "max-age=7", "Age", "6"}, true},
	}
	details := map[string]string{"no-store": "cache-control", "private": "cache-control", "no-cache": "cache-control", "set-cookie": "set-cookie",
		"vary not keyed": "vary", "authorization": "credentials", "cookie": "credentials", "300": "status", "200 not listed": "status", "max-age less than Age": "stale"}
	for i, tc := range cases {
		ex, _ := newExchange("GET", fmt.Sprint("/r", i), tc.req...)
		if err := tc.p.Apply(ex); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body := "body"
		if tc.status == 204 {
			body = ""
		}
		forward(tc.p, ex, tc.status, tc.fields, body, nil)
		rec := ex.W.(*recorder)
		if want := details[tc.name]; rec.detail != want || (want == "") != tc.stored {
			t.Errorf("%s: detail %q, want %q", tc.name, rec.detail, want)
		}
		if cs := string(ex.W.Header().Get("Cache-Status")); !strings.HasPrefix(cs, "gatehouse; fwd=uri-miss") || !strings.HasSuffix(cs, rec.detail) {
			t.Errorf("%s: Cache-Status %q", tc.name, cs)
		}
		k, _, _ := tc.p.key(ex.R)
		v, ok := c.Get(k)
		if ok != tc.stored {
			t.Errorf("%s: stored %v, want %v", tc.name, ok, tc.stored)
			continue
		}
		if !ok {
			continue
		}
		// Answered as stored.
		ex2, w := newExchange("GET", fmt.Sprint("/r", i), tc.req...)
		if err := tc.p.Apply(ex2); !errors.Is(err, policy.ErrHandled) {
			t.Errorf("%s: the second request: %v, want a hit", tc.name, err)
			continue
		}
		if w.status != tc.status || string(w.body) != body {
			t.Errorf("%s: hit %d %q, want %d %q", tc.name, w.status, w.body, tc.status, body)
		}
		if tc.status == 204 && w.h.Has("Content-Length") {
			t.Errorf("204 with a Content-Length")
		}
		_ = v
	}
}

// TestConditionalHit: If-None-Match with the stored ETag is a 304 with
// the validators and no body; another tag, or a stored 201, is a 200.
func TestConditionalHit(t *testing.T) {
	c := cache.New(cache.Config{Name: "c", MaxEntries: 10, MaxBytes: 1 << 20}, cache.Options{})
	p := New(groupconf.ResponseCachePolicy{Cache: "c"}, "api", c)
	for _, path := range []string{"/e", "/created"} {
		ex, _ := newExchange("GET", path)
		p.Apply(ex)
		status := 200
		if path == "/created" {
			status = 201
		}
		forward(p, ex, status, []string{"ETag", `"v1"`, "Content-Type", "text/plain", "Cache-Control", "max-age=60"}, "body", nil)
	}
	for _, tc := range []struct {
		path, inm string
		want      int
	}{{"/e", `"v1"`, 304}, {"/e", `W/"v1"`, 304}, {"/e", "*", 304}, {"/e", `"v2"`, 200}, {"/created", `"v1"`, 201}} {
		ex, w := newExchange("GET", tc.path, "If-None-Match", tc.inm)
		if err := p.Apply(ex); !errors.Is(err, policy.ErrHandled) {
			t.Fatalf("%s %s: %v", tc.path, tc.inm, err)
		}
		if w.status != tc.want {
			t.Errorf("%s If-None-Match %s: %d, want %d", tc.path, tc.inm, w.status, tc.want)
		}
		if tc.want == 304 && (len(w.body) != 0 || w.h.Has("Content-Type") || w.h.Has("Content-Length") || string(w.h.Get("ETag")) != `"v1"` || !w.h.Has("Cache-Control")) {
			t.Errorf("304: body %q, fields %v", w.body, w.h)
		}
		if tc.want != 304 && string(w.body) != "body" {
			t.Errorf("%d: body %q", tc.want, w.body)
		}
	}
}
