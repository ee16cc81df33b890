// Package route compiles the APIs of a group configuration into a routing
// table and matches requests against it. It is pure: no I/O, no locks, no
// regular expressions; a Table is immutable once compiled and safe for
// concurrent use.
//
// A route matches on an optional host (compared without port, case
// insensitively, ignoring a trailing dot), a path (exact) or a path prefix
// (segment-aligned: /sample matches /sample and /sample/x, not /samplex), and
// an optional list of methods. Precedence, highest first:
//
//  1. routes with a host before routes without one;
//  2. exact paths before prefixes;
//  3. longer prefixes before shorter ones;
//  4. the order of the APIs in the configuration.
//
// The first route that matches host, path and method wins. When routes match
// host and path but none allows the method, Match returns a *MethodError
// listing the allowed methods (for a 405 with Allow). Request paths that are
// not clean (see Clean) are refused with ErrBadPath before any matching.
package route

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// Route is one compiled API.
type Route struct {
	Index        int      // position of the API in the configuration's apis list
	Name         string   // API name
	Host         string   // lower case, no trailing dot; empty matches any host
	Path         string   // exact path; empty when Prefix is set
	Prefix       string   // path prefix without trailing slash ("/" for the root); empty when Path is set
	Methods      []string // allowed methods; empty allows any
	Backend      string   // back-end name
	StripPrefix  bool     // remove Prefix before forwarding
	MaxBodyBytes int64    // largest request body accepted (413 above); 0 means no limit
}

// PrefixSegments is the number of path segments of the prefix ("/" has 0,
// "/a/b" has 2): what StripPrefix removes from the request path.
func (r *Route) PrefixSegments() int {
	if r.Prefix == "" || r.Prefix == "/" {
		return 0
	}
	return strings.Count(r.Prefix, "/")
}

// Table is a compiled routing table. It is immutable.
type Table struct {
	routes []*Route // in precedence order
}

// Routes returns the routes in precedence order. Do not modify them.
func (t *Table) Routes() []*Route { return t.routes }

// Compile builds the table for apis. The configuration has been validated;
// Compile still refuses a route it could not match correctly.
func Compile(apis []groupconf.API) (*Table, error) {
	t := &Table{routes: make([]*Route, 0, len(apis))}
	for i, a := range apis {
		r := &Route{
			Index: i, Name: a.Name, Backend: a.Backend, StripPrefix: a.StripPrefix, MaxBodyBytes: a.MaxBodyBytes,
			Host:    strings.TrimSuffix(strings.ToLower(a.Host), "."),
			Methods: slices.Clone(a.Methods),
		}
		switch {
		case a.Path != "" && a.PathPrefix == "":
			if !Clean(a.Path) {
				return nil, fmt.Errorf("compiling API %q: path %q is not a clean path", a.Name, a.Path)
			}
			r.Path = a.Path
		case a.PathPrefix != "" && a.Path == "":
			p := a.PathPrefix
			if len(p) > 1 {
				p = strings.TrimSuffix(p, "/")
			}
			if !Clean(p) {
				return nil, fmt.Errorf("compiling API %q: pathPrefix %q is not a clean path", a.Name, a.PathPrefix)
			}
			r.Prefix = p
		default:
			return nil, fmt.Errorf("compiling API %q: needs exactly one of path or pathPrefix", a.Name)
		}
		for _, m := range r.Methods {
			if m == "" || strings.ToUpper(m) != m {
				return nil, fmt.Errorf("compiling API %q: method %q must be upper case", a.Name, m)
			}
		}
		t.routes = append(t.routes, r)
	}
	slices.SortStableFunc(t.routes, func(a, b *Route) int {
		if (a.Host != "") != (b.Host != "") {
			if a.Host != "" {
				return -1
			}
			return 1
		}
		if (a.Path != "") != (b.Path != "") {
			if a.Path != "" {
				return -1
			}
			return 1
		}
		return len(b.Prefix) - len(a.Prefix) // 0 for two exact paths
	})
	return t, nil
}

// ErrNotFound means that no route matches the host and path.
var ErrNotFound = errors.New("no route matches")

// ErrBadPath means that the request path is not clean (see Clean).
var ErrBadPath = errors.New("request path is not clean")

// MethodError means that routes match the host and path, but none allows the
// method. Allow lists the methods that would match, sorted, without repeats.
type MethodError struct {
	Method string
	Allow  []string
}

func (e *MethodError) Error() string {
	return fmt.Sprintf("method %s not allowed; allowed: %s", e.Method, strings.Join(e.Allow, ", "))
}

// Match finds the route for a request. host is the Host header (a port is
// ignored); escapedPath is the path as the client sent it, still escaped
// (url.URL.EscapedPath). It returns ErrBadPath, ErrNotFound or a
// *MethodError when no route is found. Match allocates nothing on success
// unless the path holds percent-escapes.
func (t *Table) Match(method, host, escapedPath string) (*Route, error) {
	if !Clean(escapedPath) {
		return nil, ErrBadPath
	}
	path := escapedPath
	if strings.IndexByte(path, '%') >= 0 {
		p, err := url.PathUnescape(path)
		if err != nil {
			return nil, ErrBadPath
		}
		path = p
	}
	host = hostOnly(host)
	var allow []string
	for _, r := range t.routes {
		if r.Host != "" && !strings.EqualFold(r.Host, host) {
			continue
		}
		if !r.matchPath(path) {
			continue
		}
		if len(r.Methods) == 0 || slices.Contains(r.Methods, method) {
			return r, nil
		}
		allow = append(allow, r.Methods...)
	}
	if allow == nil {
		return nil, ErrNotFound
	}
	slices.Sort(allow)
	return nil, &MethodError{Method: method, Allow: slices.Compact(allow)}
}

func (r *Route) matchPath(path string) bool {
	if r.Path != "" {
		return path == r.Path
	}
	if r.Prefix == "/" {
		return true
	}
	rest, ok := strings.CutPrefix(path, r.Prefix)
	return ok && (rest == "" || rest[0] == '/')
}

// hostOnly strips the port, IPv6 brackets and a trailing dot from a Host
// header value.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// Clean reports whether an escaped request path is in canonical form: it
// starts with "/", has no empty segment inside it ("//"), no "." or ".."
// segment, no backslash, and no percent-escape of ".", "/" or "\" (%2e,
// %2f, %5c in either case), nor of NUL (%00). A trailing slash is allowed.
// Such paths are refused rather than normalised, so that the gateway and the
// back end cannot disagree about which resource a path names.
func Clean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			switch c {
			case '\\':
				return false
			case '%':
				if i+2 >= len(p) {
					return false
				}
				h, l := p[i+1], lower(p[i+2])
				if (h == '2' && (l == 'e' || l == 'f')) || (h == '5' && l == 'c') || (h == '0' && l == '0') {
					return false
				}
				continue
			}
			if c != '/' {
				continue
			}
		}
		seg := p[segStart:i]
		switch {
		case seg == "" && i < len(p): // "//"
			return false
		case seg == "." || seg == "..":
			return false
		}
		segStart = i + 1
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
