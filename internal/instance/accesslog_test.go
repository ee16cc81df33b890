package instance

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateWriter records what is written; each Write waits until the gate is
// open.
type gateWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	gate   chan struct{}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	return g.buf.Write(p)
}

func (g *gateWriter) text() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String()
}

// rejected logs line n (a refused request's line: no request needed).
func logLine(a *accessLog, n int) {
	a.logRejected(400, fmt.Sprintf("line %06d", n), netip.MustParseAddrPort("192.0.2.1:1234"))
}

// TestAccessLogWriterOffThePath: a request's line never waits for the file
// while the writer is fewer than accessBuffers buffers behind; beyond that
// it waits (nothing is dropped); every line is written once, in order.
func TestAccessLogWriterOffThePath(t *testing.T) {
	g := &gateWriter{gate: make(chan struct{})}
	a := newAccessLogEvery(g, time.Hour) // no periodic hand-over to count
	lineLen := 0
	{
		var b bytes.Buffer
		probe := newAccessLog(&b)
		logLine(probe, 0)
		probe.close()
		lineLen = b.Len()
	}
	perBuf := accessFlushSize/lineLen + 1 // lines that fill a buffer
	// The writer is stuck: the current buffer and the free ones fill
	// without a request waiting.
	n := 0
	for range accessBuffers - 1 {
		for range perBuf {
			logLine(a, n)
			n++
		}
	}
	// The last buffer fills too, and its hand-over must wait: no buffer is
	// free until the writer moves.
	blocked := make(chan struct{})
	go func() {
		for range perBuf + 10 {
			logLine(a, n)
			n++
		}
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("a request's line went through with every buffer full and the writer stuck")
	case <-time.After(100 * time.Millisecond):
	}
	close(g.gate)
	<-blocked
	a.close()
	got := strings.Split(strings.TrimSuffix(g.text(), "\n"), "\n")
	if len(got) != n {
		t.Fatalf("%d lines written, want %d", len(got), n)
	}
	for i, l := range got {
		if !strings.Contains(l, fmt.Sprintf(`"rejected":"line %06d"`, i)) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
}

// TestAccessLogFlushEvery: a line reaches the file within flushEvery
// without more traffic, and sync waits until it is there.
func TestAccessLogFlushEvery(t *testing.T) {
	g := &gateWriter{gate: make(chan struct{})}
	close(g.gate)
	a := newAccessLog(g)
	defer a.close()
	logLine(a, 1)
	deadline := time.Now().Add(3 * accessFlushEvery)
	for !strings.Contains(g.text(), "line 000001") {
		if time.Now().After(deadline) {
			t.Fatalf("not written after %v", 3*accessFlushEvery)
		}
		time.Sleep(5 * time.Millisecond)
	}
	logLine(a, 2)
	a.sync()
	if !strings.Contains(g.text(), "line 000002") {
		t.Fatal("sync returned before the line was written")
	}
	a.close()
	logLine(a, 3) // after close: dropped, no panic
	a.sync()      // after close: returns
	if strings.Contains(g.text(), "line 000003") {
		t.Fatal("a line logged after close was written")
	}
}
