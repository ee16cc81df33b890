// Package route compiles the APIs of a group configuration into a routing
// table and matches requests against it. It is pure: no I/O, no locks; a
// Table is immutable once compiled and safe for concurrent use, and Match
// allocates nothing (except the *MethodError of a 405).
//
// A route matches on an optional host (compared without port, case
// insensitively, ignoring a trailing dot), a path, and an optional list of
// methods. The path is one of:
//
//   - path: an exact path ("/orders"), or a pattern with {name} segments
//     ("/orders/{id}/lines/{line}"), each matching one non-empty segment;
//   - pathRegex: a Go regular expression, anchored, matched against the
//     decoded path (the only routes that run a regular expression);
//   - pathPrefix: a segment-aligned prefix (/sample matches /sample and
//     /sample/x, not /samplex).
//
// Precedence, highest first (docs/routing.md has the table):
//
//  1. routes with a host before routes without one;
//  2. exact paths, then {param} paths, then regular expressions, then
//     prefixes;
//  3. among {param} paths, more literal segments first, then literal before
//     parameter segment by segment (/a/{x} before /{y}/b);
//  4. among prefixes, the longer first;
//  5. the order of the APIs in the configuration.
//
// The first route in that order that matches host, path and method wins: a
// route that matches the path but not the method lets a later one answer.
// When routes match host and path but none allows the method, Match returns
// a *MethodError listing the methods of those routes (for a 405 with Allow).
// Request paths that are not clean (see Clean) are refused with ErrBadPath
// before any matching; the others are matched after decoding their
// percent-escapes, so /%61dmin is /admin.
//
// The table is, per host and for the routes without a host, a trie of path
// segments (literal children in a slice or a map, one parameter child, the
// prefix routes on the node where their prefix ends, the exact and {param}
// routes on the node where their path ends) plus the list of regular
// expressions. Every route has a rank (its position in precedence order);
// Match walks the trie depth first and keeps the best-ranked route that
// allows the method, skipping subtrees whose best rank cannot win.
package route

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/route/pattern"
)

// Kind is the kind of a route's path: pattern.Exact, Param, Regex or Prefix.
type Kind = pattern.Kind

// MaxParams is the largest number of {name} segments in a path.
const MaxParams = pattern.MaxParams

// Route is one compiled API.
type Route struct {
	Index        int      // position of the API in the configuration's apis list
	Name         string   // API name
	Host         string   // lower case, no trailing dot; empty matches any host
	Kind         Kind     // which of Path, Regex and Prefix is set
	Path         string   // exact path, or pattern with {name} segments
	Regex        string   // regular expression as written (unanchored form)
	Prefix       string   // path prefix without trailing slash ("/" for the root)
	Params       []string // names of the {name} segments, in order
	Methods      []string // allowed methods; empty allows any
	Backend      string   // back-end name
	StripPrefix  bool     // remove Prefix before forwarding
	MaxBodyBytes int64    // largest request body accepted (413 above); 0 means no limit

	rank int            // position in precedence order
	mask uint64         // bits of Methods in Table.methods; 0 allows any
	re   *regexp.Regexp // anchored; Regex only
	pat  pattern.Pattern
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
	routes  []*Route // in precedence order
	methods []string // every method named by a route, sorted: bit i of a mask is methods[i]
	hosts   map[string]*hostTable
	any     *hostTable // routes without a host
}

// hostTable holds the routes of one host (or of every host).
type hostTable struct {
	root  *node
	regex []*Route // in precedence order
}

// node is a trie node: the path segments consumed so far are its position.
type node struct {
	keys    []string // literal children (when few)
	kids    []*node
	lit     map[string]*node // literal children (when many; keys and kids are then nil)
	param   *node            // the {name} child
	leaf    []*Route         // exact and {param} routes whose path ends here, in precedence order
	prefix  []*Route         // prefix routes whose prefix ends here, in precedence order
	minRank int              // best rank in this subtree
}

// mapAbove is the number of literal children above which a node uses a map.
// It is a matter of speed only: child finds the same node in either.
const mapAbove = 8 // mutate:equivalent const a speed threshold: child finds the same node in the slice and in the map

