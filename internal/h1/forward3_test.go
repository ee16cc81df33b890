package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestForwardStatusLines: the status an upstream sends reaches the client
// as it is (every digit counts); a reason phrase with a control byte, its
// first included, and an empty line where the status line should be, are
// refused as the upstream's fault.
func TestForwardStatusLines(t *testing.T) {
	for _, c := range []struct {
		resp   string
		status int
	}{
		{"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n", 418},
		{"HTTP/1.1 299 x\r\nContent-Length: 0\r\n\r\n", 299},
		{"HTTP/1.1 299 \x01x\r\nContent-Length: 0\r\n\r\n", 0},
		{"HTTP/1.1 299 x\x01\r\nContent-Length: 0\r\n\r\n", 0},
		{"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0}, // an empty line first is no status line
	} {
		u, _ := recordingUpstream(t, c.resp)
		rec := newRecorder()
		_, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		var fe *ForwardError
		switch {
		case c.status != 0 && (err != nil || rec.status != c.status):
			t.Errorf("%q: got %d and %v, want %d", c.resp, rec.status, err, c.status)
		case c.status == 0 && (!errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol):
			t.Errorf("%q: got %d and %v, want ErrUpstreamProtocol", c.resp, rec.status, err)
		}
	}
}

// TestForwardHeadTooLarge: a response head over MaxResponseHeaderBytes (1
// byte here: any head) is the upstream's protocol error, a
// *ProtocolError whose Status is 502.
func TestForwardHeadTooLarge(t *testing.T) {
	u, _ := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	u.MaxResponseHeaderBytes = 1
	_, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	var pe *ProtocolError
	if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || !errors.As(err, &pe) || pe.Status != 502 || pe.Reason != "response head too large" {
		t.Errorf("got %v, want ErrUpstreamProtocol with a 502 ProtocolError", err)
	}
}

// TestForward204KeepAlive: a 204 or a 304 without a length ends with its
// head: it is passed on at once and its connection is reused (nothing waits
// for the upstream to close).
func TestForward204KeepAlive(t *testing.T) {
	for _, status := range []int{204, 304} {
		u, _ := recordingUpstream(t, fmt.Sprintf("HTTP/1.1 %d %s\r\n\r\n", status, statusText(status)))
		for i := range 2 {
			rec := newRecorder()
			res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			if err != nil || rec.status != status || res.Reused != (i == 1) {
				t.Errorf("%d, request %d: got %d %v %+v, want %d, reused the second time", status, i, rec.status, err, res, status)
			}
		}
	}
}

// TestForwardUpgradeOneByteAtHand: a single byte the upstream sent right
// after its 101 reaches the client first.
func TestForwardUpgradeOneByteAtHand(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nh")
		io.Copy(c, br) // echo
	})
	c := dial(t, proxyServer(t, u, nil))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
	br := bufio.NewReader(c)
	if r := readResponse(t, br, false); r.status != 101 {
		t.Fatalf("got %q, want 101", r.raw)
	}
	io.WriteString(c, "i")
	buf := make([]byte, 2)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hi" {
		t.Errorf("got %q %v, want the upstream's byte, then the echo", buf, err)
	}
}

// TestForwardConnectionCloseNotReused: a response that says
// "Connection: close" ends its connection's use even when the upstream
// keeps it open: the next request goes on a new one.
func TestForwardConnectionCloseNotReused(t *testing.T) {
	u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
	for i := range 2 {
		rec := newRecorder()
		res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		if err != nil || rec.status != 200 || res.Reused {
			t.Errorf("request %d: got %d %v %+v, want 200 on a new connection", i, rec.status, err, res)
		}
		<-reqs
	}
}

// TestForwardChunkedBodyStreamed: a chunked client body that arrives in two
// parts goes upstream as it comes (the upstream has the head and the first
// part before the client sends the rest), within MaxSentBytes: a body of
// exactly MaxSentBytes passes; one byte more, in a last chunk of one byte,
// is refused.
func TestForwardChunkedBodyStreamed(t *testing.T) {
	for _, c := range []struct {
		name   string
		max    int64
		second string
		body   string // what the upstream reads; "" when refused
	}{
		{"no limit", 0, "5\r\nfghij\r\n0\r\n\r\n", "abcdefghij"},
		{"exactly MaxSentBytes", 10, "5\r\nfghij\r\n0\r\n\r\n", "abcdefghij"},
		{"a byte over MaxSentBytes", 5, "1\r\nf\r\n0\r\n\r\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			gotFirst := make(chan struct{})
			bodies := make(chan string, 1)
			u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
				conn.SetDeadline(soon(t))
				readRequestHead(br)
				cr := &chunkedReader{}
				cr.reset(br, 1<<10)
				first := make([]byte, 5)
				if _, err := io.ReadFull(cr, first); err != nil {
					return
				}
				close(gotFirst)
				rest, err := io.ReadAll(cr)
				if err != nil {
					return
				}
				bodies <- string(first) + string(rest)
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			})
			u.MaxSentBytes = c.max
			cc := dial(t, proxyServer(t, u, nil))
			io.WriteString(cc, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
			select {
			case <-gotFirst:
			case <-time.After(time.Until(soon(t))):
				t.Fatal("the upstream did not get the first part before the rest was sent")
			}
			io.WriteString(cc, c.second)
			r := readResponse(t, bufio.NewReader(cc), false)
			switch {
			case c.body != "" && r.status != 200:
				t.Errorf("got %d, want 200", r.status)
			case c.body != "" && <-bodies != c.body:
				t.Error("the upstream got another body")
			case c.body == "" && r.status == 200:
				t.Errorf("got %d, want the body refused", r.status)
			}
		})
	}
}

