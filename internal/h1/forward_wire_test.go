package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// readRawRequest reads one request from br as the bytes that came (head,
// then the body by its framing: Content-Length, or chunked without
// trailers).
func readRawRequest(br *bufio.Reader) (string, error) {
	var raw strings.Builder
	cl, chunked := 0, false
	for {
		l, err := br.ReadString('\n')
		raw.WriteString(l)
		if err != nil {
			return raw.String(), err
		}
		if l == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimRight(l, "\r\n"), ": ")
		switch strings.ToLower(k) {
		case "content-length":
			cl, _ = strconv.Atoi(v)
		case "transfer-encoding":
			chunked = true
		}
	}
	if !chunked {
		b := make([]byte, cl)
		n, err := io.ReadFull(br, b)
		raw.Write(b[:n])
		return raw.String(), err
	}
	for {
		l, err := br.ReadString('\n')
		raw.WriteString(l)
		if err != nil {
			return raw.String(), err
		}
		size, err := strconv.ParseInt(strings.TrimRight(l, "\r\n"), 16, 64)
		if err != nil {
			return raw.String(), err
		}
		b := make([]byte, size+2)
		n, err := io.ReadFull(br, b)
		raw.Write(b[:n])
		if err != nil || size == 0 {
			return raw.String(), err
		}
	}
}

// recordingUpstream answers every request with resp and sends the raw
// request it read (or what it read before an error) on the channel.
func recordingUpstream(t *testing.T, resp string) (*Upstream, <-chan string) {
	reqs := make(chan string, 16)
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		for {
			raw, err := readRawRequest(br)
			if raw != "" {
				reqs <- raw
			}
			if err != nil {
				return
			}
			io.WriteString(c, resp)
		}
	})
	return u, reqs
}

// within is a context that ends a little before the test's deadline, so
// that a Forward that waits for nothing fails instead of hanging.
func within(t *testing.T) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), soon(t))
	t.Cleanup(cancel)
	return ctx
}

