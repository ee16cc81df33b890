package h2

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// goid is the calling goroutine's id, read from its stack trace.
func goid() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	n, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return n
}

func spares(s *Server) int {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	return len(s.spare)
}

// waitSpares waits until the server keeps n spare workers.
func waitSpares(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for spares(s) != n {
		if time.Now().After(deadline) {
			t.Fatalf("spare workers: %d, want %d", spares(s), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSpareWorkerServesAnotherConnection: the worker of a connection's last
// stream waits as a spare of the server, and the next stream of another
// connection runs on it (the same goroutine) instead of on a new one.
func TestSpareWorkerServesAnotherConnection(t *testing.T) {
	s := &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		fmt.Fprint(w, goid())
	})}
	addr := startServer(t, s)
	a := dialRaw(t, addr)
	a.get(1, "/")
	first := a.wait(1)
	if first.status != 200 {
		t.Fatalf("first stream: %+v", first)
	}
	waitSpares(t, s, 1)
	b := dialRaw(t, addr)
	b.get(1, "/")
	second := b.wait(1)
	if second.body != first.body {
		t.Fatalf("second connection's stream ran on goroutine %s, want the spare %s", second.body, first.body)
	}
	waitSpares(t, s, 1)
	s.Close()
	if n := spares(s); n != 0 {
		t.Fatalf("after Close: %d spare workers kept", n)
	}
	// A worker that finishes after Close does not stay.
	if s.putSpare(make(chan *stream, 1)) {
		t.Fatal("putSpare accepted a worker after Close")
	}
}

// TestSpareWorkersBounded: after more concurrent streams than the bound,
// the server keeps exactly maxSpareWorkers spares; the others return.
func TestSpareWorkersBounded(t *testing.T) {
	n := maxSpareWorkers + 20
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	s := &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		started.Done()
		<-release
		w.Write([]byte("ok"))
	})}
	addr := startServer(t, s)
	c := client()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Get("https://" + addr + "/")
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}()
	}
	started.Wait() // every handler runs at once: n workers
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The connections still have no stream: their workers are spares, at
	// most the bound.
	waitSpares(t, s, maxSpareWorkers)
	time.Sleep(50 * time.Millisecond)
	if got := spares(s); got != maxSpareWorkers {
		t.Fatalf("spare workers: %d, want %d", got, maxSpareWorkers)
	}
}