// TestForwardLengthPassedOn: an upstream's Content-Length is passed on for
// every status but 204 (203 and 205 included), and no length is made up
// for a chunked response.
func TestForwardLengthPassedOn(t *testing.T) {
	for _, c := range []struct {
		resp, want string
		has        bool
	}{
		{"HTTP/1.1 203 Non-Authoritative Information\r\nContent-Length: 3\r\n\r\nabc", "3", true},
		{"HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n", "0", true},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "", false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "", false},
	} {
		u, _ := recordingUpstream(t, c.resp)
		rec := newRecorder()
		_, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		if err != nil || rec.hdr.Has("Content-Length") != c.has || string(rec.hdr.Get("Content-Length")) != c.want {
			t.Errorf("%q: got Content-Length %q (%v) and %v, want %q (%v)", c.resp, rec.hdr.Get("Content-Length"), rec.hdr.Has("Content-Length"), err, c.want, c.has)
		}
	}
}

// TestForwardConnectionNamed: only the fields a Connection field names are
// dropped, both ways; a field with a ten-letter name is no Connection
// field. On a 101 the fields the Connection field names are dropped too,
// Upgrade excepted.
func TestForwardConnectionNamed(t *testing.T) {
	var h Header
	h.SetString("Connection", "keep-alive, X-Gone")
	h.SetString("X-Tenchars", "X-Other")
	h.SetString("X-Other", "1")
	h.SetString("X-Gone", "2")
	u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Gone\r\nX-Tenchars: X-Other\r\nX-Other: 1\r\nX-Gone: 2\r\nContent-Length: 0\r\n\r\n")
	rec := newRecorder()
	if _, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/"), Header: &h}); err != nil {
		t.Fatal(err)
	}
	req := <-reqs
	if !strings.Contains(req, "\r\nX-Tenchars: X-Other\r\nX-Other: 1\r\n") || strings.Contains(req, "X-Gone") {
		t.Errorf("the upstream got %q, want X-Tenchars and X-Other, not X-Gone", req)
	}
	if string(rec.hdr.Get("X-Tenchars")) != "X-Other" || string(rec.hdr.Get("X-Other")) != "1" || rec.hdr.Has("X-Gone") {
		t.Errorf("the client got X-Tenchars %q, X-Other %q, X-Gone %v: want X-Other, 1 and none", rec.hdr.Get("X-Tenchars"), rec.hdr.Get("X-Other"), rec.hdr.Has("X-Gone"))
	}

	u, _ = recordingUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Gone\r\nUpgrade: x\r\nX-Gone: 2\r\nX-Kept: 3\r\n\r\n")
	rec = newRecorder()
	forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/"), Upgrade: []byte("x")}) // the recorder cannot be hijacked
	if rec.status != 101 || string(rec.hdr.Get("Upgrade")) != "x" || rec.hdr.Has("X-Gone") || string(rec.hdr.Get("X-Kept")) != "3" {
		t.Errorf("the client got %d with Upgrade %q, X-Gone %v, X-Kept %q: want 101, x, none and 3", rec.status, rec.hdr.Get("Upgrade"), rec.hdr.Has("X-Gone"), rec.hdr.Get("X-Kept"))
	}
}

// TestForwardUpgradeClientFails: a 101 whose client cannot take it (the
// flush fails, or the connection cannot be taken) is the client's fault,
// after the response was handed over.
func TestForwardUpgradeClientFails(t *testing.T) {
	for _, c := range []struct {
		name string
		w    ResponseWriter
		want string
	}{
		{"the flush fails", &failWriter{failFlush: true}, "writing 101 response: "},
		{"no hijack", newRecorder(), "taking the client connection: "},
	} {
		u, _ := recordingUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
		_, err := forwardWithin(t, u, c.w, &Outgoing{Method: []byte("GET"), Path: []byte("/"), Upgrade: []byte("x")})
		var fe *ForwardError
		if !errors.As(err, &fe) || fe.Kind != ErrClient || !fe.Responded || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrClient, responded: %s…", c.name, err, c.want)
		}
	}
}

// TestForwardResponseHeadEdges: a response head line longer than the
// connection's read buffer is read whole; a head cut off by the upstream's
// close is io.ErrUnexpectedEOF, the upstream's protocol error.
func TestForwardResponseHeadEdges(t *testing.T) {
	long := strings.Repeat("v", 3*upReadBufSize)
	u, _ := recordingUpstream(t, "HTTP/1.1 200 OK\r\nX-Long: "+long+"\r\nContent-Length: 2\r\n\r\nok")
	rec := newRecorder()
	if _, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")}); err != nil || string(rec.hdr.Get("X-Long")) != long || rec.body.String() != "ok" {
		t.Errorf("a long field line: got %v, %d bytes of it and %q", err, len(rec.hdr.Get("X-Long")), rec.body.String())
	}
	u = rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nX-A: 1")
	})
	_, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a head cut off: got %v, want ErrUpstreamProtocol with io.ErrUnexpectedEOF", err)
	}
}
