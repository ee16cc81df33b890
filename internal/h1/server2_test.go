package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPipelining(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.Path, b)
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	raw := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	for _, want := range []string{"/1:", "/2:abc", "/3:xy", "/4:"} {
		r := readResponse(t, br, false)
		if r.body != want {
			t.Fatalf("got %q, want %q", r.body, want)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("got %v, want EOF after Connection: close", err)
	}
}

func TestHTTP10(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) { w.Write([]byte("x")) })}
	addr := startServer(t, s)
	t.Run("close by default", func(t *testing.T) {
		got := roundTripRaw(t, addr, "GET / HTTP/1.0\r\n\r\n")
		if !strings.Contains(got, "Connection: close\r\n") || !strings.HasSuffix(got, "\r\n\r\nx") {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		for range 2 {
			io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			r := readResponse(t, br, false)
			if r.header["connection"] != "keep-alive" || r.body != "x" || r.header["content-length"] != "1" {
				t.Fatalf("got %+v", r)
			}
		}
	})
	t.Run("streamed body is close-delimited", func(t *testing.T) {
		s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			w.Write([]byte("a"))
			w.Flush()
			w.Write([]byte("b"))
		})}
		addr := startServer(t, s)
		got := roundTripRaw(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		if !strings.Contains(got, "Connection: close\r\n") || strings.Contains(got, "chunked") || !strings.HasSuffix(got, "\r\n\r\nab") {
			t.Fatalf("got %q", got)
		}
	})
}

func TestExpectContinue(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading body: %v", err)
		}
		w.Write(b)
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	r := readResponse(t, br, false)
	if r.status != 100 {
		t.Fatalf("got %d, want 100 before the body is sent", r.status)
	}
	io.WriteString(c, "hello")
	r = readResponse(t, br, false)
	if r.status != 200 || r.body != "hello" {
		t.Fatalf("got %d %q", r.status, r.body)
	}

	// A handler that answers without reading: no 100, and the connection
	// closes (the client may never send the body).
	s2 := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.ContentLength > 3 {
			w.WriteHeader(413)
		}
	})}
	addr2 := startServer(t, s2)
	got := roundTripRaw(t, addr2, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 413 ") || strings.Contains(got, "100 Continue") {
		t.Fatalf("got %q", got)
	}
}

func TestNoBodyStatuses(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		switch string(r.Path) {
		case "/204":
			w.WriteHeader(204)
			if _, err := w.Write([]byte("x")); !errors.Is(err, ErrBodyNotAllowed) {
				t.Errorf("got %v, want ErrBodyNotAllowed", err)
			}
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().SetString("Content-Type", "text/plain")
			w.Write([]byte("body"))
		}
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	r := readResponse(t, br, true)
	if r.status != 200 || r.header["content-length"] != "0" && r.header["content-length"] != "" {
		t.Errorf("HEAD: got %+v", r)
	}
	r = readResponse(t, br, false)
	if r.status != 204 || r.header["content-length"] != "" || r.header["transfer-encoding"] != "" {
		t.Errorf("204: got %q", r.raw)
	}
	r = readResponse(t, br, false)
	if r.status != 304 || r.header["transfer-encoding"] != "" {
		t.Errorf("304: got %q", r.raw)
	}
	r = readResponse(t, br, false)
	if r.status != 200 || r.body != "body" {
		t.Errorf("GET after: got %+v", r)
	}
}

func TestChunkedResponse(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Write([]byte("part1"))
		w.Flush()
		w.Write([]byte(strings.Repeat("z", 10000)))
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	r := readResponse(t, br, false)
	if r.header["transfer-encoding"] != "chunked" || r.body != "part1"+strings.Repeat("z", 10000) {
		t.Fatalf("got %q ... (%d bytes)", r.raw, len(r.body))
	}
}