// TestForwardRequestWire: the bytes Forward sends upstream, exactly: the
// request line, Host, the end-to-end fields only, the framing it chooses
// for the body, and the connection fields.
func TestForwardRequestWire(t *testing.T) {
	big := strings.Repeat("b", 40<<10)
	first := big[:copyBufSize]
	hdr := func(kv ...string) *Header {
		var h Header
		for i := 0; i < len(kv); i += 2 {
			h.AddString(kv[i], kv[i+1])
		}
		return &h
	}
	cases := []struct {
		name     string
		up       func(u *Upstream)
		out      Outgoing
		want     string // with ADDR for the upstream's address
		wantOut  int64  // Result.BytesOut
		wantResp string // the body the recorder got
	}{
		{
			name: "the request line, Host, end-to-end fields only",
			out: Outgoing{Method: []byte("GET"), Path: []byte("/p"), Query: []byte("q=1"), Host: []byte("h.example:81"),
				Header: hdr("X-A", "1", "TE", "trailers", "Connection", "X-B, keep-alive", "X-B", "2", "Keep-Alive", "5",
					"Proxy-Connection", "x", "Transfer-Encoding", "chunked", "Trailer", "x", "Upgrade", "y", "Content-Length", "9",
					"Host", "other", "Bad Name", "1", "X-Bad", "a\r\nX-Injected: 1", "x-b", "3", "X-C", "3")},
			want: "GET /p?q=1 HTTP/1.1\r\nHost: h.example:81\r\nX-A: 1\r\nX-C: 3\r\n\r\n",
		},
		{
			name: "no path is /, no host is the upstream's address",
			out:  Outgoing{Method: []byte("GET")},
			want: "GET / HTTP/1.1\r\nHost: ADDR\r\n\r\n",
		},
		{
			name: "an empty query keeps its ?",
			out:  Outgoing{Method: []byte("GET"), Path: []byte("/a"), Query: []byte{}},
			want: "GET /a? HTTP/1.1\r\nHost: ADDR\r\n\r\n",
		},
		{
			name: "POST without a body says Content-Length: 0",
			out:  Outgoing{Method: []byte("POST"), Path: []byte("/")},
			want: "POST / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "PUT with an empty body says Content-Length: 0",
			out:  Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader(""), ContentLength: 0},
			want: "PUT / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "a declared length of 0: the body is not read",
			out:  Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader("junk"), ContentLength: 0},
			want: "PUT / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name:    "a declared length of 1: one byte is read, whatever follows",
			out:     Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader("xy"), ContentLength: 1},
			want:    "PUT / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 1\r\n\r\nx",
			wantOut: 1,
		},
		{
			name: "PATCH with an unknown length and no bytes says Content-Length: 0",
			out:  Outgoing{Method: []byte("PATCH"), Path: []byte("/"), Body: strings.NewReader(""), ContentLength: -1},
			want: "PATCH / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name: "DELETE without a body says nothing of it",
			out:  Outgoing{Method: []byte("DELETE"), Path: []byte("/")},
			want: "DELETE / HTTP/1.1\r\nHost: ADDR\r\n\r\n",
		},
		{
			name:    "a declared length",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: 5},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 5\r\n\r\nhello",
			wantOut: 5,
		},
		{
			name:    "a declared length of 1",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("x"), ContentLength: 1},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 1\r\n\r\nx",
			wantOut: 1,
		},
		{
			name:    "one byte of unknown length, at its end",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: iotest.DataErrReader(strings.NewReader("x")), ContentLength: -1},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 1\r\n\r\nx",
			wantOut: 1,
		},
		{
			name:    "one byte of unknown length, more to come",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("x"), ContentLength: -1},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
			wantOut: 1,
		},
		{
			name:    "an unknown length whose end is at hand gets a length",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: iotest.DataErrReader(strings.NewReader("hello")), ContentLength: -1},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 5\r\n\r\nhello",
			wantOut: 5,
		},
		{
			name:    "an unknown length whose end is not at hand is chunked",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: -1},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			wantOut: 5,
		},
		{
			name:    "an unknown length with nothing at hand yet: no empty chunk first",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: &partsReader{parts: []string{"", "hello"}}, ContentLength: -1},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			wantOut: 5,
		},
		{
			name: "one idle connection kept: no Connection field",
			up:   func(u *Upstream) { u.MaxIdle = 1 },
			out:  Outgoing{Method: []byte("GET"), Path: []byte("/")},
			want: "GET / HTTP/1.1\r\nHost: ADDR\r\n\r\n",
		},
		{
			name:    "a long body of unknown length: the first 32 KiB, then the rest, chunked",
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: -1},
			want:    fmt.Sprintf("POST / HTTP/1.1\r\nHost: ADDR\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(first), first, len(big)-len(first), big[len(first):]),
			wantOut: int64(len(big)),
		},
		{
			name:    "a long body of declared length",
			out:     Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: int64(len(big))},
			want:    fmt.Sprintf("PUT / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
			wantOut: int64(len(big)),
		},
		{
			name:    "a long body of declared length with more behind it: not a byte more",
			out:     Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader(big + "GET /smuggled HTTP/1.1\r\n\r\n"), ContentLength: int64(len(big))},
			want:    fmt.Sprintf("PUT / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
			wantOut: int64(len(big)),
		},
		{
			name:    "a long body of unknown length of exactly MaxSentBytes",
			up:      func(u *Upstream) { u.MaxSentBytes = int64(len(big)) },
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: -1},
			want:    fmt.Sprintf("POST / HTTP/1.1\r\nHost: ADDR\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(first), first, len(big)-len(first), big[len(first):]),
			wantOut: int64(len(big)),
		},
		{
			name: "an upgrade",
			out:  Outgoing{Method: []byte("GET"), Path: []byte("/ws"), Upgrade: []byte("websocket"), Header: hdr("Upgrade", "other", "Connection", "upgrade")},
			want: "GET /ws HTTP/1.1\r\nHost: ADDR\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		},
		{
			name: "an upgrade token that is not a field value is left out",
			out:  Outgoing{Method: []byte("GET"), Path: []byte("/ws"), Upgrade: []byte("a\r\nX: 1")},
			want: "GET /ws HTTP/1.1\r\nHost: ADDR\r\nConnection: upgrade\r\nUpgrade: \r\n\r\n",
		},
		{
			name: "no pooling: Connection: close",
			up:   func(u *Upstream) { u.MaxIdle = 0 },
			out:  Outgoing{Method: []byte("GET"), Path: []byte("/")},
			want: "GET / HTTP/1.1\r\nHost: ADDR\r\nConnection: close\r\n\r\n",
		},
		{
			name: "HTTP/1.0",
			up:   func(u *Upstream) { u.HTTP10 = true },
			out:  Outgoing{Method: []byte("GET"), Path: []byte("/")},
			want: "GET / HTTP/1.0\r\nHost: ADDR\r\nConnection: close\r\n\r\n",
		},
		{
			name:    "HTTP/1.0 with a body of unknown length at hand: a length",
			up:      func(u *Upstream) { u.HTTP10 = true },
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: iotest.DataErrReader(strings.NewReader("hello")), ContentLength: -1},
			want:    "POST / HTTP/1.0\r\nHost: ADDR\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
			wantOut: 5,
		},
		{
			name:    "a body exactly at MaxSentBytes goes",
			up:      func(u *Upstream) { u.MaxSentBytes = 5 },
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: 5},
			want:    "POST / HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 5\r\n\r\nhello",
			wantOut: 5,
		},
		{
			name:    "a chunked body exactly at MaxSentBytes goes",
			up:      func(u *Upstream) { u.MaxSentBytes = int64(len(big)) },
			out:     Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: -1},
			want:    fmt.Sprintf("POST / HTTP/1.1\r\nHost: ADDR\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(first), first, len(big)-len(first), big[len(first):]),
			wantOut: int64(len(big)),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if tc.up != nil {
				tc.up(u)
			}
			rec := newRecorder()
			out := tc.out
			res, err := Forward(within(t), u, rec, &out)
			if err != nil {
				t.Fatalf("Forward: %v", err)
			}
			want := strings.ReplaceAll(tc.want, "ADDR", u.Addr)
			select {
			case got := <-reqs:
				if got != want {
					t.Errorf("the upstream got\n%q\nwant\n%q", trimLong(got), trimLong(want))
				}
			case <-time.After(time.Until(soon(t))):
				t.Fatal("the upstream got no request")
			}
			if res.Status != 200 || rec.body.String() != "ok" || rec.status != 200 {
				t.Errorf("got %d %q (result %d), want 200 ok", rec.status, rec.body.String(), res.Status)
			}
			if res.BytesOut != tc.wantOut || res.BytesIn != 2 || !res.Sent || !res.Received || res.Reused || res.Upgraded {
				t.Errorf("got %+v, want %d bytes out, 2 in, sent, received, not reused", res, tc.wantOut)
			}
		})
	}
}

