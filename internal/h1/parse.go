package h1

import "bytes"

// Character classes of RFC 9110/9112.
var (
	tchar    [256]bool // token characters (method, field names, codings)
	vchar    [256]bool // field-value bytes: VCHAR, obs-text, SP, HTAB
	tgtchar  [256]bool // request-target bytes: VCHAR except '#'
	hostchar [256]bool // uri-host [ ":" port ], IP literals included
	hexval   [256]int8 // hex digit value, or -1
)

func init() {
	for c := 0; c < 256; c++ {
		hexval[c] = -1
		switch {
		case c >= '0' && c <= '9':
			hexval[c] = int8(c - '0')
		case c >= 'a' && c <= 'f':
			hexval[c] = int8(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			hexval[c] = int8(c - 'A' + 10)
		}
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		tchar[c] = alnum || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), byte(c)) >= 0
		vchar[c] = c == '\t' || c >= 0x20 && c != 0x7f
		tgtchar[c] = c > 0x20 && c < 0x7f && c != '#'
		// No '@': an authority with userinfo is refused.
		hostchar[c] = alnum || bytes.IndexByte([]byte("-._~!$&'()*+,;=:[]%"), byte(c)) >= 0
	}
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func trimOWS(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isOWS(b[i]) {
		i++
	}
	for j > i && isOWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// nextElem splits the comma-separated list v at its first comma and returns
// the first element without surrounding whitespace.
func nextElem(v []byte) (elem, rest []byte, more bool) {
	i := bytes.IndexByte(v, ',')
	if i < 0 {
		return trimOWS(v), nil, false
	}
	return trimOWS(v[:i]), v[i+1:], true
}

// hasToken reports whether the comma-separated list v contains tok
// (ASCII case-insensitive).
func hasToken(v []byte, tok string) bool {
	for more := true; more; {
		var e []byte
		e, v, more = nextElem(v)
		if EqualFoldString(e, tok) {
			return true
		}
	}
	return false
}

// parseFields parses field lines, each ending in CRLF (the caller has checked
// that every LF follows a CR), into h. It refuses obs-fold, whitespace between
// name and colon, names that are not tokens, and values with CTLs.
func parseFields(b []byte, h *Header) *ProtocolError {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 1 {
			return protoErr(400, "bare lf in field line")
		}
		line := b[:i-1]
		b = b[i+1:]
		if len(line) == 0 {
			return protoErr(400, "empty field line")
		}
		if isOWS(line[0]) {
			return protoErr(400, "obsolete line folding")
		}
		j := 0
		for j < len(line) && tchar[line[j]] {
			j++
		}
		if j == len(line) {
			return protoErr(400, "field line without colon")
		}
		if line[j] != ':' {
			if isOWS(line[j]) {
				return protoErr(400, "whitespace between field name and colon")
			}
			return protoErr(400, "invalid byte in field name")
		}
		if j == 0 {
			return protoErr(400, "empty field name")
		}
		v := trimOWS(line[j+1:])
		for _, c := range v {
			if !vchar[c] {
				return protoErr(400, "invalid byte in field value")
			}
		}
		h.f = append(h.f, field{line[:j:j], v[:len(v):len(v)]})
	}
	return nil
}

// parseContentLength parses one Content-Length field value: 1 to 18 digits,
// or a list of identical such values. It returns -1 when invalid.
func parseContentLength(v []byte) int64 {
	var n int64
	for first, more := true, true; more; first = false {
		var e []byte
		e, v, more = nextElem(v)
		if len(e) == 0 || len(e) > 18 {
			return -1
		}
		var x int64
		for _, c := range e {
			if c < '0' || c > '9' {
				return -1
			}
			x = x*10 + int64(c-'0')
		}
		if !first && x != n {
			return -1
		}
		n = x
	}
	return n
}

// teState accumulates the Transfer-Encoding fields of a message.
type teState struct {
	present   bool
	chunked   int  // "chunked" elements seen
	unknown   bool // a coding other than chunked
	malformed bool // an empty element or one that is not a token
}