func (n *node) child(seg string) *node {
	if n.lit != nil {
		return n.lit[seg]
	}
	for i, k := range n.keys {
		if k == seg {
			return n.kids[i]
		}
	}
	return nil
}

func (n *node) addChild(seg string) *node {
	if c := n.child(seg); c != nil {
		return c
	}
	c := &node{}
	n.keys = append(n.keys, seg)
	n.kids = append(n.kids, c)
	return c
}

// finish computes minRank and turns large child lists into maps.
func (n *node) finish() int {
	best := math.MaxInt
	if len(n.leaf) > 0 {
		best = min(best, n.leaf[0].rank)
	}
	if len(n.prefix) > 0 {
		best = min(best, n.prefix[0].rank)
	}
	for _, c := range n.kids {
		best = min(best, c.finish())
	}
	if n.param != nil {
		best = min(best, n.param.finish())
	}
	// mutate:equivalent * which nodes use a map is a matter of speed only (see mapAbove)
	if len(n.keys) > mapAbove {
		n.lit = make(map[string]*node, len(n.keys))
		for i, k := range n.keys {
			n.lit[k] = n.kids[i]
		}
		n.keys, n.kids = nil, nil // mutate:equivalent delete-stmt child reads lit first: the slices are only memory
	}
	n.minRank = best
	return best
}

// Routes returns the routes in precedence order. Do not modify them.
func (t *Table) Routes() []*Route { return t.routes }