// TestForwardRefusesBeforeSending: a request Forward cannot send as it is
// fails with ErrClient before any byte goes upstream (Result.Sent false:
// another address may be tried, nothing is lost).
func TestForwardRefusesBeforeSending(t *testing.T) {
	big := strings.Repeat("b", 40<<10)
	cases := []struct {
		name    string
		up      func(u *Upstream)
		out     Outgoing
		wantErr error
	}{
		{name: "a method that is not a token", out: Outgoing{Method: []byte("GE T"), Path: []byte("/")}},
		{name: "an empty method", out: Outgoing{Method: []byte(""), Path: []byte("/")}},
		{name: "a space in the path", out: Outgoing{Method: []byte("GET"), Path: []byte("/a b")}},
		{name: "a CR in the query", out: Outgoing{Method: []byte("GET"), Path: []byte("/"), Query: []byte("a\rb")}},
		{name: "an invalid host", out: Outgoing{Method: []byte("GET"), Path: []byte("/"), Host: []byte("a b")}},
		{name: "a declared length over MaxSentBytes", up: func(u *Upstream) { u.MaxSentBytes = 4 },
			out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: 5}, wantErr: ErrMaxSent},
		{name: "a declared length over the least MaxSentBytes", up: func(u *Upstream) { u.MaxSentBytes = 1 },
			out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hi"), ContentLength: 2}, wantErr: ErrMaxSent},
		{name: "a body at hand over MaxSentBytes", up: func(u *Upstream) { u.MaxSentBytes = 4 },
			out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: iotest.DataErrReader(strings.NewReader("hello")), ContentLength: -1}, wantErr: ErrMaxSent},
		{name: "a declared body that does not come", out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(""), ContentLength: 5},
			wantErr: io.ErrUnexpectedEOF},
		{name: "a body of unknown length that fails", out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: iotest.ErrReader(errBoom), ContentLength: -1},
			wantErr: errBoom},
		{name: "a body of declared length that fails", out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: iotest.ErrReader(errBoom), ContentLength: 5},
			wantErr: errBoom},
		{name: "a declared body that ends early", out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hel"), ContentLength: 5},
			wantErr: io.ErrUnexpectedEOF},
		{name: "HTTP/1.0 and a body of unknown length not at hand", up: func(u *Upstream) { u.HTTP10 = true },
			out: Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: -1}, wantErr: ErrLengthRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if tc.up != nil {
				tc.up(u)
			}
			rec := newRecorder()
			out := tc.out
			res, err := Forward(within(t), u, rec, &out)
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrClient || fe.Responded || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want an ErrClient ForwardError (%v)", err, tc.wantErr)
			}
			if res.Sent || res.Received || res.Status != 0 || rec.status != 0 {
				t.Errorf("got %+v and status %d, want nothing sent and nothing answered", res, rec.status)
			}
			// The next request is the first thing the upstream gets: nothing
			// of the refused one is left in a pooled connection's buffer.
			if _, err := Forward(within(t), u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/next")}); err != nil {
				t.Fatalf("the next request: %v", err)
			}
			select {
			case got := <-reqs:
				want := "GET /next HTTP/1.1\r\nHost: " + u.Addr + "\r\n\r\n"
				if u.HTTP10 {
					want = "GET /next HTTP/1.0\r\nHost: " + u.Addr + "\r\nConnection: close\r\n\r\n"
				}
				if got != want {
					t.Errorf("the upstream got %q first, want %q", got, want)
				}
			case <-time.After(time.Until(soon(t))):
				t.Fatal("the upstream got nothing")
			}
			u.CloseIdle()
			select {
			case got := <-reqs:
				t.Errorf("the upstream got %q, want nothing more", got)
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
}

// TestForwardBodyLimits: a chunked body that grows past MaxSentBytes is
// cut: the upstream never gets the last chunk (it sees an unfinished
// body), and Forward reports the client's fault.
func TestForwardBodyLimits(t *testing.T) {
	big := strings.Repeat("b", 40<<10)
	u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	u.MaxSentBytes = int64(len(big) - 1)
	res, err := Forward(within(t), u, newRecorder(), &Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: -1})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrClient || !errors.Is(err, ErrMaxSent) || fe.Responded {
		t.Fatalf("got %v, want ErrClient ErrMaxSent", err)
	}
	// The first read of a body of unknown length is 32 KiB (documented
	// with Upstream.HTTP10): that much is sent before the limit is seen.
	if res.BytesOut != 32<<10 || !res.Sent {
		t.Errorf("got %+v, want the first 32 KiB sent", res)
	}
	got := <-reqs
	if strings.HasSuffix(got, "0\r\n\r\n") {
		t.Errorf("the upstream got a complete body (%q)", trimLong(got))
	}
}

// forwardWithin runs Forward with a context that ends before the test's
// deadline and fails the test if Forward does not return by then (a
// Forward stuck on a goroutine that never reports).
func forwardWithin(t *testing.T, u *Upstream, w ResponseWriter, out *Outgoing) (Result, error) {
	t.Helper()
	type ret struct {
		res Result
		err error
	}
	done := make(chan ret, 1)
	ctx := within(t)
	go func() {
		res, err := Forward(ctx, u, w, out)
		done <- ret{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-time.After(time.Until(soon(t)) + time.Second):
		t.Fatal("Forward did not return")
	}
	return Result{}, nil
}

// TestForwardResponseWire: what the client of the proxy receives, byte for
// byte, for each kind of upstream response, and what Forward reports.
func TestForwardResponseWire(t *testing.T) {
	cases := []struct {
		name      string
		method    string
		resp      string // the upstream's answer (then it closes)
		want      string // what the client gets, up to the close
		wantKind  ErrKind
		wantIs    error // errors.Is target of the error (nil: any)
		responded bool
		wantIn    int64
	}{
		{
			name:   "a length; hop-by-hop fields and those Connection names are dropped",
			resp:   "HTTP/1.1 200 OK\r\nDate: d\r\nX-A: 1\r\nConnection: X-B, keep-alive\r\nX-B: 2\r\nKeep-Alive: t=1\r\nTrailer: x\r\nUpgrade: y\r\nProxy-Connection: z\r\nContent-Length: 3\r\n\r\nabc",
			want:   "HTTP/1.1 200 OK\r\nDate: d\r\nX-A: 1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
			wantIn: 3,
		},
		{
			name:   "an empty body of length 0",
			resp:   "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\n\r\n",
			want:   "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			wantIn: 0,
		},
		{
			name:   "204: no length, no body",
			resp:   "HTTP/1.1 204 No Content\r\nDate: d\r\nContent-Length: 0\r\n\r\n",
			want:   "HTTP/1.1 204 No Content\r\nDate: d\r\nConnection: close\r\n\r\n",
			wantIn: 0,
		},
		{
			name:   "304 keeps its length, without a body",
			resp:   "HTTP/1.1 304 Not Modified\r\nDate: d\r\nContent-Length: 42\r\n\r\n",
			want:   "HTTP/1.1 304 Not Modified\r\nDate: d\r\nContent-Length: 42\r\nConnection: close\r\n\r\n",
			wantIn: 0,
		},
		{
			name:   "HEAD keeps the length, without a body",
			method: "HEAD",
			resp:   "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 35\r\n\r\n",
			want:   "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 35\r\nConnection: close\r\n\r\n",
			wantIn: 0,
		},
		{
			name:   "interim responses (199 too) are skipped",
			resp:   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 199 Misc\r\nX-I: 1\r\n\r\nHTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok",
			want:   "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			wantIn: 2,
		},
		{
			name:   "eight interim responses are skipped",
			resp:   strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 8) + "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok",
			want:   "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			wantIn: 2,
		},
		{
			name:     "nine are too many",
			resp:     strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 9) + "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok",
			want:     "HTTP/1.1 502 Bad Gateway\r\nDate: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			wantKind: ErrUpstreamProtocol,
		},
		{
			name:      "a body shorter than its length: the client's response is cut, and closed",
			resp:      "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 10\r\n\r\nabc",
			want:      "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc",
			wantKind:  ErrUpstreamProtocol,
			wantIs:    io.ErrUnexpectedEOF,
			responded: true,
			wantIn:    3,
		},
		{
			name:      "a chunked body cut short: no last chunk for the client",
			resp:      "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
			want:      "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n",
			wantKind:  ErrUpstreamProtocol,
			responded: true,
			wantIn:    3,
		},
		{
			name:   "a close-delimited body",
			resp:   "HTTP/1.1 200 OK\r\nDate: d\r\n\r\nabc",
			want:   "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			wantIn: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				c.SetDeadline(soon(t))
				readRequestHead(br)
				io.WriteString(c, tc.resp)
			})
			type ret struct {
				res Result
				err error
			}
			got := make(chan ret, 1)
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				res, err := Forward(within(t), u, w, &Outgoing{Method: r.Method, Path: r.Path, Header: &r.Header})
				got <- ret{res, err}
				var fe *ForwardError
				if errors.As(err, &fe) && !fe.Responded {
					w.Header().SetString("Date", "d")
					w.WriteHeader(502)
				}
			})}
			addr := startServer(t, s)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			c := dial(t, addr)
			c.SetDeadline(soon(t))
			fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", method)
			wire, err := io.ReadAll(c)
			if err != nil && !isConnReset(err) {
				t.Fatalf("reading: %v (%q)", err, wire)
			}
			if string(wire) != tc.want {
				t.Errorf("the client got\n%q\nwant\n%q", wire, tc.want)
			}
			var r ret
			select {
			case r = <-got:
			case <-time.After(time.Until(soon(t))):
				t.Fatal("Forward did not return")
			}
			var fe *ForwardError
			switch {
			case tc.wantKind == 0 && r.err != nil:
				t.Errorf("got %v, want no error", r.err)
			case tc.wantKind != 0 && (!errors.As(r.err, &fe) || fe.Kind != tc.wantKind || fe.Responded != tc.responded ||
				tc.wantIs != nil && !errors.Is(r.err, tc.wantIs)):
				t.Errorf("got %v (%+v), want kind %v (%v), responded %v", r.err, fe, tc.wantKind, tc.wantIs, tc.responded)
			}
			if r.res.BytesIn != tc.wantIn || !r.res.Received || !r.res.Sent {
				t.Errorf("got %+v, want %d bytes in, sent and received", r.res, tc.wantIn)
			}
		})
	}
}