func (t *teState) add(v []byte) {
	t.present = true
	for more := true; more; {
		var e []byte
		e, v, more = nextElem(v)
		if len(e) == 0 {
			t.malformed = true
		}
		for _, c := range e {
			if !tchar[c] {
				t.malformed = true
			}
		}
		if EqualFoldString(e, "chunked") {
			t.chunked++
		} else {
			t.unknown = true
		}
	}
}

// check returns nil when the fields say exactly "chunked".
func (t *teState) check() *ProtocolError {
	switch {
	case t.malformed:
		return protoErr(400, "malformed transfer-encoding")
	case t.unknown:
		return protoErr(501, "unsupported transfer-coding")
	case t.chunked != 1:
		return protoErr(400, "chunked applied more than once")
	}
	return nil
}

// parseRequestLine parses "method SP request-target SP HTTP-version" (line
// without its CRLF) into r. It does not look at headers.
func parseRequestLine(line []byte, r *Request) *ProtocolError {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return protoErr(400, "malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return protoErr(400, "malformed request line")
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	// The version first, so that an HTTP/2 preface gets 505.
	switch {
	case len(version) == 8 && string(version[:7]) == "HTTP/1." && isDigit(version[7]):
		// A higher minor version is answered as 1.1 (RFC 9110 §2.5).
		r.ProtoMinor = int(min(version[7]-'0', 1))
	case len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return protoErr(505, "unsupported http version")
	default:
		return protoErr(400, "malformed http version")
	}
	for _, c := range method {
		if !tchar[c] {
			return protoErr(400, "invalid method")
		}
	}
	if len(target) == 0 {
		return protoErr(400, "empty request target")
	}
	for i, c := range target {
		if !tgtchar[c] {
			return protoErr(400, "invalid byte in request target")
		}
		// A '%' must start a percent-encoded octet (RFC 3986 §2.1).
		if c == '%' && (i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2])) {
			return protoErr(400, "malformed percent-encoding in request target")
		}
	}
	r.Method = method[:len(method):len(method)]
	r.URI = target[:len(target):len(target)]
	r.Host = nil
	switch {
	case target[0] == '/':
		splitPathQuery(r, target)
	case len(target) == 1 && target[0] == '*':
		if string(method) != "OPTIONS" {
			return protoErr(400, "asterisk target with a method other than options")
		}
		r.Path, r.Query = target, nil
	default:
		var rest []byte
		switch {
		case len(target) > 7 && EqualFoldString(target[:7], "http://"):
			rest = target[7:]
		case len(target) > 8 && EqualFoldString(target[:8], "https://"):
			rest = target[8:]
		default:
			return protoErr(400, "unsupported request target form")
		}
		end := len(rest)
		// mutate:equivalent boundary,const at 0 the authority is empty, else it would start with '/' or '?', not in hostchar: refused alike
		if i := bytes.IndexAny(rest, "/?"); i >= 0 {
			end = i
		}
		auth := rest[:end:end]
		if len(auth) == 0 || !validHost(auth) {
			return protoErr(400, "invalid authority in absolute-form target")
		}
		r.Host = auth
		rest = rest[end:]
		switch {
		case len(rest) == 0:
			r.Path, r.Query = slash, nil
		case rest[0] == '?':
			r.Path, r.Query = slash, rest[1:]
		default:
			splitPathQuery(r, rest)
		}
	}
	return nil
}

var slash = []byte("/")

// ValidTarget reports whether t passes the byte rules this engine applies
// to a request-target: visible ASCII except '#', and every '%' followed by
// two hex digits. The HTTP/2 bridge applies them to :path, so that both
// protocols forward only what neither could read two ways.
func ValidTarget(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !tgtchar[c] || c == '%' && (i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2])) {
			return false
		}
	}
	return true
}

