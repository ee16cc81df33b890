package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// parkedConns counts the goroutines waiting in park, and the connections
// of s the poller holds.
func parkedConns(s *Server) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := bytes.Count(buf, []byte("h1.(*conn).park("))
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Load() == stateParked {
			n++
		}
	}
	return n
}

// waitParked waits until at least n connections are parked.
func waitParked(t *testing.T, s *Server, n int) {
	t.Helper()
	end := time.Now().Add(3 * time.Second)
	for parkedConns(s) < n {
		if time.Now().After(end) {
			t.Fatalf("%d connections parked, want %d", parkedConns(s), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNoneParked waits until no connection of an earlier test waits in park.
func waitNoneParked(t *testing.T, s *Server) {
	t.Helper()
	end := time.Now().Add(3 * time.Second)
	for parkedConns(s) != 0 {
		if time.Now().After(end) {
			t.Fatalf("%d connections of earlier tests still parked", parkedConns(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitConns waits until the server holds n connections.
func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	end := time.Now().Add(3 * time.Second)
	for s.ActiveConns() != n {
		if time.Now().After(end) {
			t.Fatalf("the server holds %d connections, want %d", s.ActiveConns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readEOF reads until the server closes the connection and returns what came
// and how long it took.
func readEOF(t *testing.T, c net.Conn) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	b, err := io.ReadAll(c)
	if err != nil && !isConnReset(err) {
		t.Fatalf("reading to EOF: %v (got %q)", err, b)
	}
	return string(b), time.Since(start)
}

const parkGET = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"

// TestParkedConn: a keep-alive connection idle longer than parkAfter is
// parked, without a goroutine in the poller (Linux) or in a goroutine of its
// own with a small stack (elsewhere, and here with parkGoroutine), and
// behaves as before: it serves the next requests (pipelined ones too), parks
// again, and keeps every timeout and Shutdown, Close and draining.
func TestParkedConn(t *testing.T) {
	t.Run("poller", func(t *testing.T) { testParkedConn(t, false) })
	t.Run("goroutine", func(t *testing.T) { testParkedConn(t, true) })
}

func testParkedConn(t *testing.T, goroutine bool) {
	const parkAfter = 50 * time.Millisecond
	newServer := func(t *testing.T, s *Server) (*Server, string) {
		var calls atomic.Int64
		if s.Handler == nil {
			s.Handler = okHandler(&calls)
		}
		s.parkAfter = parkAfter
		s.parkGoroutine = goroutine
		return s, startServer(t, s)
	}
	t.Run("serves after parking, again and again", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		for i := range 3 {
			io.WriteString(c, parkGET)
			if r := readResponse(t, br, false); r.status != 200 || r.body != "hello" {
				t.Fatalf("request %d: got %d %q", i, r.status, r.body)
			}
			waitParked(t, s, 1)
		}
		// Pipelined requests and a head in two parts, sent to a parked
		// connection.
		io.WriteString(c, parkGET+parkGET+"GET /y HTTP/1.1\r\n")
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, "Host: a\r\n\r\n")
		for i := range 3 {
			if r := readResponse(t, br, false); r.status != 200 {
				t.Fatalf("pipelined request %d: got %d", i, r.status)
			}
		}
	})
	t.Run("a new connection parks too", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		c := dial(t, addr)
		waitParked(t, s, 1)
		io.WriteString(c, parkGET)
		if r := readResponse(t, bufio.NewReader(c), false); r.status != 200 {
			t.Fatalf("got %d", r.status)
		}
	})
	t.Run("idle timeout counts from the response", func(t *testing.T) {
		_, addr := newServer(t, &Server{IdleTimeout: 400 * time.Millisecond})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, parkGET)
		readResponse(t, br, false)
		got, took := readEOF(t, c)
		if got != "" || took < 300*time.Millisecond || took > 1500*time.Millisecond {
			t.Fatalf("closed after %v with %q, want a silent close after 400ms", took, got)
		}
	})
	t.Run("read header timeout of a new connection", func(t *testing.T) {
		_, addr := newServer(t, &Server{ReadHeaderTimeout: 300 * time.Millisecond})
		c := dial(t, addr)
		got, took := readEOF(t, c)
		if got != "" || took < 200*time.Millisecond || took > 1500*time.Millisecond {
			t.Fatalf("closed after %v with %q, want a silent close after 300ms", took, got)
		}
	})
	t.Run("a head stalled after parking gets 408", func(t *testing.T) {
		s, addr := newServer(t, &Server{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 5 * time.Second})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, parkGET)
		readResponse(t, br, false)
		waitParked(t, s, 1)
		io.WriteString(c, "GET /x HTTP/1.1\r\n")
		start := time.Now()
		r := readResponse(t, br, false)
		if r.status != 408 || time.Since(start) > 1500*time.Millisecond {
			t.Fatalf("got %d after %v, want 408 after 300ms", r.status, time.Since(start))
		}
	})
	t.Run("the client's close ends it", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		c := dial(t, addr)
		io.WriteString(c, parkGET)
		readResponse(t, bufio.NewReader(c), false)
		waitParked(t, s, 1)
		c.Close()
		waitConns(t, s, 0)
	})
	t.Run("Shutdown closes parked connections at once", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		var cs []net.Conn
		for range 3 {
			c := dial(t, addr)
			io.WriteString(c, parkGET)
			readResponse(t, bufio.NewReader(c), false)
			cs = append(cs, c)
		}
		waitParked(t, s, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Shutdown took %v", d)
		}
		for _, c := range cs {
			if got, _ := readEOF(t, c); got != "" {
				t.Fatalf("got %q after Shutdown", got)
			}
		}
		if n := s.ActiveConns(); n != 0 {
			t.Fatalf("%d connections after Shutdown", n)
		}
	})
	t.Run("Close closes parked connections", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		c := dial(t, addr)
		io.WriteString(c, parkGET)
		readResponse(t, bufio.NewReader(c), false)
		waitParked(t, s, 1)
		s.Close()
		readEOF(t, c)
		waitConns(t, s, 0)
	})
	t.Run("draining answers a parked connection with close", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, parkGET)
		readResponse(t, br, false)
		waitParked(t, s, 1)
		s.SetDraining(true)
		io.WriteString(c, parkGET)
		if r := readResponse(t, br, false); r.status != 200 || !strings.EqualFold(r.header["connection"], "close") {
			t.Fatalf("got %d, Connection %q", r.status, r.header["connection"])
		}
		readEOF(t, c)
		waitConns(t, s, 0)
	})
	t.Run("a connection busy within parkAfter does not park", func(t *testing.T) {
		s, addr := newServer(t, &Server{})
		waitNoneParked(t, s)
		c := dial(t, addr)
		br := bufio.NewReader(c)
		for range 20 {
			io.WriteString(c, parkGET)
			readResponse(t, br, false)
			if n := parkedConns(s); n != 0 {
				t.Fatalf("%d connections parked", n)
			}
			time.Sleep(parkAfter / 5)
		}
	})
	t.Run("ServeConn does not park", func(t *testing.T) {
		s := &Server{Handler: okHandler(new(atomic.Int64)), parkAfter: parkAfter, parkGoroutine: goroutine}
		waitNoneParked(t, s)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		served := make(chan struct{})
		go func() {
			defer close(served)
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.ServeConn(nc) // returns only when the connection is done
		}()
		c := dial(t, ln.Addr().String())
		io.WriteString(c, parkGET)
		readResponse(t, bufio.NewReader(c), false)
		time.Sleep(3 * parkAfter)
		if n := parkedConns(s); n != 0 {
			t.Fatalf("%d connections parked", n)
		}
		select {
		case <-served:
			t.Fatal("ServeConn returned while its connection is open")
		default:
		}
		c.Close()
		select {
		case <-served:
		case <-time.After(3 * time.Second):
			t.Fatal("ServeConn did not return after the client's close")
		}
		if err := s.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Fatal(err)
		}
	})
}