// TestForwardStaleRetryOnce: a request that meets a pooled connection the
// upstream closed without answering is sent again, once, with the same
// bytes; when the second connection fails the same way, Forward reports
// the failure (never a success with nothing written). Nothing is retried
// once response bytes arrived, or when the body was read past what Begin
// kept.
func TestForwardStaleRetryOnce(t *testing.T) {
	big := strings.Repeat("b", 40<<10)
	cases := []struct {
		name      string
		out       func() *Outgoing
		second    string // what each pooled connection does with its second request: "close", "partial" or "answer"
		wantErr   bool
		wantReqs  int // requests the upstream received after the pool was filled
		wantDials int64
		received  bool
	}{
		{"one stale connection: retried on the other", func() *Outgoing {
			return &Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: 5}
		},
			"close-first", false, 2, 2, true},
		{"two stale connections: the failure is reported", func() *Outgoing { return &Outgoing{Method: []byte("GET"), Path: []byte("/")} },
			"close", true, 2, 2, false},
		{"a partial head is not retried", func() *Outgoing { return &Outgoing{Method: []byte("GET"), Path: []byte("/")} },
			"partial", true, 1, 2, true},
		{"a body read past the first part is not retried", func() *Outgoing {
			return &Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: io.MultiReader(strings.NewReader(big[:copyBufSize]), strings.NewReader(big[copyBufSize:])), ContentLength: int64(len(big))}
		}, "close", true, 1, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string // the requests after the first on each connection
			var fill sync.WaitGroup
			fill.Add(2)
			u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				c.SetDeadline(soon(t))
				if _, err := readRawRequest(br); err != nil {
					return
				}
				fill.Done()
				fill.Wait() // both connections are open: the pool gets two
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
				raw, _ := readRawRequest(br)
				mu.Lock()
				seen = append(seen, raw)
				k := len(seen)
				mu.Unlock()
				switch {
				case tc.second == "partial":
					io.WriteString(c, "HTTP/1.1 200 OK\r\n")
				case tc.second == "close-first" && k == 2:
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
				}
			})
			// Fill the pool with two connections.
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					Forward(within(t), u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
				}()
			}
			wg.Wait()
			rec := newRecorder()
			res, err := forwardWithin(t, u, rec, tc.out())
			var fe *ForwardError
			if tc.wantErr {
				if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || fe.Responded {
					t.Errorf("got %v, want an ErrUpstreamProtocol ForwardError, not responded", err)
				}
				if rec.status != 0 {
					t.Errorf("the client got status %d, want nothing", rec.status)
				}
			} else if err != nil || rec.status != 200 || rec.body.String() != "second" {
				t.Errorf("got %v, %d %q, want 200 second", err, rec.status, rec.body.String())
			}
			if !res.Sent || res.Received != tc.received || !res.Reused {
				t.Errorf("got %+v, want sent, reused, received %v", res, tc.received)
			}
			time.Sleep(10 * time.Millisecond) // the upstream records what it read
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != tc.wantReqs {
				t.Fatalf("the upstream got %d requests on its pooled connections, want %d (%q)", len(seen), tc.wantReqs, seen)
			}
			if len(seen) == 2 && seen[0] != seen[1] {
				t.Errorf("the retry sent\n%q\nthe first try\n%q", seen[1], seen[0])
			}
			if _, dials := u.Stats(); dials != tc.wantDials {
				t.Errorf("got %d dials, want %d", dials, tc.wantDials)
			}
		})
	}
}

