package route

import (
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// FuzzMatch checks Match against a brute-force reference that tries every
// route in file order and applies the precedence rules as written in
// docs/routing.md: the route it returns must be the best one that matches
// host, path and method; the parameters must be the path's segments at the
// route's {name} positions; ErrNotFound and *MethodError (with the union of
// methods) must agree with the reference; no input panics.
func FuzzMatch(f *testing.F) {
	for _, s := range []struct{ m, h, p string }{
		{"GET", "gw", "/sample/echo"},
		{"POST", "admin.example.com:80", "/sample"},
		{"DELETE", "gw", "/orders"},
		{"GET", "[::1]:8080", "/sample/%2e%2e/x"},
		{"PUT", "gw", "/items/%41"},
		{"GET", "x", "/caf%C3%A9"},
		{"GET", "x", "//"},
		{"PUT", "Admin.Example.com.", "/orders/1"},
		{"GET", "gw", "/orders/1/lines/2"},
		{"POST", "gw", "/carts/1/lines/first"},
		{"GET", "gw", "/reports/2024-01.csv"},
		{"GET", "gw", "/users/%6de"},
		// The end of the input: an escape cut short, a dot segment, an
		// empty segment, a Host cut short.
		{"GET", "gw", "/users/%6"},
		{"GET", "gw", "/users/%"},
		{"GET", "gw", "/users/."},
		{"GET", "gw", "/users/.."},
		{"GET", "gw", "/users/..%3b"},
		{"GET", "gw", "/users//"},
		{"GET", "[::1", "/users/me"},
		{"GET", "admin.example.com:", "/sample"},
		{"GET", "", ""},
	} {
		f.Add(s.m, s.h, s.p)
	}
	tab := mustCompile(f, testAPIs)
	ref := newReference(testAPIs)
	f.Fuzz(func(t *testing.T, method, host, path string) {
		var p Params
		r, err := tab.Match(method, host, path, &p)
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
		best, params, allow := ref.match(method, host, decoded)
		switch {
		case best >= 0:
			if r == nil || r.Index != best {
				t.Fatalf("Match(%q, %q, %q): got %v, %v, want route %q", method, host, path, r, err, testAPIs[best].Name)
			}
			var got []string
			for i := 0; i < p.Len(); i++ {
				got = append(got, p.Name(i)+"="+p.Value(i))
			}
			if !slices.Equal(got, params) {
				t.Fatalf("Match(%q, %q, %q) params: got %q, want %q", method, host, path, got, params)
			}
		case len(allow) > 0:
			var me *MethodError
			if !errors.As(err, &me) || !slices.Equal(me.Allow, allow) {
				t.Fatalf("Match(%q, %q, %q): got %v, %v, want a *MethodError allowing %v", method, host, path, r, err, allow)
			}
		default:
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Match(%q, %q, %q): got %v, %v, want ErrNotFound", method, host, path, r, err)
			}
		}
	})
}

// reference is the brute-force router of FuzzMatch, written from the rules
// in docs/routing.md without the trie.
type reference struct {
	apis []groupconf.API
	res  []*regexp.Regexp
}

func newReference(apis []groupconf.API) *reference {
	ref := &reference{apis: apis, res: make([]*regexp.Regexp, len(apis))}
	for i, a := range apis {
		if a.PathRegex != "" {
			ref.res[i] = regexp.MustCompile("^(?:" + a.PathRegex + ")$")
		}
	}
	return ref
}

// match returns the index of the winning API (or -1), its parameters as
// name=value, and the sorted union of methods of the APIs that match host
// and path.
func (ref *reference) match(method, host, path string) (int, []string, []string) {
	h := refHost(host)
	best := -1
	var bestParams, allow []string
	for i, a := range ref.apis {
		if a.Host != "" && strings.TrimSuffix(strings.ToLower(a.Host), ".") != strings.ToLower(h) {
			continue
		}
		ok, params := ref.pathMatch(i, path)
		if !ok {
			continue
		}
		if len(a.Methods) > 0 && !slices.Contains(a.Methods, method) {
			allow = append(allow, a.Methods...)
			continue
		}
		if best < 0 || refBetter(a, ref.apis[best]) {
			best, bestParams = i, params
		}
	}
	slices.Sort(allow)
	return best, bestParams, slices.Compact(allow)
}

