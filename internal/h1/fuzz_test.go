package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// memConn is a net.Conn that reads from a byte slice (at most one "segment"
// per Read when segments are set) and discards what is written.
type memConn struct {
	data    []byte
	segment int // when > 0, a Read returns at most this many bytes
	out     bytes.Buffer
	keepOut bool
}

func (m *memConn) Read(p []byte) (int, error) {
	if len(m.data) == 0 {
		return 0, io.EOF
	}
	n := len(m.data)
	if m.segment > 0 && n > m.segment {
		n = m.segment
	}
	n = copy(p, m.data[:n])
	m.data = m.data[n:]
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error) {
	if m.keepOut {
		m.out.Write(p)
	}
	return len(p), nil
}
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

var fuzzSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a?b HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
	// The end of the input at each place of a request.
	"",
	"G",
	"GET",
	"GET ",
	"GET /",
	"GET / HTTP/1.1",
	"GET / HTTP/1.1\r",
	"GET / HTTP/1.1\r\n",
	"GET / HTTP/1.1\r\nHost",
	"GET / HTTP/1.1\r\nHost: a",
	"GET / HTTP/1.1\r\nHost: a\r",
	"GET / HTTP/1.1\r\nHost: a\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\r",
	"\r\n",
	"\r",
	"GET /%",
	"GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.\r\nHost: a\r\n\r\n",
	"GET http:// HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a",
}

// FuzzServer feeds arbitrary bytes to a Server as one client connection and
// checks that every request the handler sees is well-formed, and that the
// classic smuggling forms of the first request never reach the handler.
func FuzzServer(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seen := 0
		s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			seen++
			checkRequest(t, r)
			n, err := io.Copy(io.Discard, r.Body)
			if err == nil && r.ContentLength >= 0 && n != r.ContentLength {
				t.Errorf("read %d body bytes, ContentLength %d", n, r.ContentLength)
			}
			w.Write([]byte("ok"))
		})}
		s.ServeConn(&memConn{data: bytes.Clone(data)})
		if seen > 0 && refRefuses(data) {
			t.Errorf("the reference refuses the first request, but the handler saw it: %q", data)
		}
	})
}

func checkRequest(t *testing.T, r *Request) {
	t.Helper()
	if len(r.Method) == 0 || !validFieldName(r.Method) {
		t.Errorf("method %q is not a token", r.Method)
	}
	if !(len(r.Path) > 0 && r.Path[0] == '/' || string(r.Path) == "*") {
		t.Errorf("path %q", r.Path)
	}
	cl, te := false, false
	r.Header.Each(func(name, value []byte) bool {
		if bytes.ContainsAny(name, "\r\n\x00 \t:") || len(name) == 0 || bytes.ContainsAny(value, "\r\n\x00") {
			t.Errorf("bad field %q: %q", name, value)
		}
		cl = cl || strings.EqualFold(string(name), "content-length")
		te = te || strings.EqualFold(string(name), "transfer-encoding")
		return true
	})
	if cl && te {
		t.Errorf("both Content-Length and Transfer-Encoding reached the handler")
	}
	if r.Chunked != (r.ContentLength == -1) || r.ContentLength < -1 {
		t.Errorf("Chunked %v with ContentLength %d", r.Chunked, r.ContentLength)
	}
	if r.Chunked && !te || !r.Chunked && te {
		t.Errorf("Chunked %v, Transfer-Encoding present %v", r.Chunked, te)
	}
	if r.ProtoMinor == 1 && r.Header.Get("Host") == nil {
		t.Errorf("HTTP/1.1 request without Host")
	}
}

// refRefuses is an independent, simple reading of the first request head:
// true when it is one of the classic forms that must be refused.
func refRefuses(data []byte) bool {
	if len(data) == 0 || !tcharRef(data[0]) {
		return false // leading empty lines or garbage: no claim
	}
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return true // no complete head at all
	}
	head := string(data[:end+2])
	for i := 0; i < len(head); i++ {
		switch head[i] {
		case '\n':
			if i == 0 || head[i-1] != '\r' {
				return true // bare LF
			}
		case '\r':
			if i+1 >= len(head) || head[i+1] != '\n' {
				return true // bare CR
			}
		case 0:
			return true
		}
	}
	lines := strings.Split(strings.TrimSuffix(head, "\r\n"), "\r\n")
	parts := strings.Split(lines[0], " ")
	// HTTP/1.x with x > 1 is read as HTTP/1.1 (RFC 9110 §2.5).
	if len(parts) != 3 || len(parts[2]) != 8 || !strings.HasPrefix(parts[2], "HTTP/1.") || parts[2][7] < '0' || parts[2][7] > '9' {
		return true
	}
	if parts[2] != "HTTP/1.0" {
		parts[2] = "HTTP/1.1"
	}
	var cls []string
	tes, hosts := 0, 0
	for _, l := range lines[1:] {
		if l == "" || l[0] == ' ' || l[0] == '\t' {
			return true // obs-fold
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || strings.ContainsAny(name, " \t") || name == "" {
			return true
		}
		value = strings.Trim(value, " \t")
		switch strings.ToLower(name) {
		case "content-length":
			for _, v := range strings.Split(value, ",") {
				cls = append(cls, strings.Trim(v, " \t"))
			}
		case "transfer-encoding":
			tes++
			if !strings.EqualFold(value, "chunked") {
				return true
			}
		case "host":
			hosts++
		case "connection":
			for _, e := range strings.Split(value, ",") {
				switch strings.ToLower(strings.Trim(e, " \t")) {
				case "content-length", "transfer-encoding", "host":
					return true // removing it would change the framing
				}
			}
		}
	}
	if tes > 1 || tes > 0 && len(cls) > 0 || tes > 0 && parts[2] == "HTTP/1.0" {
		return true
	}
	for _, v := range cls {
		if v == "" || strings.Trim(v, "0123456789") != "" || len(v) > 18 || strings.TrimLeft(v, "0") != strings.TrimLeft(cls[0], "0") {
			return true
		}
	}
	if parts[2] == "HTTP/1.1" && hosts != 1 {
		return true
	}
	return false
}