// partsReader returns one part per Read (an empty part: 0, nil), then EOF.
type partsReader struct{ parts []string }

func (p *partsReader) Read(b []byte) (int, error) {
	if len(p.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.parts[0])
	p.parts[0] = p.parts[0][n:]
	if p.parts[0] == "" {
		p.parts = p.parts[1:]
	}
	return n, nil
}

// TestForwardKeepsConnection: a connection goes back to the pool only when
// its response allows it: not after Connection: close, an HTTP/1.0
// response without keep-alive, or with pooling off or HTTP/1.0 upstream.
func TestForwardKeepsConnection(t *testing.T) {
	cases := []struct {
		name  string
		up    func(u *Upstream)
		resp  string
		dials int64
	}{
		{"a length", nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1},
		{"chunked", nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 1},
		{"connection close", nil, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 2},
		{"HTTP/1.0", nil, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 2},
		{"HTTP/1.0 keep-alive", nil, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 1},
		{"one byte too many", nil, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX", 2},
		{"pooling off", func(u *Upstream) { u.MaxIdle = 0 }, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2},
		{"HTTP/1.0 upstream", func(u *Upstream) { u.HTTP10 = true }, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The upstream answers every request and never closes first.
			u, _ := recordingUpstream(t, tc.resp)
			if tc.up != nil {
				tc.up(u)
			}
			for i := range 2 {
				rec := newRecorder()
				res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
				if err != nil || rec.body.String() != "ok" {
					t.Fatalf("request %d: got %v %q", i, err, rec.body.String())
				}
				if res.Reused != (i == 1 && tc.dials == 1) {
					t.Errorf("request %d: Reused %v", i, res.Reused)
				}
			}
			wantOpen := int64(0) // closed after each response
			if tc.dials == 1 {
				wantOpen = 1 // pooled
			}
			if open, dials := u.Stats(); dials != tc.dials || open != wantOpen {
				t.Errorf("got %d dials and %d open, want %d and %d", dials, open, tc.dials, wantOpen)
			}
			if n, want := u.Unsolicited(), 2*int64(strings.Count(tc.resp, "okX")); n != want {
				t.Errorf("Unsolicited() = %d, want %d", n, want)
			}
		})
	}
}

// TestForwardModifyResponse: ModifyResponse sees the upstream's status and
// end-to-end fields before the head goes out, and what it changes is what
// the client gets.
func TestForwardModifyResponse(t *testing.T) {
	u, _ := recordingUpstream(t, "HTTP/1.1 201 Created\r\nX-A: 1\r\nConnection: X-B\r\nX-B: 2\r\nContent-Length: 2\r\n\r\nok")
	var seen string
	rec := newRecorder()
	_, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/"), ModifyResponse: func(status int, h *Header) {
		seen = fmt.Sprintf("%d %s", status, headerString(h))
		h.Del("X-A")
		h.SetString("X-New", "n")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "201 X-A=1|Content-Length=2"; seen != want {
		t.Errorf("ModifyResponse saw %q, want %q", seen, want)
	}
	if got := headerString(&rec.hdr); rec.status != 201 || got != "Content-Length=2|X-New=n" || rec.body.String() != "ok" {
		t.Errorf("the client got %d %q %q", rec.status, got, rec.body.String())
	}
}

// TestForwardTimeouts: each of the Upstream's timeouts ends a wait on the
// upstream by itself (well before the context's deadline), as ErrTimeout;
// after the head went to the client the response is aborted (Responded).
func TestForwardTimeouts(t *testing.T) {
	cases := []struct {
		name      string
		up        func(u *Upstream)
		resp      string // then the upstream stalls
		responded bool
		received  bool
		longBody  bool // the request has a body sent by the body goroutine (the upstream takes it all)
	}{
		{name: "ResponseHeaderTimeout after a long body", up: func(u *Upstream) { u.ResponseHeaderTimeout = 100 * time.Millisecond }, longBody: true},
		{name: "ActiveTimeout after a long body", up: func(u *Upstream) { u.ActiveTimeout = 100 * time.Millisecond }, longBody: true},
		{"ResponseHeaderTimeout, nothing sent", func(u *Upstream) { u.ResponseHeaderTimeout = 100 * time.Millisecond }, "", false, false, false},
		{"ResponseHeaderTimeout, half a head", func(u *Upstream) { u.ResponseHeaderTimeout = 100 * time.Millisecond }, "HTTP/1.1 200 OK\r\n", false, true, false},
		{"the smallest ResponseHeaderTimeout", func(u *Upstream) { u.ResponseHeaderTimeout = 1 }, "", false, false, false},
		{"ActiveTimeout, the head", func(u *Upstream) { u.ActiveTimeout = 100 * time.Millisecond }, "", false, false, false},
		{"the smallest ActiveTimeout", func(u *Upstream) { u.ActiveTimeout = 1 }, "", false, false, false},
		{"ActiveTimeout, a length body", func(u *Upstream) { u.ActiveTimeout = 100 * time.Millisecond }, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, true, false},
		{"ActiveTimeout, a chunked body", func(u *Upstream) { u.ActiveTimeout = 100 * time.Millisecond }, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", true, true, false},
		{"the smallest TransactionTimeout", func(u *Upstream) { u.TransactionTimeout = 1 }, "", false, false, false},
		{"TransactionTimeout, the head", func(u *Upstream) { u.TransactionTimeout = 100 * time.Millisecond }, "", false, false, false},
		{"TransactionTimeout, the body", func(u *Upstream) { u.TransactionTimeout = 100 * time.Millisecond }, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, true, false},
		{"TransactionTimeout within a longer ActiveTimeout", func(u *Upstream) {
			u.TransactionTimeout, u.ActiveTimeout = 100*time.Millisecond, time.Minute
		}, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, true, false},
		{"TransactionTimeout within a longer ResponseHeaderTimeout", func(u *Upstream) {
			u.TransactionTimeout, u.ResponseHeaderTimeout = 100*time.Millisecond, time.Minute
		}, "", false, false, false},
		{"TransactionTimeout after the head within a longer ResponseHeaderTimeout", func(u *Upstream) {
			u.TransactionTimeout, u.ResponseHeaderTimeout = 100*time.Millisecond, time.Minute
		}, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits for a timeout
			release := make(chan struct{})
			defer close(release)
			u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				if tc.longBody {
					io.CopyN(io.Discard, br, 40<<10)
				}
				io.WriteString(c, tc.resp)
				<-release
			})
			tc.up(u)
			ctx, cancel := context.WithTimeout(within(t), 2*time.Second)
			defer cancel()
			start := time.Now()
			rec := newRecorder()
			out := &Outgoing{Method: []byte("GET"), Path: []byte("/")}
			if tc.longBody {
				out = &Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(strings.Repeat("b", 40<<10)), ContentLength: 40 << 10}
			}
			res, err := Forward(ctx, u, rec, out)
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrTimeout || fe.Responded != tc.responded || ctx.Err() != nil {
				t.Fatalf("got %v (%+v) after %v (context: %v), want ErrTimeout, responded %v, from the upstream's timeout", err, fe, time.Since(start), ctx.Err(), tc.responded)
			}
			if !res.Sent || res.Received != tc.received {
				t.Errorf("got %+v, want sent, received %v", res, tc.received)
			}
		})
	}
}

