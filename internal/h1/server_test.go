package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startServer serves s on a fresh loopback listener and returns its address.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		// Bounded: a connection goroutine stuck in a read (one that never
		// gives its socket back) fails the test instead of hanging it.
		closed := make(chan struct{})
		go func() {
			s.Close()
			<-done
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Error("the server did not close within 5s")
		}
	})
	return ln.Addr().String()
}

// dial connects to addr with a safety deadline (never used to synchronise).
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(soon(t))
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTripRaw sends raw bytes and reads everything until the server closes.
func roundTripRaw(t testing.TB, addr, raw string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		t.Fatalf("reading: %v (got %q)", err, b)
	}
	return string(b)
}

func isConnReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// readResponse reads one response (head and body by its framing) from br.
type testResp struct {
	status int
	header map[string]string // lower-case names, last value wins
	body   string
	raw    string
}

func readResponse(t testing.TB, br *bufio.Reader, head bool) testResp {
	t.Helper()
	var r testResp
	r.header = map[string]string{}
	var raw strings.Builder
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading status line: %v (%q)", err, line)
	}
	raw.WriteString(line)
	if len(line) < 12 {
		t.Fatalf("short status line %q", line)
	}
	r.status, _ = strconv.Atoi(line[9:12])
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading head: %v", err)
		}
		raw.WriteString(l)
		if l == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimRight(l, "\r\n"), ":")
		r.header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	switch {
	case head || r.status == 204 || r.status == 304 || r.status < 200:
	case r.header["transfer-encoding"] == "chunked":
		var body bytes.Buffer
		cr := &chunkedReader{}
		cr.reset(br, 1<<20)
		if _, err := io.Copy(&body, cr); err != nil {
			t.Fatalf("reading chunked body: %v", err)
		}
		r.body = body.String()
	case r.header["content-length"] != "":
		n, _ := strconv.Atoi(r.header["content-length"])
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatalf("reading body: %v", err)
		}
		r.body = string(b)
	default:
		b, _ := io.ReadAll(br)
		r.body = string(b)
	}
	r.raw = raw.String()
	return r
}

func okHandler(calls *atomic.Int64) Handler {
	return HandlerFunc(func(w ResponseWriter, r *Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().SetString("Content-Type", "text/plain")
		w.Write([]byte("hello"))
	})
}

func TestSimpleKeepAlive(t *testing.T) {
	var calls atomic.Int64
	addr := startServer(t, &Server{Handler: okHandler(&calls)})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "GET /x?%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
		r := readResponse(t, br, false)
		if r.status != 200 || r.body != "hello" || r.header["content-length"] != "5" {
			t.Fatalf("got %d %q %v, want 200 hello with Content-Length", r.status, r.body, r.header)
		}
		if r.header["date"] == "" {
			t.Errorf("no Date field")
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("got %d calls, want 3", calls.Load())
	}
}

