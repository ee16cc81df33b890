package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestResponseFraming: the server frames every response itself, whatever
// the handler declares or writes, so that the client reads exactly one
// response per request and the next response on the connection is intact.
func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("b", 100<<10)
	type result struct {
		n   int
		err error
	}
	cases := []struct {
		name    string
		method  string
		handler func(w ResponseWriter) []result
		status  int
		has     map[string]string // fields that must be there ("" value: any)
		hasNot  []string          // fields that must not be there
		body    string
		writes  []result // what each Write returned
		closes  bool     // the connection closes after this response
	}{
		{
			name: "content-length 0 then a write is an empty response",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Content-Length", "0")
				n, err := w.Write([]byte("abc"))
				return []result{{n, err}}
			},
			status: 200, has: map[string]string{"content-length": "0"}, hasNot: []string{"transfer-encoding"},
			body: "", writes: []result{{0, ErrContentLength}},
		},
		{
			name: "a write past the declared length is cut at it",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Content-Length", "3")
				n, err := w.Write([]byte("abcdef"))
				n2, err2 := w.Write([]byte("g"))
				return []result{{n, err}, {n2, err2}}
			},
			status: 200, has: map[string]string{"content-length": "3"},
			body: "abc", writes: []result{{3, ErrContentLength}, {0, ErrContentLength}},
		},
		{
			name: "a large body written without a length is chunked",
			handler: func(w ResponseWriter) []result {
				n, err := w.Write([]byte(big))
				return []result{{n, err}}
			},
			status: 200, has: map[string]string{"transfer-encoding": "chunked"}, hasNot: []string{"content-length"},
			body: big, writes: []result{{len(big), nil}},
		},
		{
			name: "a large body after a small one is chunked",
			handler: func(w ResponseWriter) []result {
				n, err := w.Write([]byte("a"))
				n2, err2 := w.Write([]byte(big))
				return []result{{n, err}, {n2, err2}}
			},
			status: 200, has: map[string]string{"transfer-encoding": "chunked"}, hasNot: []string{"content-length"},
			body: "a" + big, writes: []result{{1, nil}, {len(big), nil}},
		},
		{
			name: "a large body with a declared length keeps it",
			handler: func(w ResponseWriter) []result {
				w.Header().SetContentLength(int64(len(big)))
				n, err := w.Write([]byte(big))
				return []result{{n, err}}
			},
			status: 200, has: map[string]string{"content-length": fmt.Sprint(len(big))}, hasNot: []string{"transfer-encoding"},
			body: big, writes: []result{{len(big), nil}},
		},
		{
			name: "a small body gets a computed length",
			handler: func(w ResponseWriter) []result {
				n, err := w.Write([]byte("hello"))
				n2, err2 := w.Write([]byte(" world"))
				return []result{{n, err}, {n2, err2}}
			},
			status: 200, has: map[string]string{"content-length": "11"}, hasNot: []string{"transfer-encoding"},
			body: "hello world", writes: []result{{5, nil}, {6, nil}},
		},
		{
			name: "no body at all gets content-length 0",
			handler: func(w ResponseWriter) []result {
				return nil
			},
			status: 200, has: map[string]string{"content-length": "0"}, hasNot: []string{"transfer-encoding"},
		},
		{
			name: "a flushed body is chunked",
			handler: func(w ResponseWriter) []result {
				n, err := w.Write([]byte("ab"))
				w.Flush()
				n2, err2 := w.Write([]byte("cd"))
				return []result{{n, err}, {n2, err2}}
			},
			status: 200, has: map[string]string{"transfer-encoding": "chunked"}, hasNot: []string{"content-length"},
			body: "abcd", writes: []result{{2, nil}, {2, nil}},
		},
		{
			name: "no body on 304",
			handler: func(w ResponseWriter) []result {
				w.WriteHeader(304)
				n, err := w.Write([]byte("x"))
				return []result{{n, err}}
			},
			status: 304, hasNot: []string{"content-length", "transfer-encoding"},
			writes: []result{{0, ErrBodyNotAllowed}},
		},
		{
			name: "a 304 keeps the handler's content-length, without a body",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Content-Length", "42")
				w.WriteHeader(304)
				n, err := w.Write([]byte("x"))
				return []result{{n, err}}
			},
			status: 304, has: map[string]string{"content-length": "42"}, hasNot: []string{"transfer-encoding"},
			writes: []result{{0, ErrBodyNotAllowed}},
		},
		{
			name: "no body and no content-length on 204",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Content-Length", "5")
				w.WriteHeader(204)
				n, err := w.Write([]byte("hello"))
				return []result{{n, err}}
			},
			status: 204, hasNot: []string{"content-length", "transfer-encoding"},
			writes: []result{{0, ErrBodyNotAllowed}},
		},
		{
			name:   "no body on HEAD, the writes are accepted",
			method: "HEAD",
			handler: func(w ResponseWriter) []result {
				n, err := w.Write([]byte("hello"))
				return []result{{n, err}}
			},
			status: 200, hasNot: []string{"transfer-encoding"},
			writes: []result{{5, nil}},
		},
		{
			name:   "HEAD keeps the handler's content-length",
			method: "HEAD",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Content-Length", "5")
				n, err := w.Write([]byte(big))
				return []result{{n, err}}
			},
			status: 200, has: map[string]string{"content-length": "5"}, hasNot: []string{"transfer-encoding"},
			writes: []result{{len(big), nil}},
		},
		{
			name: "hop-by-hop and malformed fields are dropped",
			handler: func(w ResponseWriter) []result {
				h := w.Header()
				h.SetString("Connection", "x-a")
				h.SetString("Keep-Alive", "timeout=5")
				h.SetString("Transfer-Encoding", "chunked")
				h.SetString("Trailer", "x-t")
				h.SetString("Upgrade", "websocket")
				h.SetString("Proxy-Connection", "keep-alive")
				h.SetString("Bad Name", "1")
				h.SetString("X-Split", "a\r\nX-Injected: 1")
				h.SetString("X-Ok", "yes")
				w.Write([]byte("ok"))
				return nil
			},
			status: 200, has: map[string]string{"x-ok": "yes", "content-length": "2", "date": ""},
			hasNot: []string{"keep-alive", "transfer-encoding", "trailer", "upgrade", "proxy-connection", "bad name", "x-split", "x-injected", "connection"},
			body:   "ok",
		},
		{
			name: "the handler's date is kept",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Date", "then")
				return nil
			},
			status: 200, has: map[string]string{"date": "then"},
		},
		{
			name: "the handler's connection close closes",
			handler: func(w ResponseWriter) []result {
				w.Header().SetString("Connection", "keep-alive, close")
				w.Write([]byte("bye"))
				return nil
			},
			status: 200, has: map[string]string{"connection": "close", "content-length": "3"}, body: "bye", closes: true,
		},
		{
			name: "a status over 999 is 500",
			handler: func(w ResponseWriter) []result {
				w.WriteHeader(1000)
				return nil
			},
			status: 500,
		},
		{
			name: "a status of 999 is kept",
			handler: func(w ResponseWriter) []result {
				w.WriteHeader(999)
				return nil
			},
			status: 999,
		},
		{
			name: "a status under 100 is 500",
			handler: func(w ResponseWriter) []result {
				w.WriteHeader(99)
				return nil
			},
			status: 500,
		},
		{
			name: "the first status counts",
			handler: func(w ResponseWriter) []result {
				w.WriteHeader(201)
				w.WriteHeader(202)
				return nil
			},
			status: 201,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []result, 1)
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				if string(r.Path) == "/next" {
					w.Write([]byte("next"))
					return
				}
				got <- tc.handler(w)
			})}
			addr := startServer(t, s)
			c := dial(t, addr)
			br := bufio.NewReader(c)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n", method)
			r := readResponse(t, br, method == "HEAD")
			if r.status != tc.status {
				t.Errorf("got status %d, want %d (%q)", r.status, tc.status, r.raw)
			}
			for k, v := range tc.has {
				if gv, ok := r.header[k]; !ok || v != "" && gv != v {
					t.Errorf("field %s: got %q (present %v), want %q (%q)", k, gv, ok, v, r.raw)
				}
			}
			for _, k := range tc.hasNot {
				if _, ok := r.header[k]; ok {
					t.Errorf("field %s is there, want it dropped (%q)", k, r.raw)
				}
			}
			if strings.Count(strings.ToLower(r.raw), "\r\ndate:") != 1 {
				t.Errorf("got %d Date fields, want 1 (%q)", strings.Count(strings.ToLower(r.raw), "\r\ndate:"), r.raw)
			}
			if r.body != tc.body {
				t.Errorf("got a body of %d bytes, want %d", len(r.body), len(tc.body))
			}
			writes := <-got
			if len(writes) != len(tc.writes) && tc.writes != nil {
				t.Fatalf("got %d writes, want %d", len(writes), len(tc.writes))
			}
			for i, w := range tc.writes {
				if writes[i].n != w.n || !errors.Is(writes[i].err, w.err) || (w.err == nil) != (writes[i].err == nil) {
					t.Errorf("write %d: got %d, %v, want %d, %v", i, writes[i].n, writes[i].err, w.n, w.err)
				}
			}
			if tc.closes {
				if rest, _ := io.ReadAll(br); len(rest) != 0 {
					t.Errorf("got %q after a response that closes, want the close", rest)
				}
				return
			}
			next := readResponse(t, br, false)
			if next.status != 200 || next.body != "next" {
				t.Errorf("the next response: got %q %q, want 200 next", next.raw, next.body)
			}
		})
	}
}

