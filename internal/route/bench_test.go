package route

import (
	"fmt"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// apis1000 is a realistic table of 1,000 routes: 100 resources, each with a
// collection, an item, a sub-collection, a sub-item and an action (exact and
// {param} paths with methods), 3 hosts, some prefixes and a few regular
// expressions.
func apis1000() []groupconf.API {
	var apis []groupconf.API
	add := func(a groupconf.API) {
		a.Name = fmt.Sprintf("api-%d", len(apis))
		a.Backend = "b"
		apis = append(apis, a)
	}
	hosts := []string{"", "api.example.com", "partner.example.com", "internal.example.com"}
	for i := 0; len(apis) < 1000-40; i++ {
		h := hosts[i%len(hosts)]
		res := fmt.Sprintf("/v%d/resource%d", 1+i%3, i)
		add(groupconf.API{Host: h, Path: res, Methods: []string{"GET", "POST"}})
		add(groupconf.API{Host: h, Path: res + "/{id}", Methods: []string{"GET", "PUT", "DELETE"}})
		add(groupconf.API{Host: h, Path: res + "/{id}/items", Methods: []string{"GET", "POST"}})
		add(groupconf.API{Host: h, Path: res + "/{id}/items/{item}", Methods: []string{"GET", "PATCH", "DELETE"}})
		add(groupconf.API{Host: h, Path: res + "/{id}/actions/archive", Methods: []string{"POST"}})
		add(groupconf.API{Host: h, Path: res + "/search", Methods: []string{"GET"}})
		add(groupconf.API{Host: h, PathPrefix: res + "/files"})
		add(groupconf.API{Host: h, PathPrefix: fmt.Sprintf("/static%d", i)})
	}
	for i := 0; len(apis) < 1000-2; i++ {
		add(groupconf.API{PathPrefix: fmt.Sprintf("/legacy/app%d", i)})
	}
	add(groupconf.API{PathRegex: `/reports/[0-9]{4}-[0-9]{2}\.csv`, Methods: []string{"GET"}})
	add(groupconf.API{PathPrefix: "/"})
	return apis
}

var benchLookups = []struct {
	name, method, host, path string
	want                     string // the route's path, regex or prefix
}{
	{"early-exact", "GET", "gw:8080", "/v1/resource0", "/v1/resource0"},
	{"early-param", "GET", "gw:8080", "/v1/resource0/12345", "/v1/resource0/{id}"},
	{"late-param", "DELETE", "internal.example.com", "/v3/resource119/abc/items/7", "/v3/resource119/{id}/items/{item}"},
	{"late-host-fallthrough", "GET", "partner.example.com", "/v3/resource116/42", "/v3/resource116/{id}"},
	{"prefix", "GET", "gw", "/v2/resource4/files/a/b/c.txt", "/v2/resource4/files"},
	{"escaped", "GET", "gw", "/v1/resource0/caf%C3%A9", "/v1/resource0/{id}"},
	{"regex", "GET", "gw", "/reports/2024-01.csv", `/reports/[0-9]{4}-[0-9]{2}\.csv`},
	{"404-root-prefix", "GET", "gw", "/no/such/thing", "/"},
}

// BenchmarkMatch1000 measures one lookup in a table of 1,000 routes.
func BenchmarkMatch1000(b *testing.B) {
	tab := mustCompile(b, apis1000())
	// A real 404: a table without the catch-all prefix.
	apis := apis1000()
	tab404 := mustCompile(b, apis[:len(apis)-1])
	for _, l := range benchLookups {
		b.Run(l.name, func(b *testing.B) {
			var p Params
			b.ReportAllocs()
			for b.Loop() {
				_, _ = tab.Match(l.method, l.host, l.path, &p)
			}
		})
	}
	b.Run("404", func(b *testing.B) {
		var p Params
		b.ReportAllocs()
		for b.Loop() {
			_, _ = tab404.Match("GET", "gw", "/v1/resource0/1/2/3/4", &p)
		}
	})
}

// TestMatchAllocs: Match allocates nothing, hit or miss, with or without
// escapes, with a regular expression, in a table of 1,000 routes.
func TestMatchAllocs(t *testing.T) {
	apis := apis1000()
	tab := mustCompile(t, apis)
	tab404 := mustCompile(t, apis[:len(apis)-1])
	var p Params
	for _, l := range benchLookups {
		r, err := tab.Match(l.method, l.host, l.path, &p)
		if err != nil || r.Path+r.Regex+r.Prefix != l.want {
			t.Errorf("%s: got %v, %v, want the route %s", l.name, r, err, l.want)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = tab.Match(l.method, l.host, l.path, &p) }); n != 0 {
			t.Errorf("%s: got %v allocations, want 0", l.name, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = tab404.Match("GET", "gw", "/v1/nothing", &p) }); n != 0 {
		t.Errorf("404: got %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = tab404.Match("GET", "gw", "/a//b", &p) }); n != 0 {
		t.Errorf("bad path: got %v allocations, want 0", n)
	}
}

func TestTable1000(t *testing.T) {
	tab := mustCompile(t, apis1000())
	tests := []struct{ method, host, path, want string }{
		{"GET", "gw", "/v1/resource0/9", "api-1"},
		{"PUT", "api.example.com", "/v2/resource1/9", "api-9"},
		{"GET", "api.example.com", "/v1/resource0/9", "api-1"}, // host table has no such path: host-less route
		{"GET", "gw", "/v1/resource0/files/x", "api-6"},
		{"GET", "gw", "/legacy/app3/x", fmt.Sprintf("api-%d", 960+3)},
	}
	for _, tt := range tests {
		r, err := tab.Match(tt.method, tt.host, tt.path, nil)
		if err != nil || r.Name != tt.want {
			t.Errorf("Match(%s %s %s): got %v, %v, want %s", tt.method, tt.host, tt.path, r, err, tt.want)
		}
	}
}
