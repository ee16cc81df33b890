package forwarded

import (
	"bytes"
	"errors"
	"net/netip"
	"unsafe"
)

// NodeKind says what a for= or by= parameter (or an X-Forwarded-For entry)
// holds.
type NodeKind uint8

const (
	NodeNone       NodeKind = iota // the parameter is absent
	NodeIP                         // an IPv4 or IPv6 address, with or without a port
	NodeUnknown                    // "unknown": the proxy does not know
	NodeObfuscated                 // an obfuscated identifier ("_hidden")
	NodeInvalid                    // something that is none of the above
)

// Node is the value of a for= or by= parameter, or one X-Forwarded-For
// entry. Addr is valid only for NodeIP; it is unmapped (an IPv4-mapped IPv6
// address is reported as IPv4) and never has a zone.
type Node struct {
	Kind NodeKind
	Addr netip.Addr
	Port uint16 // 0 when absent or obfuscated
}

// Element is one forwarded-element of a Forwarded field (RFC 7239 §4).
// Proto and Host are the values as received (the content of a quoted
// string, without the quotes); they alias the parsed input. A quoted value
// that holds a quoted-pair (a backslash escape) is kept as received, escapes
// included: no valid node, scheme or host needs one.
type Element struct {
	For, By     Node
	Proto, Host []byte
}

var (
	closeBracket = []byte{']'}
	colon        = []byte{':'}
)

// ErrSyntax is returned, wrapped in nothing, for a forwarded-element that
// does not follow RFC 7239's grammar (or repeats a parameter).
var ErrSyntax = errors.New("malformed Forwarded element")

// ParseElement parses the first forwarded-element of v, a Forwarded field
// value (a comma-separated list of elements), and returns it with the rest of
// v after the comma that ends it. Empty list members ("a,,b") are skipped.
// ok is false when v holds no further element. On a syntax error, err is
// ErrSyntax and rest starts after the next comma that is outside a quoted
// string (nil when there is none), so that a caller can go on with the next
// element. ParseElement allocates nothing.
//
// Parameter names are case-insensitive; parameters other than for, by,
// proto and host are skipped. Whitespace is allowed around ',' and ';' but
// not around '='. An unquoted value may hold ':', '[' and ']' besides token
// characters (a lenient reading of for=192.0.2.1:80, which RFC 7239 wants
// quoted).
func ParseElement(v []byte) (e Element, rest []byte, ok bool, err error) {
	i := skipListSep(v, 0)
	if i >= len(v) {
		return Element{}, nil, false, nil
	}
	var seen uint8 // bit per parameter seen: for, by, proto, host
	for {
		i = skipOWS(v, i)
		if i < len(v) && v[i] == ';' { // empty pair: "for=a;;by=b" or a leading ';'
			i++
			continue
		}
		if i >= len(v) || v[i] == ',' {
			break
		}
		// forwarded-pair = token "=" value
		ns := i
		for i < len(v) && isTchar(v[i]) {
			i++
		}
		if i == ns || i >= len(v) || v[i] != '=' {
			return Element{}, skipElement(v, i), true, ErrSyntax
		}
		name := v[ns:i]
		i++
		var val []byte
		if i < len(v) && v[i] == '"' {
			end, ok := quotedEnd(v, i)
			if !ok {
				return Element{}, nil, true, ErrSyntax
			}
			val = v[i+1 : end]
			i = end + 1
		} else {
			vs := i
			for i < len(v) && isValueChar(v[i]) {
				i++
			}
			if i == vs {
				return Element{}, skipElement(v, i), true, ErrSyntax
			}
			val = v[vs:i]
		}
		var bit uint8
		switch {
		case equalFold(name, "for"):
			bit, e.For = 1, ParseNode(val)
		case equalFold(name, "by"):
			bit, e.By = 2, ParseNode(val)
		case equalFold(name, "proto"):
			bit, e.Proto = 4, val
		case equalFold(name, "host"):
			bit, e.Host = 8, val
		}
		if seen&bit != 0 {
			return Element{}, skipElement(v, i), true, ErrSyntax
		}
		seen |= bit
		i = skipOWS(v, i)
		switch {
		case i >= len(v) || v[i] == ',':
		case v[i] == ';':
			i++
			continue
		default:
			return Element{}, skipElement(v, i), true, ErrSyntax
		}
		break
	}
	if i < len(v) { // at a ','
		i++
	}
	return e, v[i:], true, nil
}