// TestParkedConnStress: many connections park, wake and time out at once,
// with requests arriving around their idle timeouts, then the server shuts
// down: every answer is whole, a connection ends only by the server's close
// (never half-answered), and the server forgets every connection.
func TestParkedConnStress(t *testing.T) {
	for _, goroutine := range []bool{false, true} {
		s := &Server{Handler: okHandler(new(atomic.Int64)), IdleTimeout: 60 * time.Millisecond, parkAfter: 10 * time.Millisecond, parkGoroutine: goroutine}
		addr := startServer(t, s)
		var wg sync.WaitGroup
		var answered, closed atomic.Int64
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				var c net.Conn
				var br *bufio.Reader
				for range 15 {
					if c == nil {
						var err error
						if c, err = net.Dial("tcp", addr); err != nil {
							t.Error(err)
							return
						}
						c.SetDeadline(soon(t))
						br = bufio.NewReader(c)
					}
					time.Sleep(time.Duration(rng.IntN(90)) * time.Millisecond)
					if _, err := io.WriteString(c, parkGET); err != nil {
						c.Close()
						c = nil
						closed.Add(1)
						continue
					}
					line, err := br.ReadString('\n')
					if err != nil {
						// Closed by the idle timeout before the request
						// arrived: nothing of an answer may have come.
						if line != "" {
							t.Errorf("a partial answer %q, then %v", line, err)
						}
						c.Close()
						c = nil
						closed.Add(1)
						continue
					}
					if !strings.HasPrefix(line, "HTTP/1.1 200") {
						t.Errorf("got %q", line)
						return
					}
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							t.Errorf("reading the head: %v", err)
							return
						}
						if l == "\r\n" {
							break
						}
					}
					if _, err := io.ReadFull(br, make([]byte, 5)); err != nil {
						t.Errorf("reading the body: %v", err)
						return
					}
					answered.Add(1)
				}
				if c != nil {
					c.Close()
				}
			}()
		}
		wg.Wait()
		t.Logf("goroutine park %v: %d answered, %d closed by the idle timeout", goroutine, answered.Load(), closed.Load())
		waitConns(t, s, 0)
		if answered.Load() == 0 || closed.Load() == 0 {
			t.Errorf("want both answers and idle closes")
		}
	}
}