// TestResponseShortBody: a handler that writes less than its declared
// Content-Length leaves the client a truncated body and a closed
// connection, never a response that looks complete followed by another.
func TestResponseShortBody(t *testing.T) {
	for _, size := range []int{2, 100 << 10} {
		s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			w.Header().SetContentLength(int64(size + 3))
			w.Write([]byte(strings.Repeat("x", size)))
		})}
		addr := startServer(t, s)
		got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
		head, body, _ := strings.Cut(got, "\r\n\r\n")
		if !strings.Contains(head+"\r\n", fmt.Sprintf("\r\nContent-Length: %d\r\n", size+3)) || body != strings.Repeat("x", size) {
			t.Errorf("%d bytes of %d: got head %q and %d body bytes, want the declared length, the bytes written and the close", size, size+3, head, len(body))
		}
	}
}

// TestInterimResponses: a 1xx other than 101 goes out at once, before the
// final response, with the fields set so far.
func TestInterimResponses(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Header().SetString("Link", "</a>; rel=preload")
		w.WriteHeader(103)
		w.Header().Del("Link")
		w.WriteHeader(200)
		w.Write([]byte("ok"))
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	r := readResponse(t, br, false)
	if r.status != 103 || r.header["link"] != "</a>; rel=preload" {
		t.Fatalf("got %q, want 103 with Link", r.raw)
	}
	r = readResponse(t, br, false)
	if r.status != 200 || r.body != "ok" || r.header["link"] != "" {
		t.Fatalf("got %q %q, want 200 ok without Link", r.raw, r.body)
	}
	// HTTP/1.0 has no interim responses.
	got := roundTripRaw(t, addr, "GET / HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("HTTP/1.0: got %q, want the final response only", got)
	}
}
