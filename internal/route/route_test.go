package route

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// testAPIs is the routing table used by the tests and the fuzz target. The
// order is deliberately not the precedence order.
var testAPIs = []groupconf.API{
	{Name: "root", PathPrefix: "/", Backend: "b"},
	{Name: "sample", PathPrefix: "/sample", Backend: "b", StripPrefix: true},
	{Name: "sample-deep", PathPrefix: "/sample/deep/", Backend: "b"},
	{Name: "sample-exact", Path: "/sample/exact", Backend: "b"},
	{Name: "orders-get", Path: "/orders", Methods: []string{"GET", "HEAD"}, Backend: "b"},
	{Name: "orders-post", Path: "/orders", Methods: []string{"POST"}, Backend: "b"},
	{Name: "admin-host", PathPrefix: "/sample", Host: "Admin.Example.com", Backend: "b"},
	{Name: "items", PathPrefix: "/items", Methods: []string{"PUT"}, Backend: "b"},
	{Name: "items-dup", PathPrefix: "/items", Methods: []string{"DELETE", "PUT"}, Backend: "b"},
	{Name: "only-get", Path: "/only", Methods: []string{"GET"}, Backend: "b"},
	{Name: "trailing", Path: "/t/", Backend: "b"},
	{Name: "café", Path: "/café", Backend: "b"},
}

func mustCompile(t testing.TB, apis []groupconf.API) *Table {
	t.Helper()
	tab, err := Compile(apis)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tab
}

