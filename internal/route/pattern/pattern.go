// Package pattern parses the path patterns of route definitions: exact paths
// with optional {name} segments, segment-aligned path prefixes, and regular
// expressions. It is the one place that decides whether a pattern is valid,
// shared by the configuration validator (internal/groupconf), which reports
// errors with file and line, and the route compiler (internal/route).
//
// Patterns are written in decoded form ("/café", not "/caf%C3%A9"): they are
// compared with the request path after its percent-escapes are decoded. A
// pattern is refused when no request that the router accepts could match it
// (see Parse).
package pattern

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MaxParams is the largest number of {name} segments in one pattern.
const MaxParams = 16

// Kind is the kind of a pattern, in precedence order: for one request, an
// exact path beats a pattern with parameters, which beats a regular
// expression, which beats a prefix.
type Kind uint8

const (
	Exact  Kind = iota // path without parameters
	Param              // path with at least one {name} segment
	Regex              // pathRegex
	Prefix             // pathPrefix
)

func (k Kind) String() string {
	switch k {
	case Exact:
		return "exact"
	case Param:
		return "param"
	case Regex:
		return "regex"
	case Prefix:
		return "prefix"
	}
	return "unknown"
}

// Segment is one path segment of a pattern: a literal, or a parameter.
type Segment struct {
	Literal string // the literal text (may be "" for a trailing slash); empty for a parameter
	Name    string // the parameter name; empty for a literal
}

// IsParam reports whether s is a {name} segment.
func (s Segment) IsParam() bool { return s.Name != "" }

// Pattern is a parsed path pattern.
type Pattern struct {
	Kind   Kind
	Source string // as written in the configuration (a prefix without its trailing slash)
	// Segments of an Exact, Param or Prefix pattern. "/" has one empty
	// literal segment as an exact path and none as a prefix; a trailing
	// slash is an empty last literal segment ("/a/" is "a", "").
	Segments []Segment
	Names    []string       // parameter names in order (Param only)
	Regexp   *regexp.Regexp // the anchored expression (Regex only)
}

// Literals is the number of literal segments.
func (p *Pattern) Literals() int {
	n := 0
	for _, s := range p.Segments {
		if !s.IsParam() {
			n++
		}
	}
	return n
}

// Shape is a key equal for two patterns of one kind that match exactly the
// same paths: parameter names are left out ("/a/{x}" and "/a/{y}" have one
// shape).
func (p *Pattern) Shape() string {
	var b strings.Builder
	b.WriteString(p.Kind.String())
	b.WriteByte(' ')
	if p.Kind == Regex {
		b.WriteString(p.Source) // and no segments follow
	}
	for _, s := range p.Segments {
		b.WriteByte('/')
		if s.IsParam() {
			b.WriteString("{}")
		} else {
			b.WriteString(s.Literal)
		}
	}
	return b.String()
}

// Example returns a request path that the pattern matches, with each
// parameter replaced by value (which must be a non-empty segment). It is
// empty for a Regex.
func (p *Pattern) Example(value string) string {
	if p.Kind == Regex {
		return ""
	}
	if len(p.Segments) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range p.Segments {
		b.WriteByte('/')
		if s.IsParam() {
			b.WriteString(value)
		} else {
			b.WriteString(s.Literal)
		}
	}
	return b.String()
}

// Error is a pattern that cannot be used. Msg says why and what is accepted.
type Error struct {
	Pattern string
	Msg     string
	Err     error // the regexp error, for a bad pathRegex
}

func (e *Error) Error() string { return fmt.Sprintf("%q: %s", e.Pattern, e.Msg) }

func (e *Error) Unwrap() error { return e.Err }

func bad(p, format string, args ...any) *Error {
	return &Error{Pattern: p, Msg: fmt.Sprintf(format, args...)}
}

// ParsePath parses the path of an API: literal segments and {name}
// segments. A parameter is a whole segment, its name is
// [A-Za-z_][A-Za-z0-9_]*, unique within the pattern, and there are at most
// MaxParams of them. The result is Exact when there is no parameter.
//
// Refused, because no request could match them: a path that does not start
// with "/", an empty segment other than a trailing slash, a "." or ".."
// segment (or one that starts with ".;" or "..;"), a backslash, a control
// character, "?", "#" and "%" (write the path decoded: "/a b", not "/a%20b";
// a request's "/a%20b" matches it). A "{" or "}" that is not a whole
// {name} segment is refused too.
func ParsePath(s string) (Pattern, error) {
	p := Pattern{Kind: Exact, Source: s}
	segs, err := split(s, true)
	if err != nil {
		return Pattern{}, err
	}
	for i, seg := range segs {
		if !strings.ContainsAny(seg, "{}") {
			p.Segments = append(p.Segments, Segment{Literal: seg})
			continue
		}
		if seg[0] != '{' || seg[len(seg)-1] != '}' || strings.Count(seg, "{") != 1 || strings.Count(seg, "}") != 1 {
			return Pattern{}, bad(s, "segment %d (%q) is not a parameter: a parameter is a whole segment {name}; braces are accepted nowhere else", i+1, seg)
		}
		name := seg[1 : len(seg)-1]
		if !validName(name) {
			return Pattern{}, bad(s, "parameter name %q is not accepted: use letters, digits and _, not starting with a digit", name)
		}
		for _, n := range p.Names {
			if n == name {
				return Pattern{}, bad(s, "parameter {%s} appears twice; names must be unique within a path", name)
			}
		}
		if len(p.Names) == MaxParams {
			return Pattern{}, bad(s, "more than %d parameters", MaxParams)
		}
		p.Names = append(p.Names, name)
		p.Segments = append(p.Segments, Segment{Name: name})
	}
	if len(p.Names) > 0 {
		p.Kind = Param
	}
	return p, nil
}

