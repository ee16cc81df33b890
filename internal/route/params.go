package route

import (
	"net/url"
	"unsafe"
)

// decodeBuf is the size of the buffer in Params for a decoded path: a path
// with percent-escapes that decodes to more costs one allocation.
const decodeBuf = 512

// Params holds the values of the {name} segments of a matched route. Match
// fills it without allocating: the values are slices of the request path,
// or of a decoded copy held in Params itself. The zero value is empty.
// A Params is used by one goroutine at a time; its values are valid until it
// is passed to Match again, and no longer than the path given to Match.
type Params struct {
	names []string // the route's Params
	spans [MaxParams][2]int32
	path  string // the decoded path, when not in buf
	inBuf bool
	n     int // length of the decoded path in buf
	buf   [decodeBuf]byte
}

func (p *Params) reset() {
	p.names, p.path, p.inBuf = nil, "", false // n counts only when inBuf
}

// Len is the number of parameters.
func (p *Params) Len() int { return len(p.names) }

// Name returns the name of parameter i (0 ≤ i < Len()).
func (p *Params) Name(i int) string { return p.names[i] }

// Value returns the decoded value of parameter i (0 ≤ i < Len()).
func (p *Params) Value(i int) string {
	s := p.spans[i]
	return p.decoded()[s[0]:s[1]]
}

// Get returns the decoded value of the parameter called name, and whether
// the route has one.
func (p *Params) Get(name string) (string, bool) {
	for i, n := range p.names {
		if n == name {
			return p.Value(i), true
		}
	}
	return "", false
}

// Path returns the decoded request path that was matched.
func (p *Params) Path() string { return p.decoded() }

func (p *Params) decoded() string {
	if p.inBuf {
		return unsafe.String(&p.buf[0], p.n)
	}
	return p.path
}

// decode returns the decoded form of a clean escaped path: in p's buffer
// when it fits, else newly allocated. It reports false for a malformed
// escape. Clean has checked that two bytes follow every '%'.
func decode(s string, p *Params) (string, bool) {
	if p == nil || len(s) > decodeBuf {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		if p != nil {
			p.path = d
		}
		return d, true
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = h<<4 | l
			i += 2
		}
		p.buf[n] = c
		n++
	}
	p.inBuf, p.n = true, n
	return unsafe.String(&p.buf[0], n), true
}

func unhex(c byte) (v byte, ok bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return
}

// Clean reports whether an escaped request path is in canonical form: it
// starts with "/", has no empty segment inside it ("//"), no "." or ".."
// segment (nor one that starts with ".;" or "..;", which servlet
// containers read as "." and ".."), no backslash, and no percent-escape of
// ".", "/" or "\" (%2e, %2f, %5c in either case), nor of NUL (%00). A
// trailing slash is allowed. Such paths are refused rather than normalised,
// so that the gateway and the back end cannot disagree about which resource
// a path names.
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
		case dotSegment(seg):
			return false
		}
		segStart = i + 1
	}
	return true
}

// dotSegment reports whether an escaped segment is "." or "..", alone or
// followed by ";" (raw or as %3b).
func dotSegment(seg string) bool {
	switch {
	case len(seg) >= 1 && seg[0] == '.':
		seg = seg[1:]
	default:
		return false
	}
	if len(seg) >= 1 && seg[0] == '.' {
		seg = seg[1:]
	}
	return seg == "" || seg[0] == ';' || (len(seg) >= 3 && seg[0] == '%' && seg[1] == '3' && lower(seg[2]) == 'b')
}

func lower(c byte) byte {
	// mutate:equivalent boundary lower's result is compared only with 'b', 'c', 'e' and 'f': 'A' and 'Z' lowered or not match none of them
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
