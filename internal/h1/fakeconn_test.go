package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRead is one step of a fakeConn's script: its bytes, returned over as
// many Reads as they take, and then err with the last of them (a step with
// no bytes and a nil error is a Read that returns (0, nil)).
type fakeRead struct {
	data string
	err  error
}

// fakeDeadline is a deadline the server set, with the time of the call.
type fakeDeadline struct{ at, d time.Time }

// fakeConn is a net.Conn without a socket whose reads follow a script and
// which records what the server does to it: what it writes, its deadlines,
// its half-close and what it reads after it.
type fakeConn struct {
	mu     sync.Mutex
	cond   *sync.Cond
	script []fakeRead
	// hold: once the script is done, a Read waits for more (push) or for
	// Close instead of returning io.EOF.
	hold bool
	// after, when set, answers the Reads once the script is done.
	after func(p []byte) (int, error)

	waiting     int // Reads that found the script done and waited (hold)
	reads       int
	closed      bool
	closeWrites int
	readsAfterW int   // Reads after the first CloseWrite
	bytesAfterW int64 // bytes those Reads returned
	out         bytes.Buffer
	rdl, wdl    []fakeDeadline

	writeErr, closeWriteErr, readDeadlineErr error
}

func newFakeConn(script ...fakeRead) *fakeConn {
	c := &fakeConn{script: script}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *fakeConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	n, err := c.read(p)
	if c.closeWrites > 0 {
		c.readsAfterW++
		c.bytesAfterW += int64(n)
	}
	return n, err
}

func (c *fakeConn) read(p []byte) (int, error) {
	for {
		if c.closed {
			return 0, net.ErrClosed
		}
		if len(c.script) > 0 {
			r := &c.script[0]
			n := copy(p, r.data)
			r.data = r.data[n:]
			if len(r.data) > 0 {
				return n, nil
			}
			err := r.err
			c.script = c.script[1:]
			return n, err
		}
		if c.after != nil {
			return c.after(p)
		}
		if !c.hold {
			return 0, io.EOF
		}
		c.waiting++
		c.cond.Broadcast()
		c.cond.Wait()
	}
}

// push adds steps to the script (for a held connection).
func (c *fakeConn) push(script ...fakeRead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.script = append(c.script, script...)
	c.cond.Broadcast()
}

// waitFor polls cond (called with c.mu held) until it holds, or fails the
// test after a few seconds.
func (c *fakeConn) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := soon(t)
	for {
		c.mu.Lock()
		ok := cond()
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitIdle waits until the server waits for more bytes after the script
// (waiting grew past before), and returns what it wrote so far.
func (c *fakeConn) waitIdle(t *testing.T, before int) string {
	t.Helper()
	c.waitFor(t, "the server to wait for more bytes", func() bool { return c.waiting > before })
	return c.output()
}

func (c *fakeConn) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	return c.out.Write(p)
}

func (c *fakeConn) setWriteErr(err error) {
	c.mu.Lock()
	c.writeErr = err
	c.mu.Unlock()
}

func (c *fakeConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeWrites++
	return c.closeWriteErr
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.cond.Broadcast()
	return nil
}

func (c *fakeConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234} }
func (c *fakeConn) SetDeadline(d time.Time) error {
	c.SetReadDeadline(d)
	return c.SetWriteDeadline(d)
}

func (c *fakeConn) SetReadDeadline(d time.Time) error {
	at := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readDeadlineErr != nil {
		return c.readDeadlineErr
	}
	c.rdl = append(c.rdl, fakeDeadline{at, d})
	return nil
}

func (c *fakeConn) SetWriteDeadline(d time.Time) error {
	at := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = append(c.wdl, fakeDeadline{at, d})
	return nil
}

// serveFake serves c in its own goroutine; the function returned waits for
// ServeConn to return (failing the test after a few seconds) and returns
// what the server wrote.
func serveFake(t *testing.T, s *Server, c *fakeConn) func() string {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(c)
	}()
	return func() string {
		t.Helper()
		select {
		case <-done:
		case <-time.After(time.Until(soon(t))):
			t.Fatal("ServeConn did not return")
		}
		return c.output()
	}
}

// responses parses every response in out (their bodies by Content-Length).
func responses(t *testing.T, out string) []testResp {
	t.Helper()
	var rs []testResp
	br := bufio.NewReader(strings.NewReader(out))
	for {
		if _, err := br.Peek(1); err != nil {
			return rs
		}
		rs = append(rs, readResponse(t, br, false))
	}
}

// statuses lists the statuses of the responses in out.
func statuses(t *testing.T, out string) []int {
	t.Helper()
	var st []int
	for _, r := range responses(t, out) {
		st = append(st, r.status)
	}
	return st
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// errWrite is a write the client's side refuses.
var errWrite = errors.New("fake: broken pipe")
