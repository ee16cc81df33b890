package h1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

const benchRequest = "GET /api/orders/123?x=1 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nX-CorrelationID: abc-123\r\n\r\n"

var benchRequestBytes = []byte(benchRequest)

// gatewayLikeHandler does what the request path does with the request:
// looks up a few fields, sets a correlation id and answers a small body.
var gatewayLikeHandler = HandlerFunc(func(w ResponseWriter, r *Request) {
	id := r.Header.Get("X-CorrelationID")
	_ = r.Header.Get("Authorization")
	h := w.Header()
	h.Add("X-CorrelationID", id)
	h.AddString("Content-Type", "application/json")
	w.Write(okJSON)
})

var okJSON = []byte(`{"ok":true}`)

// serveRequests serves n keep-alive requests on one in-memory connection,
// one request per read (no pipelining), as a client waiting for each
// response would send them.
func serveRequests(s *Server, n int) *memConn {
	data := bytes.Repeat([]byte(benchRequest), n)
	c := &memConn{data: data, segment: len(benchRequest)}
	s.ServeConn(c)
	return c
}

// TestServerZeroAllocs checks that a keep-alive GET allocates nothing per
// request: what remains is the per-connection cost, spread over 1,000
// requests.
func TestServerZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a warm pool")
	}
	s := &Server{Handler: gatewayLikeHandler}
	const n = 1000
	// Warm the pools, with a deadline: a server that loops on a request
	// fails here rather than hanging the test binary.
	bounded(t, func() { serveRequests(s, n) })
	allocs := testing.AllocsPerRun(20, func() { serveRequests(s, n) })
	perConn := 16.0 // the connection itself, its raw-conn plumbing, Serve's bookkeeping
	if allocs > perConn {
		t.Fatalf("got %.0f allocations for %d requests on one connection, want at most %.0f (per connection)", allocs, n, perConn)
	}
	t.Logf("%.0f allocations for %d requests (per connection, none per request)", allocs, n)
}

func BenchmarkServerGET(b *testing.B) {
	s := &Server{Handler: gatewayLikeHandler}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRequest)))
	b.ResetTimer()
	serveRequests(s, b.N)
}