// ParsePrefix parses the pathPrefix of an API: literal segments only; a
// trailing slash is ignored ("/a/" is "/a"), and "/" matches every path.
// The same characters as in ParsePath are refused, and braces too
// (parameters are for path).
func ParsePrefix(s string) (Pattern, error) {
	p := Pattern{Kind: Prefix, Source: s}
	if strings.HasSuffix(s, "//") {
		return Pattern{}, bad(s, "has an empty segment (//), which requests may not contain")
	}
	if s != "/" {
		p.Source = strings.TrimSuffix(s, "/")
	}
	segs, err := split(p.Source, false)
	if err != nil {
		return Pattern{}, err
	}
	for _, seg := range segs {
		if strings.ContainsAny(seg, "{}") {
			return Pattern{}, bad(s, "a pathPrefix holds no parameters or braces; use path for /a/{id}")
		}
		p.Segments = append(p.Segments, Segment{Literal: seg})
	}
	return p, nil
}

// ParseRegex parses the pathRegex of an API: Go regexp syntax (RE2),
// anchored at both ends, matched against the decoded request path.
func ParseRegex(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, bad(s, "empty regular expression")
	}
	re, err := regexp.Compile(`^(?:` + s + `)$`)
	if err != nil {
		return Pattern{}, &Error{Pattern: s, Msg: "not a regular expression (Go RE2 syntax): " + err.Error(), Err: err}
	}
	return Pattern{Kind: Regex, Source: s, Regexp: re}, nil
}

// split returns the segments of a pattern path. withTrailing keeps a
// trailing slash as an empty last segment ("/" is one empty segment);
// without it, "/" has no segment.
func split(s string, withTrailing bool) ([]string, error) {
	if s == "" {
		return nil, bad(s, "empty path")
	}
	if s[0] != '/' {
		return nil, bad(s, "must start with /")
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return nil, bad(s, "holds a control character")
		case c == '\\':
			return nil, bad(s, "holds a backslash, which requests may not contain")
		case c == '?' || c == '#':
			return nil, bad(s, "holds %q: give the path only, without query or fragment", c)
		case c == '%':
			return nil, bad(s, "holds %%: write the path decoded (\"/a b\", not \"/a%%20b\"); requests are decoded before matching")
		}
	}
	if !withTrailing && s == "/" {
		return nil, nil
	}
	segs := strings.Split(s[1:], "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch {
		case seg == "" && !(last && withTrailing):
			return nil, bad(s, "has an empty segment (//), which requests may not contain")
		case dotSegment(seg):
			return nil, bad(s, "has a %q segment, which requests may not contain", seg)
		}
	}
	return segs, nil
}

// dotSegment reports whether seg is "." or "..", alone or followed by
// ";parameters".
func dotSegment(seg string) bool {
	seg, _, _ = strings.Cut(seg, ";")
	return seg == "." || seg == ".."
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ErrDuplicate is wrapped by the error of Seen.Add for a route that an
// earlier one hides.
var ErrDuplicate = errors.New("route identical to an earlier one")

// Seen detects routes that could never be chosen: same host, same pattern
// shape, and a method in common with an earlier route. The zero value is
// ready to use.
type Seen struct {
	m map[string][]seenRoute
}

type seenRoute struct {
	index   int
	methods []string
}

// NormalizeHost is the host as routes compare it: lower case, without a
// trailing dot.
func NormalizeHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// Add records route index (host, pattern, methods; no methods means all)
// and returns an error wrapping ErrDuplicate, naming the earlier route's
// index, when an earlier route has the same host and shape and a method in
// common.
func (s *Seen) Add(index int, host string, p *Pattern, methods []string) error {
	if s.m == nil {
		s.m = map[string][]seenRoute{}
	}
	key := NormalizeHost(host) + " " + p.Shape()
	for _, e := range s.m[key] {
		if m, ok := overlap(e.methods, methods); ok {
			what := "any method"
			if m != "" {
				what = m
			}
			return &DuplicateError{Earlier: e.index, Method: what}
		}
	}
	s.m[key] = append(s.m[key], seenRoute{index, methods})
	return nil
}

// DuplicateError is a route hidden by the earlier route Earlier (an index)
// for Method.
type DuplicateError struct {
	Earlier int
	Method  string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("identical to API #%d for %s, so it would never be chosen for it", e.Earlier+1, e.Method)
}

func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// overlap returns a method that both lists accept ("" when one of them
// accepts every method).
func overlap(a, b []string) (string, bool) {
	if len(a) == 0 && len(b) == 0 {
		return "", true
	}
	if len(a) == 0 {
		return b[0], true
	}
	if len(b) == 0 {
		return a[0], true
	}
	for _, m := range b {
		for _, n := range a {
			if m == n {
				return m, true
			}
		}
	}
	return "", false
}
