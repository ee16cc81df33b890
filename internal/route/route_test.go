package route

import (
	"errors"
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
	{Name: "items-delete", PathPrefix: "/items", Methods: []string{"DELETE"}, Backend: "b"},
	{Name: "only-get", Path: "/only", Methods: []string{"GET"}, Backend: "b"},
	{Name: "trailing", Path: "/t/", Backend: "b"},
	{Name: "café", Path: "/café", Backend: "b"},
	{Name: "order", Path: "/orders/{id}", Methods: []string{"GET", "DELETE"}, Backend: "b"},
	{Name: "order-line", Path: "/orders/{id}/lines/{line}", Backend: "b"},
	{Name: "order-lines-first", Path: "/orders/{id}/lines/first", Backend: "b"},
	{Name: "any-lines", Path: "/{kind}/{id}/lines/{line}", Backend: "b"},
	{Name: "report", PathRegex: `/reports/[0-9]{4}-[0-9]{2}\.csv`, Backend: "b"},
	{Name: "users-me", Path: "/users/me", Backend: "b"},
	{Name: "user", Path: "/users/{id}", Backend: "b"},
	{Name: "admin", PathPrefix: "/admin", Backend: "b"},
	{Name: "admin-host-order", Path: "/orders/{id}", Host: "admin.example.com", Methods: []string{"PUT"}, Backend: "b"},
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
	}{
		{"GET", "gw:8080", "/", "root", nil},
		{"GET", "gw", "/anything/else", "root", nil},
		{"GET", "gw", "/sample", "sample", nil},
		{"GET", "gw", "/sample/", "sample", nil},
		{"GET", "gw", "/sample/echo", "sample", nil},
		{"GET", "gw", "/samplex", "root", nil},
		{"GET", "gw", "/sample/deep", "sample-deep", nil},
		{"GET", "gw", "/sample/deep/x/y", "sample-deep", nil},
		{"GET", "gw", "/sample/deeper", "sample", nil},
		{"GET", "gw", "/sample/exact", "sample-exact", nil},
		{"GET", "gw", "/sample/exact/x", "sample", nil},
		{"GET", "admin.example.com", "/sample/exact", "admin-host", nil},
		{"GET", "ADMIN.example.COM:443", "/sample/x", "admin-host", nil},
		{"GET", "admin.example.com.", "/sample", "admin-host", nil},
		{"GET", "admin.example.com", "/other", "root", nil},
		{"GET", "gw", "/orders", "orders-get", nil},
		{"HEAD", "gw", "/orders", "orders-get", nil},
		{"POST", "gw", "/orders", "orders-post", nil},
		{"DELETE", "gw", "/orders", "root", nil}, // falls through to the root prefix
		{"PUT", "gw", "/items/1", "items", nil},
		{"DELETE", "gw", "/items/1", "items-delete", nil},
		{"GET", "gw", "/t/", "trailing", nil},
		{"GET", "gw", "/t", "root", nil},
		{"GET", "gw", "/caf%C3%A9", "café", nil},
		{"GET", "gw", "/sampl%65/echo", "sample", nil},
		{"GET", "gw", "/orders/42", "order", nil},
		{"PUT", "gw", "/orders/42", "root", nil},
		{"PUT", "admin.example.com", "/orders/42", "admin-host-order", nil},
		{"GET", "admin.example.com", "/orders/42", "order", nil}, // host route does not allow GET: the host-less one does
		{"GET", "gw", "/orders/42/", "root", nil},
		{"GET", "gw", "/orders/42/lines/7", "order-line", nil},
		{"GET", "gw", "/orders/42/lines/first", "order-lines-first", nil},
		{"GET", "gw", "/carts/42/lines/7", "any-lines", nil},
		{"GET", "gw", "/users/me", "users-me", nil},
		{"GET", "gw", "/users/you", "user", nil},
		{"GET", "gw", "/users/", "root", nil}, // a parameter is never empty
		{"GET", "gw", "/reports/2024-01.csv", "report", nil},
		{"GET", "gw", "/reports/2024-1.csv", "root", nil},
		{"GET", "gw", "/%61dmin/x", "admin", nil},
		{"GET", "gw", "/sample/../etc/passwd", "", ErrBadPath},
		{"GET", "gw", "/sample/./echo", "", ErrBadPath},
		{"GET", "gw", "/sample//echo", "", ErrBadPath},
		{"GET", "gw", "/sample/%2e%2e/x", "", ErrBadPath},
		{"GET", "gw", "/sample%2Fecho", "", ErrBadPath},
		{"GET", "gw", "/sample%5cecho", "", ErrBadPath},
		{"GET", "gw", `/sample\echo`, "", ErrBadPath},
		{"GET", "gw", "/sample/%zz", "", ErrBadPath},
		{"GET", "gw", "/sample/%zz" + strings.Repeat("a", 600), "", ErrBadPath},
		{"GET", "gw", "*", "", ErrBadPath},
		{"GET", "gw", "", "", ErrBadPath},
	}
	for _, tt := range tests {
		for _, withParams := range []bool{false, true} {
			var p *Params
			if withParams {
				p = new(Params)
			}
			r, err := tab.Match(tt.method, tt.host, tt.path, p)
			got := ""
			if r != nil {
				got = r.Name
			}
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Match(%s, %s, %s): got %q, %v, want %q, %v", tt.method, tt.host, tt.path, got, err, tt.want, tt.wantErr)
			}
		}
	}
}

