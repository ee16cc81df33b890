package h1

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// soon is a deadline for one wait on a test connection: a few seconds, and
// never past the test's own deadline, so that a server that sends too little
// makes the test fail instead of hanging the test binary.
func soon(t testing.TB) time.Time {
	d := time.Now().Add(5 * time.Second)
	if td, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := td.Deadline(); ok && end.Add(-time.Second).Before(d) {
			d = end.Add(-time.Second)
		}
	}
	return d
}

// errName names what a ResponseWriter method returned, for comparisons.
func errName(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrHijacked):
		return "hijacked"
	case errors.Is(err, ErrAborted):
		return "aborted"
	case errors.Is(err, ErrBodyNotAllowed):
		return "no body"
	case errors.Is(err, ErrContentLength):
		return "too long"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	return "other: " + err.Error()
}

// calls records what the ResponseWriter methods a handler called returned.
type calls []string

func (c *calls) write(w ResponseWriter, s string) {
	n, err := w.Write([]byte(s))
	*c = append(*c, fmt.Sprintf("write %d %s", n, errName(err)))
}

func (c *calls) flush(w ResponseWriter) {
	*c = append(*c, "flush "+errName(w.Flush()))
}

func (c *calls) note(format string, args ...any) {
	*c = append(*c, fmt.Sprintf(format, args...))
}

const (
	// nextReq is pipelined after a case's request: its response shows that
	// the connection still frames responses correctly, and it ends it.
	nextReq  = "GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	nextResp = "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnext"
)

