package pattern

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"strings"
	"testing"
)

// Patterns that no request could match are refused, each with a message
// that says why.
func TestRefused(t *testing.T) {
	params := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "/{p%d}", i)
		}
		return b.String()
	}
	tests := []struct {
		parse func(string) (Pattern, error)
		in    string
		msg   string // part of the error message
	}{
		{ParsePath, "", "empty path"},
		{ParsePath, "a/b", "must start with /"},
		{ParsePath, "/a\x00", "control character"},
		{ParsePath, "/a\x1f", "control character"},
		{ParsePath, "/a\x7f", "control character"},
		{ParsePath, "/a\\b", "backslash"},
		{ParsePath, "/a?b", "without query or fragment"},
		{ParsePath, "/a#b", "without query or fragment"},
		{ParsePath, "/a%20b", "write the path decoded"},
		{ParsePath, "//", "empty segment"},
		{ParsePath, "/a//b", "empty segment"},
		{ParsePath, "//a", "empty segment"},
		{ParsePath, "/.", `"." segment`},
		{ParsePath, "/a/./b", `"." segment`},
		{ParsePath, "/a/..", `".." segment`},
		{ParsePath, "/a/..;x/b", `"..;x" segment`},
		{ParsePath, "/.;/b", `".;" segment`},
		{ParsePath, "/a{b}", "is not a parameter"},
		{ParsePath, "/{a}b", "is not a parameter"},
		{ParsePath, "/{{a}", "is not a parameter"},
		{ParsePath, "/{a}}", "is not a parameter"},
		{ParsePath, "/{", "is not a parameter"},
		{ParsePath, "/}", "is not a parameter"},
		{ParsePath, "/a/{x}/b{", `segment 3 ("b{")`},
		{ParsePath, "/{}", `parameter name "" is not accepted`},
		{ParsePath, "/{1a}", `parameter name "1a" is not accepted`},
		{ParsePath, "/{9}", `parameter name "9" is not accepted`},
		{ParsePath, "/{a-b}", "is not accepted"},
		{ParsePath, "/{a@}", "is not accepted"},
		{ParsePath, "/{a[}", "is not accepted"},
		{ParsePath, "/{a`}", "is not accepted"},
		{ParsePath, "/{a:}", "is not accepted"},
		{ParsePath, "/{a/}", "is not a parameter"},
		{ParsePath, "/{x}/{x}", "appears twice"},
		{ParsePath, "/{x}/a/{y}/{x}", "parameter {x} appears twice"},
		{ParsePath, params(MaxParams + 1), "more than 16 parameters"},
		{ParsePrefix, "", "empty path"},
		{ParsePrefix, "a", "must start with /"},
		{ParsePrefix, "//", "empty segment"},
		{ParsePrefix, "/a//", "empty segment"},
		{ParsePrefix, "/a//b", "empty segment"},
		{ParsePrefix, "/a/../b", `".." segment`},
		{ParsePrefix, "/a%2F", "write the path decoded"},
		{ParsePrefix, "/a/{x}", "holds no parameters or braces"},
		{ParsePrefix, "/a}", "holds no parameters or braces"},
		{ParseRegex, "", "empty regular expression"},
		{ParseRegex, "/a(", "not a regular expression"},
	}
	for _, tt := range tests {
		p, err := tt.parse(tt.in)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: got %+v, %v, want an *Error", tt.in, p, err)
			continue
		}
		if pe.Pattern != tt.in || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%q: got %q, want one naming %q and saying %q", tt.in, err, tt.in, tt.msg)
		}
		if p.Kind != 0 || p.Source != "" || p.Segments != nil || p.Names != nil || p.Regexp != nil {
			t.Errorf("%q: got pattern %+v with the error, want the zero Pattern", tt.in, p)
		}
	}
}

func TestRegexErrorUnwraps(t *testing.T) {
	_, err := ParseRegex("a[")
	var se *syntax.Error
	if !errors.As(err, &se) || se.Code != syntax.ErrMissingBracket {
		t.Errorf("got %v, want it to wrap the regexp/syntax error", err)
	}
}