func (ref *reference) pathMatch(i int, p string) (bool, []string) {
	a := ref.apis[i]
	switch {
	case a.PathRegex != "":
		return ref.res[i].MatchString(p), nil
	case a.PathPrefix != "":
		want := strings.Split(strings.Trim(a.PathPrefix, "/"), "/")
		if strings.Trim(a.PathPrefix, "/") == "" {
			return true, nil
		}
		got := strings.Split(strings.TrimPrefix(p, "/"), "/")
		return len(got) >= len(want) && slices.Equal(got[:len(want)], want), nil
	}
	want := strings.Split(a.Path, "/")
	got := strings.Split(p, "/")
	if len(want) != len(got) {
		return false, nil
	}
	var params []string
	for j := range want {
		if strings.HasPrefix(want[j], "{") {
			if got[j] == "" {
				return false, nil
			}
			params = append(params, strings.Trim(want[j], "{}")+"="+got[j])
			continue
		}
		if want[j] != got[j] {
			return false, nil
		}
	}
	return true, params
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

// refKind is the rank of a kind of path: exact, param, regex, prefix.
func refKind(a groupconf.API) int {
	switch {
	case a.PathRegex != "":
		return 2
	case a.PathPrefix != "":
		return 3
	case strings.Contains(a.Path, "{"):
		return 1
	}
	return 0
}

// refBetter reports whether a takes precedence over b; both match the
// request.
func refBetter(a, b groupconf.API) bool {
	if (a.Host != "") != (b.Host != "") {
		return a.Host != ""
	}
	ka, kb := refKind(a), refKind(b)
	if ka != kb {
		return ka < kb
	}
	switch ka {
	case 1:
		sa, sb := strings.Split(a.Path, "/"), strings.Split(b.Path, "/")
		la, lb := 0, 0
		for _, s := range sa {
			if !strings.HasPrefix(s, "{") {
				la++
			}
		}
		for _, s := range sb {
			if !strings.HasPrefix(s, "{") {
				lb++
			}
		}
		if la != lb {
			return la > lb
		}
		for j := range sa { // both match one path: same number of segments
			pa, pb := strings.HasPrefix(sa[j], "{"), strings.HasPrefix(sb[j], "{")
			if pa != pb {
				return pb
			}
		}
	case 3:
		la, lb := len(strings.TrimSuffix(a.PathPrefix, "/")), len(strings.TrimSuffix(b.PathPrefix, "/"))
		if la != lb {
			return la > lb
		}
	}
	return false // file order: b came first
}

// FuzzCompile compiles arbitrary patterns: no input panics, and an accepted
// path or prefix matches its own example paths (with value in each {name}
// segment), giving value back as each parameter.
func FuzzCompile(f *testing.F) {
	for _, s := range []struct {
		kind           uint8
		pattern, value string
	}{
		{0, "/orders/{id}", "42"},
		{0, "/a/{x}/b/{y}/", "é"},
		{0, "/", "v"},
		{0, "/a/{id", "v"},
		{0, "/{a}/{a}", "v"},
		{0, "/a b/{c}", "x y"},
		{1, "/static/", "v"},
		{1, "/", "v"},
		{2, "/a/[0-9]+", "v"},
		{2, "(", "v"},
		{0, "/a/%2f", "v"},
		{0, "/a/..;/b", "v"},
		// The end of the input.
		{0, "/a/{", "v"},
		{0, "/a/{x}}", "v"},
		{0, "/a/..", "v"},
		{0, "/a//", "v"},
		{0, "", "v"},
		{1, "/a//", "v"},
		{1, "/a/{x}", "v"},
		{2, "", "v"},
		{2, `/a\`, "v"},
	} {
		f.Add(s.kind, s.pattern, s.value)
	}
	f.Fuzz(func(t *testing.T, kind uint8, pat, value string) {
		a := groupconf.API{Name: "x", Backend: "b"}
		switch kind % 3 {
		case 0:
			a.Path = pat
		case 1:
			a.PathPrefix = pat
		default:
			a.PathRegex = pat
		}
		tab, err := Compile([]groupconf.API{a})
		if err != nil || a.PathRegex != "" {
			return
		}
		r := tab.Routes()[0]
		// Values the router refuses on purpose in any path (docs/routing.md): a
		// slash, NUL, a backslash (some servers read it as a slash), dot segments.
		if value == "" || strings.ContainsAny(value, "/\x00\\") || value == "." || value == ".." || strings.HasPrefix(value, ".;") || strings.HasPrefix(value, "..;") {
			value = "v"
		}
		example := escapeExample(r, value)
		paths := []string{example}
		if a.PathPrefix != "" {
			paths = append(paths, strings.TrimSuffix(example, "/")+"/more/x")
		}
		var p Params
		for _, path := range paths {
			got, err := tab.Match("GET", "h", path, &p)
			if err != nil || got != r {
				t.Fatalf("pattern %q: Match(%q): got %v, %v, want the route", pat, path, got, err)
			}
			for i := 0; i < p.Len(); i++ {
				if p.Value(i) != value {
					t.Fatalf("pattern %q: Match(%q) param %s: got %q, want %q", pat, path, p.Name(i), p.Value(i), value)
				}
			}
			if p.Len() != len(r.Params) {
				t.Fatalf("pattern %q: got %d params, want %d", pat, p.Len(), len(r.Params))
			}
		}
	})
}

// escapeExample is the escaped request path for the route's pattern with
// value in each parameter, each segment escaped on its own.
func escapeExample(r *Route, value string) string {
	var b strings.Builder
	for _, s := range r.pat.Segments {
		b.WriteByte('/')
		if s.IsParam() {
			b.WriteString(url.PathEscape(value))
		} else {
			b.WriteString(url.PathEscape(s.Literal))
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}