// TestResponseWire: what the server's ResponseWriter puts on the wire, byte
// for byte, for interim responses, 100-continue, upgrades, hijacking,
// aborts, flushes, write errors and the framing of bodies; and what each
// method returns to the handler. Every handler sets "Date: d" so that the
// bytes are fixed; the client reads until the server closes.
func TestResponseWire(t *testing.T) {
	fill := func(n int) string { return strings.Repeat("z", n) }
	fits := 4<<10 - 512 // the largest body kept back to get a length (3.5 KiB)
	cases := []struct {
		name     string
		server   func(s *Server)
		req      string // sent at once
		body     string // sent once the wire so far ends with "100 Continue\r\n\r\n" ("": nothing more)
		handler  func(w ResponseWriter, r *Request, c *calls)
		want     string // every byte the server sends, up to its close
		wantCall []string
	}{
		{
			name: "WriteHeader(100) sends one 100 Continue, however often called",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.WriteHeader(100)
				w.WriteHeader(100)
				w.Header().SetString("Date", "d")
				c.write(w, "ok")
			},
			want:     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			wantCall: []string{"write 2 nil"},
		},
		{
			name: "each 103 goes out with the fields set so far",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				h := w.Header()
				h.SetString("Link", "</a>")
				w.WriteHeader(103)
				h.SetString("Link", "</b>")
				w.WriteHeader(103)
				h.Del("Link")
				h.SetString("Date", "d")
				w.WriteHeader(204)
			},
			want: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
				"HTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n" +
				"HTTP/1.1 204 No Content\r\nDate: d\r\nConnection: close\r\n\r\n",
		},
		{
			name: "199 is interim, 200 final",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.WriteHeader(199)
				c.note("status %d", w.Status())
				w.WriteHeader(200)
				c.write(w, "x")
			},
			want:     "HTTP/1.1 199 \r\nDate: d\r\n\r\nHTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
			wantCall: []string{"status 0", "write 1 nil"},
		},
		{
			name: "a head larger than the write buffer, before a body kept back",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetString("X-Big", fill(6<<10))
				c.write(w, "ok")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nX-Big: " + fill(6<<10) + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			wantCall: []string{"write 2 nil"},
		},
		{
			name: "no interim response after the final status",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.WriteHeader(200)
				w.WriteHeader(103)
				w.WriteHeader(100)
				c.write(w, "x")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
			wantCall: []string{"write 1 nil"},
		},
		{
			name: "no interim response to HTTP/1.0",
			req:  "GET / HTTP/1.0\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.WriteHeader(103)
				w.WriteHeader(100)
				w.Header().SetString("Date", "d")
				c.write(w, "x")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
			wantCall: []string{"write 1 nil"},
		},
		{
			name: "expect 100-continue: the 100 goes out when the body is read, after a 103",
			req:  "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
			body: "hello",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Link", "</a>")
				w.WriteHeader(103)
				w.Header().Del("Link")
				b, err := io.ReadAll(r.Body)
				c.note("read %q %s", b, errName(err))
				w.Header().SetString("Date", "d")
				c.write(w, string(b))
			},
			want: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
				"HTTP/1.1 100 Continue\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
			wantCall: []string{`read "hello" nil`, "write 5 nil"},
		},
		{
			name: "expect 100-continue: a handler's own 100 is the only one",
			req:  "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
			body: "hello",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.WriteHeader(100)
				b, err := io.ReadAll(r.Body)
				c.note("read %q %s", b, errName(err))
				w.WriteHeader(100)
				w.Header().SetString("Date", "d")
				c.write(w, string(b))
			},
			want: "HTTP/1.1 100 Continue\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
			wantCall: []string{`read "hello" nil`, "write 5 nil"},
		},
		{
			name: "expect 100-continue: no 100 once the final status is chosen",
			req:  "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.WriteHeader(202)
				b, err := io.ReadAll(r.Body)
				c.note("read %q %s", b, errName(err))
				w.WriteHeader(100)
				c.write(w, string(b))
			},
			want:     "HTTP/1.1 202 Accepted\r\nDate: d\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
			wantCall: []string{`read "hello" nil`, "write 5 nil"},
		},
		{
			name: "expect 100-continue: a body read again sends no second 100",
			req:  "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
			body: "hello",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				b := make([]byte, 2)
				n, err := io.ReadFull(r.Body, b)
				c.note("read %q %s", b[:n], errName(err))
				rest, err := io.ReadAll(r.Body)
				c.note("read %q %s", rest, errName(err))
				w.Header().SetString("Date", "d")
			},
			want:     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			wantCall: []string{`read "he" nil`, `read "llo" nil`},
		},
		{
			name: "101: the handler's fields, no body, no framing, then the hijacked connection",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				h := w.Header()
				h.SetString("Date", "d")
				h.SetString("Connection", "Upgrade")
				h.SetString("Upgrade", "x")
				h.SetString("Content-Length", "3")
				w.WriteHeader(101)
				c.write(w, "abc")
				hijackAndSend(w, c, "raw")
			},
			want:     "HTTP/1.1 101 Switching Protocols\r\nDate: d\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nraw",
			wantCall: []string{"write 0 no body", "hijack nil", "write 0 hijacked", "flush hijacked", "hijack again hijacked"},
		},
		{
			name:   "101 while draining: still no Connection field of the server's",
			server: func(s *Server) { s.SetDraining(true) },
			req:    "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				h := w.Header()
				h.SetString("Date", "d")
				h.SetString("Connection", "Upgrade")
				h.SetString("Upgrade", "x")
				w.WriteHeader(101)
				hijackAndSend(w, c, "raw")
			},
			want:     "HTTP/1.1 101 Switching Protocols\r\nDate: d\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nraw",
			wantCall: []string{"hijack nil", "write 0 hijacked", "flush hijacked", "hijack again hijacked"},
		},
		{
			name: "after Hijack nothing of the response is sent",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				hijackAndSend(w, c, "raw")
				w.WriteHeader(500)
				c.note("status %d", w.Status())
			},
			want:     "raw",
			wantCall: []string{"hijack nil", "write 0 hijacked", "flush hijacked", "hijack again hijacked", "status 0"},
		},
		{
			name: "no Hijack after a final status other than 101",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, "a")
				_, _, err := w.Hijack()
				c.note("hijack %v", err != nil)
				c.write(w, "b")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nab" + nextResp,
			wantCall: []string{"write 1 nil", "hijack true", "write 1 nil"},
		},
		{
			name: "an abort before the head sends nothing, and closes",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, "a")
				w.(Aborter).Abort()
				c.write(w, "b")
				c.flush(w)
				w.WriteHeader(500)
			},
			want:     "",
			wantCall: []string{"write 1 nil", "write 0 aborted", "flush aborted"},
		},
		{
			name: "an abort with nothing written sends nothing",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.(Aborter).Abort()
				c.flush(w)
				c.write(w, "b")
				w.WriteHeader(500) // chooses nothing after an abort
				c.note("status %d", w.Status())
			},
			want:     "",
			wantCall: []string{"flush aborted", "write 0 aborted", "status 0"},
		},
		{
			name: "an empty write sends no chunk (a chunk of 0 would end the body)",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, "a")
				c.flush(w)
				c.write(w, "")
				c.write(w, "b")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n" + nextResp,
			wantCall: []string{"write 1 nil", "flush nil", "write 0 nil", "write 1 nil"},
		},
		{
			name: "an abort after a chunk: no last chunk, and the close",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, "a")
				c.flush(w)
				w.(Aborter).Abort()
				c.write(w, "b")
				c.flush(w)
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
			wantCall: []string{"write 1 nil", "flush nil", "write 0 aborted", "flush aborted"},
		},
		{
			name: "a flush before anything else sends a 200 head, chunked",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.flush(w)
				c.write(w, "x")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n" + nextResp,
			wantCall: []string{"flush nil", "write 1 nil"},
		},
		{
			name: "content-length 0, flushed, then a write: an empty body",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetString("Content-Length", "0")
				c.flush(w)
				c.write(w, "abc")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\n\r\n" + nextResp,
			wantCall: []string{"flush nil", "write 0 too long"},
		},
		{
			name: "a declared length, flushed, then written in full",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetContentLength(12)
				c.flush(w)
				c.write(w, "0123456789ab")
				c.write(w, "c")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 12\r\n\r\n0123456789ab" + nextResp,
			wantCall: []string{"flush nil", "write 12 nil", "write 0 too long"},
		},
		{
			name: "a body that fits in the write buffer gets a length",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, fill(fits))
			},
			want:     fmt.Sprintf("HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: %d\r\n\r\n%s", fits, fill(fits)) + nextResp,
			wantCall: []string{fmt.Sprintf("write %d nil", fits)},
		},
		{
			name: "a body one byte larger is chunked",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, fill(fits+1))
			},
			want:     fmt.Sprintf("HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", fits+1, fill(fits+1)) + nextResp,
			wantCall: []string{fmt.Sprintf("write %d nil", fits+1)},
		},
		{
			name: "small writes that outgrow the buffer: the first ones in the first chunk",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, fill(fits-1))
				c.write(w, "ab")
			},
			want:     fmt.Sprintf("HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n2\r\nab\r\n0\r\n\r\n", fits-1, fill(fits-1)) + nextResp,
			wantCall: []string{fmt.Sprintf("write %d nil", fits-1), "write 2 nil"},
		},
		{
			name: "a large body to HTTP/1.0 ends with the close",
			req:  "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, fill(3*writeBufSize))
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nConnection: close\r\n\r\n" + fill(3*writeBufSize),
			wantCall: []string{fmt.Sprintf("write %d nil", 3*writeBufSize)},
		},
		{
			name: "HTTP/1.0 keep-alive with a length",
			req:  "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, "x")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx" + nextResp,
			wantCall: []string{"write 1 nil"},
		},
		{
			name: "HEAD: the writes are counted, nothing is sent after the head",
			req:  "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, fill(3*writeBufSize))
				c.flush(w)
				c.write(w, "x")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\n\r\n" + nextResp,
			wantCall: []string{fmt.Sprintf("write %d nil", 3*writeBufSize), "flush nil", "write 1 nil"},
		},
		{
			name: "HEAD keeps a declared length, without the body",
			req:  "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetContentLength(5)
				c.write(w, "hello")
			},
			want:     "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\n\r\n" + nextResp,
			wantCall: []string{"write 5 nil"},
		},
		{
			name: "304 keeps a declared length, without the body",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetContentLength(42)
				w.WriteHeader(304)
				c.write(w, "x")
				c.flush(w)
			},
			want:     "HTTP/1.1 304 Not Modified\r\nDate: d\r\nContent-Length: 42\r\n\r\n" + nextResp,
			wantCall: []string{"write 0 no body", "flush nil"},
		},
		{
			name: "304 without a declared length has none",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.WriteHeader(304)
				c.write(w, "x")
			},
			want:     "HTTP/1.1 304 Not Modified\r\nDate: d\r\n\r\n" + nextResp,
			wantCall: []string{"write 0 no body"},
		},
		{
			name: "304: a length removed after WriteHeader is not sent",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetContentLength(42)
				w.WriteHeader(304)
				w.Header().Del("Content-Length")
			},
			want: "HTTP/1.1 304 Not Modified\r\nDate: d\r\n\r\n" + nextResp,
		},
		{
			name: "204 drops a declared length and the body",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetContentLength(5)
				w.WriteHeader(204)
				c.write(w, "hello")
				c.flush(w)
			},
			want:     "HTTP/1.1 204 No Content\r\nDate: d\r\n\r\n" + nextResp,
			wantCall: []string{"write 0 no body", "flush nil"},
		},
		{
			name: "fields without a name are dropped",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().AddString("", "v")
				w.Header().AddString("X-Ok", "yes")
				w.Header().SetString("Date", "d")
			},
			want: "HTTP/1.1 200 OK\r\nX-Ok: yes\r\nDate: d\r\nContent-Length: 0\r\n\r\n" + nextResp,
		},
		{
			name:   "a large write that fails returns 0 and the error, which sticks",
			server: func(s *Server) { s.WriteTimeout = time.Nanosecond },
			req:    "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, fill(3*writeBufSize))
				c.write(w, "x")
				c.flush(w)
				c.note("written %d", w.Written())
			},
			want:     "",
			wantCall: []string{"write 0 timeout", "write 0 timeout", "flush timeout", "written 0"},
		},
		{
			name:   "a 101 head that cannot be sent: Hijack fails",
			server: func(s *Server) { s.WriteTimeout = time.Nanosecond },
			req:    "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				w.Header().SetString("Connection", "Upgrade")
				w.Header().SetString("Upgrade", "x")
				w.WriteHeader(101)
				conn, _, err := w.Hijack()
				c.note("hijack %s %v", errName(err), conn != nil)
				if conn != nil {
					conn.Close()
				}
			},
			want:     "",
			wantCall: []string{"hijack timeout false"},
		},
		{
			name:   "a flush that fails: the error sticks",
			server: func(s *Server) { s.WriteTimeout = time.Nanosecond },
			req:    "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + nextReq,
			handler: func(w ResponseWriter, r *Request, c *calls) {
				w.Header().SetString("Date", "d")
				c.write(w, "a")
				c.flush(w)
				c.write(w, "b")
				c.flush(w)
				c.note("written %d", w.Written())
			},
			want:     "",
			wantCall: []string{"write 1 nil", "flush timeout", "write 0 timeout", "flush timeout", "written 1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan calls, 1)
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				if string(r.Path) == "/next" {
					w.Header().SetString("Date", "d")
					w.Write([]byte("next"))
					return
				}
				var c calls
				defer func() { got <- c }()
				tc.handler(w, r, &c)
			})}
			if tc.server != nil {
				tc.server(s)
			}
			addr := startServer(t, s)
			c := dial(t, addr)
			c.SetDeadline(soon(t))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			var wire strings.Builder
			buf := make([]byte, 64<<10)
			sent := tc.body == ""
			for {
				n, err := c.Read(buf)
				wire.Write(buf[:n])
				if !sent && strings.HasSuffix(wire.String(), "100 Continue\r\n\r\n") {
					io.WriteString(c, tc.body)
					sent = true
				}
				if err == io.EOF || isConnReset(err) {
					break
				}
				if err != nil {
					t.Fatalf("reading: %v, after %q", err, wire.String())
				}
			}
			if wire.String() != tc.want {
				t.Errorf("got on the wire\n%q\nwant\n%q", trimLong(wire.String()), trimLong(tc.want))
			}
			select {
			case calls := <-got:
				if strings.Join(calls, "; ") != strings.Join(tc.wantCall, "; ") {
					t.Errorf("the handler's calls returned\n%q\nwant\n%q", calls, tc.wantCall)
				}
			case <-time.After(time.Until(soon(t))):
				t.Fatal("the handler did not return")
			}
		})
	}
}