func TestMatch(t *testing.T) {
	tab := mustCompile(t, testAPIs)
	tests := []struct {
		method, host, path string
		want               string // route name, or "" when an error is expected
		wantErr            error
		wantAllow          string
	}{
		{"GET", "gw:8080", "/", "root", nil, ""},
		{"GET", "gw", "/anything/else", "root", nil, ""},
		{"GET", "gw", "/sample", "sample", nil, ""},
		{"GET", "gw", "/sample/", "sample", nil, ""},
		{"GET", "gw", "/sample/echo", "sample", nil, ""},
		{"GET", "gw", "/samplex", "root", nil, ""},
		{"GET", "gw", "/sample/deep", "sample-deep", nil, ""},
		{"GET", "gw", "/sample/deep/x/y", "sample-deep", nil, ""},
		{"GET", "gw", "/sample/deeper", "sample", nil, ""},
		{"GET", "gw", "/sample/exact", "sample-exact", nil, ""},
		{"GET", "gw", "/sample/exact/x", "sample", nil, ""},
		{"GET", "admin.example.com", "/sample/exact", "admin-host", nil, ""},
		{"GET", "ADMIN.example.COM:443", "/sample/x", "admin-host", nil, ""},
		{"GET", "admin.example.com.", "/sample", "admin-host", nil, ""},
		{"GET", "admin.example.com", "/other", "root", nil, ""},
		{"GET", "gw", "/orders", "orders-get", nil, ""},
		{"HEAD", "gw", "/orders", "orders-get", nil, ""},
		{"POST", "gw", "/orders", "orders-post", nil, ""},
		{"DELETE", "gw", "/orders", "root", nil, ""}, // falls through to the root prefix
		{"PUT", "gw", "/items/1", "items", nil, ""},
		{"DELETE", "gw", "/items/1", "items-dup", nil, ""},
		{"GET", "gw", "/t/", "trailing", nil, ""},
		{"GET", "gw", "/t", "root", nil, ""},
		{"GET", "gw", "/caf%C3%A9", "café", nil, ""},
		{"GET", "gw", "/sampl%65/echo", "sample", nil, ""},
		{"GET", "gw", "/sample/../etc/passwd", "", ErrBadPath, ""},
		{"GET", "gw", "/sample/./echo", "", ErrBadPath, ""},
		{"GET", "gw", "/sample//echo", "", ErrBadPath, ""},
		{"GET", "gw", "/sample/%2e%2e/x", "", ErrBadPath, ""},
		{"GET", "gw", "/sample%2Fecho", "", ErrBadPath, ""},
		{"GET", "gw", "/sample%5cecho", "", ErrBadPath, ""},
		{"GET", "gw", `/sample\echo`, "", ErrBadPath, ""},
		{"GET", "gw", "/sample/%zz", "", ErrBadPath, ""},
		{"GET", "gw", "*", "", ErrBadPath, ""},
		{"GET", "gw", "", "", ErrBadPath, ""},
	}
	for _, tt := range tests {
		r, err := tab.Match(tt.method, tt.host, tt.path)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("Match(%s, %s, %s): got %q, %v, want %q, %v", tt.method, tt.host, tt.path, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMatchMethodNotAllowed(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{
		{Name: "a", Path: "/orders", Methods: []string{"POST", "GET"}, Backend: "b"},
		{Name: "b", PathPrefix: "/orders", Methods: []string{"PUT", "GET"}, Backend: "b"},
		{Name: "c", PathPrefix: "/x", Backend: "b"},
	})
	tests := []struct {
		method, path string
		wantAllow    string
		wantErr      error
	}{
		{"DELETE", "/orders", "GET, POST, PUT", nil},
		{"POST", "/orders/1", "GET, PUT", nil},
		{"GET", "/nothing", "", ErrNotFound},
	}
	for _, tt := range tests {
		_, err := tab.Match(tt.method, "h", tt.path)
		var me *MethodError
		switch {
		case tt.wantErr != nil:
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Match(%s %s): got %v, want %v", tt.method, tt.path, err, tt.wantErr)
			}
		case errors.As(err, &me):
			if got := strings.Join(me.Allow, ", "); got != tt.wantAllow {
				t.Errorf("Match(%s %s) Allow: got %q, want %q", tt.method, tt.path, got, tt.wantAllow)
			}
		default:
			t.Errorf("Match(%s %s): got %v, want a *MethodError", tt.method, tt.path, err)
		}
	}
}

func TestPrecedenceOrder(t *testing.T) {
	tab := mustCompile(t, testAPIs)
	var got []string
	for _, r := range tab.Routes() {
		got = append(got, r.Name)
	}
	want := []string{"admin-host", "sample-exact", "orders-get", "orders-post", "only-get", "trailing", "café", "sample-deep", "sample", "items", "items-dup", "root"}
	if !slices.Equal(got, want) {
		t.Errorf("precedence: got %v, want %v", got, want)
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/a", true},
		{"/a/", true},
		{"/a/b.c/..d/.e", true},
		{"/a%20b", true},
		{"/a%41", true},
		{"", false},
		{"a", false},
		{"//", false},
		{"/a//b", false},
		{"/.", false},
		{"/..", false},
		{"/a/./b", false},
		{"/a/../b", false},
		{"/a/..", false},
		{"/a/.", false},
		{"/a/%2e", false},
		{"/a/%2E%2E/b", false},
		{"/a%2fb", false},
		{"/a%2Fb", false},
		{"/a%5cb", false},
		{"/a%5Cb", false},
		{"/a%00", false},
		{`/a\b`, false},
		{"/a%2", false},
		{"/a%", false},
	}
	for _, tt := range tests {
		if got := Clean(tt.path); got != tt.want {
			t.Errorf("Clean(%q): got %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []groupconf.API{
		{Name: "both", Path: "/a", PathPrefix: "/a"},
		{Name: "none"},
		{Name: "dotdot", PathPrefix: "/a/../b"},
		{Name: "lower", Path: "/a", Methods: []string{"get"}},
	}
	for _, a := range tests {
		if _, err := Compile([]groupconf.API{a}); err == nil {
			t.Errorf("Compile(%+v): got nil error, want one", a)
		}
	}
}

func TestStripSegments(t *testing.T) {
	tests := []struct {
		prefix string
		want   int
	}{{"/", 0}, {"/a", 1}, {"/a/b/", 2}}
	for _, tt := range tests {
		tab := mustCompile(t, []groupconf.API{{Name: "x", PathPrefix: tt.prefix}})
		if got := tab.Routes()[0].PrefixSegments(); got != tt.want {
			t.Errorf("PrefixSegments(%q): got %v, want %v", tt.prefix, got, tt.want)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	tab := mustCompile(b, testAPIs)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tab.Match("GET", "gw:8080", "/sample/echo"); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzMatch checks Match against a brute-force reference: the route it returns
// must match the request and be the best match by the documented precedence;
// ErrNotFound and *MethodError must agree with the reference; no input panics.
func FuzzMatch(f *testing.F) {
	for _, s := range []struct{ m, h, p string }{
		{"GET", "gw", "/sample/echo"},
		{"POST", "admin.example.com:80", "/sample"},
		{"DELETE", "gw", "/orders"},
		{"GET", "[::1]:8080", "/sample/%2e%2e/x"},
		{"PUT", "gw", "/items/%41"},
		{"GET", "x", "/caf%C3%A9"},
		{"GET", "x", "//"},
	} {
		f.Add(s.m, s.h, s.p)
	}
	tab := mustCompile(f, testAPIs)
	f.Fuzz(func(t *testing.T, method, host, path string) {
		r, err := tab.Match(method, host, path)
		if !Clean(path) {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("unclean path %q: got %v, want ErrBadPath", path, err)
			}
			return
		}
		decoded, uerr := url.PathUnescape(path)
		if uerr != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("undecodable path %q: got %v, want ErrBadPath", path, err)
			}
			return
		}
		h := refHost(host)
		var best *Route
		pathMatches := false
		for _, c := range tab.Routes() {
			if c.Host != "" && strings.ToLower(c.Host) != strings.ToLower(h) {
				continue
			}
			if !refPathMatch(c, decoded) {
				continue
			}
			pathMatches = true
			if len(c.Methods) > 0 && !slices.Contains(c.Methods, method) {
				continue
			}
			if best == nil || better(c, best) {
				best = c
			}
		}
		switch {
		case best != nil:
			if r != best {
				t.Fatalf("Match(%q, %q, %q): got %v, %v, want route %q", method, host, path, r, err, best.Name)
			}
		case pathMatches:
			var me *MethodError
			if !errors.As(err, &me) || len(me.Allow) == 0 {
				t.Fatalf("Match(%q, %q, %q): got %v, %v, want a *MethodError", method, host, path, r, err)
			}
		default:
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Match(%q, %q, %q): got %v, %v, want ErrNotFound", method, host, path, r, err)
			}
		}
	})
}

func refHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.Index(h, "]"); i > 0 {
			return h[1:i]
		}
		return h
	}
	if strings.Count(h, ":") == 1 {
		h = h[:strings.Index(h, ":")]
	}
	return strings.TrimSuffix(h, ".")
}

func refPathMatch(r *Route, p string) bool {
	if r.Path != "" {
		return p == r.Path
	}
	want := strings.Split(strings.Trim(r.Prefix, "/"), "/")
	if r.Prefix == "/" {
		want = nil
	}
	got := strings.Split(strings.TrimPrefix(p, "/"), "/")
	return len(got) >= len(want) && slices.Equal(got[:len(want)], want)
}

// better reports whether a takes precedence over b.
func better(a, b *Route) bool {
	if (a.Host != "") != (b.Host != "") {
		return a.Host != ""
	}
	if (a.Path != "") != (b.Path != "") {
		return a.Path != ""
	}
	if len(a.Prefix) != len(b.Prefix) {
		return len(a.Prefix) > len(b.Prefix)
	}
	return a.Index < b.Index
}