func TestParams(t *testing.T) {
	tab := mustCompile(t, testAPIs)
	long := strings.Repeat("x", 600)
	tests := []struct {
		path string
		want string // name=value pairs
	}{
		{"/orders/42", "id=42"},
		{"/orders/42/lines/7", "id=42 line=7"},
		{"/orders/a%20b/lines/%C3%A9", "id=a b line=é"},
		{"/carts/9/lines/x", "kind=carts id=9 line=x"},
		{"/users/%61dmin", "id=admin"},
		{"/users/" + long + "%41", "id=" + long + "A"}, // longer than the buffer
		{"/users/me", ""},
		{"/sample/x", ""},
	}
	var p Params
	for _, tt := range tests {
		if _, err := tab.Match("GET", "gw", tt.path, &p); err != nil {
			t.Fatalf("Match(%s): %v", tt.path, err)
		}
		var got []string
		for i := 0; i < p.Len(); i++ {
			got = append(got, p.Name(i)+"="+p.Value(i))
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("params of %s: got %q, want %q", tt.path, g, tt.want)
		}
		if p.Len() > 0 {
			v, ok := p.Get(p.Name(p.Len() - 1))
			if !ok || v != p.Value(p.Len()-1) {
				t.Errorf("Get(%s) of %s: got %q, %v, want %q, true", p.Name(p.Len()-1), tt.path, v, ok, p.Value(p.Len()-1))
			}
		}
		if _, ok := p.Get("nope"); ok {
			t.Errorf("Get(nope) of %s: got true, want false", tt.path)
		}
	}
	// A failed match empties the parameters.
	if _, err := tab.Match("GET", "gw", "/a//b", &p); p.Len() != 0 || err == nil {
		t.Errorf("after a bad path: got %d params, %v, want 0, an error", p.Len(), err)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{
		{Name: "a", Path: "/orders", Methods: []string{"POST", "GET"}, Backend: "b"},
		{Name: "b", PathPrefix: "/orders", Methods: []string{"PUT", "GET"}, Backend: "b"},
		{Name: "c", PathPrefix: "/x", Backend: "b"},
		{Name: "d", Path: "/orders/{id}", Methods: []string{"PATCH"}, Backend: "b"},
		{Name: "e", Path: "/orders/{id}", Host: "h2", Methods: []string{"OPTIONS"}, Backend: "b"},
		{Name: "f", PathRegex: "/orders/[0-9]+", Methods: []string{"DELETE"}, Backend: "b"},
		{Name: "g", Path: "/h3", Host: "h3", Methods: []string{"GET"}, Backend: "b"},
	})
	tests := []struct {
		method, host, path string
		wantAllow          string
		wantErr            error
	}{
		{"DELETE", "h", "/orders", "GET, POST, PUT", nil},
		{"POST", "h", "/orders/1", "DELETE, GET, PATCH, PUT", nil},
		{"POST", "h", "/orders/a", "GET, PATCH, PUT", nil},
		{"POST", "h2", "/orders/a", "GET, OPTIONS, PATCH, PUT", nil}, // the union for the host and the host-less routes
		{"BREW", "h", "/orders", "GET, POST, PUT", nil},
		{"GET", "h3:80", "/h3/", "", ErrNotFound},
		{"POST", "h3", "/h3", "GET", nil},
		{"POST", "other", "/h3", "", ErrNotFound},
		{"GET", "h", "/nothing", "", ErrNotFound},
	}
	for _, tt := range tests {
		_, err := tab.Match(tt.method, tt.host, tt.path, nil)
		var me *MethodError
		switch {
		case tt.wantErr != nil:
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Match(%s %s %s): got %v, want %v", tt.method, tt.host, tt.path, err, tt.wantErr)
			}
		case errors.As(err, &me):
			if got := strings.Join(me.Allow, ", "); got != tt.wantAllow || me.Method != tt.method {
				t.Errorf("Match(%s %s %s): got %s %q, want %s %q", tt.method, tt.host, tt.path, me.Method, got, tt.method, tt.wantAllow)
			}
		default:
			t.Errorf("Match(%s %s %s): got %v, want a *MethodError", tt.method, tt.host, tt.path, err)
		}
	}
}

