package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// faultProxy is proxyServer with the handler's body limit and the server's
// body idle timeout set, reporting every Forward error on errs.
func faultProxy(t *testing.T, u *Upstream, maxBody int64, bodyIdle time.Duration) (string, <-chan error) {
	t.Helper()
	errs := make(chan error, 16)
	s := &Server{BodyIdleTimeout: bodyIdle, Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		r.MaxBodyBytes = maxBody
		out := Outgoing{Method: r.Method, Path: r.Path, Host: r.Host, Header: &r.Header, Body: r.Body, ContentLength: r.ContentLength}
		_, err := Forward(context.Background(), u, w, &out)
		errs <- err
	})}
	return startServer(t, s), errs
}

// TestClientFaultNeverBlamesUpstream loops uploads that fail on the
// client's side while the upstream waits for the rest of the body: the
// body over the limit (chunked), the client resetting its connection, the
// client stalling. Every one must end as ErrClient, never as a timeout or
// a protocol error of the upstream (which would take its address out of
// rotation). The race this guards against (the response read cut short
// before the body goroutine had reported the client's fault) hit about
// once in 100 tries; run with -race.
func TestClientFaultNeverBlamesUpstream(t *testing.T) {
	up := upstreamFor(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	first := strings.Repeat("a", 40<<10) // past what Begin keeps: the body goroutine sends the rest
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
	cases := []struct {
		name     string
		n        int
		maxBody  int64
		bodyIdle time.Duration
		send     func(c *net.TCPConn)
		wantErr  error // errors.Is target, nil = any ErrClient
	}{
		{"chunked body over the limit", 300, 64 << 10, 0, func(c *net.TCPConn) {
			io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(first))
			io.WriteString(c, chunk(first)+chunk(first))
		}, ErrBodyTooLarge},
		{"client resets mid-upload", 300, 0, 0, func(c *net.TCPConn) {
			io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"+first+first)
			c.SetLinger(0)
			c.Close()
		}, nil},
		{"chunked upload cut off", 300, 0, 0, func(c *net.TCPConn) {
			io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(first)+chunk(first))
			c.CloseWrite()
		}, nil},
		{"client stalls", 5, 0, 50 * time.Millisecond, func(c *net.TCPConn) {
			io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"+first+first)
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, errs := faultProxy(t, up, tc.maxBody, tc.bodyIdle)
			for i := range tc.n {
				c := dial(t, addr).(*net.TCPConn)
				tc.send(c)
				var err error
				select {
				case err = <-errs:
				case <-time.After(10 * time.Second):
					t.Fatalf("try %d: Forward did not return", i)
				}
				c.Close()
				var fe *ForwardError
				if !errors.As(err, &fe) || fe.Kind != ErrClient {
					t.Fatalf("try %d: got %v, want an ErrClient ForwardError (the client's fault)", i, err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("try %d: got %v, want %v", i, err, tc.wantErr)
				}
			}
		})
	}
}
