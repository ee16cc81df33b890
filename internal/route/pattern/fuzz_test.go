package pattern

import (
	"strings"
	"testing"
)

// FuzzParse parses arbitrary patterns: no input panics, an accepted path or
// prefix has the example its segments say, the example of an accepted path
// parses back as an exact path of as many segments, and an accepted regular
// expression is anchored at both ends.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/", "/a/{id}/b", "/a/", "/{x}/{y}/",
		// The end of the input.
		"", "/a/{", "/a/{x", "/a/{x}}", "/a/.", "/a/..", "/a/..;", "/a//", "//", "/a\\", "/a%", "/a?", "/{}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParsePath(s); err == nil {
			if p.Source != s || (p.Kind == Param) != (len(p.Names) > 0) || len(p.Names) > MaxParams {
				t.Fatalf("ParsePath(%q): got %+v", s, p)
			}
			ex := p.Example("v")
			e, err := ParsePath(ex)
			if err != nil || e.Kind != Exact || len(e.Segments) != len(p.Segments) {
				t.Fatalf("ParsePath(%q): example %q parses as %+v, %v", s, ex, e, err)
			}
			if p.Kind == Exact && ex != s {
				t.Fatalf("ParsePath(%q): got example %q, want the path itself", s, ex)
			}
		}
		if p, err := ParsePrefix(s); err == nil {
			if p.Source != "/" && strings.HasSuffix(p.Source, "/") || p.Names != nil {
				t.Fatalf("ParsePrefix(%q): got %+v", s, p)
			}
			if got := p.Example("v"); got != p.Source {
				t.Fatalf("ParsePrefix(%q): got example %q, want %q", s, got, p.Source)
			}
		}
		if p, err := ParseRegex(s); err == nil && p.Regexp.String() != "^(?:"+s+")$" {
			t.Fatalf("ParseRegex(%q): got %q, want it anchored at both ends", s, p.Regexp)
		}
	})
}