// TestMaxBodyBytes: a body longer than MaxBodyBytes fails the handler's
// read with ErrBodyTooLarge and gets the server's 413; a body of exactly
// MaxBodyBytes is read whole.
func TestMaxBodyBytes(t *testing.T) {
	errs := make(chan error, 2)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		r.MaxBodyBytes = 4
		_, err := io.ReadAll(r.Body)
		errs <- err
	})}
	addr := startServer(t, s)
	for _, c := range []struct {
		raw     string
		tooLong bool
	}{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhell", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n", false},
	} {
		got := roundTripRaw(t, addr, c.raw)
		err := <-errs
		switch {
		case c.tooLong && (!errors.Is(err, ErrBodyTooLarge) || !strings.HasPrefix(got, "HTTP/1.1 413 ")):
			t.Errorf("%q: got %v and %q, want ErrBodyTooLarge and 413 from the server", c.raw, err, got)
		case !c.tooLong && (err != nil || !strings.HasPrefix(got, "HTTP/1.1 200 ")):
			t.Errorf("%q: got %v and %q, want the body read and 200", c.raw, err, got)
		}
	}
}

func TestUnreadBody(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) { w.Write([]byte("ok")) })}
	addr := startServer(t, s)
	t.Run("small body drained, connection kept", func(t *testing.T) {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		for range 2 {
			if r := readResponse(t, br, false); r.status != 200 {
				t.Fatalf("got %d", r.status)
			}
		}
	})
	// Up to 256 KiB of a declared length are drained to keep the
	// connection; one byte more is not read, and the connection closes.
	for _, c := range []struct {
		name string
		n    int
		kept bool
	}{
		{"256 KiB drained, connection kept", 256 << 10, true},
		{"256 KiB and a byte, connection closed", 256<<10 + 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dial(t, addr)
			br := bufio.NewReader(conn)
			go func() { // written while the server answers
				fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%sGET / HTTP/1.1\r\nHost: a\r\n\r\n", c.n, strings.Repeat("b", c.n))
			}()
			if r := readResponse(t, br, false); r.status != 200 {
				t.Fatalf("got %d, want 200", r.status)
			}
			if !c.kept {
				if _, err := br.ReadByte(); err == nil {
					t.Fatal("got more bytes, want the connection closed")
				}
				return
			}
			if r := readResponse(t, br, false); r.status != 200 || r.body != "ok" {
				t.Fatalf("second request: got %d %q, want 200 ok on the same connection", r.status, r.body)
			}
		})
	}
	t.Run("large body closes", func(t *testing.T) {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n0123456789")
		if r := readResponse(t, br, false); r.status != 200 {
			t.Fatalf("got %d", r.status)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Fatalf("connection still open")
		}
	})
}

// TestTimeouts asserts that the server closes slow clients, not when.
func TestTimeouts(t *testing.T) {
	t.Run("slow head", func(t *testing.T) {
		s := &Server{ReadHeaderTimeout: 300 * time.Millisecond, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			t.Errorf("handler called")
		})}
		addr := startServer(t, s)
		c := dial(t, addr)
		closed := make(chan string)
		go func() {
			b, _ := io.ReadAll(c)
			closed <- string(b)
		}()
		head := "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "
		for i := 0; ; i++ {
			select {
			case got := <-closed:
				if !strings.HasPrefix(got, "HTTP/1.1 408 ") {
					t.Errorf("got %q, want 408", got)
				}
				return
			case <-time.After(50 * time.Millisecond): // pacing of the slow client, not a sync
			}
			b := byte('a')
			if i < len(head) {
				b = head[i]
			}
			c.Write([]byte{b})
		}
	})
	t.Run("idle", func(t *testing.T) {
		s := &Server{IdleTimeout: 200 * time.Millisecond, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {})}
		addr := startServer(t, s)
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		readResponse(t, br, false)
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("got %v, want EOF after the idle timeout", err)
		}
	})
	t.Run("new connection without a request", func(t *testing.T) {
		s := &Server{ReadHeaderTimeout: 200 * time.Millisecond, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {})}
		addr := startServer(t, s)
		c := dial(t, addr)
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("got %q %v, want a silent close", b, err)
		}
	})
	t.Run("body idle", func(t *testing.T) {
		errs := make(chan error, 1)
		s := &Server{BodyIdleTimeout: 200 * time.Millisecond, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			_, err := io.ReadAll(r.Body)
			errs <- err
		})}
		addr := startServer(t, s)
		c := dial(t, addr)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
		got, _ := io.ReadAll(c)
		var ne net.Error
		if err := <-errs; !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("got %v, want a timeout", err)
		}
		if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
			t.Errorf("got %q, want 408", got)
		}
	})
}

func TestDrainingAndShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		if string(r.Path) == "/slow" {
			entered <- struct{}{}
			<-release
		}
		w.Write([]byte("ok"))
	})}
	addr := startServer(t, s)
	s.SetDraining(true)
	got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if !strings.Contains(got, "Connection: close") {
		t.Fatalf("got %q, want Connection: close while draining", got)
	}
	s.SetDraining(false)

	idle := dial(t, addr)
	ibr := bufio.NewReader(idle)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, ibr, false)

	busy := dial(t, addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	done := make(chan error)
	go func() { done <- s.Shutdown(t.Context()) }()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: got %v, want EOF at shutdown", err)
	}
	close(release)
	got2, _ := io.ReadAll(busy)
	if !strings.HasPrefix(string(got2), "HTTP/1.1 200 ") || !strings.Contains(string(got2), "Connection: close") {
		t.Errorf("busy connection: got %q", got2)
	}
	if err := boundedErr(t, "Shutdown", func() error { return <-done }); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestHandlerPanic(t *testing.T) {
	var n atomic.Int64
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		n.Add(1)
		panic("boom")
	})}
	addr := startServer(t, s)
	got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if got != "" || n.Load() != 1 {
		t.Fatalf("got %q, want a closed connection", got)
	}
}

// TestServerDefaults: the limits of a Server without settings are the
// documented defaults, and a setting replaces its default.
func TestServerDefaults(t *testing.T) {
	if DefaultReadHeaderTimeout != 10*time.Second || DefaultBodyIdleTimeout != 30*time.Second || DefaultIdleTimeout != 60*time.Second ||
		DefaultMaxHeaderBytes != 32<<10 || DefaultMaxHeaderCount != 100 {
		t.Errorf("defaults %v, %v, %v, %d, %d, want 10s, 30s, 60s, 32 KiB, 100 as documented",
			DefaultReadHeaderTimeout, DefaultBodyIdleTimeout, DefaultIdleTimeout, DefaultMaxHeaderBytes, DefaultMaxHeaderCount)
	}
	var s Server
	if s.readHeaderTimeout() != DefaultReadHeaderTimeout || s.bodyIdleTimeout() != DefaultBodyIdleTimeout || s.idleTimeout() != DefaultIdleTimeout ||
		s.maxHeaderBytes() != DefaultMaxHeaderBytes || s.maxHeaderCount() != DefaultMaxHeaderCount {
		t.Errorf("a Server without settings: %v, %v, %v, %d, %d", s.readHeaderTimeout(), s.bodyIdleTimeout(), s.idleTimeout(), s.maxHeaderBytes(), s.maxHeaderCount())
	}
	s = Server{ReadHeaderTimeout: 1, BodyIdleTimeout: 1, IdleTimeout: 1, MaxHeaderBytes: 1, MaxHeaderCount: 1} // the least settings
	if s.readHeaderTimeout() != 1 || s.bodyIdleTimeout() != 1 || s.idleTimeout() != 1 || s.maxHeaderBytes() != 1 || s.maxHeaderCount() != 1 {
		t.Errorf("a Server with settings: %v, %v, %v, %d, %d", s.readHeaderTimeout(), s.bodyIdleTimeout(), s.idleTimeout(), s.maxHeaderBytes(), s.maxHeaderCount())
	}
}