// TestRefused sends every smuggling trick and malformed head as raw bytes and
// checks the status, Connection: close, the closed connection and that the
// handler never ran.
func TestRefused(t *testing.T) {
	long := strings.Repeat("a", 9000)
	manyFields := strings.Repeat("X-A: b\r\n", 101)
	bigField := "X-Big: " + strings.Repeat("b", 33<<10) + "\r\n"
	cases := []struct {
		name, raw string
		status    int
	}{
		{"cl and te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"te and cl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"two differing cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"cl list differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400},
		{"cl sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"cl negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
		{"cl space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nhellohello", 400},
		{"cl hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400},
		{"cl too many digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", 400},
		{"cl empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
		{"te gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"te chunked chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
		{"te two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"te identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
		{"te xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
		{"te chunked param", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x\r\n\r\n0\r\n\r\n", 400},
		{"te trailing comma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", 400},
		{"te vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400},
		{"te empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400},
		{"te in http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400},
		{"obs-fold first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
		{"bare lf in field", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400},
		{"bare lf request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
		{"bare lf end", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
		{"bare cr line", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
		{"nul in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"ctl in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", 400},
		{"del in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
		{"absolute disagrees", "GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n", 400},
		{"absolute userinfo", "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute ftp", "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"authority form", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400},
		{"asterisk with get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"relative target", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"utf-8 in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"nul in target", "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"version garbage", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400},
		{"no version", "GET /\r\nHost: a\r\n\r\n", 400},
		{"http/0.9 style", "GET /\r\n\r\n", 400},
		{"http/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"http/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"http/3.1", "GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505},
		{"http/1.2 without host (read as 1.1)", "GET / HTTP/1.2\r\n\r\n", 400},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"too many empty lines", strings.Repeat("\r\n", 9) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"too many empty lines, lf", strings.Repeat("\r\n\n", 5) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"too many empty lines, all bare lf", strings.Repeat("\n", 9) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"empty line of a bare cr", "\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"connection names content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close, Content-Length\r\n\r\nhello", 400},
		{"connection names transfer-encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n0\r\n\r\n", 400},
		{"connection names host", "GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n", 400},
		{"request line too long", "GET /" + long + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"request line of 8 KiB and a byte", "GET /" + strings.Repeat("a", 8<<10-14+1) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"101 fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n", 431},
		{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + manyFields + "\r\n", 431},
		{"head too large", "GET / HTTP/1.1\r\nHost: a\r\n" + bigField + "\r\n", 431},
		{"unknown expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size leading space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size sign", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk data too long", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n", 400},
		{"chunk bare lf", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
		{"chunk data bare lf", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400},
		{"chunk ext ctl", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk ext bare lf", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk ext too long", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("a", 5000) + "\r\nhello\r\n0\r\n\r\n", 400},
		{"trailer obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", 400},
		{"trailer space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX : a\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			var rejected atomic.Int64
			handler := HandlerFunc(func(w ResponseWriter, r *Request) {
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					return // a body error: the server answers
				}
				calls.Add(1)
				w.Write([]byte("ok"))
			})
			s := &Server{Handler: handler, OnReject: func(int, string, netip.AddrPort) { rejected.Add(1) }}
			addr := startServer(t, s)
			got := roundTripRaw(t, addr, tc.raw)
			want := fmt.Sprintf("HTTP/1.1 %d ", tc.status)
			if !strings.HasPrefix(got, want) {
				t.Fatalf("got %q, want a %d response", got, tc.status)
			}
			if !strings.Contains(got, "\r\nConnection: close\r\n") {
				t.Errorf("got %q, want Connection: close", got)
			}
			if n := strings.Count(got, "HTTP/1.1 "); n != 1 {
				t.Errorf("got %d responses, want 1: %q", n, got)
			}
			if calls.Load() != 0 {
				t.Errorf("handler completed %d times, want 0", calls.Load())
			}
			if rejected.Load() != 1 {
				t.Errorf("OnReject called %d times, want 1", rejected.Load())
			}
		})
	}
}

// TestAccepted checks inputs that are strict but valid.
func TestAccepted(t *testing.T) {
	cases := []struct {
		name, raw         string
		path, query, host string
		body              string
		chunked           bool
	}{
		{"plain", "GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n", "/a", "b=c", "h", "", false},
		{"empty query", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", "/a", "", "h", "", false},
		{"leading crlf", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "/", "", "h", "", false},
		{"eight leading crlf", strings.Repeat("\r\n", 8) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "/", "", "h", "", false},
		{"leading empty lines (the last crlf) before a head larger than the first buffer", "\r\n\n\r\nGET /big HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 6<<10) + "\r\n\r\n", "/big", "", "h", "", false},
		{"leading empty lines (the last lf) before a head larger than the first buffer", "\r\n\nGET /big HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 6<<10) + "\r\n\r\n", "/big", "", "h", "", false},
		{"eight leading bare lf", strings.Repeat("\n", 8) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "/", "", "h", "", false},
		{"eight leading empty lines, crlf and lf", "\r\n\n\r\n\n\r\n\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "/", "", "h", "", false},
		{"http/1.2 read as 1.1", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", "/", "", "h", "", false},
		{"a request line of 8 KiB", "GET /" + strings.Repeat("a", 8<<10-14) + " HTTP/1.1\r\nHost: h\r\n\r\n", "/" + strings.Repeat("a", 8<<10-14), "", "h", "", false},
		{"100 fields", "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-A: b\r\n", 99) + "\r\n", "/", "", "h", "", false},
		{"http/1.9 read as 1.1", "POST / HTTP/1.9\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "/", "", "h", "ok", true},
		{"connection names an end-to-end field", "GET / HTTP/1.1\r\nHost: h\r\nConnection: x-foo, close\r\nX-Foo: 1\r\n\r\n", "/", "", "h", "", false},
		{"identical cl", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "/", "", "h", "hello", false},
		{"cl list identical", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", "/", "", "h", "hello", false},
		{"te case", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n5\r\nhello\r\n0\r\n\r\n", "/", "", "h", "hello", true},
		{"chunk ext and trailer", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n", "/", "", "h", "hello world", true},
		{"absolute form", "GET http://Example.com:80/p?q HTTP/1.1\r\nHost: example.com:80\r\n\r\n", "/p", "q", "Example.com:80", "", false},
		{"absolute no path", "GET https://example.com HTTP/1.1\r\nHost: EXAMPLE.com\r\n\r\n", "/", "", "example.com", "", false},
		{"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*", "", "h", "", false},
		{"http/1.0 no host", "GET / HTTP/1.0\r\n\r\n", "/", "", "", "", false},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xe9\r\n\r\n", "/", "", "h", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct {
				method, path, query, host, body string
				chunked                         bool
				cl                              int64
			}
			got := make(chan seen, 1)
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("reading body: %v", err)
				}
				got <- seen{string(r.Method), string(r.Path), string(r.Query), string(r.Host), string(b), r.Chunked, r.ContentLength}
				w.Header().SetString("Connection", "close")
			})}
			addr := startServer(t, s)
			resp := roundTripRaw(t, addr, tc.raw)
			if !strings.HasPrefix(resp, "HTTP/1.1 200 ") {
				t.Fatalf("got %q, want 200", resp)
			}
			g := <-got
			method := strings.Fields(strings.TrimLeft(tc.raw, "\r\n"))[0] // the request line's first word
			if g.method != method || g.path != tc.path || g.query != tc.query || g.host != tc.host || g.body != tc.body || g.chunked != tc.chunked {
				t.Errorf("got %+v, want method %q path %q query %q host %q body %q chunked %v", g, method, tc.path, tc.query, tc.host, tc.body, tc.chunked)
			}
			if tc.chunked && g.cl != -1 {
				t.Errorf("got ContentLength %d, want -1 for chunked", g.cl)
			}
		})
	}
}

var _ = errors.New
var _ sync.Mutex
