package h1

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream serves each accepted connection with fn.
func rawUpstream(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return &Upstream{Addr: ln.Addr().String(), MaxIdle: 4}
}

// readRequestHead reads a request head from br, returning its lines.
func readRequestHead(br *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return lines, err
		}
		if l == "\r\n" {
			return lines, nil
		}
		lines = append(lines, strings.TrimRight(l, "\r\n"))
	}
}

func TestForwardFraming(t *testing.T) {
	cases := []struct {
		name, resp, want string
		head             bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "abc", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\nT: v\r\n\r\n", "abc", false},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\nabc", "abc", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", "abc", false},
		{"interim 100 skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "abc", false},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc", "abc", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(c, tc.resp)
			})
			addr := proxyServer(t, u, nil)
			c := dial(t, addr)
			br := bufio.NewReader(c)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			r := readResponse(t, br, false)
			if r.status != 200 || r.body != tc.want {
				t.Fatalf("got %d %q, want 200 %q (%q)", r.status, r.body, tc.want, r.raw)
			}
		})
	}
}

func TestForwardBadUpstream(t *testing.T) {
	cases := []struct{ name, resp string }{
		{"cl and te", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"two cl", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
		{"bare lf", "HTTP/1.1 200 OK\nContent-Length: 3\r\n\r\nabc"},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 3\r\n\r\nabc"},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n"},
		{"http/2", "HTTP/2.0 200 OK\r\n\r\n"},
		{"gzip te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"},
		{"nothing", ""},
		{"101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"},
		{"first status digit not a digit", "HTTP/1.1 x00 OK\r\nContent-Length: 0\r\n\r\n"},
		{"last status digit not a digit", "HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n"},
		{"status under 100", "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"},
		{"status too long", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"},
		{"status too short", "HTTP/1.1 20\r\nContent-Length: 0\r\n\r\n"},
		{"http/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"no space after the version", "HTTP/1.1\t200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"a control byte in the reason", "HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n"},
		{"a negative content-length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
		{"transfer-encoding in http/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
		{"bare lf ending the head", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n"},
		{"a field without a colon", "HTTP/1.1 200 OK\r\nX\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(c, tc.resp)
			})
			var fe atomic.Pointer[ForwardError]
			addr := proxyServer(t, u, &fe)
			got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
				t.Fatalf("got %q, want 502", got)
			}
			if e := fe.Load(); e == nil || e.Kind != ErrUpstreamProtocol {
				t.Fatalf("got %v, want ErrUpstreamProtocol", e)
			}
			if open, _ := u.Stats(); open != 0 {
				t.Errorf("%d upstream connections open after a bad response, want it closed", open)
			}
			// A malformed response is a ProtocolError answered with 502.
			var pe *ProtocolError
			if e := fe.Load(); tc.name != "nothing" && tc.name != "101 unasked" && (!errors.As(e, &pe) || pe.Status != 502) {
				t.Errorf("got %v, want a ProtocolError with status 502", e)
			}
		})
	}
}

func TestForwardStreaming(t *testing.T) {
	next := make(chan struct{})
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := range 3 {
			ev := fmt.Sprintf("data: %d\n\n", i)
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
			<-next // the client has received event i
		}
		io.WriteString(c, "0\r\n\r\n")
	})
	addr := proxyServer(t, u, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := readRequestHead(br); err != nil { // the response head
		t.Fatal(err)
	}
	cr := &chunkedReader{}
	cr.reset(br, 1<<10)
	for i := range 3 {
		want := fmt.Sprintf("data: %d\n\n", i)
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(cr, buf); err != nil || string(buf) != want {
			t.Fatalf("event %d: got %q %v, want %q", i, buf, err, want)
		}
		next <- struct{}{}
	}
}