func tcharRef(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// FuzzChunked compares the chunked decoder with a simple reference decoder.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n",
		"0\r\n\r\n", "00000000000000005\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n",
		"5\r\nhello\n0\r\n\r\n", "a\r\n0123456789\r\n0\r\nX : y\r\n\r\n", "1\r\nx\r\n0\r\nX: a\r\n b\r\n\r\n",
		// The end of the input at each place of a chunked body.
		"", "5", "5\r", "5;", "5;a\r", "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n",
		"0", "0\r", "0\r\n", "0\r\n\r", "0\r\nX", "0\r\nX:", "0\r\nX: y", "0\r\nX: y\r", "0\r\nX: y\r\n",
		"4000000000000000\r\n", "4000000000000001\r\n", "0000000000000000\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, segment uint8) {
		var cr chunkedReader
		src := bufio.NewReaderSize(&memConn{data: bytes.Clone(data), segment: int(segment)}, 16)
		cr.reset(src, 1<<20)
		got, err := io.ReadAll(&cr)
		want, ok := refDechunk(data)
		if ok != (err == nil) {
			t.Fatalf("decoder error %v, reference ok %v, input %q", err, ok, data)
		}
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// refDechunk is a plain reading of RFC 9112 §7.1 with this package's limits.
func refDechunk(in []byte) ([]byte, bool) {
	var out []byte
	s := string(in)
	line := func() (string, bool) {
		i := strings.Index(s, "\r\n")
		if i < 0 {
			return "", false
		}
		l := s[:i]
		s = s[i+2:]
		return l, !strings.ContainsAny(l, "\r\n")
	}
	for {
		l, ok := line()
		if !ok {
			return nil, false
		}
		digits := len(l) - len(strings.TrimLeft(l, "0123456789abcdefABCDEF"))
		if digits == 0 || digits > 16 {
			return nil, false
		}
		var n uint64
		for _, c := range l[:digits] {
			n = n<<4 | uint64(hexval[c])
		}
		if n > maxChunkSize {
			return nil, false
		}
		if ext := l[digits:]; ext != "" {
			if ext[0] != ';' || len(l) > maxChunkLine {
				return nil, false
			}
			for _, c := range []byte(ext) {
				if c != '\t' && (c < 0x20 || c == 0x7f) {
					return nil, false
				}
			}
		}
		if n == 0 {
			break
		}
		if uint64(len(s)) < n+2 || s[n:n+2] != "\r\n" {
			return nil, false
		}
		out = append(out, s[:n]...)
		s = s[n+2:]
	}
	for count := 0; ; count++ {
		l, ok := line()
		if !ok {
			return nil, false
		}
		if l == "" {
			return out, true
		}
		if count >= maxTrailerCount {
			return nil, false
		}
		name, value, found := strings.Cut(l, ":")
		if !found || name == "" {
			return nil, false
		}
		for _, c := range []byte(name) {
			if !tcharRef(c) {
				return nil, false
			}
		}
		for _, c := range []byte(value) {
			if c != '\t' && (c < 0x20 || c == 0x7f) {
				return nil, false
			}
		}
	}
}

// FuzzResponseHead parses arbitrary upstream response heads.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nabc",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200\r\nX: a\r\n b\r\n\r\n",
		// The end of the input at each place of a response head.
		"", "H", "HTTP/1.1", "HTTP/1.1 ", "HTTP/1.1 20", "HTTP/1.1 200", "HTTP/1.1 200\r", "HTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nX", "HTTP/1.1 200 OK\r\nX: y", "HTTP/1.1 200 OK\r\nX: y\r\n", "HTTP/1.1 200 OK\r\nX: y\r\n\r",
		"HTTP/1.1 200 OK\r\nContent-Length: 3,\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, isHead bool) {
		u := &Upstream{MaxResponseHeaderBytes: 4096}
		pc := &upConn{u: u, br: bufio.NewReaderSize(bytes.NewReader(data), 64)}
		rh, err := pc.readHead(isHead)
		if err != nil {
			return
		}
		if rh.status < 100 || rh.status > 999 {
			t.Errorf("status %d", rh.status)
		}
		cl, te := false, false
		pc.hdr.Each(func(name, value []byte) bool {
			if len(name) == 0 || bytes.ContainsAny(name, "\r\n\x00 \t:") || bytes.ContainsAny(value, "\r\n\x00") {
				t.Errorf("bad field %q: %q", name, value)
			}
			cl = cl || strings.EqualFold(string(name), "content-length")
			te = te || strings.EqualFold(string(name), "transfer-encoding")
			return true
		})
		switch rh.framing {
		case frameLength:
			if rh.cl < 0 || te {
				t.Errorf("length framing with cl %d, te %v", rh.cl, te)
			}
		case frameChunked:
			if cl || !te {
				t.Errorf("chunked framing with cl %v, te %v", cl, te)
			}
		case frameClose:
			if cl || te || !rh.close {
				t.Errorf("close framing with cl %v, te %v", cl, te)
			}
		case frameNone:
			if !(isHead || rh.status < 200 || rh.status == 204 || rh.status == 304) {
				t.Errorf("no body for status %d", rh.status)
			}
		}
	})
}