// TestPrecedence is the precedence table of docs/routing.md: for each
// request, the routes that match it, written in file order, and the one
// that wins.
func TestPrecedence(t *testing.T) {
	tests := []struct {
		rule   string
		apis   []groupconf.API
		host   string
		path   string
		winner string
	}{
		{"host before host-less", []groupconf.API{{Name: "any", Path: "/a"}, {Name: "host", PathPrefix: "/", Host: "h"}}, "h", "/a", "host"},
		{"host-less for other hosts", []groupconf.API{{Name: "any", Path: "/a"}, {Name: "host", PathPrefix: "/", Host: "h"}}, "g", "/a", "any"},
		{"exact before param", []groupconf.API{{Name: "param", Path: "/a/{x}"}, {Name: "exact", Path: "/a/b"}}, "", "/a/b", "exact"},
		{"param before regex", []groupconf.API{{Name: "regex", PathRegex: "/a/.*"}, {Name: "param", Path: "/a/{x}"}}, "", "/a/b", "param"},
		{"regex before prefix", []groupconf.API{{Name: "prefix", PathPrefix: "/a/b"}, {Name: "regex", PathRegex: "/a/.*"}}, "", "/a/b", "regex"},
		{"exact before prefix", []groupconf.API{{Name: "prefix", PathPrefix: "/a/b"}, {Name: "exact", Path: "/a/b"}}, "", "/a/b", "exact"},
		{"literal before param, first segment", []groupconf.API{{Name: "y-b", Path: "/{y}/b"}, {Name: "a-x", Path: "/a/{x}"}}, "", "/a/b", "a-x"},
		{"more literal segments first", []groupconf.API{{Name: "x-c-d", Path: "/x/{b}/{c}/{d}"}, {Name: "a-c-d", Path: "/{a}/y/z/{d}"}}, "", "/x/y/z/w", "a-c-d"},
		{"literal before param, later segment", []groupconf.API{{Name: "a-p-q-c", Path: "/a/{p}/{q}/c"}, {Name: "a-b-q-r", Path: "/a/b/{q}/{r}"}}, "", "/a/b/c/c", "a-b-q-r"},
		{"longer prefix first", []groupconf.API{{Name: "short", PathPrefix: "/a"}, {Name: "long", PathPrefix: "/a/b"}}, "", "/a/b/c", "long"},
		{"file order among regexes", []groupconf.API{{Name: "first", PathRegex: "/a/.*"}, {Name: "second", PathRegex: "/a/b"}}, "", "/a/b", "first"},
		{"another method falls through", []groupconf.API{{Name: "first", Path: "/a/{x}", Methods: []string{"GET"}}, {Name: "second", Path: "/a/{y}", Methods: []string{"POST"}}}, "", "/a/b", "second"}, // POST (below)
		{"another method falls through to a prefix", []groupconf.API{{Name: "exact", Path: "/a/b", Methods: []string{"GET"}}, {Name: "prefix", PathPrefix: "/"}}, "", "/a/b", "prefix"},                 // POST
		{"host-specific prefix before host-less exact", []groupconf.API{{Name: "exact", Path: "/a/b"}, {Name: "host", PathPrefix: "/", Host: "h"}}, "H.:8080", "/a/b", "host"},
	}
	for _, tt := range tests {
		for i := range tt.apis {
			tt.apis[i].Backend = "b"
		}
		tab := mustCompile(t, tt.apis)
		method := "GET"
		if strings.HasPrefix(tt.rule, "another method") {
			method = "POST"
		}
		r, err := tab.Match(method, tt.host, tt.path, nil)
		if err != nil || r.Name != tt.winner {
			t.Errorf("%s: Match(%s %s): got %v, %v, want %s", tt.rule, tt.host, tt.path, r, err, tt.winner)
		}
	}
}