// hijackAndSend hijacks w, checks that the ResponseWriter refuses
// everything afterwards, sends s on the connection and closes it.
func hijackAndSend(w ResponseWriter, c *calls, s string) {
	conn, _, err := w.Hijack()
	c.note("hijack %s", errName(err))
	if err != nil {
		return
	}
	defer conn.Close()
	c.write(w, "late")
	c.flush(w)
	_, _, err = w.Hijack()
	c.note("hijack again %s", errName(err))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, s)
}

// trimLong shortens long wire strings in failure messages.
func trimLong(s string) string {
	if len(s) <= 400 {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)…%s", s[:200], len(s)-400, s[len(s)-200:])
}

// TestResponseDate: the server's Date field is the IMF-fixdate of the
// request's arrival, formatted again whenever the second changes.
func TestResponseDate(t *testing.T) {
	base := time.Date(2026, 12, 6, 7, 8, 9, 0, time.UTC)
	for _, at := range []time.Time{
		base, base.Add(400 * time.Millisecond), base.Add(time.Second), base.Add(-time.Hour),
		base.Add(-time.Hour + 999*time.Millisecond), base.In(time.FixedZone("X", 3600)),
	} {
		want := at.UTC().Format(http.TimeFormat)
		if got := string(appendDate([]byte("Date: "), at)); got != "Date: "+want {
			t.Errorf("appendDate(%v) = %q, want %q", at, got, "Date: "+want)
		}
	}
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {})}
	addr := startServer(t, s)
	before := time.Now().Truncate(time.Second)
	got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	_, rest, ok := strings.Cut(got, "\r\nDate: ")
	date, _, _ := strings.Cut(rest, "\r\n")
	d, err := http.ParseTime(date)
	if !ok || err != nil || len(date) != len(http.TimeFormat) || d.Before(before) || d.After(time.Now()) {
		t.Errorf("got Date %q (%v, %v) in %q, want the time of the request", date, d, err, got)
	}
}
