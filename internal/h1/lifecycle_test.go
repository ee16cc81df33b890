package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// boundedErr runs f and fails the test if it does not return in time.
func boundedErr(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Until(soon(t))):
		t.Fatalf("%s did not return", what)
	}
	return nil
}

// scriptedListener's Accept returns its script's errors in turn (a nil
// error: a connection, whose other end is closed), then errEnd.
type scriptedListener struct {
	net.Listener
	mu     sync.Mutex
	script []error
	calls  int
}

var errEnd = errors.New("listener broken")

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if len(l.script) == 0 {
		return nil, errEnd
	}
	err := l.script[0]
	l.script = l.script[1:]
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func (l *scriptedListener) Close() error   { return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestServeAcceptErrors: Serve retries an Accept that failed for a passing
// reason (a timeout, too many open files, an aborted connection), logging
// each retry with its delay (5 ms, doubling, back to 5 ms after a success),
// and returns any other error wrapped.
func TestServeAcceptErrors(t *testing.T) {
	timeout := &net.OpError{Op: "accept", Net: "tcp", Err: os.ErrDeadlineExceeded}
	sys := func(e syscall.Errno) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", e)}
	}
	for _, c := range []struct {
		name   string
		script []error
		delays []string // logged, in turn
	}{
		{"a timeout", []error{timeout}, []string{"5ms"}},
		{"EMFILE", []error{sys(syscall.EMFILE)}, []string{"5ms"}},
		{"ENFILE", []error{sys(syscall.ENFILE)}, []string{"5ms"}},
		{"ECONNABORTED", []error{sys(syscall.ECONNABORTED)}, []string{"5ms"}},
		{"two in a row", []error{timeout, sys(syscall.EMFILE)}, []string{"5ms", "10ms"}},
		{"a success between", []error{timeout, nil, timeout}, []string{"5ms", "5ms"}},
		{"another error at once", nil, nil},
		{"a refused connection is not passing", []error{sys(syscall.ECONNREFUSED)}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log lockedBuffer
			ln := &scriptedListener{script: c.script}
			s := &Server{Handler: HandlerFunc(func(ResponseWriter, *Request) {}), Logger: slog.New(slog.NewTextHandler(&log, nil))}
			start := time.Now()
			err := boundedErr(t, "Serve", func() error { return s.Serve(ln) })
			elapsed := time.Since(start)
			wantEnd, wantCalls := errEnd, len(c.script)+1
			if c.name == "a refused connection is not passing" {
				wantEnd, wantCalls = syscall.ECONNREFUSED, 1
			}
			if !errors.Is(err, wantEnd) || !strings.HasPrefix(err.Error(), "accepting connections: ") {
				t.Errorf("got %v, want %v wrapped", err, wantEnd)
			}
			if ln.calls != wantCalls {
				t.Errorf("got %d calls of Accept, want %d", ln.calls, wantCalls)
			}
			var delays []string
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, `msg="accept failed; retrying"`) && strings.Contains(l, "level=WARN") {
					_, d, _ := strings.Cut(l, " delay=")
					delays = append(delays, d)
				}
			}
			if strings.Join(delays, " ") != strings.Join(c.delays, " ") {
				t.Errorf("logged retries with delays %q, want %q", delays, c.delays)
			}
			// Each retry waited its delay.
			var total time.Duration
			for _, d := range c.delays {
				dd, _ := time.ParseDuration(d)
				total += dd
			}
			if elapsed < total {
				t.Errorf("Serve returned after %v, want the retries' %v at least", elapsed, total)
			}
		})
	}
}