// TestForwardLarge sends 64 MiB up and 64 MiB down through the proxy,
// generated and checked on the fly (nothing holds the body).
func TestForwardLarge(t *testing.T) {
	const size = 64 << 20
	u := upstreamFor(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			t.Errorf("upstream reading: %v", err)
		}
		if r.URL.Path == "/down" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			io.CopyN(w, zeroReader{}, size)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	addr := proxyServer(t, u, nil)
	for _, chunked := range []bool{false, true} {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		h := sha256.New()
		sum := make(chan string, 1)
		go func() {
			defer func() { sum <- fmt.Sprintf("%d %x", size, h.Sum(nil)) }()
			if chunked {
				io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
				buf := make([]byte, 1<<20)
				for sent := 0; sent < size; sent += len(buf) {
					rand.Read(buf)
					h.Write(buf)
					fmt.Fprintf(c, "%x\r\n", len(buf))
					c.Write(buf)
					io.WriteString(c, "\r\n")
				}
				io.WriteString(c, "0\r\n\r\n")
				return
			}
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
			io.CopyN(io.MultiWriter(c, h), rand.Reader, size)
		}()
		r := readResponse(t, br, false)
		if want := <-sum; r.body != want {
			t.Fatalf("chunked=%v: got %q, want %q", chunked, r.body, want)
		}
	}
	c := dial(t, addr)
	io.WriteString(c, "GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	lines, _ := readRequestHead(br)
	if !strings.Contains(strings.Join(lines, "\n"), "Content-Length: 67108864") {
		t.Fatalf("got head %q", lines)
	}
	n, err := io.CopyN(io.Discard, br, size)
	if err != nil || n != size {
		t.Fatalf("got %d bytes, %v", n, err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestForwardStaleRetry(t *testing.T) {
	var conns atomic.Int64
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		readRequestHead(br)
		// Answer once, then close as if the idle connection timed out.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	ctx := within(t)
	for i := range 2 {
		rec := newRecorder()
		res, err := Forward(ctx, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if res.Status != 200 || rec.body.String() != "ok" {
			t.Fatalf("request %d: got %d %q", i, res.Status, rec.body.String())
		}
	}
	if conns.Load() != 2 {
		t.Fatalf("got %d upstream connections, want 2", conns.Load())
	}
}

// TestForwardStaleNotIdempotent: a POST whose pooled connection turns out
// closed after the whole request went out is not sent again (the upstream
// may have acted on it): 502-class ErrUpstreamProtocol, one upstream
// request. With an Idempotency-Key it is sent again on a new connection.
func TestForwardStaleNotIdempotent(t *testing.T) {
	var requests atomic.Int64
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readRequestHead(br); err != nil {
				return
			}
			n := requests.Add(1)
			if n%2 == 0 {
				return // the second request on a connection: closed without an answer
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	ctx := within(t)
	post := func(key string) (Result, error) {
		var h Header
		if key != "" {
			h.AddString("Idempotency-Key", key)
		}
		return Forward(ctx, u, newRecorder(), &Outgoing{Method: []byte("POST"), Path: []byte("/"), Header: &h})
	}
	if _, err := post(""); err != nil {
		t.Fatal(err)
	}
	before := requests.Load()
	_, err := post("")
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || requests.Load() != before+1 {
		t.Fatalf("POST on a stale connection: %v after %d upstream requests, want ErrUpstreamProtocol after 1", err, requests.Load()-before)
	}
	if _, err := post(""); err != nil { // a fresh connection
		t.Fatal(err)
	}
	before = requests.Load()
	res, err := post("k-1")
	if err != nil || res.Status != 200 || requests.Load() != before+2 {
		t.Fatalf("POST with an Idempotency-Key on a stale connection: %v %d after %d upstream requests, want 200 after 2", err, res.Status, requests.Load()-before)
	}
	for _, c := range []struct {
		method, field string
		want          bool
	}{{"GET", "", true}, {"HEAD", "", true}, {"OPTIONS", "", true}, {"TRACE", "", true}, {"PUT", "", true}, {"DELETE", "", true},
		{"POST", "", false}, {"PATCH", "", false}, {"CONNECT", "", false}, {"POST", "X-Idempotency-Key", true}, {"PATCH", "Idempotency-Key", true}} {
		var h Header
		if c.field != "" {
			h.AddString(c.field, "x")
		}
		o := &Outgoing{Method: []byte(c.method), Header: &h}
		if o.idempotent() != c.want {
			t.Errorf("%s with %q: idempotent %v, want %v", c.method, c.field, !c.want, c.want)
		}
	}
	if (&Outgoing{Method: []byte("POST")}).idempotent() {
		t.Error("a POST without a header: idempotent")
	}
}

func TestForwardConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = forwardWithin(t, &Upstream{Addr: addr}, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrConnect || fe.Responded {
		t.Fatalf("got %v, want ErrConnect", err)
	}
}

func TestForwardSlowUpstream(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		<-release
	})
	u.ResponseHeaderTimeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Forward(ctx, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrTimeout || ctx.Err() != nil {
		t.Fatalf("got %v (context: %v), want ErrTimeout from ResponseHeaderTimeout", err, ctx.Err())
	}
}

func TestForwardMaxConns(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		entered <- struct{}{}
		<-release
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	u.MaxConns, u.ConnWait = 1, 50*time.Millisecond
	// Every wait is bounded: a pool that lets a second connection through
	// (or never hands one over) fails the test instead of hanging it.
	recv := func(ch <-chan error, what string) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Forward did not return", what)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := Forward(within(t), u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request did not reach the upstream")
	}
	_, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	if !errors.As(err, &fe) || fe.Kind != ErrNoConnAvailable || !errors.Is(err, ErrNoConn) {
		t.Fatalf("got %v, want ErrNoConnAvailable", err)
	}
	// A waiter gets the connection when it is released.
	u.ConnWait = time.Minute
	second := make(chan error, 1)
	go func() {
		_, err := Forward(within(t), u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		second <- err
	}()
	close(release)
	if err := recv(done, "first"); err != nil {
		t.Fatal(err)
	}
	if err := recv(second, "second"); err != nil {
		t.Fatal(err)
	}
}

func TestForwardUpgrade(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		lines, _ := readRequestHead(br)
		head := strings.ToLower(strings.Join(lines, "\n"))
		if !strings.Contains(head, "connection: upgrade") || !strings.Contains(head, "upgrade: websocket") {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
		io.Copy(c, br) // echo
	})
	addr := proxyServer(t, u, nil)
	c := dial(t, addr)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	r := readResponse(t, br, false)
	if r.status != 101 || !strings.EqualFold(r.header["upgrade"], "websocket") || !strings.EqualFold(r.header["connection"], "upgrade") {
		t.Fatalf("got %q", r.raw)
	}
	buf := make([]byte, 2)
	io.ReadFull(br, buf)
	if string(buf) != "hi" {
		t.Fatalf("got %q, want the upstream's first bytes", buf)
	}
	for _, msg := range []string{"ping", "pong!"} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("got %q %v, want echo %q", got, err, msg)
		}
	}
}

// recorder is a ResponseWriter in memory.
type recorder struct {
	hdr    Header
	status int
	body   strings.Builder
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) Header() *Header { return &r.hdr }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(p)
}
func (r *recorder) Flush() error                             { return nil }
func (r *recorder) Hijack() (net.Conn, *bufio.Reader, error) { return nil, nil, errors.New("no") }
func (r *recorder) Written() int64                           { return int64(r.body.Len()) }
func (r *recorder) Status() int                              { return r.status }

// TestForwardStreamingLength: a body of declared length is passed on as it
// comes, down to all but its last byte: what the upstream has sent reaches
// the client before the rest is sent.
func TestForwardStreamingLength(t *testing.T) {
	next := make(chan struct{})
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabc")
		select {
		case <-next: // the client has received abc
		case <-time.After(time.Until(soon(t))):
			return
		}
		io.WriteString(c, "d")
	})
	c := dial(t, proxyServer(t, u, nil))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := readRequestHead(br); err != nil { // the response head
		t.Fatal(err)
	}
	for _, want := range []string{"abc", "d"} {
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != want {
			t.Fatalf("got %q %v, want %q", buf, err, want)
		}
		if want == "abc" {
			close(next)
		}
	}
}
