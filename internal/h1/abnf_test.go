package h1

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// bounded runs f and fails the test when it does not return within a few
// seconds (a parser that loops instead of consuming its input).
func bounded(t testing.TB, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("did not return within 10 s")
	}
}

// The tests in this file call the request-head parsers directly: each case
// states one rule of RFC 9110/9112 as this engine applies it, and the reason
// a refusal reports (what OnReject and the debug log see).

func TestRequestLine(t *testing.T) {
	type want struct {
		status      int    // 0: accepted
		reason      string // of a refusal
		method      string
		path, query string
		noQuery     bool // Query is nil
		host        string
		noHost      bool // Host is nil (origin-form)
		minor       int
	}
	const (
		malformed   = "malformed request line"
		badVersion  = "malformed http version"
		badPercent  = "malformed percent-encoding in request target"
		badByte     = "invalid byte in request target"
		badForm     = "unsupported request target form"
		badAuth     = "invalid authority in absolute-form target"
		badMethod   = "invalid method"
		emptyTarget = "empty request target"
	)
	cases := []struct {
		name, line string
		want       want
	}{
		{"origin form", "GET /a/b?c=d HTTP/1.1", want{method: "GET", path: "/a/b", query: "c=d", noHost: true, minor: 1}},
		{"origin form without query", "GET /a HTTP/1.1", want{method: "GET", path: "/a", noQuery: true, noHost: true, minor: 1}},
		{"empty query", "GET /a? HTTP/1.1", want{method: "GET", path: "/a", query: "", noHost: true, minor: 1}},
		{"http/1.0", "GET / HTTP/1.0", want{method: "GET", path: "/", noQuery: true, noHost: true, minor: 0}},
		{"http/1.5 is read as 1.1", "GET / HTTP/1.5", want{method: "GET", path: "/", noQuery: true, noHost: true, minor: 1}},
		{"http/1.9 is read as 1.1", "GET / HTTP/1.9", want{method: "GET", path: "/", noQuery: true, noHost: true, minor: 1}},
		{"empty method", " / HTTP/1.1", want{status: 400, reason: malformed}},
		{"one-letter method", "M / HTTP/1.1", want{method: "M", path: "/", noQuery: true, noHost: true, minor: 1}},
		{"no space at all", "GET", want{status: 400, reason: malformed}},
		{"no second space", "GET /", want{status: 400, reason: malformed}},
		{"empty target", "GET  HTTP/1.1", want{status: 400, reason: emptyTarget}},
		{"method not a token", "G(T / HTTP/1.1", want{status: 400, reason: badMethod}},
		{"method with a bad last byte", "GET\x01 / HTTP/1.1", want{status: 400, reason: badMethod}},
		{"version without minor digit", "GET / HTTP/1.x", want{status: 400, reason: badVersion}},
		{"version too short", "GET / HTTP/1.", want{status: 400, reason: badVersion}},
		{"version too long", "GET / HTTP/1.10", want{status: 400, reason: badVersion}},
		{"version lower case", "GET / http/1.1", want{status: 400, reason: badVersion}},
		{"http/2.0", "GET / HTTP/2.0", want{status: 505}},
		{"http/0.9 written as a version", "GET / HTTP/0.9", want{status: 505}},
		{"major version not a digit", "GET / HTTP/x.1", want{status: 400, reason: badVersion}},
		{"no dot", "GET / HTTP/2-0", want{status: 400, reason: badVersion}},
		{"minor of another major not a digit", "GET / HTTP/2.x", want{status: 400, reason: badVersion}},
		{"nine bytes with major 2", "GET / HTTP/2.00", want{status: 400, reason: badVersion}},
		{"target with DEL", "GET /a\x7f HTTP/1.1", want{status: 400, reason: badByte}},
		{"target with a byte over 0x7f", "GET /\x80 HTTP/1.1", want{status: 400, reason: badByte}},
		{"target with a control byte", "GET /\x1f HTTP/1.1", want{status: 400, reason: badByte}},
		{"target with a fragment", "GET /#a HTTP/1.1", want{status: 400, reason: badByte}},
		{"percent at the end", "GET /a% HTTP/1.1", want{status: 400, reason: badPercent}},
		{"percent with one digit at the end", "GET /a%4 HTTP/1.1", want{status: 400, reason: badPercent}},
		{"percent with a bad first digit", "GET /%g1 HTTP/1.1", want{status: 400, reason: badPercent}},
		{"percent with a bad second digit", "GET /%1g HTTP/1.1", want{status: 400, reason: badPercent}},
		{"percent-encoded octet at the end", "GET /a%4F HTTP/1.1", want{method: "GET", path: "/a%4F", noQuery: true, noHost: true, minor: 1}},
		{"percent-encoded octet, lower case", "GET /%af%AF%09 HTTP/1.1", want{method: "GET", path: "/%af%AF%09", noQuery: true, noHost: true, minor: 1}},
		{"asterisk with options", "OPTIONS * HTTP/1.1", want{method: "OPTIONS", path: "*", noQuery: true, noHost: true, minor: 1}},
		{"asterisk with get", "GET * HTTP/1.1", want{status: 400, reason: "asterisk target with a method other than options"}},
		{"two asterisks", "OPTIONS ** HTTP/1.1", want{status: 400, reason: badForm}},
		{"relative target", "GET a/b HTTP/1.1", want{status: 400, reason: badForm}},
		{"authority form", "CONNECT a:443 HTTP/1.1", want{status: 400, reason: badForm}},
		{"absolute form", "GET http://a.example:8080/p?q=1 HTTP/1.1", want{method: "GET", path: "/p", query: "q=1", host: "a.example:8080", minor: 1}},
		{"absolute form, upper-case scheme", "GET HTTP://A/p HTTP/1.1", want{method: "GET", path: "/p", noQuery: true, host: "A", minor: 1}},
		{"absolute form without path", "GET http://a HTTP/1.1", want{method: "GET", path: "/", noQuery: true, host: "a", minor: 1}},
		{"absolute form with an empty query", "GET http://a? HTTP/1.1", want{method: "GET", path: "/", query: "", host: "a", minor: 1}},
		{"absolute form with query and no path", "GET http://a?x HTTP/1.1", want{method: "GET", path: "/", query: "x", host: "a", minor: 1}},
		{"https absolute form", "GET https://b HTTP/1.1", want{method: "GET", path: "/", noQuery: true, host: "b", minor: 1}},
		{"https absolute form with path", "GET https://b/c HTTP/1.1", want{method: "GET", path: "/c", noQuery: true, host: "b", minor: 1}},
		{"scheme only", "GET http:// HTTP/1.1", want{status: 400, reason: badForm}},
		{"https scheme only", "GET https:// HTTP/1.1", want{status: 400, reason: badForm}},
		{"empty authority before a path", "GET http:///p HTTP/1.1", want{status: 400, reason: badAuth}},
		{"empty authority before a query", "GET http://?q HTTP/1.1", want{status: 400, reason: badAuth}},
		{"authority with userinfo", "GET http://u@a/ HTTP/1.1", want{status: 400, reason: badAuth}},
		{"other scheme", "GET ftp://a/ HTTP/1.1", want{status: 400, reason: badForm}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Fields left by a previous request on the same connection must
			// not survive.
			r := &Request{Host: []byte("stale")}
			line := []byte(tc.line)
			var perr *ProtocolError
			bounded(t, func() { perr = parseRequestLine(line[:len(line):len(line)], r) })
			if tc.want.status != 0 {
				if perr == nil {
					t.Fatalf("got no error, want %d", tc.want.status)
				}
				if perr.Status != tc.want.status || tc.want.reason != "" && perr.Reason != tc.want.reason {
					t.Fatalf("got %d %q, want %d %q", perr.Status, perr.Reason, tc.want.status, tc.want.reason)
				}
				return
			}
			if perr != nil {
				t.Fatalf("got %d %q, want accepted", perr.Status, perr.Reason)
			}
			if string(r.Method) != tc.want.method || string(r.Path) != tc.want.path || string(r.Query) != tc.want.query || r.ProtoMinor != tc.want.minor {
				t.Errorf("got method %q path %q query %q minor %d, want %q %q %q %d", r.Method, r.Path, r.Query, r.ProtoMinor, tc.want.method, tc.want.path, tc.want.query, tc.want.minor)
			}
			if (r.Query == nil) != tc.want.noQuery {
				t.Errorf("got Query nil %v, want %v", r.Query == nil, tc.want.noQuery)
			}
			if tc.want.noHost {
				if r.Host != nil {
					t.Errorf("got Host %q, want nil for origin-form", r.Host)
				}
			} else if string(r.Host) != tc.want.host {
				t.Errorf("got Host %q, want %q", r.Host, tc.want.host)
			}
			if string(r.URI) != strings.Split(tc.line, " ")[1] {
				t.Errorf("got URI %q, want the target as received", r.URI)
			}
			// The slices must not let an append write into the line.
			if cap(r.Method) != len(r.Method) || cap(r.URI) != len(r.URI) {
				t.Errorf("Method or URI can grow into the connection buffer")
			}
		})
	}
}