// TestForwardUpgradeCancel: cancelling the context of an upgraded exchange
// closes both connections and ends Forward.
func TestForwardUpgradeCancel(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nhi")
		io.Copy(io.Discard, br)
	})
	ctx, cancel := context.WithCancel(within(t))
	done := make(chan Result, 1)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		res, _ := Forward(ctx, u, w, &Outgoing{Method: r.Method, Path: r.Path, Upgrade: r.Upgrade})
		done <- res
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	c.SetDeadline(soon(t))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
	br := bufio.NewReader(c)
	r := readResponse(t, br, false)
	if hi := make([]byte, 2); r.status != 101 || func() bool { _, err := io.ReadFull(br, hi); return err != nil || string(hi) != "hi" }() {
		t.Fatalf("got %q, want 101 and hi", r.raw)
	}
	io.WriteString(c, "ping")
	cancel()
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil && !isConnReset(err) {
		t.Errorf("after the cancel: got %q %v, want the close", rest, err)
	}
	select {
	case res := <-done:
		if !res.Upgraded || res.BytesIn != 2 {
			t.Errorf("got %+v, want upgraded, 2 bytes in", res)
		}
		if open, _ := u.Stats(); open != 0 {
			t.Errorf("%d upstream connections open after the upgraded exchange, want none (never pooled)", open)
		}
	case <-time.After(time.Until(soon(t))):
		t.Fatal("Forward did not return after the cancel")
	}
}

// hijackHook is a ResponseWriter that runs a function when the connection
// is taken.
type hijackHook struct {
	ResponseWriter
	onHijack func()
}

func (h hijackHook) Hijack() (net.Conn, *bufio.Reader, error) {
	c, br, err := h.ResponseWriter.Hijack()
	h.onHijack()
	return c, br, err
}

// TestForwardUpgradeCancelledWhileSplicing: a context cancelled while the
// 101 is being passed on (before the copying starts) still ends the
// upgraded exchange at once.
func TestForwardUpgradeCancelledWhileSplicing(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(io.Discard, br)
	})
	ctx, cancel := context.WithCancel(within(t))
	took := make(chan time.Duration, 1)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		start := time.Now()
		// The cancel's own effects (the exchange's waits cut) are over
		// before the splice starts: only the splice can end it now.
		hook := func() { cancel(); time.Sleep(50 * time.Millisecond) }
		Forward(ctx, u, hijackHook{w, hook}, &Outgoing{Method: r.Method, Path: r.Path, Upgrade: r.Upgrade})
		took <- time.Since(start)
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	c.SetDeadline(soon(t))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
	select {
	case d := <-took:
		if d > 2*time.Second {
			t.Errorf("Forward took %v after the cancel, want it to end at once", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Forward did not end after the cancel")
	}
}

var errBoom = errors.New("boom")

// TestAttemptReplayable: an Attempt can be tried again while its body is
// all in memory; once the body goroutine read past it, it cannot, and
// another Try refuses before sending anything.
func TestAttemptReplayable(t *testing.T) {
	big := strings.Repeat("b", 40<<10)
	for _, c := range []struct {
		name       string
		out        Outgoing
		replayable bool
	}{
		{"no body", Outgoing{Method: []byte("GET"), Path: []byte("/")}, true},
		{"a body in memory", Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: 5}, true},
		{"a body longer than the first part", Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: int64(len(big))}, false},
		{"a body of unknown length not at hand", Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader("hello"), ContentLength: -1}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			var a Attempt
			if err := a.Begin(&c.out); err != nil {
				t.Fatal(err)
			}
			defer a.End()
			if !a.Replayable() {
				t.Fatal("not replayable before any Try")
			}
			if _, err := a.Try(within(t), u, newRecorder()); err != nil {
				t.Fatal(err)
			}
			<-reqs
			if a.Replayable() != c.replayable {
				t.Fatalf("Replayable() = %v after a Try, want %v", a.Replayable(), c.replayable)
			}
			res, err := a.Try(within(t), u, newRecorder())
			if c.replayable {
				if err != nil {
					t.Fatalf("second Try: %v", err)
				}
				if got := <-reqs; !strings.HasPrefix(got, string(c.out.Method)) {
					t.Errorf("second Try sent %q", got)
				}
				return
			}
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrClient || res.Sent {
				t.Errorf("second Try: got %v %+v, want ErrClient, nothing sent", err, res)
			}
		})
	}
}

// failWriter is a ResponseWriter whose Write or Flush fails.
type failWriter struct {
	recorder
	failWrite, failFlush bool
	aborted              bool
}

func (f *failWriter) Write(p []byte) (int, error) {
	if f.failWrite {
		return 0, errBoom
	}
	return f.recorder.Write(p)
}

func (f *failWriter) Flush() error {
	if f.failFlush {
		return errBoom
	}
	return nil
}

func (f *failWriter) Abort() { f.aborted = true }

