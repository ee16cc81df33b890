package responsecache

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/cache"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// TestCacheControl: the directives that decide storing, with odd
// spellings; a malformed max-age never lengthens a life.
func TestCacheControl(t *testing.T) {
	cases := []struct {
		in   []string
		want directives
	}{
		{[]string{"no-store"}, directives{noStore: true, maxAge: -1, sMaxAge: -1}},
		{[]string{"No-Store"}, directives{noStore: true, maxAge: -1, sMaxAge: -1}},
		{[]string{"public, max-age=60"}, directives{public: true, maxAge: 60, sMaxAge: -1}},
		{[]string{"max-age=60", "max-age=10"}, directives{maxAge: 10, sMaxAge: -1}},
		{[]string{"max-age=\"30\""}, directives{maxAge: 30, sMaxAge: -1}},
		{[]string{"max-age=abc"}, directives{maxAge: 0, sMaxAge: -1}},
		{[]string{"max-age=-5"}, directives{maxAge: 0, sMaxAge: -1}},
		{[]string{"max-age"}, directives{maxAge: 0, sMaxAge: -1}},
		{[]string{"max-age=99999999999999999999"}, directives{maxAge: maxDelta, sMaxAge: -1}},
		{[]string{"s-maxage=5, max-age=100"}, directives{public: true, maxAge: 100, sMaxAge: 5}},
		{[]string{`private="Set-Cookie"`}, directives{private: true, maxAge: -1, sMaxAge: -1}},
		{[]string{`no-cache="a, b", max-age=9`}, directives{noCache: true, maxAge: 9, sMaxAge: -1}},
		{[]string{`ext="no-store", max-age=9`}, directives{maxAge: 9, sMaxAge: -1}},
		{[]string{" ,, must-revalidate ,"}, directives{public: true, maxAge: -1, sMaxAge: -1}},
	}
	for _, tc := range cases {
		d := directives{maxAge: -1, sMaxAge: -1}
		for _, v := range tc.in {
			parseCacheControl(&d, v)
		}
		if d != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, d, tc.want)
		}
	}
}