// TestServerLifecycle: Serve and ServeConn refuse to start after Close;
// Serve returns ErrServerClosed when the server is shut down; Shutdown
// returns at once when nothing is open, and ctx's error (closing what is
// left) when a request outlives ctx.
func TestServerLifecycle(t *testing.T) {
	t.Run("Serve after Close", func(t *testing.T) {
		s := &Server{}
		s.Close()
		ln := &scriptedListener{}
		if err := boundedErr(t, "Serve", func() error { return s.Serve(ln) }); err != ErrServerClosed || ln.calls != 0 {
			t.Errorf("got %v after %d Accepts, want ErrServerClosed and none", err, ln.calls)
		}
		// The server is left usable (its lock free).
		if err := boundedErr(t, "ActiveConns", func() error { s.ActiveConns(); return nil }); err != nil {
			t.Error(err)
		}
	})
	t.Run("ServeConn after Close", func(t *testing.T) {
		s := &Server{Handler: HandlerFunc(func(ResponseWriter, *Request) {})}
		s.Close()
		a, b := net.Pipe()
		defer b.Close()
		b.SetDeadline(soon(t))
		boundedErr(t, "ServeConn", func() error { s.ServeConn(a); return nil })
		if _, err := b.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("got %v, want the connection closed", err)
		}
		if err := boundedErr(t, "ActiveConns", func() error {
			if n := s.ActiveConns(); n != 0 {
				return fmt.Errorf("%d open", n)
			}
			return nil
		}); err != nil {
			t.Errorf("got %v, want none open", err)
		}
	})
	t.Run("Serve returns ErrServerClosed after Shutdown", func(t *testing.T) {
		s := &Server{Handler: HandlerFunc(func(ResponseWriter, *Request) {})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		// A request answered: Serve is accepting.
		if got := roundTripRaw(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("got %q, want 200", got)
		}
		if err := boundedErr(t, "Shutdown", func() error { return s.Shutdown(t.Context()) }); err != nil {
			t.Errorf("Shutdown: got %v, want nil", err)
		}
		if err := boundedErr(t, "Serve", func() error { return <-served }); err != ErrServerClosed {
			t.Errorf("Serve: got %v, want ErrServerClosed", err)
		}
	})
	t.Run("Shutdown with nothing open", func(t *testing.T) {
		s := &Server{}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := boundedErr(t, "Shutdown", func() error { return s.Shutdown(ctx) }); err != nil {
			t.Errorf("got %v, want nil at once", err)
		}
	})
	t.Run("Shutdown outlived by a request", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		defer close(release)
		s := &Server{Handler: HandlerFunc(func(ResponseWriter, *Request) {
			close(entered)
			<-release
		})}
		addr := startServer(t, s)
		c := dial(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		<-entered
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := boundedErr(t, "Shutdown", func() error { return s.Shutdown(ctx) }); err != context.DeadlineExceeded {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("the busy connection is still open, want it closed")
		}
	})
}

// TestServeConnWithoutSocket: a connection that is no socket (no RawConn:
// a pipe here, a TLS connection in use) waits for its next request with a
// read of one byte, which the request keeps: keep-alive requests are
// answered whole, and the client's close ends ServeConn.
func TestServeConnWithoutSocket(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Header().SetString("Date", "d")
		w.Write(r.Path)
	})}
	client, server := net.Pipe()
	client.SetDeadline(soon(t))
	served := make(chan error, 1)
	go func() { s.ServeConn(server); served <- nil }()
	br := bufio.NewReader(client)
	for _, path := range []string{"/first", "/second"} {
		if _, err := io.WriteString(client, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if r := readResponse(t, br, false); r.status != 200 || r.body != path {
			t.Fatalf("%s: got %d %q, want 200 %q", path, r.status, r.body, path)
		}
	}
	client.Close()
	boundedErr(t, "ServeConn", func() error { return <-served })
}

// TestReadTimeoutBoundsTheBody: ReadTimeout bounds the whole request, the
// body included, down to the least (1 ns): a body that does not come fails
// the handler's read instead of waiting for BodyIdleTimeout.
func TestReadTimeoutBoundsTheBody(t *testing.T) {
	for _, rt := range []time.Duration{1, 300 * time.Millisecond} {
		t.Run(rt.String(), func(t *testing.T) {
			got := make(chan error, 1)
			s := &Server{ReadTimeout: rt, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				_, err := io.ReadAll(r.Body)
				got <- err
			})}
			c := dial(t, startServer(t, s))
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
			select {
			case err := <-got:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the handler read %v, want a timeout", err)
				}
			case <-time.After(time.Until(soon(t))):
				t.Fatal("the body's read still waits")
			}
		})
	}
}

