package difftest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Request is one request as the strict parser read it.
type Request struct {
	Method, Target, Version string
	Fields                  []Field // in order, values without surrounding whitespace
	Body                    []byte  // decoded (chunks joined)
	Chunked                 bool
	Raw                     []byte // the bytes of the whole request as received
}

// Field is one field line.
type Field struct{ Name, Value string }

// Values returns the values of every field named name (case-insensitive).
func (r *Request) Values(name string) []string {
	var v []string
	for _, f := range r.Fields {
		if strings.EqualFold(f.Name, name) {
			v = append(v, f.Value)
		}
	}
	return v
}

// Get returns the first value of name, or "".
func (r *Request) Get(name string) string {
	if v := r.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Path is the request target's path in origin form (absolute-form reduced
// to its path and query).
func (r *Request) Path() string {
	t := r.Target
	if i := strings.Index(t, "://"); i > 0 && !strings.HasPrefix(t, "/") {
		t = t[i+3:]
		if j := strings.IndexByte(t, '/'); j >= 0 {
			return t[j:]
		}
		return "/"
	}
	return t
}

// Ambiguity is a reason why a strict reader cannot know where a message
// starts or ends, or what it means.
type Ambiguity struct{ Reason string }

func (a *Ambiguity) Error() string { return "ambiguous: " + a.Reason }

func ambiguous(format string, args ...any) *Ambiguity {
	return &Ambiguity{fmt.Sprintf(format, args...)}
}

// errNeedMore means the bytes so far are a valid prefix of a request.
var errNeedMore = errors.New("need more bytes")

// Limits of the strict reader.
const (
	maxHead      = 128 << 10
	maxChunkLine = 4 << 10
	// maxEmptyLines is how many empty lines before a request line the
	// lenient reading ignores (RFC 9112 §2.2 asks for at least one).
	maxEmptyLines = 8
)

// Character classes of RFC 9110.
var tchar, vchar, tgtchar [256]bool

func init() {
	for c := 0; c < 256; c++ {
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		tchar[c] = alnum || c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
		vchar[c] = c == '\t' || c >= 0x20 && c != 0x7f
		tgtchar[c] = c > 0x20 && c < 0x7f && c != '#'
	}
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

// Options relax the strict reader. The zero value is the back end's reading
// of what a proxy sent: exactly RFC 9112's grammar, and nothing a proxy has
// any reason to generate (empty lines before a request line, repeated
// Content-Length, framing fields in trailers).
type Options struct {
	// Lenient accepts what Gatehouse accepts from clients by design and
	// is still unambiguous: up to 8 empty lines (CRLF or LF) before a
	// request line, framing fields in trailers (which are dropped),
	// identical repeated Content-Length values, any HTTP/1.x minor
	// version. It is the reference reading of a client's bytes.
	Lenient bool
}

// ParseRequest reads one request from the start of b. It returns the
// request and the number of bytes it took; errNeedMore (with the head, when
// it is complete) when b is a valid prefix; or an *Ambiguity.
func ParseRequest(b []byte, o Options) (*Request, int, error) {
	start := 0
	for empty := 0; ; empty++ {
		eol := 0
		switch {
		case len(b) == start || len(b)-start == 1 && b[start] == '\r':
			return nil, 0, errNeedMore
		case b[start] == '\n':
			eol = 1
		case b[start] == '\r' && b[start+1] == '\n':
			eol = 2
		}
		if eol == 0 {
			break
		}
		if !o.Lenient || empty == maxEmptyLines {
			return nil, 0, ambiguous("empty line before the request line")
		}
		start += eol
	}
	end := bytes.Index(b[start:], []byte("\r\n\r\n"))
	scan := b[start:]
	if end >= 0 {
		scan = scan[:end+4]
	}
	for i, c := range scan {
		switch {
		case c == '\n' && (i == 0 || scan[i-1] != '\r'):
			return nil, 0, ambiguous("bare LF in the head")
		case c == '\r' && i+1 < len(scan) && scan[i+1] != '\n':
			return nil, 0, ambiguous("bare CR in the head")
		}
	}
	if end < 0 {
		if len(scan) > maxHead {
			return nil, 0, ambiguous("head longer than 128 KiB")
		}
		return nil, 0, errNeedMore
	}
	headEnd := start + end + 4
	lines := strings.Split(string(b[start:start+end]), "\r\n")
	r := &Request{}
	if err := parseRequestLine(r, lines[0], o); err != nil {
		return nil, 0, err
	}
	for _, l := range lines[1:] {
		f, err := parseFieldLine(l)
		if err != nil {
			return nil, 0, err
		}
		r.Fields = append(r.Fields, f)
	}
	length, err := framing(r, o)
	if err != nil {
		return nil, 0, err
	}
	var n int
	if r.Chunked {
		r.Body, n, err = parseChunked(b[headEnd:], o)
		if err != nil {
			if err == errNeedMore {
				return r, 0, err
			}
			return nil, 0, err
		}
	} else {
		if int64(len(b)-headEnd) < length {
			return r, 0, errNeedMore
		}
		n = int(length)
		r.Body = b[headEnd : headEnd+n]
	}
	r.Raw = b[:headEnd+n]
	return r, headEnd + n, nil
}

func parseRequestLine(r *Request, line string, o Options) error {
	parts := strings.Split(line, " ")
	if len(parts) != 3 {
		return ambiguous("request line is not method SP target SP version: %q", line)
	}
	r.Method, r.Target, r.Version = parts[0], parts[1], parts[2]
	if !isToken(r.Method) {
		return ambiguous("method is not a token: %q", r.Method)
	}
	if r.Target == "" {
		return ambiguous("empty request target")
	}
	for i := 0; i < len(r.Target); i++ {
		if !tgtchar[r.Target[i]] {
			return ambiguous("invalid byte in request target: %q", r.Target)
		}
	}
	switch v := r.Version; {
	case v == "HTTP/1.1" || v == "HTTP/1.0":
	case o.Lenient && len(v) == 8 && strings.HasPrefix(v, "HTTP/1.") && v[7] >= '0' && v[7] <= '9':
		r.Version = "HTTP/1.1"
	default:
		return ambiguous("version is not HTTP/1.0 or HTTP/1.1: %q", v)
	}
	return nil
}

func parseFieldLine(l string) (Field, error) {
	if l[0] == ' ' || l[0] == '\t' {
		return Field{}, ambiguous("obsolete line folding")
	}
	i := 0
	for i < len(l) && tchar[l[i]] {
		i++
	}
	switch {
	case i == len(l):
		return Field{}, ambiguous("field line without colon: %q", l)
	case l[i] == ' ' || l[i] == '\t':
		return Field{}, ambiguous("whitespace between field name and colon: %q", l)
	case l[i] != ':':
		return Field{}, ambiguous("invalid byte in field name: %q", l)
	case i == 0:
		return Field{}, ambiguous("empty field name")
	}
	v := trimOWS(l[i+1:])
	for j := 0; j < len(v); j++ {
		if !vchar[v[j]] {
			return Field{}, ambiguous("control byte in field value: %q", l)
		}
	}
	return Field{l[:i], v}, nil
}

// framing applies RFC 9112 §6: the body length, or chunked.
func framing(r *Request, o Options) (int64, error) {
	switch hosts := r.Values("Host"); {
	case len(hosts) > 1:
		return 0, ambiguous("more than one Host")
	case len(hosts) == 0 && r.Version == "HTTP/1.1":
		return 0, ambiguous("HTTP/1.1 without Host")
	}
	for _, v := range r.Values("Connection") {
		for _, e := range strings.Split(v, ",") {
			switch e = strings.ToLower(trimOWS(e)); e {
			case "content-length", "transfer-encoding", "host":
				return 0, ambiguous("Connection names a framing field: %q", e)
			}
		}
	}
	te := r.Values("Transfer-Encoding")
	cl := r.Values("Content-Length")
	if len(te) > 0 {
		if r.Version == "HTTP/1.0" {
			return 0, ambiguous("Transfer-Encoding in HTTP/1.0")
		}
		if len(cl) > 0 {
			return 0, ambiguous("both Content-Length and Transfer-Encoding")
		}
		var codings []string
		for _, v := range te {
			for _, e := range strings.Split(v, ",") {
				codings = append(codings, strings.ToLower(trimOWS(e)))
			}
		}
		if len(codings) != 1 || codings[0] != "chunked" {
			return 0, ambiguous("Transfer-Encoding other than chunked: %q", strings.Join(te, ", "))
		}
		r.Chunked = true
		return -1, nil
	}
	if len(cl) == 0 {
		return 0, nil
	}
	if len(cl) > 1 && !o.Lenient {
		return 0, ambiguous("Content-Length repeated")
	}
	n := int64(-1)
	for _, v := range cl {
		for _, e := range strings.Split(v, ",") {
			if !o.Lenient && strings.Contains(v, ",") {
				return 0, ambiguous("Content-Length list: %q", v)
			}
			e = trimOWS(e)
			if len(e) == 0 || len(e) > 18 || strings.Trim(e, "0123456789") != "" {
				return 0, ambiguous("Content-Length is not 1-18 digits: %q", v)
			}
			m, _ := strconv.ParseInt(e, 10, 64)
			if n >= 0 && m != n {
				return 0, ambiguous("differing Content-Length values: %q", strings.Join(cl, ", "))
			}
			n = m
		}
	}
	return n, nil
}

// parseChunked decodes a chunked body at the start of b (RFC 9112 §7.1):
// chunk-size is 1-16 hex digits directly followed by ";" or CRLF, chunk
// extensions hold no control byte, data is followed by exactly CRLF, and
// trailer fields follow the field-line rules without naming a framing
// field.
func parseChunked(b []byte, o Options) ([]byte, int, error) {
	var body []byte
	i := 0
	for {
		eol := bytes.IndexByte(b[i:], '\n')
		if eol < 0 {
			if bytes.IndexByte(b[i:], '\r') >= 0 && b[len(b)-1] != '\r' {
				return nil, 0, ambiguous("bare CR in chunk line")
			}
			if len(b)-i > maxChunkLine {
				return nil, 0, ambiguous("chunk line longer than 4 KiB")
			}
			return nil, 0, errNeedMore
		}
		if eol == 0 || b[i+eol-1] != '\r' {
			return nil, 0, ambiguous("bare LF in chunk line")
		}
		line := b[i : i+eol-1]
		if len(line) > maxChunkLine {
			return nil, 0, ambiguous("chunk line longer than 4 KiB")
		}
		j := 0
		var size uint64
		for j < len(line) && isHex(line[j]) {
			size = size<<4 | uint64(unhex(line[j]))
			j++
		}
		switch {
		case j == 0:
			return nil, 0, ambiguous("chunk size is not hex: %q", string(line))
		case j > 16:
			return nil, 0, ambiguous("chunk size longer than 16 hex digits")
		case j < len(line) && line[j] != ';':
			return nil, 0, ambiguous("chunk size followed by other than ';' or CRLF: %q", string(line))
		}
		for _, c := range line[j:] {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return nil, 0, ambiguous("control byte in chunk extension")
			}
		}
		i += eol + 1
		if size == 0 {
			break
		}
		if size > maxHead*64 {
			return nil, 0, ambiguous("chunk larger than the recorder accepts")
		}
		if uint64(len(b)-i) < size+2 {
			if uint64(len(b)-i) > size && b[i+int(size)] != '\r' {
				return nil, 0, ambiguous("chunk data not followed by CRLF")
			}
			return nil, 0, errNeedMore
		}
		body = append(body, b[i:i+int(size)]...)
		i += int(size)
		if b[i] != '\r' || b[i+1] != '\n' {
			return nil, 0, ambiguous("chunk data not followed by CRLF")
		}
		i += 2
	}
	for {
		eol := bytes.IndexByte(b[i:], '\n')
		if eol < 0 {
			if len(b)-i > maxHead {
				return nil, 0, ambiguous("trailer section longer than 128 KiB")
			}
			return nil, 0, errNeedMore
		}
		if eol == 0 || b[i+eol-1] != '\r' {
			return nil, 0, ambiguous("bare LF in trailer section")
		}
		line := string(b[i : i+eol-1])
		i += eol + 1
		if line == "" {
			return body, i, nil
		}
		if strings.IndexByte(line, '\r') >= 0 {
			return nil, 0, ambiguous("bare CR in trailer section")
		}
		f, err := parseFieldLine(line)
		if err != nil {
			return nil, 0, err
		}
		switch strings.ToLower(f.Name) {
		case "content-length", "transfer-encoding", "host":
			if !o.Lenient {
				return nil, 0, ambiguous("framing field in trailers: %q", f.Name)
			}
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