func TestRoutesOrder(t *testing.T) {
	tab := mustCompile(t, testAPIs)
	var got []string
	for _, r := range tab.Routes() {
		got = append(got, r.Name)
	}
	want := "admin-host-order admin-host sample-exact orders-get orders-post only-get trailing café users-me order-lines-first order-line order user any-lines report sample-deep sample items items-delete admin root"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("precedence: got %v, want %v", g, want)
	}
}

// TestNormalisation is the table of docs/routing.md: what the router does
// with paths that could name one resource in two ways.
func TestNormalisation(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{
		{Name: "public", PathPrefix: "/public", Backend: "b"},
		{Name: "admin", PathPrefix: "/admin", Methods: []string{"GET"}, Backend: "b"},
	})
	tests := []struct {
		path string
		want string // route name, or the error
	}{
		{"/public/x", "public"},
		{"/public/..%2fadmin", "bad path"},
		{"/public/%2e%2e/admin", "bad path"},
		{"/public/%2E./admin", "bad path"},
		{"/public/../admin", "bad path"},
		{"/public/./x", "bad path"},
		{"/public/..;/admin", "bad path"},
		{"/public/..%3Bx/admin", "bad path"},
		{"/public/.;/x", "bad path"},
		{"/admin//x", "bad path"},
		{"//admin", "bad path"},
		{"/public%2Fadmin", "bad path"},
		{"/public%5Cadmin", "bad path"},
		{`/public\admin`, "bad path"},
		{"/public/x%00", "bad path"},
		{"/public/%", "bad path"},
		{"/public/%4", "bad path"},
		{"/public/%g0", "bad path"},
		{"/%61dmin", "admin"},
		{"/%41dmin", "not found"}, // %41 is A, and paths are case-sensitive
		{"/admin/", "admin"},
		{"/public/...", "public"},
		{"/public/.well-known", "public"},
		{"/public/a;b", "public"},
		{"/public/%25", "public"},
	}
	for _, tt := range tests {
		r, err := tab.Match("GET", "h", tt.path, nil)
		var got string
		switch {
		case errors.Is(err, ErrBadPath):
			got = "bad path"
		case errors.Is(err, ErrNotFound):
			got = "not found"
		case err != nil:
			got = err.Error()
		default:
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("Match(%s): got %s, want %s", tt.path, got, tt.want)
		}
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
		{"/a/...", true},
		{"/a/.x;y", true},
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
		{"/a/..;", false},
		{"/a/..;x/b", false},
		{"/a/.;x", false},
		{"/a/..%3bx", false},
		{"/a/.%3B", false},
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

func TestHosts(t *testing.T) {
	tab := mustCompile(t, []groupconf.API{
		{Name: "example", PathPrefix: "/", Host: "API.Example.com.", Backend: "b"},
		{Name: "ip", PathPrefix: "/", Host: "192.0.2.7", Backend: "b"},
		{Name: "any", PathPrefix: "/", Backend: "b"},
	})
	tests := []struct{ host, want string }{
		{"api.example.com", "example"},
		{"API.EXAMPLE.COM", "example"},
		{"api.example.com:8443", "example"},
		{"Api.Example.Com.:80", "example"},
		{"api.example.com.", "example"},
		{"api.example.co", "any"},
		{"xapi.example.com", "any"},
		{"192.0.2.7:8080", "ip"},
		{"[::1]:8080", "any"},
		{"[::1", "any"},
		{"", "any"},
		{strings.Repeat("A", 300), "any"},
	}
	for _, tt := range tests {
		r, err := tab.Match("GET", tt.host, "/x", nil)
		if err != nil || r.Name != tt.want {
			t.Errorf("Match(host %q): got %v, %v, want %s", tt.host, r, err, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		apis []groupconf.API
		want string
	}{
		{[]groupconf.API{{Name: "both", Path: "/a", PathPrefix: "/a"}}, "exactly one of"},
		{[]groupconf.API{{Name: "three", Path: "/a", PathRegex: "/a"}}, "exactly one of"},
		{[]groupconf.API{{Name: "none"}}, "exactly one of"},
		{[]groupconf.API{{Name: "dotdot", PathPrefix: "/a/../b"}}, `".." segment`},
		{[]groupconf.API{{Name: "lower", Path: "/a", Methods: []string{"get"}}}, "upper case"},
		{[]groupconf.API{{Name: "brace", Path: "/a/{id"}}, "not a parameter"},
		{[]groupconf.API{{Name: "brace2", Path: "/a/id}"}}, "not a parameter"},
		{[]groupconf.API{{Name: "partial", Path: "/a/x{id}"}}, "not a parameter"},
		{[]groupconf.API{{Name: "nested", Path: "/a/{{id}}"}}, "not a parameter"},
		{[]groupconf.API{{Name: "name", Path: "/a/{1d}"}}, "not accepted"},
		{[]groupconf.API{{Name: "empty-name", Path: "/a/{}"}}, "not accepted"},
		{[]groupconf.API{{Name: "twice", Path: "/a/{id}/b/{id}"}}, "appears twice"},
		{[]groupconf.API{{Name: "many", Path: manyParams(17)}}, "more than 16"},
		{[]groupconf.API{{Name: "regex", PathRegex: "/a/(b"}}, "not a regular expression"},
		{[]groupconf.API{{Name: "prefix-param", PathPrefix: "/a/{id}"}}, "no parameters"},
		{[]groupconf.API{{Name: "percent", Path: "/a%20b"}}, "decoded"},
		{[]groupconf.API{{Name: "empty-seg", Path: "/a//b"}}, "empty segment"},
		{[]groupconf.API{{Name: "query", Path: "/a?b"}}, "query"},
		{[]groupconf.API{{Name: "relative", Path: "a"}}, "start with /"},
		{[]groupconf.API{{Name: "first", Path: "/a/{x}"}, {Name: "second", Path: "/a/{y}"}}, `same host and path as API "first"`},
		{[]groupconf.API{{Name: "first", Path: "/a", Methods: []string{"GET"}}, {Name: "second", Path: "/a", Methods: []string{"POST", "GET"}}}, "for GET"},
		{[]groupconf.API{{Name: "first", PathPrefix: "/a/", Host: "H"}, {Name: "second", PathPrefix: "/a", Host: "h."}}, "identical"},
		{[]groupconf.API{{Name: "first", PathRegex: "/a.*"}, {Name: "second", PathRegex: "/a.*", Methods: []string{"GET"}}}, "identical"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.apis)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%s): got %v, want an error containing %q", tt.apis[len(tt.apis)-1].Name, err, tt.want)
		}
	}
	// Not duplicates: other host, other methods, other kind, other shape.
	ok := [][]groupconf.API{
		{{Name: "a", Path: "/a"}, {Name: "b", Path: "/a", Host: "h"}},
		{{Name: "a", Path: "/a", Methods: []string{"GET"}}, {Name: "b", Path: "/a", Methods: []string{"POST"}}},
		{{Name: "a", Path: "/a"}, {Name: "b", PathPrefix: "/a"}},
		{{Name: "a", Path: "/a/{x}"}, {Name: "b", Path: "/{x}/a"}},
		{{Name: "a", Path: "/a/"}, {Name: "b", Path: "/a"}},
	}
	for _, apis := range ok {
		if _, err := Compile(apis); err != nil {
			t.Errorf("Compile(%v): got %v, want no error", apis, err)
		}
	}
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("/{p")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString("}")
	}
	return b.String()
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