func TestVary(t *testing.T) {
	keyed := []string{"accept", "accept-language"}
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"Accept", true}, {"accept, Accept-Language", true}, {"", true}, {" , ", true},
		{"*", false}, {"Accept, *", false}, {"Cookie", false}, {"Accept, Origin", false},
	} {
		if got := varyCovered(tc.v, keyed); got != tc.want {
			t.Errorf("Vary %q: got %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestEntryRoundTrip: an entry decodes to what was encoded; a truncated
// or tampered one is refused.
func TestEntryRoundTrip(t *testing.T) {
	var b entryBuilder
	b.start(203, 7)
	b.field([]byte("Content-Type"), []byte("text/plain"))
	b.field([]byte("X-Empty"), nil)
	b.finishHead()
	b.buf = append(b.buf, "the body"...)
	e, err := decode(b.buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	e.each(func(n, v []byte) { got = append(got, string(n)+"="+string(v)) })
	if e.status != 203 || e.age != 7 || string(e.body) != "the body" || fmt.Sprint(got) != "[Content-Type=text/plain X-Empty=]" {
		t.Errorf("got %d %d %q %v", e.status, e.age, e.body, got)
	}
	for i := range 12 {
		if _, err := decode(b.buf[:i]); err == nil {
			t.Errorf("truncated to %d bytes: decoded", i)
		}
	}
	bad := bytes.Replace(b.buf, []byte("text/plain"), []byte("text\r\nX: y"), 1)
	if _, err := decode(bad); err == nil {
		t.Errorf("a value with a line break: decoded")
	}
	bad = bytes.Replace(b.buf, []byte("X-Empty"), []byte("X Empty"), 1)
	if _, err := decode(bad); err == nil {
		t.Errorf("a name with a space: decoded")
	}
}

func request(method, host, path, query string, fields ...string) *h1.Request {
	r := &h1.Request{Method: []byte(method), Host: []byte(host), Path: []byte(path)}
	if query != "-" {
		r.Query = []byte(query)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.AddString(fields[i], fields[i+1])
	}
	return r
}

// TestKey: requests that may share an entry have one key; every keyed
// difference gives another; requests never cached have none.
func TestKey(t *testing.T) {
	c := cache.New(cache.Config{Name: "k", MaxEntries: 10, MaxBytes: 1 << 20}, cache.Options{})
	p := New(groupconf.ResponseCachePolicy{Cache: "k", Headers: []string{"Accept", "X-A"}}, "api", c)
	pq := New(groupconf.ResponseCachePolicy{Cache: "k", Query: []string{"id"}}, "api", c)
	pn := New(groupconf.ResponseCachePolicy{Cache: "k", IgnoreQuery: true}, "api", c)
	other := New(groupconf.ResponseCachePolicy{Cache: "k", Headers: []string{"Accept", "X-A"}}, "api2", c)
	key := func(p *Policy, r *h1.Request) string {
		k, _, ok := p.key(r)
		if !ok {
			return "none"
		}
		return k
	}
	base := key(p, request("GET", "a.example", "/x", "-"))
	same := []*h1.Request{
		request("HEAD", "a.example", "/x", "-"),
		request("GET", "A.Example", "/x", "-"),
		request("GET", "a.example", "/x", "-", "X-Other", "1"),
	}
	for _, r := range same {
		if got := key(p, r); got != base {
			t.Errorf("%s %s%s %v: another key", r.Method, r.Host, r.Path, r.Header)
		}
	}
	diff := []*h1.Request{
		request("GET", "b.example", "/x", "-"),
		request("GET", "a.example", "/y", "-"),
		request("GET", "a.example", "/x", ""),
		request("GET", "a.example", "/x", "a=1"),
		request("GET", "a.example", "/x", "-", "Accept", "text/html"),
		request("GET", "a.example", "/x", "-", "Accept", ""),
		request("GET", "a.example", "/x", "-", "Accept", "a", "Accept", "b"),
		request("GET", "a.example", "/x", "-", "Accept", "a, b"),
		request("GET", "a.example", "/x", "-", "X-A", "1"),
		request("GET", "a.example", "/x", "-", "Authorization", "Bearer t"),
		request("GET", "a.example", "/x", "-", "Cookie", "a=b", "X-A", "1"),
		request("GET", "a.example", "/x", "-", "Accept", "1:X-A"),
	}
	seen := map[string]int{base: -1}
	for i, r := range diff {
		k := key(p, r)
		if j, dup := seen[k]; dup {
			t.Errorf("request %d has the key of request %d", i, j)
		}
		seen[k] = i
	}
	tlsReq := request("GET", "a.example", "/x", "-")
	tlsReq.TLS = &tls.ConnectionState{}
	if key(p, tlsReq) == base {
		t.Errorf("https and http share a key")
	}
	if key(other, request("GET", "a.example", "/x", "-")) == base {
		t.Errorf("two APIs share a key")
	}
	for _, r := range []*h1.Request{request("POST", "a", "/x", "-"), request("GET", "a", "/x", "-", "Range", "bytes=0-1")} {
		if key(p, r) != "none" {
			t.Errorf("%s %v: keyed, want not cached", r.Method, r.Header)
		}
	}
	body := request("GET", "a", "/x", "-")
	body.ContentLength = 5
	if key(p, body) != "none" {
		t.Errorf("a GET with a body: keyed")
	}
	// Chosen query parameters: order of others and encoding do not matter.
	if key(pq, request("GET", "a", "/x", "id=1&b=2")) != key(pq, request("GET", "a", "/x", "c=3&id=%31")) {
		t.Errorf("query id=1: two keys")
	}
	if key(pq, request("GET", "a", "/x", "id=1")) == key(pq, request("GET", "a", "/x", "id=2")) {
		t.Errorf("query id=1 and id=2: one key")
	}
	if key(pn, request("GET", "a", "/x", "id=1")) != key(pn, request("GET", "a", "/x", "-")) {
		t.Errorf("ignoreQuery: two keys")
	}
	if len(base) != 33 {
		t.Errorf("key of %d bytes, want 33", len(base))
	}
}

func TestETagMatch(t *testing.T) {
	for _, tc := range []struct {
		inm, etag string
		want      bool
	}{
		{`"a"`, `"a"`, true}, {`W/"a"`, `"a"`, true}, {`"a"`, `W/"a"`, true}, {`"b", "a"`, `"a"`, true},
		{"*", `"x"`, true}, {`"b"`, `"a"`, false}, {`a`, `a`, false}, {``, `"a"`, false}, {`"a`, `"a"`, false},
	} {
		if got := etagMatch(tc.inm, tc.etag); got != tc.want {
			t.Errorf("etagMatch(%q, %q): got %v, want %v", tc.inm, tc.etag, got, tc.want)
		}
	}
}

// TestEntryLimits: statuses 200 to 599 only; at most maxFields fields;
// a field too long is refused by the builder.
func TestEntryLimits(t *testing.T) {
	for _, tc := range []struct {
		status int
		ok     bool
	}{{199, false}, {200, true}, {599, true}, {600, false}} {
		var b entryBuilder
		b.start(tc.status, 0)
		b.finishHead()
		if _, err := decode(b.buf); (err == nil) != tc.ok {
			t.Errorf("status %d: decode error %v", tc.status, err)
		}
	}
	var b entryBuilder
	b.start(200, 0)
	for i := range maxFields {
		if !b.field([]byte("X"), []byte(fmt.Sprint(i))) {
			t.Fatalf("field %d refused", i)
		}
	}
	if b.field([]byte("X"), nil) {
		t.Errorf("field %d accepted", maxFields+1)
	}
	b.finishHead()
	if e, err := decode(b.buf); err != nil || e.fields != maxFields {
		t.Errorf("%d fields: %v", maxFields, err)
	}
	binary.BigEndian.PutUint16(b.buf[8:10], maxFields+1)
	if _, err := decode(b.buf); err == nil {
		t.Errorf("a count over maxFields decoded")
	}
	if b.field([]byte("X"), make([]byte, 1<<20+1)) {
		t.Errorf("a value over 1 MiB accepted")
	}
}