// BenchmarkServerGETTCP runs keep-alive GETs over loopback TCP, one request
// in flight per connection, as many connections as GOMAXPROCS.
func BenchmarkServerGETTCP(b *testing.B) {
	s := &Server{Handler: gatewayLikeHandler}
	addr := startServer(b, s)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		buf := make([]byte, 512)
		for pb.Next() {
			if _, err := c.Write(benchRequestBytes); err != nil {
				b.Error(err)
				return
			}
			if err := readSmallResponse(br, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// readSmallResponse reads a response with a Content-Length body.
func readSmallResponse(br *bufio.Reader, buf []byte) error {
	cl := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		if len(line) > 17 && EqualFoldString(line[:15], "content-length:") {
			cl = int(parseContentLength(trimOWS(line[15 : len(line)-2])))
		}
	}
	if cl < 0 {
		return fmt.Errorf("no content-length")
	}
	_, err := io.ReadFull(br, buf[:cl])
	return err
}

// cannedUpstream answers every request with the same small response,
// without allocating per request.
func cannedUpstream(b testing.TB, resp string) *Upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				out := []byte(resp)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return &Upstream{Addr: ln.Addr().String(), MaxIdle: 64}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct {
	hdr     Header
	status  int
	written int64
}

func (d *discardWriter) Header() *Header { return &d.hdr }
func (d *discardWriter) WriteHeader(s int) {
	if d.status == 0 {
		d.status = s
	}
}
func (d *discardWriter) Write(p []byte) (int, error) { d.written += int64(len(p)); return len(p), nil }
func (d *discardWriter) Flush() error                { return nil }
func (d *discardWriter) Hijack() (net.Conn, *bufio.Reader, error) {
	return nil, nil, fmt.Errorf("no")
}
func (d *discardWriter) Written() int64 { return d.written }
func (d *discardWriter) Status() int    { return d.status }

// BenchmarkForward forwards a small GET to an in-process upstream over a
// pooled loopback connection and copies its small response.
func BenchmarkForward(b *testing.B) {
	u := cannedUpstream(b, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nX-CorrelationID: up\r\n\r\n{\"ok\":true}")
	var reqHdr Header
	reqHdr.AddString("User-Agent", "bench/1.0")
	reqHdr.AddString("Accept", "*/*")
	reqHdr.AddString("X-CorrelationID", "abc-123")
	out := &Outgoing{Method: []byte("GET"), Path: []byte("/api/orders/123"), Query: []byte("x=1"), Host: []byte("api.example.com"), Header: &reqHdr}
	w := &discardWriter{}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.hdr.Reset()
		w.status = 0
		if _, err := Forward(ctx, u, w, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxy runs the whole fast path over loopback TCP: client → Server
// → Forward → upstream, keep-alive on both sides.
func BenchmarkProxy(b *testing.B) {
	u := cannedUpstream(b, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Header().Add("X-CorrelationID", r.Header.Get("X-CorrelationID"))
		out := Outgoing{Method: r.Method, Path: r.Path, Query: r.Query, Host: r.Host, Header: &r.Header,
			Body: r.Body, ContentLength: r.ContentLength}
		if _, err := Forward(context.Background(), u, w, &out); err != nil {
			w.WriteHeader(502)
		}
	})}
	addr := startServer(b, s)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		buf := make([]byte, 512)
		for pb.Next() {
			c.Write(benchRequestBytes)
			if err := readSmallResponse(br, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestIdleConnMemory opens 2,000 keep-alive connections to an in-process
// server, makes one request on each, lets them go idle, and measures the
// growth of goroutine stacks (StackInuse) and heap (HeapInuse) per idle
// connection. The client ends of the connections are in the same process and
// counted too (their heap only: no goroutine), so the figure is an upper
// bound for the server.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	const n = 2000
	s := &Server{Handler: gatewayLikeHandler}
	addr := startServer(t, s)
	measure := func() (stack, heap uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.StackInuse, ms.HeapInuse
	}
	// Warm up pools and the runtime with a first connection.
	// Every read is bounded: a server that sends less than it announces
	// fails the test instead of hanging it.
	warm := dial(t, addr)
	warm.SetDeadline(soon(t))
	io.WriteString(warm, benchRequest)
	if err := readSmallResponse(bufio.NewReader(warm), make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	stack0, heap0 := measure()
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 512)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(soon(t))
		io.WriteString(c, benchRequest)
		if err := readSmallResponse(bufio.NewReaderSize(c, 512), buf); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(s.parkAfterIdle() + 100*time.Millisecond) // the connections park
	stack1, heap1 := measure()
	perStack := float64(int64(stack1)-int64(stack0)) / n
	perHeap := float64(int64(heap1)-int64(heap0)) / n
	per := perStack + perHeap
	t.Logf("%d idle keep-alive connections: %.0f bytes each: %.0f of goroutine stack, %.0f of heap (both ends of the connection)", n, per, perStack, perHeap)
	if got := s.ActiveConns(); got < n {
		t.Fatalf("got %d open connections, want %d", got, n)
	}
	// On Linux the poller holds idle connections without a goroutine;
	// elsewhere each waits in a goroutine with a small stack (2 KiB, or 4
	// when the runtime's adaptive stack start says so).
	maxPer, maxStack := 4<<10, 2<<10+256
	if runtime.GOOS != "linux" {
		maxPer, maxStack = 6<<10, 4<<10+256
	}
	switch {
	case raceEnabled:
		// Stacks are larger under the race detector: only the release
		// build's figure is checked.
		if per > 16<<10 {
			t.Errorf("got %.0f bytes per idle connection, want at most 16 KiB (race detector)", per)
		}
	case perStack > float64(maxStack):
		t.Errorf("got %.0f bytes of goroutine stack per idle connection, want at most %d: the connections did not park", perStack, maxStack)
	case per > float64(maxPer):
		t.Errorf("got %.0f bytes per idle connection, want at most %d", per, maxPer)
	}
	// Every idle connection is parked (in both builds: under the race
	// detector the stack sizes above do not tell).
	if parked := parkedConns(s); parked < n {
		t.Errorf("%d connections parked, want at least %d (every idle one)", parked, n)
	}
	// The connections still serve: a second request on each of a few.
	for _, c := range conns[:10] {
		c.SetDeadline(soon(t))
		io.WriteString(c, benchRequest)
		if err := readSmallResponse(bufio.NewReaderSize(c, 512), buf); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}
