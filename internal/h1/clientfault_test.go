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

// TestSlowBodyTimesTheUpstreamFromItsEnd: the wait for the response head
// (ActiveTimeout) starts when the whole request is sent. A client that
// takes longer than ActiveTimeout to upload (each piece well within the
// body idle timeout) is not the upstream being slow; an upstream that
// stops taking the body is, and the exchange ends with ErrTimeout instead
// of hanging.
func TestSlowBodyTimesTheUpstreamFromItsEnd(t *testing.T) {
	up := upstreamFor(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}))
	up.ActiveTimeout = 150 * time.Millisecond
	addr, errs := faultProxy(t, up, 0, 0)
	c := dial(t, addr)
	first := strings.Repeat("a", 40<<10)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	io.WriteString(c, fmt.Sprintf("%x\r\n%s\r\n", len(first), first))
	for range 6 {
		time.Sleep(60 * time.Millisecond) // 360 ms in all: over ActiveTimeout
		io.WriteString(c, "1\r\nb\r\n")
	}
	io.WriteString(c, "0\r\n\r\n")
	select {
	case err := <-errs:
		if err != nil {
			t.Fatalf("slow upload: got %v, want no error (the client was slow, not the upstream)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow upload: Forward did not return")
	}
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 200 ") || !strings.HasSuffix(string(got), fmt.Sprint(len(first)+6)) {
		t.Fatalf("got %q, want 200 with the body's length", got)
	}

	// An upstream that takes nothing and answers nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.(*net.TCPConn).SetReadBuffer(4096) // never read: the window fills
		}
	}()
	stalled := &Upstream{Addr: ln.Addr().String(), MaxIdle: 1, ActiveTimeout: 150 * time.Millisecond, WriteBufferSize: 4096}
	addr2, errs2 := faultProxy(t, stalled, 0, 0)
	c2 := dial(t, addr2)
	go func() {
		io.WriteString(c2, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n\r\n")
		chunk := strings.Repeat("c", 64<<10)
		for range 700 {
			if _, err := io.WriteString(c2, chunk); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-errs2:
		var fe *ForwardError
		if !errors.As(err, &fe) || fe.Kind != ErrTimeout {
			t.Fatalf("stalled upstream: got %v, want ErrTimeout", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("stalled upstream: Forward did not return")
	}
}

// TestCutDeadlinesStick: once an exchange's waits are cut (its context
// cancelled, the client's body failed), arming the ordinary timeouts again
// does not undo the cut, whatever the order in which the two goroutines
// get there.
func TestCutDeadlinesStick(t *testing.T) {
	for _, cut := range []func(pc *upConn){
		func(pc *upConn) { pc.cutAll() },
		func(pc *upConn) { pc.cutRead(aLongTimeAgo) },
	} {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		pc := &upConn{c: a}
		cut(pc)
		pc.setRead(time.Now().Add(time.Hour))
		pc.setWrite(time.Now().Add(time.Hour))
		done := make(chan error, 1)
		go func() {
			_, err := a.Read(make([]byte, 1))
			done <- err
		}()
		select {
		case err := <-done:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("read after a cut: %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a cut read waits: the later deadline undid it")
		}
	}
	// Not cut: setRead arms as asked.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	pc := &upConn{c: a}
	pc.setRead(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read without data before the deadline returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("setRead set no deadline: the read waits")
	}
}