// TestHijackedConnLeftAlone: once the handler has hijacked the connection
// and returned, the server reads nothing more from it: what the client
// sends next is the hijacker's.
func TestHijackedConnLeftAlone(t *testing.T) {
	hijacked := make(chan net.Conn, 1)
	// IdleTimeout bounds a server that, wrongly, waits on the hijacked
	// connection for another request (the test then ends in seconds).
	s := &Server{IdleTimeout: time.Second, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		conn, _, err := w.Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		hijacked <- conn
	})}
	c := dial(t, startServer(t, s))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	var conn net.Conn
	select {
	case conn = <-hijacked:
	case <-time.After(time.Until(soon(t))):
		t.Fatal("the handler did not hijack")
	}
	defer conn.Close()
	conn.SetDeadline(soon(t))
	io.WriteString(c, "GET /mine HTTP/1.1\r\nHost: a\r\n\r\n")
	b := make([]byte, len("GET /mine"))
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != "GET /mine" {
		t.Errorf("the hijacker read %q %v, want the client's next bytes", b, err)
	}
}

// TestBodyCutShortNoAnswer: a client that stops sending in the middle of its
// body (and half-closes) gets no answer from the server when the handler
// wrote none: the body's error is no refusal of the server's (unlike a bad
// chunk, a body too large or a timeout), the connection just closes.
func TestBodyCutShortNoAnswer(t *testing.T) {
	got := make(chan error, 1)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
	})}
	c := dial(t, startServer(t, s))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		t.Fatalf("reading: %v", err)
	}
	if len(b) != 0 {
		t.Errorf("got %q, want nothing and the close", b)
	}
	if err := <-got; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("the handler read %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestRejectWire: the bytes of the server's own refusal: the status, a
// text body naming it (or ErrorBody's), its exact length, the close.
func TestRejectWire(t *testing.T) {
	for _, c := range []struct {
		name      string
		errorBody func(int, string) (string, []byte)
		want      string // DATE for the Date field's value
	}{
		{"the default body", nil,
			"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\nDate: DATE\r\n\r\n400 Bad Request\n"},
		{"ErrorBody", func(status int, reason string) (string, []byte) {
			return "application/json", []byte(fmt.Sprintf(`{"status":%d,"reason":%q}`, status, reason))
		}, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 44\r\nConnection: close\r\nDate: DATE\r\n\r\n" +
			`{"status":400,"reason":"missing host field"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Server{ErrorBody: c.errorBody, Handler: HandlerFunc(func(ResponseWriter, *Request) {})}
			got := roundTripRaw(t, startServer(t, s), "GET / HTTP/1.1\r\n\r\n")
			head, body, _ := strings.Cut(got, "\r\n\r\n")
			var lines []string
			for _, l := range strings.Split(head, "\r\n") {
				if strings.HasPrefix(l, "Date: ") {
					l = "Date: DATE"
				}
				lines = append(lines, l)
			}
			if got := strings.Join(lines, "\r\n") + "\r\n\r\n" + body; got != c.want {
				t.Errorf("got\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}

// TestHandlerPanicLogged: a handler's panic is logged at error level, with
// the panic's value; a panic with ErrAbortHandler is not logged. Either
// way the connection closes with nothing sent.
func TestHandlerPanicLogged(t *testing.T) {
	for _, c := range []struct {
		value  any
		logged bool
	}{
		{"boom", true},
		{ErrAbortHandler, false},
	} {
		var log lockedBuffer
		s := &Server{Logger: slog.New(slog.NewTextHandler(&log, nil)), Handler: HandlerFunc(func(ResponseWriter, *Request) { panic(c.value) })}
		if got := roundTripRaw(t, startServer(t, s), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); got != "" {
			t.Errorf("panic %v: got %q, want nothing and the close", c.value, got)
		}
		logged := strings.Contains(log.String(), `level=ERROR msg="handler panicked" panic=boom`)
		if logged != c.logged || !c.logged && log.String() != "" {
			t.Errorf("panic %v: logged %q, want logged %v", c.value, log.String(), c.logged)
		}
	}
}

// TestHeadSizeLimit: a request head of exactly MaxHeaderBytes (its final
// CRLF included) is read, one byte more is refused with 431.
func TestHeadSizeLimit(t *testing.T) {
	const limit = 100
	head := func(n int) string {
		h := "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX: \r\n\r\n"
		return strings.Replace(h, "X: ", "X: "+strings.Repeat("x", n-len(h)), 1)
	}
	s := &Server{MaxHeaderBytes: limit, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {})}
	addr := startServer(t, s)
	for _, c := range []struct {
		size   int
		status string
	}{
		{limit, "HTTP/1.1 200 "},
		{limit + 1, "HTTP/1.1 431 "},
	} {
		h := head(c.size)
		if len(h) != c.size {
			t.Fatalf("built a head of %d bytes, want %d", len(h), c.size)
		}
		if got := roundTripRaw(t, addr, h); !strings.HasPrefix(got, c.status) {
			t.Errorf("a head of %d bytes: got %q, want %s", c.size, got, c.status)
		}
	}
	// A field line that has not ended yet is refused as soon as the head
	// is past the limit, not when the line ends (or the client gives up).
	if got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: h\r\nX: "+strings.Repeat("x", limit)); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("an unfinished field past the limit: got %q, want 431", got)
	}
}

// TestSlowHeadOnKeepAlive: on a kept-alive connection the next request's
// head is timed from its first byte by ReadHeaderTimeout, or by a shorter
// ReadTimeout, not by IdleTimeout: a head that stalls gets 408.
func TestSlowHeadOnKeepAlive(t *testing.T) {
	for _, c := range []struct {
		name                           string
		readHeaderTimeout, readTimeout time.Duration
	}{
		{"ReadHeaderTimeout", 300 * time.Millisecond, 0},
		{"ReadTimeout", 0, 300 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Server{ReadHeaderTimeout: c.readHeaderTimeout, ReadTimeout: c.readTimeout, IdleTimeout: time.Minute,
				Handler: HandlerFunc(func(w ResponseWriter, r *Request) {})}
			conn := dial(t, startServer(t, s))
			br := bufio.NewReader(conn)
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if r := readResponse(t, br, false); r.status != 200 {
				t.Fatalf("first request: got %d", r.status)
			}
			io.WriteString(conn, "GET / HTTP/1.1\r\nHo") // then nothing
			if r := readResponse(t, br, false); r.status != 408 {
				t.Errorf("a stalled head: got %d, want 408", r.status)
			}
		})
	}
}

// TestBodyAfterLargeHead: a body is read whole, whatever room the head left
// in the first read buffer (none, little, or a head that outgrew it), by
// length or chunked, and a pipelined request after it is read too.
func TestBodyAfterLargeHead(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		w.Write(b)
	})}
	addr := startServer(t, s)
	body := make([]byte, 10<<10)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var chunked strings.Builder
	for i := 0; i < len(body); i += 1000 {
		part := body[i:min(i+1000, len(body))]
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(part), part)
	}
	chunked.WriteString("0\r\n\r\n")
	for _, headSize := range []int{3500, 3700, 4000, 4096, 5000} {
		for _, framing := range []string{"length", "chunked"} {
			head := "POST / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n"
			if framing == "length" {
				head += fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
			} else {
				head += "Transfer-Encoding: chunked\r\n\r\n"
			}
			head = strings.Replace(head, "X-Pad: ", "X-Pad: "+strings.Repeat("p", headSize-len(head)), 1)
			req := head
			if framing == "length" {
				req += string(body)
			} else {
				req += chunked.String()
			}
			c := dial(t, addr)
			br := bufio.NewReader(c)
			go io.WriteString(c, req+"POST /next HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			if r := readResponse(t, br, false); r.status != 200 || r.body != string(body) {
				t.Errorf("head of %d, %s: got %d and %d bytes, want 200 and the body", headSize, framing, r.status, len(r.body))
			}
			if r := readResponse(t, br, false); r.status != 200 || r.body != "ok" {
				t.Errorf("head of %d, %s, the next request: got %d %q, want 200 ok", headSize, framing, r.status, r.body)
			}
		}
	}
}