// ContentLengthValues returns the length that the Content-Length field
// values vs declare, by the rules of a request head (each 1 to 18 digits,
// comma lists allowed, every value the same), and 0, false when there are
// none or they break them.
func ContentLengthValues(vs []string) (int64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	n := parseContentLength(bytesOf(vs[0]))
	for _, v := range vs {
		if parseContentLength(bytesOf(v)) != n {
			return 0, false
		}
	}
	if n < 0 {
		return 0, false
	}
	return n, true
}

func splitPathQuery(r *Request, t []byte) {
	// mutate:equivalent boundary,const t starts with '/' (both callers), so '?' is never at 0
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		r.Path, r.Query = t[:i:i], t[i+1:]
		return
	}
	r.Path, r.Query = t, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }

// validHost reports whether h has only uri-host[:port] bytes (no '@', so
// no userinfo).
func validHost(h []byte) bool {
	for _, c := range h {
		if !hostchar[c] {
			return false
		}
	}
	return true
}

// interpret validates the framing and connection fields of a parsed request
// head and fills the derived Request fields.
func (r *Request) interpret() *ProtocolError {
	var (
		hosts   int
		host    []byte
		clSeen  bool
		cl      int64 // when clSeen
		te      teState
		connKA  bool
		connUp  bool
		upgrade []byte
		expect  []byte
	)
	r.Close = false
	for i := range r.Header.f {
		name, v := r.Header.f[i].name, r.Header.f[i].value
		switch len(name) {
		case 4:
			if EqualFoldString(name, "host") {
				hosts++
				host = v
			}
		case 6:
			if EqualFoldString(name, "expect") {
				expect = v
			}
		case 7:
			if EqualFoldString(name, "upgrade") {
				upgrade = v
			}
		case 10:
			if EqualFoldString(name, "connection") {
				for more := true; more; {
					var e []byte
					e, v, more = nextElem(v)
					switch {
					case EqualFoldString(e, "close"):
						r.Close = true
					case EqualFoldString(e, "keep-alive"):
						connKA = true
					case EqualFoldString(e, "upgrade"):
						connUp = true
					case EqualFoldString(e, "content-length") || EqualFoldString(e, "transfer-encoding") || EqualFoldString(e, "host"):
						// Removing these on the way would change the
						// message's framing or target for the next hop.
						return protoErr(400, "connection names a field needed for framing")
					}
				}
			}
		case 14:
			if EqualFoldString(name, "content-length") {
				n := parseContentLength(v)
				if n < 0 {
					return protoErr(400, "invalid content-length")
				}
				if clSeen && n != cl {
					return protoErr(400, "conflicting content-length fields")
				}
				clSeen, cl = true, n
			}
		case 17:
			if EqualFoldString(name, "transfer-encoding") {
				te.add(v)
			}
		}
	}
	if hosts > 1 {
		return protoErr(400, "more than one host field")
	}
	if hosts == 0 && r.ProtoMinor == 1 {
		return protoErr(400, "missing host field")
	}
	if hosts == 1 && !validHost(host) {
		return protoErr(400, "invalid host field")
	}
	if r.Host != nil { // absolute-form
		if hosts == 1 && !equalFold(host, r.Host) {
			return protoErr(400, "host field disagrees with the request target")
		}
	} else {
		r.Host = host
	}
	r.Chunked = false
	r.ContentLength = 0
	if te.present {
		if r.ProtoMinor == 0 {
			return protoErr(400, "transfer-encoding in an http/1.0 request")
		}
		if clSeen {
			return protoErr(400, "both content-length and transfer-encoding")
		}
		if err := te.check(); err != nil {
			return err
		}
		r.Chunked, r.ContentLength = true, -1
	} else if clSeen {
		r.ContentLength = cl
	}
	if r.ProtoMinor == 0 && !connKA {
		r.Close = true
	}
	r.Upgrade = nil
	if connUp && len(upgrade) > 0 && r.ProtoMinor == 1 {
		r.Upgrade = upgrade
	}
	r.ExpectContinue = false
	if expect != nil && r.ProtoMinor == 1 {
		if !EqualFoldString(expect, "100-continue") {
			return protoErr(417, "unsupported expectation")
		}
		r.ExpectContinue = true
	}
	return nil
}