// ParseNode reads a node (RFC 7239 §6): an IPv4 address, a bracketed IPv6
// address, "unknown" or an obfuscated identifier, each with an optional
// ":port" (digits or an obfuscated port). An unbracketed IPv6 address is
// accepted as well (without a port).
func ParseNode(b []byte) Node {
	if len(b) == 0 {
		return Node{Kind: NodeInvalid}
	}
	host, port := b, []byte(nil)
	switch {
	case b[0] == '[':
		h, r, found := bytes.Cut(b[1:], closeBracket)
		if !found {
			return Node{Kind: NodeInvalid}
		}
		host = h
		switch {
		case len(r) == 0:
		case r[0] == ':':
			port = r[1:]
			if len(port) == 0 {
				return Node{Kind: NodeInvalid}
			}
		default:
			return Node{Kind: NodeInvalid}
		}
		a, ok := parseAddr(host)
		if !ok || !a.Is6() {
			return Node{Kind: NodeInvalid}
		}
		return withPort(Node{Kind: NodeIP, Addr: a.Unmap()}, port)
	default:
		switch bytes.Count(b, colon) {
		case 0:
		case 1:
			host, port, _ = bytes.Cut(b, colon)
			if len(port) == 0 {
				return Node{Kind: NodeInvalid}
			}
		default: // a bare IPv6 address, no port possible
			a, ok := parseAddr(b)
			if !ok {
				return Node{Kind: NodeInvalid}
			}
			return Node{Kind: NodeIP, Addr: a.Unmap()}
		}
	}
	switch {
	case len(host) == 0:
		return Node{Kind: NodeInvalid}
	case equalFold(host, "unknown"):
		return withPort(Node{Kind: NodeUnknown}, port)
	case host[0] == '_':
		if !isObfuscated(host) {
			return Node{Kind: NodeInvalid}
		}
		return withPort(Node{Kind: NodeObfuscated}, port)
	}
	// host holds no ':', so it is no IPv6 address; a failed parse is the
	// zero Addr, which is not IPv4 either.
	a, _ := parseAddr(host)
	if !a.Is4() {
		return Node{Kind: NodeInvalid}
	}
	return withPort(Node{Kind: NodeIP, Addr: a}, port)
}

// withPort adds the port p (nil for none) to n, or makes n invalid when p is
// neither digits nor an obfuscated port.
func withPort(n Node, p []byte) Node {
	if p == nil {
		return n
	}
	if p[0] == '_' {
		if !isObfuscated(p) {
			return Node{Kind: NodeInvalid}
		}
		return n
	}
	if len(p) > 5 {
		return Node{Kind: NodeInvalid}
	}
	v := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return Node{Kind: NodeInvalid}
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return Node{Kind: NodeInvalid}
	}
	n.Port = uint16(v)
	return n
}

// NextXFF returns the first entry of v, an X-Forwarded-For field value (a
// comma-separated list), and the rest of v after its comma; ok is false when
// no entry is left. Empty list members are skipped. An entry is an IPv4
// address with an optional ":port", an IPv6 address bare or in brackets with
// an optional ":port", "unknown", an obfuscated identifier, or anything
// else (NodeInvalid). NextXFF allocates nothing.
func NextXFF(v []byte) (n Node, rest []byte, ok bool) {
	i := skipListSep(v, 0)
	if i >= len(v) {
		return Node{}, nil, false
	}
	s := i
	for i < len(v) && v[i] != ',' {
		i++
	}
	e := i
	// v[s] is not OWS (skipListSep), so e stays above s.
	for v[e-1] == ' ' || v[e-1] == '\t' {
		e--
	}
	if i < len(v) {
		i++
	}
	return ParseNode(v[s:e]), v[i:], true
}

// parseAddr parses an IP address (IPv4 without leading zeros, IPv6 without
// a zone) without allocating: what netip.ParseAddr would refuse with an
// error (an allocation) is refused before it when it is empty, longer than
// any address (45 bytes) or holds a byte that no address holds.
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 {
		return netip.Addr{}, false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
			return netip.Addr{}, false
		}
	}
	// A view, not a copy: the string does not outlive the call (an error
	// that quotes it is dropped here).
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// quotedEnd returns the index of the quote that closes the quoted string
// starting at v[i] == '"'; ok is false when it is not closed or holds a
// byte that a quoted string cannot.
func quotedEnd(v []byte, i int) (end int, ok bool) {
	for j := i + 1; j < len(v); j++ {
		switch c := v[j]; {
		case c == '\\':
			j++
			if j >= len(v) || !isQdtextOrVchar(v[j]) {
				return
			}
		case c == '"':
			return j, true
		case !isQdtextOrVchar(c):
			return
		}
	}
	return
}

// skipElement returns what follows the comma that ends the element in which
// v[i] is, skipping quoted strings; nil when no comma follows (or a quoted
// string is not closed).
func skipElement(v []byte, i int) []byte {
	for i < len(v) {
		switch v[i] {
		case ',':
			return v[i+1:]
		case '"':
			end, ok := quotedEnd(v, i)
			if !ok {
				return nil
			}
			i = end + 1
		default:
			i++
		}
	}
	return nil
}

func skipOWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

func skipListSep(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
		i++
	}
	return i
}

// isTchar reports whether c is an RFC 7230 token character.
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isValueChar(c byte) bool { return isTchar(c) || c == ':' || c == '[' || c == ']' }

// isQdtextOrVchar: HTAB, SP, visible ASCII and obs-text (as RFC 7230
// qdtext, plus '"' and '\\' which the caller handles first).
func isQdtextOrVchar(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f }

func isObfuscated(b []byte) bool {
	if len(b) < 2 || b[0] != '_' {
		return false
	}
	for _, c := range b { // b[0], '_', is in the alphabet
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// equalFold reports whether b equals the lowercase ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		// mutate:equivalent boundary no string compared (for, by, proto, host, unknown, http, https) holds an 'a' or a 'z'
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