// Compile builds the table for apis. The configuration has been validated
// (groupconf applies the same checks, with file and line); Compile still
// refuses a route it could not match correctly: a bad pattern (see
// pattern.ParsePath), a route that an earlier one hides, more than 64
// distinct methods.
func Compile(apis []groupconf.API) (*Table, error) {
	t := &Table{routes: make([]*Route, 0, len(apis)), hosts: map[string]*hostTable{}}
	var seen pattern.Seen
	for i, a := range apis {
		r := &Route{
			Index: i, Name: a.Name, Backend: a.Backend, StripPrefix: a.StripPrefix, MaxBodyBytes: a.MaxBodyBytes,
			Host:    pattern.NormalizeHost(a.Host),
			Methods: slices.Clone(a.RouteMethods()),
		}
		if len(r.Host) > 255 {
			return nil, fmt.Errorf("compiling API %q: host is longer than 255 bytes", a.Name)
		}
		var err error
		switch {
		case a.Path != "" && a.PathPrefix == "" && a.PathRegex == "":
			r.pat, err = pattern.ParsePath(a.Path)
			r.Path, r.Params = a.Path, r.pat.Names
		case a.PathPrefix != "" && a.Path == "" && a.PathRegex == "":
			r.pat, err = pattern.ParsePrefix(a.PathPrefix)
			r.Prefix = r.pat.Source
		case a.PathRegex != "" && a.Path == "" && a.PathPrefix == "":
			r.pat, err = pattern.ParseRegex(a.PathRegex)
			r.Regex, r.re = a.PathRegex, r.pat.Regexp
		default:
			return nil, fmt.Errorf("compiling API %q: needs exactly one of path, pathPrefix or pathRegex", a.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("compiling API %q: %w", a.Name, err)
		}
		r.Kind = r.pat.Kind
		for _, m := range r.Methods {
			if m == "" || strings.ToUpper(m) != m {
				return nil, fmt.Errorf("compiling API %q: method %q must be upper case", a.Name, m)
			}
			if !slices.Contains(t.methods, m) {
				t.methods = append(t.methods, m)
			}
		}
		// Add's only error is a *DuplicateError.
		var de *pattern.DuplicateError
		if err := seen.Add(i, r.Host, &r.pat, r.Methods); errors.As(err, &de) {
			return nil, fmt.Errorf("compiling API %q: same host and path as API %q: %w", a.Name, apis[de.Earlier].Name, err)
		}
		t.routes = append(t.routes, r)
	}
	if len(t.methods) > 64 {
		return nil, fmt.Errorf("compiling routes: %d distinct methods, at most 64 are supported", len(t.methods))
	}
	slices.Sort(t.methods)
	sort.SliceStable(t.routes, func(i, j int) bool { return before(t.routes[i], t.routes[j]) })
	for rank, r := range t.routes {
		r.rank = rank
		for _, m := range r.Methods {
			r.mask |= 1 << slices.Index(t.methods, m)
		}
		ht := t.any
		if r.Host != "" {
			ht = t.hosts[r.Host]
		}
		if ht == nil {
			ht = &hostTable{root: &node{}}
			if r.Host != "" {
				t.hosts[r.Host] = ht
			} else {
				t.any = ht
			}
		}
		if r.Kind == pattern.Regex {
			ht.regex = append(ht.regex, r)
		} else {
			ht.root.insert(r)
		}
	}
	// finish only prunes the search (minRank) and speeds it (maps): without
	// it, Match visits more nodes and finds the same route.
	for _, ht := range t.hosts {
		ht.root.finish() // mutate:equivalent delete-stmt finish only prunes and speeds the search: Match finds the same route without it
	}
	if t.any != nil {
		t.any.root.finish() // mutate:equivalent delete-stmt finish only prunes and speeds the search: Match finds the same route without it
	}
	return t, nil
}

// insert adds r, an exact, {param} or prefix route, to the trie under n.
func (n *node) insert(r *Route) {
	for _, s := range r.pat.Segments {
		if s.IsParam() {
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
			continue
		}
		n = n.addChild(s.Literal)
	}
	if r.Kind == pattern.Prefix {
		n.prefix = append(n.prefix, r)
	} else {
		n.leaf = append(n.leaf, r)
	}
}

// before reports whether route a comes before route b in precedence order
// (see the package comment).
func before(a, b *Route) bool {
	if (a.Host != "") != (b.Host != "") {
		return a.Host != ""
	}
	if a.Kind != b.Kind {
		return a.Kind < b.Kind // mutate:equivalent boundary reached only when the two differ (the != above): never equal
	}
	switch a.Kind {
	case pattern.Param:
		if la, lb := a.pat.Literals(), b.pat.Literals(); la != lb {
			return la > lb // mutate:equivalent boundary reached only when the two differ (the != above): never equal
		}
		for i := 0; i < len(a.pat.Segments) && i < len(b.pat.Segments); i++ {
			if pa, pb := a.pat.Segments[i].IsParam(), b.pat.Segments[i].IsParam(); pa != pb {
				return pb
			}
		}
	case pattern.Prefix:
		if len(a.Prefix) != len(b.Prefix) {
			return len(a.Prefix) > len(b.Prefix) // mutate:equivalent boundary reached only when the two differ (the != above): never equal
		}
	}
	return a.Index < b.Index // mutate:equivalent boundary Index is unique: two routes never have the same
}

// ErrNotFound means that no route matches the host and path.
var ErrNotFound = errors.New("no route matches")

// ErrBadPath means that the request path is not clean (see Clean) or holds a
// malformed percent-escape.
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
// (h1.Request.Path). It returns ErrBadPath, ErrNotFound or a *MethodError
// when no route is found.
//
// When p is not nil, Match fills it with the values of the matched route's
// {name} segments (and empties it when no route is found). Match keeps no
// reference to its arguments after it returns, except in p: p's values
// point into escapedPath, or into p itself when the path holds
// percent-escapes, so they are valid while both are. Match allocates
// nothing, except the *MethodError, and the decoded copy of a path with
// percent-escapes that is longer than p's buffer (or any such path when p
// is nil).
func (t *Table) Match(method, host, escapedPath string, p *Params) (*Route, error) {
	if p != nil {
		p.reset()
	}
	if !Clean(escapedPath) {
		return nil, ErrBadPath
	}
	path := escapedPath
	if strings.Contains(path, "%") {
		var ok bool
		if path, ok = decode(escapedPath, p); !ok {
			return nil, ErrBadPath
		}
	} else if p != nil {
		p.path = path
	}
	m := matcher{path: path, bit: t.methodBit(method), bestRank: math.MaxInt}
	if ht := t.hostTable(host); ht != nil {
		m.search(ht)
	}
	if t.any != nil {
		m.search(t.any)
	}
	if m.best != nil {
		if p != nil {
			p.names = m.best.Params
			p.spans = m.bestSpans
		}
		return m.best, nil
	}
	if m.allow == 0 {
		return nil, ErrNotFound
	}
	e := &MethodError{Method: method}
	for i, name := range t.methods {
		if m.allow&(1<<i) != 0 {
			e.Allow = append(e.Allow, name)
		}
	}
	return nil, e
}

func (t *Table) methodBit(method string) uint64 {
	for i, m := range t.methods {
		if m == method {
			return 1 << i
		}
	}
	return 0
}

func (t *Table) hostTable(host string) *hostTable {
	if len(t.hosts) == 0 {
		return nil // mutate:equivalent delete-stmt a shortcut: with no host routes every lookup below finds nothing
	}
	h := hostOnly(host)
	if ht := t.hosts[h]; ht != nil {
		return ht
	}
	if len(h) > 255 {
		return nil
	}
	var b [255]byte
	upper := false
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			upper = true
		}
		b[i] = c
	}
	if !upper {
		return nil // mutate:equivalent delete-stmt a shortcut: the lookup of h itself failed above
	}
	return t.hosts[string(b[:len(h)])]
}