// TestForwardClientGone: a client that cannot take the response ends the
// exchange as the client's fault, the response aborted, the upstream
// connection closed.
func TestForwardClientGone(t *testing.T) {
	for _, c := range []struct {
		name                 string
		resp                 string
		failWrite, failFlush bool
	}{
		{"write, a length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, false},
		{"flush, a length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false, true},
		{"write, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", true, false},
		{"flush, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(conn, c.resp) // then the rest never comes
				<-release
			})
			w := &failWriter{failWrite: c.failWrite, failFlush: c.failFlush}
			res, err := forwardWithin(t, u, w, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrClient || !fe.Responded || !errors.Is(err, errBoom) {
				t.Errorf("got %v, want ErrClient, responded, the writer's error", err)
			}
			if !w.aborted || w.status != 200 {
				t.Errorf("the response: status %d, aborted %v, want 200 aborted", w.status, w.aborted)
			}
			if open, _ := u.Stats(); open != 0 || !res.Received {
				t.Errorf("got %d connections open, %+v, want the connection closed", open, res)
			}
		})
	}
}

// TestForwardSlowSteadyBody: ActiveTimeout bounds each wait for the next
// bytes of the body, not the whole body: an upstream sending a piece a
// little more often than ActiveTimeout is never cut off. The margins are
// wide (a piece every 300 ms against 1 s, 1.2 s in all) so that a loaded
// machine does not make the test fail.
func TestForwardSlowSteadyBody(t *testing.T) {
	const active, every, pieces = time.Second, 300 * time.Millisecond, 4
	for _, c := range []struct{ name, head, piece, end string }{
		{"a length", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", pieces), "x", ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "1\r\nx\r\n", "0\r\n\r\n"},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\n", "x", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each takes a while
			u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(conn, c.head)
				for range pieces {
					time.Sleep(every)
					io.WriteString(conn, c.piece)
				}
				io.WriteString(conn, c.end)
			})
			u.ActiveTimeout = active
			rec := newRecorder()
			if _, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")}); err != nil || rec.body.String() != strings.Repeat("x", pieces) {
				t.Errorf("got %v %q, want the whole body", err, rec.body.String())
			}
		})
	}
}

// headerHook is a ResponseWriter that runs a function when the head is
// written.
type headerHook struct {
	*recorder
	onHeader func()
}

func (h headerHook) WriteHeader(s int) {
	h.recorder.WriteHeader(s)
	h.onHeader()
}

// TestForwardEarlyResponseBodyNotTimed: an upstream that answers before it
// has the whole request body has its response head timed, but not the
// response body: the body goroutine finishing later does not arm the
// head's timeout again.
func TestForwardEarlyResponseBodyNotTimed(t *testing.T) {
	first := strings.Repeat("a", copyBufSize)
	headSent := make(chan struct{})
	u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
		conn.SetDeadline(soon(t))
		readRequestHead(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
		io.CopyN(io.Discard, br, int64(len(first)+5)) // the whole body, sent after the head arrived
		time.Sleep(300 * time.Millisecond)            // over ResponseHeaderTimeout
		io.WriteString(conn, "cd")
	})
	u.ResponseHeaderTimeout = 100 * time.Millisecond
	rest := &gatedReader{gate: headSent, r: strings.NewReader("hello")}
	rec := newRecorder()
	w := headerHook{rec, func() { close(headSent) }}
	out := &Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: io.MultiReader(strings.NewReader(first), rest), ContentLength: int64(len(first) + 5)}
	if _, err := forwardWithin(t, u, w, out); err != nil || rec.body.String() != "abcd" {
		t.Errorf("got %v %q, want the whole response", err, rec.body.String())
	}
}

// gatedReader reads from r once gate is closed.
type gatedReader struct {
	gate chan struct{}
	r    io.Reader
}

func (g *gatedReader) Read(p []byte) (int, error) {
	<-g.gate
	return g.r.Read(p)
}

// TestForwardMaxReceived: a response body over MaxReceivedBytes is refused
// before the head goes out when its length says so, and aborted when it
// grows past the limit; a body at the limit passes.
func TestForwardMaxReceived(t *testing.T) {
	for _, c := range []struct {
		name      string
		limit     int64
		resp      string
		fail      bool
		responded bool
	}{
		{"a length at the limit", 2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false},
		{"a length over the limit", 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, false},
		{"chunked, at the limit", 2, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, false},
		{"chunked, over the limit", 1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, _ := recordingUpstream(t, c.resp)
			u.MaxReceivedBytes = c.limit
			rec := newRecorder()
			_, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			var fe *ForwardError
			switch {
			case !c.fail && (err != nil || rec.body.String() != "ok"):
				t.Errorf("got %v %q, want ok", err, rec.body.String())
			case c.fail && (!errors.As(err, &fe) || !errors.Is(err, ErrMaxReceived) || fe.Responded != c.responded):
				t.Errorf("got %v, want ErrMaxReceived, responded %v", err, c.responded)
			}
			// A connection whose response was not read whole is closed,
			// not pooled.
			if open, _ := u.Stats(); open != 1 && !c.fail || open != 0 && c.fail {
				t.Errorf("got %d open after the exchange, want %d", open, map[bool]int{false: 1, true: 0}[c.fail])
			}
		})
	}
}

// TestForwardTimeoutOnPooledNotRetried: a pooled connection whose upstream
// takes the request and does not answer in time is a timeout, not a stale
// connection: the request is not sent again.
func TestForwardTimeoutOnPooledNotRetried(t *testing.T) {
	var reqs atomic.Int64
	release := make(chan struct{})
	defer close(release)
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readRequestHead(br); err != nil {
				return
			}
			if reqs.Add(1) > 1 {
				<-release
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	if _, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")}); err != nil {
		t.Fatal(err)
	}
	u.ResponseHeaderTimeout = 100 * time.Millisecond
	res, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrTimeout || !res.Reused {
		t.Errorf("got %v %+v, want ErrTimeout on the pooled connection", err, res)
	}
	if _, dials := u.Stats(); dials != 1 || reqs.Load() != 2 {
		t.Errorf("got %d dials and %d requests, want 1 and 2 (no retry)", dials, reqs.Load())
	}
}