func TestFieldLines(t *testing.T) {
	cases := []struct {
		name, in string
		reason   string // "" when accepted
		want     string // name=value pairs joined by "|"
	}{
		{"one field", "A: b\r\n", "", "A=b"},
		{"no fields", "", "", ""},
		{"whitespace around the value", "A: \t b c \t\r\nB:d\r\n", "", "A=b c|B=d"},
		{"empty value", "A:\r\nB:   \r\n", "", "A=|B="},
		{"obs-text in a value", "A: caf\xe9\r\n", "", "A=caf\xe9"},
		{"tab inside a value", "A: b\tc\r\n", "", "A=b\tc"},
		{"one-byte name", "a:1\r\n", "", "a=1"},
		{"a bare lf alone", "\n", "bare lf in field line", ""},
		{"bad first byte in name", "(A: b\r\n", "invalid byte in field name", ""},
		{"line without crlf at the start", "\nA: b\r\n", "bare lf in field line", ""},
		{"empty line", "A: b\r\n\r\n", "empty field line", ""},
		{"obs-fold with a space", "A: b\r\n c\r\n", "obsolete line folding", ""},
		{"obs-fold with a tab", "\tA: b\r\n", "obsolete line folding", ""},
		{"no colon", "A b\r\n", "whitespace between field name and colon", ""},
		{"name only", "Abc\r\n", "field line without colon", ""},
		{"space before colon", "A : b\r\n", "whitespace between field name and colon", ""},
		{"tab before colon", "A\t: b\r\n", "whitespace between field name and colon", ""},
		{"bad byte in name", "A(: b\r\n", "invalid byte in field name", ""},
		{"empty name", ": b\r\n", "empty field name", ""},
		{"nul in value", "A: b\x00\r\n", "invalid byte in field value", ""},
		{"control byte at the end of a value", "A: b\x01\r\n", "invalid byte in field value", ""},
		{"control byte at the start of a value", "A: \x1fb\r\n", "invalid byte in field value", ""},
		{"DEL in value", "A: \x7f\r\n", "invalid byte in field value", ""},
		{"bad second field", "A: b\r\nB : c\r\n", "whitespace between field name and colon", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Header
			var perr *ProtocolError
			bounded(t, func() { perr = parseFields([]byte(tc.in), &h) })
			if tc.reason != "" {
				if perr == nil || perr.Status != 400 || perr.Reason != tc.reason {
					t.Fatalf("got %v, want 400 %q", perr, tc.reason)
				}
				return
			}
			if perr != nil {
				t.Fatalf("got %d %q, want accepted", perr.Status, perr.Reason)
			}
			var got []string
			h.Each(func(name, value []byte) bool {
				got = append(got, string(name)+"="+string(value))
				if cap(name) != len(name) || cap(value) != len(value) {
					t.Errorf("field %q can grow into the buffer", name)
				}
				return true
			})
			if s := strings.Join(got, "|"); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

func TestContentLengthValue(t *testing.T) {
	cases := []struct {
		in   string
		want int64 // -1: invalid
	}{
		{"0", 0},
		{"5", 5},
		{"0123", 123},
		{"999999999999999999", 999999999999999999}, // 18 digits
		{"1234567890123456789", -1},                // 19 digits
		{"5, 5", 5},
		{"5,5,5", 5},
		{" 7 ", 7},
		{"5, 6", -1},
		{"0, 5", -1},
		{"5,", -1},
		{",5", -1},
		{"", -1},
		{"+5", -1},
		{"-5", -1},
		{"5a", -1},
		{"/", -1}, // the byte before '0'
		{":", -1}, // the byte after '9'
		{"1 0", -1},
		{"0x5", -1},
	}
	for _, tc := range cases {
		var got int64
		bounded(t, func() { got = parseContentLength([]byte(tc.in)) })
		if got != tc.want {
			t.Errorf("parseContentLength(%q): got %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestContentLengthValues(t *testing.T) {
	cases := []struct {
		in   []string
		want int64
		ok   bool
	}{
		{nil, 0, false},
		{[]string{"0"}, 0, true},
		{[]string{"12"}, 12, true},
		{[]string{"12", "12"}, 12, true},
		{[]string{"0", "0"}, 0, true},
		{[]string{"12", "13"}, 0, false},
		{[]string{"0", "1"}, 0, false},
		{[]string{"12", "x"}, 0, false},
		{[]string{"x"}, 0, false},
		{[]string{"3, 3", "3"}, 3, true},
	}
	for _, tc := range cases {
		var n int64
		var ok bool
		bounded(t, func() { n, ok = ContentLengthValues(tc.in) })
		if ok != tc.ok || n != tc.want {
			t.Errorf("ContentLengthValues(%q): got %d %v, want %d %v", tc.in, n, ok, tc.want, tc.ok)
		}
	}
}

func TestValidTarget(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"/", true},
		{"/a?b=c&d", true},
		{"*", true},
		{"/%41%4a%4A", true},
		{"/a%2F", true},
		{"", false},
		{"/a b", false},
		{"/a#b", false},
		{"/\x7f", false},
		{"/\x80", false},
		{"/\x00", false},
		{"/%", false},
		{"/%4", false},
		{"/%g0", false},
		{"/%0g", false},
		{"/%4%41", false},
		// The first byte is checked like the others.
		{"#", false},
		{" /", false},
		{"%zz", false},
		{"\x7f/", false},
	}
	for _, tc := range cases {
		var got bool
		bounded(t, func() { got = ValidTarget(tc.in) })
		if got != tc.want {
			t.Errorf("ValidTarget(%q): got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCharacterClasses(t *testing.T) {
	// Each class against a plain reading of its grammar.
	for c := 0; c < 256; c++ {
		b := byte(c)
		alpha := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
		digit := '0' <= b && b <= '9'
		wantT := alpha || digit || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		wantV := b == '\t' || b >= 0x20 && b != 0x7f
		wantTgt := b > 0x20 && b < 0x7f && b != '#'
		wantHost := alpha || digit || strings.IndexByte("-._~!$&'()*+,;=:[]%", b) >= 0
		wantHex := -1
		switch {
		case digit:
			wantHex = c - '0'
		case 'a' <= b && b <= 'f':
			wantHex = c - 'a' + 10
		case 'A' <= b && b <= 'F':
			wantHex = c - 'A' + 10
		}
		if tchar[c] != wantT || vchar[c] != wantV || tgtchar[c] != wantTgt || hostchar[c] != wantHost || int(hexval[c]) != wantHex {
			t.Errorf("byte %#x: got token %v value %v target %v host %v hex %d, want %v %v %v %v %d",
				c, tchar[c], vchar[c], tgtchar[c], hostchar[c], hexval[c], wantT, wantV, wantTgt, wantHost, wantHex)
		}
		if isHex(b) != (wantHex >= 0) {
			t.Errorf("isHex(%#x): got %v, want %v", c, isHex(b), wantHex >= 0)
		}
		if isDigit(b) != digit {
			t.Errorf("isDigit(%#x): got %v, want %v", c, isDigit(b), digit)
		}
	}
}

func TestLists(t *testing.T) {
	cases := []struct {
		list, tok string
		want      bool
	}{
		{"close", "close", true},
		{"CLOSE", "close", true},
		{"keep-alive, close", "close", true},
		{"close, keep-alive", "close", true},
		{" \tclose\t ", "close", true},
		{"x,,close", "close", true},
		{",close", "close", true},
		{"keep-alive,close", "close", true},
		{"closed", "close", false},
		{"clos", "close", false},
		{"", "close", false},
		{"a, b", "close", false},
	}
	for _, tc := range cases {
		var got bool
		bounded(t, func() { got = hasToken([]byte(tc.list), tc.tok) })
		if got != tc.want {
			t.Errorf("hasToken(%q, %q): got %v, want %v", tc.list, tc.tok, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {" ", ""}, {"\t a \t", "a"}, {"a b", "a b"}, {"  ab", "ab"}, {"ab  ", "ab"},
	} {
		var got string
		bounded(t, func() { got = string(trimOWS([]byte(tc.in))) })
		if got != tc.want {
			t.Errorf("trimOWS(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTransferEncodingValues(t *testing.T) {
	cases := []struct {
		values []string
		status int // 0: exactly chunked
		reason string
	}{
		{[]string{"chunked"}, 0, ""},
		{[]string{" Chunked "}, 0, ""},
		{[]string{"gzip"}, 501, "unsupported transfer-coding"},
		{[]string{"x"}, 501, "unsupported transfer-coding"},
		{[]string{"gzip, chunked"}, 501, "unsupported transfer-coding"},
		{[]string{"chunked, chunked"}, 400, "chunked applied more than once"},
		{[]string{"chunked", "chunked"}, 400, "chunked applied more than once"},
		{[]string{"chunked,"}, 400, "malformed transfer-encoding"},
		{[]string{",chunked"}, 400, "malformed transfer-encoding"},
		{[]string{""}, 400, "malformed transfer-encoding"},
		{[]string{"chunked;x"}, 400, "malformed transfer-encoding"},
		{[]string{"chun ked"}, 400, "malformed transfer-encoding"},
		{[]string{"x(", "chunked"}, 400, "malformed transfer-encoding"},
	}
	for _, tc := range cases {
		var te teState
		bounded(t, func() {
			for _, v := range tc.values {
				te.add([]byte(v))
			}
		})
		if !te.present {
			t.Errorf("%q: not present after add", tc.values)
		}
		perr := te.check()
		switch {
		case tc.status == 0 && perr != nil:
			t.Errorf("%q: got %d %q, want chunked", tc.values, perr.Status, perr.Reason)
		case tc.status != 0 && (perr == nil || perr.Status != tc.status || perr.Reason != tc.reason):
			t.Errorf("%q: got %v, want %d %q", tc.values, perr, tc.status, tc.reason)
		}
	}
}

// TestInterpret checks what a parsed head means: framing, connection
// management, Host, Upgrade and Expect, and which heads are refused.
func TestInterpret(t *testing.T) {
	type want struct {
		status         int
		reason         string
		host           string
		cl             int64
		chunked, close bool
		upgrade        string
		expect         bool
	}
	cases := []struct {
		name   string
		minor  int
		target string // absolute-form authority, "" for origin-form
		fields string // "Name: value" lines separated by "\n"
		want   want
	}{
		{"plain get", 1, "", "Host: h", want{host: "h"}},
		{"host with port and IPv6 literal", 1, "", "Host: [::1]:80", want{host: "[::1]:80"}},
		{"missing host", 1, "", "X: y", want{status: 400, reason: "missing host field"}},
		{"two hosts", 1, "", "Host: h\nHost: h", want{status: 400, reason: "more than one host field"}},
		{"bad host", 1, "", "Host: a/b", want{status: 400, reason: "invalid host field"}},
		{"host with userinfo", 1, "", "Host: u@a", want{status: 400, reason: "invalid host field"}},
		{"empty host", 1, "", "Host: ", want{host: ""}},
		{"http/1.0 without host", 0, "", "", want{close: true}},
		{"http/1.0 with a bad host", 0, "", "Host: a b", want{status: 400, reason: "invalid host field"}},
		{"absolute form, host agrees", 1, "A.example", "Host: a.EXAMPLE", want{host: "A.example"}},
		{"absolute form, host disagrees", 1, "a", "Host: b", want{status: 400, reason: "host field disagrees with the request target"}},
		{"absolute form, http/1.0 without host", 0, "a", "", want{host: "a", close: true}},
		{"content-length", 1, "", "Host: h\nContent-Length: 12", want{host: "h", cl: 12}},
		{"content-length zero", 1, "", "Host: h\nContent-Length: 0", want{host: "h", cl: 0}},
		{"identical content-lengths", 1, "", "Host: h\nContent-Length: 3\nContent-length: 3", want{host: "h", cl: 3}},
		{"differing content-lengths", 1, "", "Host: h\nContent-Length: 3\nContent-Length: 4", want{status: 400, reason: "conflicting content-length fields"}},
		{"zero then another content-length", 1, "", "Host: h\nContent-Length: 0\nContent-Length: 4", want{status: 400, reason: "conflicting content-length fields"}},
		{"invalid content-length", 1, "", "Host: h\nContent-Length: x", want{status: 400, reason: "invalid content-length"}},
		{"chunked", 1, "", "Host: h\nTransfer-Encoding: chunked", want{host: "h", cl: -1, chunked: true}},
		{"chunked and content-length", 1, "", "Host: h\nContent-Length: 0\nTransfer-Encoding: chunked", want{status: 400, reason: "both content-length and transfer-encoding"}},
		{"content-length after chunked", 1, "", "Host: h\nTransfer-Encoding: chunked\nContent-Length: 5", want{status: 400, reason: "both content-length and transfer-encoding"}},
		{"chunked in http/1.0", 0, "", "Transfer-Encoding: chunked", want{status: 400, reason: "transfer-encoding in an http/1.0 request"}},
		{"unknown coding", 1, "", "Host: h\nTransfer-Encoding: gzip", want{status: 501, reason: "unsupported transfer-coding"}},
		{"connection close", 1, "", "Host: h\nConnection: close", want{host: "h", close: true}},
		{"connection close in a list", 1, "", "Host: h\nConnection: x, CLOSE", want{host: "h", close: true}},
		{"http/1.0 keep-alive", 0, "", "Connection: Keep-Alive", want{}},
		{"http/1.0 keep-alive then close", 0, "", "Connection: keep-alive, close", want{close: true}},
		{"http/1.1 keep-alive is not close", 1, "", "Host: h\nConnection: keep-alive", want{host: "h"}},
		{"connection names content-length", 1, "", "Host: h\nConnection: Content-Length", want{status: 400, reason: "connection names a field needed for framing"}},
		{"connection names transfer-encoding", 1, "", "Host: h\nConnection: a, transfer-encoding", want{status: 400, reason: "connection names a field needed for framing"}},
		{"connection names host", 1, "", "Host: h\nConnection: host", want{status: 400, reason: "connection names a field needed for framing"}},
		{"upgrade", 1, "", "Host: h\nConnection: Upgrade\nUpgrade: websocket", want{host: "h", upgrade: "websocket"}},
		{"one-byte upgrade", 1, "", "Host: h\nConnection: upgrade\nUpgrade: x", want{host: "h", upgrade: "x"}},
		{"upgrade field without connection token", 1, "", "Host: h\nUpgrade: websocket", want{host: "h"}},
		{"connection upgrade without upgrade field", 1, "", "Host: h\nConnection: upgrade", want{host: "h"}},
		{"connection upgrade with an empty upgrade field", 1, "", "Host: h\nConnection: upgrade\nUpgrade: ", want{host: "h"}},
		{"upgrade in http/1.0", 0, "", "Connection: upgrade, keep-alive\nUpgrade: websocket", want{}},
		{"expect 100-continue", 1, "", "Host: h\nExpect: 100-Continue", want{host: "h", expect: true}},
		{"unknown expectation", 1, "", "Host: h\nExpect: 200-ok", want{status: 417, reason: "unsupported expectation"}},
		{"empty expectation", 1, "", "Host: h\nExpect: ", want{status: 417, reason: "unsupported expectation"}},
		{"expect in http/1.0 is ignored", 0, "", "Expect: 100-continue", want{close: true}},
		{"fields of other lengths are ignored", 1, "", "Host: h\nHosts: x\nExpects: y\nUpgrade-X: z\nConnections: close\nContent-Lengths: x\nTransfer-Encodings: x", want{host: "h"}},
		{"names of the right length but other spelling", 1, "", "Host: h\nHoss: x\nExpecT: 100-continue\nUpgradx: y\nConnectiox: close\nContent-Lengtx: x\nTransfer-Encodinx: x", want{host: "h", expect: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Request{ProtoMinor: tc.minor}
			// Values left by a previous request on the connection.
			r.Close, r.Chunked, r.ContentLength, r.Upgrade, r.ExpectContinue = true, true, 99, []byte("stale"), true
			if tc.target != "" {
				r.Host = []byte(tc.target)
			} else {
				r.Host = nil
			}
			if tc.fields != "" {
				for _, l := range strings.Split(tc.fields, "\n") {
					name, value, _ := strings.Cut(l, ":")
					// A parsed empty value is an empty slice, never nil.
					r.Header.Add(name, []byte(strings.TrimLeft(value, " ")))
				}
			}
			var perr *ProtocolError
			bounded(t, func() { perr = r.interpret() })
			if tc.want.status != 0 {
				if perr == nil || perr.Status != tc.want.status || perr.Reason != tc.want.reason {
					t.Fatalf("got %v, want %d %q", perr, tc.want.status, tc.want.reason)
				}
				return
			}
			if perr != nil {
				t.Fatalf("got %d %q, want accepted", perr.Status, perr.Reason)
			}
			got := fmt.Sprintf("host %q cl %d chunked %v close %v upgrade %q expect %v", r.Host, r.ContentLength, r.Chunked, r.Close, r.Upgrade, r.ExpectContinue)
			w := tc.want
			want := fmt.Sprintf("host %q cl %d chunked %v close %v upgrade %q expect %v", w.host, w.cl, w.chunked, w.close, w.upgrade, w.expect)
			if got != want {
				t.Errorf("got %s, want %s", got, want)
			}
			if w.upgrade == "" && r.Upgrade != nil {
				t.Errorf("got Upgrade %q, want nil", r.Upgrade)
			}
		})
	}
}

func TestHeaderMethods(t *testing.T) {
	var h Header
	h.AddString("A", "1")
	h.AddString("Empty", "")
	h.AddString("b", "2")
	h.AddString("a", "3")
	if got := h.Get("EMPTY"); got == nil || len(got) != 0 {
		t.Errorf("Get of a present empty field: got %q (nil %v), want an empty non-nil slice", got, got == nil)
	}
	if got := h.Get("missing"); got != nil {
		t.Errorf("Get of a missing field: got %q, want nil", got)
	}
	if !h.Has("B") || !h.Has("a") || h.Has("c") {
		t.Errorf("Has: got B %v a %v c %v, want true true false", h.Has("B"), h.Has("a"), h.Has("c"))
	}
	h.SetString("a", "4")
	if got := headerString(&h); got != "A=4|Empty=|b=2" {
		t.Errorf("after Set: got %q, want the first a replaced and the second removed", got)
	}
	h.SetString("C", "5")
	if got := headerString(&h); got != "A=4|Empty=|b=2|C=5" {
		t.Errorf("after Set of a new field: got %q", got)
	}
	h.Del("empty")
	h.Del("nothing")
	if got := headerString(&h); got != "A=4|b=2|C=5" {
		t.Errorf("after Del: got %q", got)
	}
	h.AddString("b", "6")
	h.Del("B")
	if got := headerString(&h); got != "A=4|C=5" || h.Len() != 2 {
		t.Errorf("after Del of two fields: got %q (%d)", got, h.Len())
	}
	h.SetContentLength(1234)
	h.SetContentLength(56)
	if got := headerString(&h); got != "A=4|C=5|Content-Length=56" {
		t.Errorf("after SetContentLength: got %q", got)
	}
	name, value := []byte("X-Copy"), []byte("v")
	h.AddCopy(name, value)
	name[0], value[0] = 'Y', 'w'
	if got := string(h.Get("x-copy")); got != "v" {
		t.Errorf("AddCopy: got %q after the caller's buffer changed, want v", got)
	}
	h.AddString("Z", "7")
	h.Del("a") // the first field
	if got := headerString(&h); got != "C=5|Content-Length=56|X-Copy=v|Z=7" {
		t.Errorf("after Del of the first field: got %q", got)
	}
	n := 0
	h.Each(func(_, _ []byte) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("Each: called %d times after returning false, want 2", n)
	}
	h.Reset()
	if h.Len() != 0 || h.Get("A") != nil {
		t.Errorf("after Reset: %d fields", h.Len())
	}
	if b := bytesOf(strings.Repeat("a", 3)[:0]); b != nil {
		t.Errorf("bytesOf of an empty string: got %q, want nil", b)
	}
}

func headerString(h *Header) string {
	var s []string
	h.Each(func(name, value []byte) bool {
		s = append(s, string(name)+"="+string(value))
		return true
	})
	return strings.Join(s, "|")
}

func TestEqualFold(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"Host", "host", true},
		{"HOST", "host", true},
		{"host", "hosts", false},
		{"hosT", "hosx", false},
		{"a-b", "a-b", true},
		{"a-b", "a\rb", false}, // '-' | 0x20 == '\r' | 0x20: not letters
		{"@", "`", false},      // differ only in 0x20, not letters
		{"[", "{", false},
		{"{", "[", false},
		{"Z", "z", true},
		{"A", "a", true},
	}
	for _, tc := range cases {
		if got := EqualFoldString([]byte(tc.a), tc.b); got != tc.want {
			t.Errorf("EqualFoldString(%q, %q): got %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := equalFold([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("equalFold(%q, %q): got %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