func TestAccepted(t *testing.T) {
	params := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "/{p%d}", i)
		}
		return b.String()
	}
	tests := []struct {
		parse  func(string) (Pattern, error)
		in     string
		kind   Kind
		source string
		segs   []Segment
	}{
		{ParsePath, "/", Exact, "/", []Segment{{}}},
		{ParsePath, "/a/", Exact, "/a/", []Segment{{Literal: "a"}, {}}},
		{ParsePath, "/{ab}", Param, "/{ab}", []Segment{{Name: "ab"}}},
		{ParsePath, "/{_azAZ09}/x", Param, "/{_azAZ09}/x", []Segment{{Name: "_azAZ09"}, {Literal: "x"}}},
		{ParsePath, "/{a0}/{a9}/{z}/{Z}/{A}/{_}", Param, "/{a0}/{a9}/{z}/{Z}/{A}/{_}", []Segment{{Name: "a0"}, {Name: "a9"}, {Name: "z"}, {Name: "Z"}, {Name: "A"}, {Name: "_"}}},
		{ParsePath, "/a b/café/~!$&'()*+,;=:@", Exact, "/a b/café/~!$&'()*+,;=:@", []Segment{{Literal: "a b"}, {Literal: "café"}, {Literal: "~!$&'()*+,;=:@"}}},
		{ParsePath, "/.a/..b/...;/a.", Exact, "/.a/..b/...;/a.", []Segment{{Literal: ".a"}, {Literal: "..b"}, {Literal: "...;"}, {Literal: "a."}}},
		{ParsePath, "/;./a;..", Exact, "/;./a;..", []Segment{{Literal: ";."}, {Literal: "a;.."}}},
		{ParsePrefix, "/", Prefix, "/", nil},
		{ParsePrefix, "/a", Prefix, "/a", []Segment{{Literal: "a"}}},
		{ParsePrefix, "/a/b/", Prefix, "/a/b", []Segment{{Literal: "a"}, {Literal: "b"}}},
	}
	for _, tt := range tests {
		p, err := tt.parse(tt.in)
		if err != nil {
			t.Errorf("%q: got %v, want accepted", tt.in, err)
			continue
		}
		if p.Kind != tt.kind || p.Source != tt.source || fmt.Sprint(p.Segments) != fmt.Sprint(tt.segs) || len(p.Segments) != len(tt.segs) {
			t.Errorf("%q: got %v %q %q, want %v %q %q", tt.in, p.Kind, p.Source, p.Segments, tt.kind, tt.source, tt.segs)
		}
		var names []string
		for _, s := range tt.segs {
			if s.IsParam() {
				names = append(names, s.Name)
			}
		}
		if fmt.Sprint(p.Names) != fmt.Sprint(names) || len(p.Names) != len(names) {
			t.Errorf("%q: got names %q, want %q", tt.in, p.Names, names)
		}
	}
	p, err := ParsePath(params(MaxParams))
	if err != nil || len(p.Names) != MaxParams {
		t.Errorf("%d parameters: got %v, %d names, want accepted", MaxParams, err, len(p.Names))
	}
	if MaxParams != 16 {
		t.Errorf("MaxParams: got %d, want 16 (docs/routing.md)", MaxParams)
	}
	r, err := ParseRegex("/a|/b")
	if err != nil || !r.Regexp.MatchString("/b") || r.Regexp.MatchString("/b/c") || r.Regexp.MatchString("x/a") {
		t.Errorf("ParseRegex(/a|/b): got %v, want an expression anchored at both ends", err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Exact: "exact", Param: "param", Regex: "regex", Prefix: "prefix", Prefix + 1: "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d): got %q, want %q", k, got, want)
		}
	}
}

func TestExample(t *testing.T) {
	for in, want := range map[string]string{"/": "/", "/a/{x}/": "/a/v/", "/{x}": "/v"} {
		p, _ := ParsePath(in)
		if got := p.Example("v"); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	p, _ := ParsePrefix("/")
	if got := p.Example("v"); got != "/" {
		t.Errorf("prefix /: got %q, want /", got)
	}
}

// A route is hidden by an earlier one with the same host (as routes compare
// it), the same shape and a method in common; the error names the earlier
// API (numbered from 1) and the method.
func TestSeenOverlap(t *testing.T) {
	x, _ := ParsePath("/a/{x}")
	lit, _ := ParsePath("/a/x")
	re, _ := ParseRegex("/a/.*")
	re2, _ := ParseRegex("/a/.+")
	tests := []struct {
		name         string
		first, later []string
		p2           *Pattern
		host2        string
		method       string // "" for no duplicate
	}{
		{"both any method", nil, nil, &x, "H", "any method"},
		{"earlier any method", nil, []string{"PUT", "GET"}, &x, "h.", "PUT"},
		{"later any method", []string{"GET", "POST"}, nil, &x, "h", "GET"},
		{"second method in common", []string{"GET", "POST"}, []string{"DELETE", "POST"}, &x, "h", "POST"},
		{"no method in common", []string{"GET"}, []string{"POST"}, &x, "h", ""},
		{"other host", nil, nil, &x, "g", ""},
		{"other shape", nil, nil, &lit, "h", ""},
		{"other regex", nil, nil, &re2, "h", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Seen
			if err := s.Add(4, "h", &x, tt.first); err != nil {
				t.Fatal(err)
			}
			if err := s.Add(5, "h", &re, nil); err != nil {
				t.Fatal(err)
			}
			err := s.Add(6, tt.host2, tt.p2, tt.later)
			if tt.method == "" {
				if err != nil {
					t.Errorf("got %v, want no duplicate", err)
				}
				return
			}
			var de *DuplicateError
			if !errors.Is(err, ErrDuplicate) || !errors.As(err, &de) || de.Earlier != 4 || de.Method != tt.method {
				t.Fatalf("got %v, want a duplicate of API index 4 for %s", err, tt.method)
			}
			if want := "identical to API #5 for " + tt.method; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q, want it to start with %q", err, want)
			}
		})
	}
}