// TestForwardCancelledWhileWaiting: a context cancelled while Forward waits
// for a stalled upstream (for the head, or for the rest of the body once the
// head is passed on) ends the wait at once, as the client's error.
func TestForwardCancelledWhileWaiting(t *testing.T) {
	for _, c := range []struct {
		name, resp string // sent, then the upstream stalls
		responded  bool
	}{
		{"waiting for the head", "", false},
		{"waiting for the body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			waiting, release := make(chan struct{}), make(chan struct{})
			defer close(release)
			u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(conn, c.resp)
				close(waiting)
				<-release
			})
			ctx, cancel := context.WithCancel(within(t))
			var w ResponseWriter = newRecorder()
			if c.responded {
				w = headerHook{newRecorder(), cancel} // cancelled once the head is passed on
			} else {
				go func() {
					<-waiting
					cancel()
				}()
			}
			_, err := forwardCtx(t, ctx, u, w, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrClient || fe.Responded != c.responded {
				t.Errorf("got %v (%+v), want ErrClient, responded %v", err, fe, c.responded)
			}
		})
	}
}

// TestForwardHeaderTimeoutNotOnBody: ResponseHeaderTimeout alone times the
// head only: a body that comes well after it has passed is not cut.
func TestForwardHeaderTimeoutNotOnBody(t *testing.T) {
	const rht = 250 * time.Millisecond // wide enough for the head's own wait on a loaded machine
	headPassed := make(chan struct{})
	u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
		select {
		case <-headPassed:
		case <-time.After(time.Until(soon(t))):
			return
		}
		io.WriteString(conn, "ok")
	})
	u.ResponseHeaderTimeout = rht
	rec := newRecorder()
	w := headerHook{rec, func() {
		<-time.After(2 * rht) // the time being tested: the body comes after ResponseHeaderTimeout
		close(headPassed)
	}}
	if _, err := forwardWithin(t, u, w, &Outgoing{Method: []byte("GET"), Path: []byte("/")}); err != nil || rec.body.String() != "ok" {
		t.Errorf("got %v %q, want the whole body", err, rec.body.String())
	}
}

// TestForwardReceivedOneByte: one byte of a response head is a response
// received (Result.Received: the request must not go to another upstream),
// even when the upstream closes right after it.
func TestForwardReceivedOneByte(t *testing.T) {
	u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(conn, "H")
	})
	res, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || !res.Sent || !res.Received {
		t.Errorf("got %v %+v, want ErrUpstreamProtocol, sent and received", err, res)
	}
}

// TestForwardChunkedBodyAtHand: a client's chunked body that has wholly
// arrived with its head, in several chunks, goes upstream with a
// Content-Length (Begin reads on while the server has bytes at hand).
func TestForwardChunkedBodyAtHand(t *testing.T) {
	u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	addr := proxyServer(t, u, nil)
	got := roundTripRaw(t, addr, "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("got %q, want 200", got)
	}
	select {
	case req := <-reqs:
		if want := "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabcdef"; req != want {
			t.Errorf("the upstream got %q, want %q", req, want)
		}
	case <-time.After(time.Until(soon(t))):
		t.Fatal("the upstream got nothing")
	}
}

// TestForwardTooManyInterim: after the ninth interim response Forward gives
// up, and that connection is not reused: the rest of its answer must never
// be read as the answer to another request.
func TestForwardTooManyInterim(t *testing.T) {
	var conns atomic.Int64
	u := rawUpstream(t, func(conn net.Conn, br *bufio.Reader) {
		conn.SetDeadline(soon(t))
		if conns.Add(1) == 1 {
			readRequestHead(br)
			io.WriteString(conn, strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 9))
			readRequestHead(br) // only if the connection is reused
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nold")
			return
		}
		readRequestHead(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew")
	})
	_, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || !strings.Contains(err.Error(), "too many interim responses") {
		t.Fatalf("got %v, want ErrUpstreamProtocol: too many interim responses", err)
	}
	rec := newRecorder()
	if res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")}); err != nil || rec.body.String() != "new" || res.Reused {
		t.Errorf("got %v %q %+v, want new on a new connection", err, rec.body.String(), res)
	}
}

// TestForwardHeadLength: the Content-Length of an upstream's answer to HEAD
// is passed on, 0 included (the client cannot learn it from a body).
func TestForwardHeadLength(t *testing.T) {
	for _, n := range []string{"0", "5"} {
		u, _ := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: "+n+"\r\n\r\n")
		got := roundTripRaw(t, proxyServer(t, u, nil), "HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "\r\nContent-Length: "+n+"\r\n") || !strings.HasSuffix(got, "\r\n\r\n") {
			t.Errorf("length %s: got %q, want 200 with Content-Length: %s and no body", n, got, n)
		}
	}
}

// TestForwardLongBodyEndsEarly: a client body of declared length that ends
// early after the first read (in the body goroutine) is the client's fault,
// io.ErrUnexpectedEOF, and Forward does not wait for the upstream.
func TestForwardLongBodyEndsEarly(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		readRequestHead(br)
		io.Copy(io.Discard, br) // waits for the rest of the body
	})
	body := strings.Repeat("b", 35<<10)
	_, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("PUT"), Path: []byte("/"), Body: strings.NewReader(body), ContentLength: 40 << 10})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrClient || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want ErrClient: io.ErrUnexpectedEOF", err)
	}
}

// TestForwardStreamedBodyReused: after a body too long to go out with the
// head (sent by the body goroutine), an upstream that answers as soon as it
// has read the whole body leaves a connection that is reused: Forward
// waits for the goroutine that has sent everything rather than closing.
func TestForwardStreamedBodyReused(t *testing.T) {
	for _, active := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprint("ActiveTimeout ", active), func(t *testing.T) {
			u, reqs := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			u.ActiveTimeout = active
			const n = 12
			body := bytes.Repeat([]byte("b"), 256<<10)
			for i := range n {
				rec := newRecorder()
				res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: bytes.NewReader(body), ContentLength: int64(len(body))})
				if err != nil || rec.body.String() != "ok" {
					t.Fatalf("request %d: %v %q", i, err, rec.body.String())
				}
				if got := <-reqs; !strings.HasSuffix(got, string(body[:100])) {
					t.Fatalf("request %d: the upstream got %d bytes", i, len(got))
				}
				if res.Reused != (i > 0) {
					t.Errorf("request %d: Reused %v, want %v", i, res.Reused, i > 0)
				}
			}
			if _, dials := u.Stats(); dials != 1 {
				t.Errorf("%d requests took %d connections, want 1", n, dials)
			}
		})
	}
}