// matcher is the state of one Match.
type matcher struct {
	path      string // decoded
	bit       uint64 // the request method's bit; 0 when no route names it
	best      *Route
	bestRank  int
	allow     uint64 // methods of routes that match the path but not the method
	cur       [MaxParams][2]int32
	bestSpans [MaxParams][2]int32
}

func (m *matcher) search(ht *hostTable) {
	m.walk(ht.root, 1, 0)
	for _, r := range ht.regex {
		// Regexes are in rank order: none from here on can win.
		// mutate:equivalent boundary no regex of this list is the best yet, so a rank equal to the best's cannot occur
		if r.rank >= m.bestRank {
			break // mutate:equivalent delete-stmt consider refuses every later regex: this saves their matching only
		}
		if r.re.MatchString(m.path) {
			m.consider(r, 0) // mutate:equivalent const a regex route has no parameters: its spans are never read
		}
	}
}

// walk visits node n; i is the index in the path where the next segment
// starts (past the end when every segment is consumed), k the number of
// parameters captured on the way.
func (m *matcher) walk(n *node, i, k int) {
	// mutate:equivalent boundary pruning only: a subtree whose best rank equals the best holds the best itself
	if n.minRank >= m.bestRank {
		return // mutate:equivalent delete-stmt pruning only: no route of this subtree can beat the best
	}
	p := m.path
	if i > len(p) {
		for _, r := range n.leaf {
			m.consider(r, k)
		}
	} else {
		seg, _, _ := strings.Cut(p[i:], "/")
		j := i + len(seg)
		if c := n.child(seg); c != nil {
			m.walk(c, j+1, k)
		}
		// mutate:equivalent boundary no pattern has more than MaxParams parameters: k < MaxParams at every param node
		if n.param != nil && seg != "" && k < MaxParams {
			m.cur[k] = [2]int32{int32(i), int32(j)}
			m.walk(n.param, j+1, k+1)
		}
	}
	for _, r := range n.prefix {
		m.consider(r, k)
	}
}

// consider offers route r, which matches the path, with k parameters
// captured: it becomes the best when its rank is better and it allows the
// method; its methods are allowed ones when its rank is better and it does
// not.
func (m *matcher) consider(r *Route, k int) {
	// mutate:equivalent boundary a route sits on one trie node, reached with the same spans: offered again, it changes nothing
	if r.rank >= m.bestRank {
		return
	}
	if r.mask == 0 || r.mask&m.bit != 0 {
		m.best, m.bestRank = r, r.rank
		copy(m.bestSpans[:k], m.cur[:k])
	} else {
		m.allow |= r.mask
	}
}

// hostOnly strips the port, IPv6 brackets and a trailing dot from a Host
// header value.
func hostOnly(h string) string {
	if rest, ok := strings.CutPrefix(h, "["); ok {
		if addr, _, found := strings.Cut(rest, "]"); found {
			return addr
		}
		return h
	}
	if strings.Count(h, ":") == 1 { // a name or IPv4 address with a port
		h, _, _ = strings.Cut(h, ":")
	}
	return strings.TrimSuffix(h, ".")
}
