package route

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// Percent-escapes decode with hex digits of either case (0-9, a-f, A-F,
// each range tried at both ends); anything else after '%' makes the path a
// bad one, in Params' buffer and beyond it.
func TestDecode(t *testing.T) {
	var p Params
	if got, ok := decode("/%30%39%4a%4f%4A%4F%2d", &p); !ok || got != "/09JOJO-" {
		t.Errorf("decode: got %q, %v, want /09JOJO-", got, ok)
	}
	for _, esc := range []string{"%g0", "%0g", "%G0", "%0G", "%/0", "%0/", "%:0", "%0:", "%`0", "%0`", "%@0", "%0@"} {
		for _, long := range []bool{false, true} {
			path := "/a" + esc + "b"
			if long {
				path += strings.Repeat("x", decodeBuf)
			}
			if got, ok := decode(path, &p); ok {
				t.Errorf("decode(%q, long %v): got %q, want a malformed escape", esc, long, got)
			}
		}
	}
	tab := mustCompile(t, []groupconf.API{{Name: "p", Path: "/a/{x}"}})
	for _, path := range []string{"/a/%4g", "/a/%g4", "/a/%4g" + strings.Repeat("x", decodeBuf)} {
		if _, err := tab.Match("GET", "h", path, &p); !errors.Is(err, ErrBadPath) {
			t.Errorf("Match(%.10q…): got %v, want ErrBadPath", path, err)
		}
		if _, err := tab.Match("GET", "h", path, nil); !errors.Is(err, ErrBadPath) {
			t.Errorf("Match(%.10q…) without Params: got %v, want ErrBadPath", path, err)
		}
	}
}

// Params decodes an escaped path of up to 512 bytes in its own buffer; a
// longer one costs one allocation (docs/routing.md).
func TestParamsBuffer(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{{Name: "p", Path: "/a/{x}"}})
	var p Params
	for _, tt := range []struct {
		n      int
		allocs float64
	}{{512, 0}, {513, 1}} {
		path := "/a/%41" + strings.Repeat("b", tt.n-len("/a/%41"))
		r, err := tab.Match("GET", "h", path, &p)
		if err != nil || r.Name != "p" || p.Value(0) != "A"+strings.Repeat("b", tt.n-len("/a/%41")) {
			t.Fatalf("%d bytes: got %v, %v, want the route with the decoded value", tt.n, r, err)
		}
		if got := testing.AllocsPerRun(20, func() { tab.Match("GET", "h", path, &p) }); got != tt.allocs {
			t.Errorf("%d-byte escaped path: got %v allocations, want %v", tt.n, got, tt.allocs)
		}
	}
}

// Clean refuses the escapes of ".", "/", "\" and NUL, and only those.
func TestCleanEscapes(t *testing.T) {
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/%2e", false}, {"/%2E", false}, {"/%2f", false}, {"/%2F", false},
		{"/%5c", false}, {"/%5C", false}, {"/%00", false},
		{"/%2d", true}, {"/%3e", true}, {"/%3f", true}, {"/%5d", true}, {"/%3c", true},
		{"/%10", true}, {"/%01", true}, {"/%20", true}, {"/%5b", true},
		{"/a/.%3/x", true}, // not a dot segment; its escape is malformed (decode refuses it)
		{"/a/.%3b/x", false}, {"/a/..%3B", false},
		{"/a%", false}, {"/a%2", false},
	} {
		if got := Clean(tt.path); got != tt.want {
			t.Errorf("Clean(%q): got %v, want %v", tt.path, got, tt.want)
		}
	}
}

// A route's host is at most 255 bytes, and a table holds at most 64
// distinct methods.
func TestCompileLimits(t *testing.T) {
	host := func(n int) string { return strings.Repeat("h", n) }
	if _, err := Compile([]groupconf.API{{Name: "h", Host: host(255), Path: "/"}}); err != nil {
		t.Errorf("host of 255 bytes: got %v, want accepted", err)
	}
	_, err := Compile([]groupconf.API{{Name: "h", Host: host(256), Path: "/"}})
	if err == nil || !strings.Contains(err.Error(), "longer than 255 bytes") {
		t.Errorf("host of 256 bytes: got %v, want refused", err)
	}
	methods := func(n int) []groupconf.API {
		var apis []groupconf.API
		for i := range n {
			apis = append(apis, groupconf.API{Name: fmt.Sprint(i), Path: "/", Methods: []string{fmt.Sprintf("M%02d", i)}})
		}
		return apis
	}
	tab, err := Compile(methods(64))
	if err != nil {
		t.Fatalf("64 methods: got %v, want accepted", err)
	}
	if r, err := tab.Match("M63", "h", "/", nil); err != nil || r.Name != "63" {
		t.Errorf("the 64th method: got %v, %v, want route 63", r, err)
	}
	_, err = Compile(methods(65))
	if err == nil || !strings.Contains(err.Error(), "65 distinct methods, at most 64") {
		t.Errorf("65 methods: got %v, want refused", err)
	}
}

// A table whose routes all name a host answers other hosts with
// ErrNotFound.
func TestOnlyHostRoutes(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{{Name: "a", Host: "a.example", PathPrefix: "/"}})
	if r, err := tab.Match("GET", "a.example", "/x", nil); err != nil || r.Name != "a" {
		t.Errorf("its host: got %v, %v, want a", r, err)
	}
	if _, err := tab.Match("GET", "b.example", "/x", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("another host: got %v, want ErrNotFound", err)
	}
}

// An exact path matches only itself: a trailing slash is another path.
func TestExactPathAndTrailingSlash(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{{Name: "a", Path: "/a"}, {Name: "p", Path: "/p/{x}"}})
	for _, path := range []string{"/a/", "/p/x/", "/p/"} {
		if r, err := tab.Match("GET", "h", path, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("Match(%s): got %v, %v, want ErrNotFound", path, r, err)
		}
	}
}

// The Host is compared without its port, IPv6 brackets or trailing dot,
// case-insensitively, up to 255 bytes.
func TestHostForms(t *testing.T) {
	long := strings.Repeat("a", 251) + ".com"
	tab := mustCompile(t, []groupconf.API{
		{Name: "v6", Host: "::1", Path: "/"},
		{Name: "az", Host: "az.example", Path: "/"},
		{Name: "long", Host: long, Path: "/"},
		{Name: "bracket", Host: "[x", Path: "/"},
		{Name: "any", PathPrefix: "/"},
	})
	for _, tt := range []struct{ host, want string }{
		{"[::1]:8443", "v6"},
		{"[::1]", "v6"},
		{"::1", "v6"},
		{"[::1", "any"},
		{"[x:1", "any"}, // an unclosed bracket: the Host is taken whole
		{"AZ.EXAMPLE", "az"},
		{"Az.example:80", "az"},
		{"az.example.", "az"},
		{"az.example:80:90", "any"},
		{strings.ToUpper(long), "long"},
		{strings.ToUpper(long) + ":443", "long"},
		{"A" + strings.ToUpper(long), "any"}, // 256 bytes
		{"", "any"},
	} {
		r, err := tab.Match("GET", tt.host, "/", nil)
		if err != nil || r.Name != tt.want {
			t.Errorf("Host %.20q: got %v, %v, want %s", tt.host, r, err, tt.want)
		}
	}
}
