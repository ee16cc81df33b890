//go:build unix

package h1

import (
	"net"
	"testing"
	"time"
)

// TestPeekSocket: peekSocket tells the four states of an idle socket apart
// without consuming anything: -1 nothing has arrived, 1 a byte is readable,
// 0 the peer closed (FIN) or reset (RST) the connection.
func TestPeekSocket(t *testing.T) {
	for _, c := range []struct {
		name string
		peer func(c *net.TCPConn) // what the other end does
		want int
	}{
		{"nothing sent", func(*net.TCPConn) {}, -1},
		{"a byte sent", func(c *net.TCPConn) { c.Write([]byte("x")) }, 1},
		{"closed", func(c *net.TCPConn) { c.Close() }, 0},
		{"reset", func(c *net.TCPConn) { c.SetLinger(0); c.Close() }, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			peer, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			c.peer(peer.(*net.TCPConn))
			conn.SetDeadline(soon(t))
			raw, err := conn.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			got := -2
			done := make(chan error, 1)
			go func() { // a peek that never returns fails the test, not hangs it
				if c.want == -1 {
					done <- raw.Control(func(fd uintptr) { got = peekSocket(fd, b[:]) })
					return
				}
				// Read waits until the socket is readable when the
				// function returns false: no polling.
				done <- raw.Read(func(fd uintptr) bool { got = peekSocket(fd, b[:]); return got != -1 })
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Until(soon(t))):
				t.Fatal("peekSocket did not return")
			}
			if got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
			if c.want == 1 {
				// A peek leaves the byte for the next read.
				if n, err := conn.Read(b[:]); n != 1 || b[0] != 'x' {
					t.Errorf("read after the peek: got %d %q %v, want the byte", n, b[:n], err)
				}
			}
		})
	}
}
