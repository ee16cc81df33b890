package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idUpstream answers every request with the number of its connection (1
// for the first accepted) and keeps connections open; gate, when set, is
// received from before each answer.
func idUpstream(t *testing.T, gate chan struct{}) *Upstream {
	var n atomic.Int64
	return rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		id := n.Add(1)
		for {
			if _, err := readRequestHead(br); err != nil {
				return
			}
			if gate != nil {
				select {
				case <-gate:
				case <-time.After(time.Until(soon(t))):
					return
				}
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(fmt.Sprint(id)), id)
		}
	})
}

// get forwards a GET and returns the body (the upstream connection's id).
func get(t *testing.T, u *Upstream) (string, Result, error) {
	t.Helper()
	rec := newRecorder()
	res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	return rec.body.String(), res, err
}

// waitFor polls cond until it holds or the test's wait runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := soon(t)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("still not %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fillPool makes n connections at once (the upstream answers when all n
// requests are in) and returns when all are back in the pool.
func fillPool(t *testing.T, u *Upstream, gate chan struct{}, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := get(t, u); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "all connections dialled", func() bool { _, d := u.Stats(); return d == int64(n) })
	for range n {
		gate <- struct{}{}
	}
	wg.Wait()
}

// TestUpstreamPool: the pool keeps at most MaxIdle connections, reuses the
// most recently returned first, and CloseIdle empties it.
func TestUpstreamPool(t *testing.T) {
	gate := make(chan struct{})
	u := idUpstream(t, gate)
	u.MaxIdle = 2
	fillPool(t, u, gate, 3)
	if open, dials := u.Stats(); open != 2 || dials != 3 {
		t.Fatalf("got %d open of %d dialled, want 2 of 3 (MaxIdle)", open, dials)
	}
	// Two at once take both idle connections, the youngest first.
	close(gate)
	first, res, err := get(t, u)
	if err != nil || !res.Reused {
		t.Fatalf("got %v %+v, want a pooled connection", err, res)
	}
	again, _, _ := get(t, u)
	if again != first {
		t.Errorf("got connection %s then %s: the pool is not last in, first out", first, again)
	}
	u.CloseIdle()
	if open, _ := u.Stats(); open != 0 {
		t.Errorf("got %d open after CloseIdle, want 0", open)
	}
	_, res, _ = get(t, u)
	if _, dials := u.Stats(); res.Reused || dials != 4 {
		t.Errorf("after CloseIdle: reused %v, %d dials, want a new connection", res.Reused, dials)
	}
}

// TestUpstreamIdleTimeout: a connection idle for longer than IdleTimeout is
// not reused: the reaper closes it, and one found expired when taken is
// closed with every older one.
func TestUpstreamIdleTimeout(t *testing.T) {
	for _, maxConns := range []int{0, 2} {
		t.Run(fmt.Sprintf("reaper, MaxConns %d", maxConns), func(t *testing.T) {
			u := idUpstream(t, nil)
			u.IdleTimeout, u.MaxConns = 50*time.Millisecond, maxConns
			get(t, u)
			if open, _ := u.Stats(); open != 1 {
				t.Fatalf("got %d open, want 1 pooled", open)
			}
			waitFor(t, "reaped", func() bool { open, _ := u.Stats(); return open == 0 })
			// The reaper runs again for the next idle connection.
			get(t, u)
			waitFor(t, "reaped again", func() bool { open, _ := u.Stats(); return open == 0 })
			if _, dials := u.Stats(); dials != 2 {
				t.Errorf("got %d dials, want 2", dials)
			}
		})
	}
	t.Run("taken expired", func(t *testing.T) {
		gate := make(chan struct{})
		u := idUpstream(t, gate)
		u.MaxIdle = 4
		u.IdleTimeout = time.Hour
		fillPool(t, u, gate, 2)
		close(gate)
		// Both are expired now (the reaper is an hour away); the new
		// connection is not pooled, so that none is left open.
		u.IdleTimeout, u.MaxIdle = time.Nanosecond, 0
		_, res, err := get(t, u)
		if err != nil || res.Reused {
			t.Fatalf("got %v %+v, want a new connection", err, res)
		}
		if open, dials := u.Stats(); open != 0 || dials != 3 {
			t.Errorf("got %d open of %d dialled, want none of 3", open, dials)
		}
		// The pool is empty now: the next request dials again (and no
		// connection is closed twice).
		if _, res, err := get(t, u); err != nil || res.Reused {
			t.Fatalf("got %v %+v, want a new connection", err, res)
		}
		if open, dials := u.Stats(); open != 0 || dials != 4 {
			t.Errorf("got %d open of %d dialled, want none of 4", open, dials)
		}
	})
	// The reaper is a timer: it may fire when the pool is empty (every
	// connection taken) or hold younger connections than the one it was
	// armed for. Its runs are made here by hand, so that nothing waits on
	// the clock but the re-armed timer.
	t.Run("reaper, every connection taken", func(t *testing.T) {
		u := idUpstream(t, nil)
		u.MaxIdle, u.IdleTimeout = 1, time.Hour
		get(t, u)
		pc := u.popIdle()
		if pc == nil {
			t.Fatal("no pooled connection")
		}
		u.reap() // finds nothing: closes nothing
		if open, _ := u.Stats(); open != 1 {
			t.Fatalf("got %d open, want the taken connection left alone", open)
		}
		u.put(pc)
		if _, res, err := get(t, u); err != nil || !res.Reused {
			t.Errorf("got %v %+v, want the connection reused", err, res)
		}
	})
	t.Run("reaper, a younger connection left", func(t *testing.T) {
		gate := make(chan struct{})
		u := idUpstream(t, gate)
		u.MaxIdle, u.IdleTimeout = 2, 100*time.Millisecond
		fillPool(t, u, gate, 2)
		close(gate)
		u.mu.Lock()
		u.reaper.Stop()
		u.idle[0].idleAt = time.Now().Add(-time.Hour) // the oldest has expired
		u.idle[1].idleAt = time.Now()
		u.mu.Unlock()
		u.reap()
		if open, _ := u.Stats(); open != 1 {
			t.Fatalf("got %d open, want the expired one closed, the younger kept", open)
		}
		// The reaper is armed again for the younger one.
		waitFor(t, "the younger one reaped", func() bool { open, _ := u.Stats(); return open == 0 })
	})
	t.Run("young enough", func(t *testing.T) {
		u := idUpstream(t, nil)
		u.IdleTimeout = time.Minute
		get(t, u)
		_, res, _ := get(t, u)
		if !res.Reused {
			t.Error("a connection idle for less than IdleTimeout was not reused")
		}
	})
}

// TestUpstreamMaxConns: MaxConns counts open connections, busy or idle;
// closing one frees its place; ConnWait 0 refuses at once; a waiter gets a
// connection handed over, or gives up with its context.
func TestUpstreamMaxConns(t *testing.T) {
	t.Run("closed connections free their place", func(t *testing.T) {
		u := idUpstream(t, nil)
		u.MaxConns, u.MaxIdle = 1, 0
		for i := range 3 {
			if _, _, err := get(t, u); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
	})
	t.Run("an idle connection counts", func(t *testing.T) {
		u := idUpstream(t, nil)
		u.MaxConns, u.MaxIdle = 1, 1
		for i := range 3 {
			if _, res, err := get(t, u); err != nil || res.Reused != (i > 0) {
				t.Fatalf("request %d: %v %+v", i, err, res)
			}
		}
		if _, dials := u.Stats(); dials != 1 {
			t.Errorf("got %d dials, want 1", dials)
		}
	})
	busy := func(t *testing.T, wait time.Duration) (*Upstream, chan struct{}, chan error) {
		gate := make(chan struct{})
		u := idUpstream(t, gate)
		u.MaxConns, u.MaxIdle, u.ConnWait = 1, 1, wait
		done := make(chan error, 1)
		go func() {
			_, _, err := get(t, u)
			done <- err
		}()
		waitFor(t, "dialled", func() bool { _, d := u.Stats(); return d == 1 })
		return u, gate, done
	}
	t.Run("ConnWait 0 refuses at once", func(t *testing.T) {
		u, gate, done := busy(t, 0)
		start := time.Now()
		_, _, err := get(t, u)
		var fe *ForwardError
		if !errors.As(err, &fe) || fe.Kind != ErrNoConnAvailable || !errors.Is(err, ErrNoConn) || time.Since(start) > time.Second {
			t.Errorf("got %v after %v, want ErrNoConnAvailable at once", err, time.Since(start))
		}
		gate <- struct{}{}
		<-done
	})
	t.Run("a waiter gets the connection handed over", func(t *testing.T) {
		u, gate, done := busy(t, time.Minute)
		got := make(chan Result, 1)
		go func() {
			_, res, err := get(t, u)
			if err != nil {
				t.Error(err)
			}
			got <- res
		}()
		waitFor(t, "waiting", func() bool { u.mu.Lock(); defer u.mu.Unlock(); return u.waiting == 1 })
		gate <- struct{}{}
		gate <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if res := <-got; !res.Reused {
			t.Errorf("got %+v, want the handed-over connection", res)
		}
		if _, dials := u.Stats(); dials != 1 {
			t.Errorf("got %d dials, want 1", dials)
		}
		waitFor(t, "no waiter", func() bool { u.mu.Lock(); defer u.mu.Unlock(); return u.waiting == 0 })
	})
	t.Run("a waiter gives up with its context", func(t *testing.T) {
		u, gate, done := busy(t, time.Minute)
		for _, c := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			kind ErrKind
		}{
			{"cancelled", func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			}, ErrClient},
			{"deadline", func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			}, ErrTimeout},
		} {
			ctx, cancel := c.ctx()
			start := time.Now()
			_, err := Forward(ctx, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			cancel()
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != c.kind || time.Since(start) > 2*time.Second || strings.Contains(err.Error(), "%!") {
				t.Errorf("%s: got %v after %v, want %v", c.name, err, time.Since(start), c.kind)
			}
			// The waiter that gave up took no place: the busy connection
			// still holds the only one, so nothing is dialled past MaxConns.
			if open, dials := u.Stats(); open != 1 || dials != 1 || len(u.sem) != 1 {
				t.Errorf("%s: got %d open, %d dialled, %d places taken, want 1, 1, 1 (MaxConns 1, busy)", c.name, open, dials, len(u.sem))
			}
		}
		gate <- struct{}{}
		<-done
	})
	t.Run("a waiter times out after ConnWait", func(t *testing.T) {
		u, gate, done := busy(t, 50*time.Millisecond)
		start := time.Now()
		_, _, err := get(t, u)
		var fe *ForwardError
		if !errors.As(err, &fe) || fe.Kind != ErrNoConnAvailable || time.Since(start) < 50*time.Millisecond {
			t.Errorf("got %v after %v, want ErrNoConnAvailable after ConnWait", err, time.Since(start))
		}
		gate <- struct{}{}
		<-done
	})
}

// TestUpstreamDialErrors: the kind of a failure to connect.
func TestUpstreamDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	listening := ln2.Addr().String()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		name string
		ctx  context.Context
		kind ErrKind
	}{
		{"refused", context.Background(), ErrConnect},
		{"context cancelled", cancelled, ErrClient},
		{"context expired", expired, ErrTimeout},
		{"DialTimeout", context.Background(), ErrTimeout},
		{"refused, no MaxConns", context.Background(), ErrConnect},
	} {
		u := &Upstream{Addr: refused, MaxConns: 1}
		if c.name == "refused, no MaxConns" {
			u.MaxConns = 0
		}
		if c.name == "DialTimeout" {
			u.Addr, u.DialTimeout = listening, 1
		}
		res, err := forwardCtx(t, c.ctx, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		var fe *ForwardError
		var oe *net.OpError
		if !errors.As(err, &fe) || fe.Kind != c.kind || res.Sent || !errors.As(err, &oe) {
			t.Errorf("%s: got %v %+v, want %v wrapping the dial's error, nothing sent", c.name, err, res, c.kind)
		}
		if open, dials := u.Stats(); open != 0 || dials != 0 {
			t.Errorf("%s: got %d open, %d dials, want none", c.name, open, dials)
		}
		if len(u.sem) != 0 {
			t.Errorf("%s: the failed dial kept its MaxConns place", c.name)
		}
	}
}

// TestUpstreamTLS: a TLS upstream is verified with ServerName defaulting to
// the address's host, and offered http/1.1 by ALPN unless told otherwise.
func TestUpstreamTLS(t *testing.T) {
	type hello struct{ sni, proto string }
	seen := make(chan hello, 4)
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS() // for its certificate
	ts.Close()
	cert := ts.TLS.Certificates[0]
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1", "x"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(soon(t))
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				cs := tc.ConnectionState()
				seen <- hello{cs.ServerName, cs.NegotiatedProtocol}
				br := bufio.NewReader(c)
				readRequestHead(br)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, c := range []struct {
		name    string
		addr    string
		conf    *tls.Config
		want    hello
		wantErr bool
	}{
		{"the address's host is the server name", "localhost:" + port, &tls.Config{InsecureSkipVerify: true}, hello{"localhost", "http/1.1"}, false},
		{"an explicit server name and protocols", "localhost:" + port, &tls.Config{InsecureSkipVerify: true, ServerName: "example.com", NextProtos: []string{"x"}}, hello{"example.com", "x"}, false},
		{"verified against the address", "127.0.0.1:" + port, &tls.Config{RootCAs: certPool(t, cert)}, hello{"", "http/1.1"}, false},
		{"a certificate not for the name", "localhost:" + port, &tls.Config{RootCAs: certPool(t, cert)}, hello{}, true},
	} {
		u := &Upstream{Addr: c.addr, TLS: c.conf, MaxIdle: 1}
		name, protos := c.conf.ServerName, len(c.conf.NextProtos)
		rec := newRecorder()
		res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		if c.wantErr {
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrConnect || !strings.Contains(err.Error(), "tls handshake") || res.Sent {
				t.Errorf("%s: got %v, want ErrConnect from the handshake", c.name, err)
			}
			if open, _ := u.Stats(); open != 0 {
				t.Errorf("%s: %d open after a failed handshake", c.name, open)
			}
			continue
		}
		if err != nil || rec.body.String() != "ok" {
			t.Errorf("%s: got %v %q", c.name, err, rec.body.String())
			continue
		}
		if got := <-seen; got != c.want {
			t.Errorf("%s: the server saw %+v, want %+v", c.name, got, c.want)
		}
		if c.conf.ServerName != name || len(c.conf.NextProtos) != protos {
			t.Errorf("%s: the caller's tls.Config was changed instead of a copy", c.name)
		}
	}
}

// TestUpstreamTLSHandshakeFailureCloses: when the TLS handshake fails, the
// TCP connection under it is closed at once (the upstream reads its end),
// and no place is kept for it.
func TestUpstreamTLSHandshakeFailureCloses(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS() // for its certificate
	ts.Close()
	cert := ts.TLS.Certificates[0]
	for _, c := range []struct {
		name  string
		serve func(c net.Conn) // the upstream's side of the handshake
	}{
		{"the upstream does not speak TLS", func(c net.Conn) {
			var rec [5]byte // the ClientHello's record header, then its body
			if _, err := io.ReadFull(c, rec[:]); err != nil {
				return
			}
			io.CopyN(io.Discard, c, int64(rec[3])<<8|int64(rec[4]))
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		}},
		{"the upstream's certificate is refused", func(c net.Conn) {
			tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			after := make(chan error, 1) // what the upstream read after the handshake
			u := rawUpstream(t, func(conn net.Conn, _ *bufio.Reader) {
				conn.SetDeadline(soon(t))
				c.serve(conn)
				_, err := io.Copy(io.Discard, conn)
				after <- err
			})
			u.TLS = &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "example.com"}
			u.MaxConns = 1
			res, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			var fe *ForwardError
			if !errors.As(err, &fe) || fe.Kind != ErrConnect || !strings.Contains(err.Error(), "tls handshake") || res.Sent {
				t.Fatalf("got %v %+v, want ErrConnect from the handshake, nothing sent", err, res)
			}
			if open, dials := u.Stats(); open != 0 || dials != 0 || len(u.sem) != 0 {
				t.Errorf("got %d open, %d dials, %d places taken, want none", open, dials, len(u.sem))
			}
			select {
			case err := <-after:
				if err != nil && !isConnReset(err) {
					t.Errorf("the upstream read %v, want the connection closed (EOF or reset)", err)
				}
			case <-time.After(time.Until(soon(t)) + time.Second):
				t.Fatal("the upstream's read did not end")
			}
		})
	}
}

func certPool(t *testing.T, cert tls.Certificate) *x509.CertPool {
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// TestUpstreamDefaults: the defaults the Upstream's documentation states
// are the ones used.
func TestUpstreamDefaults(t *testing.T) {
	var u Upstream
	if DefaultDialTimeout != 10*time.Second || DefaultUpstreamIdleTimeout != 90*time.Second || DefaultMaxResponseHeaderBytes != 64<<10 {
		t.Errorf("defaults %v, %v, %d, want 10s, 90s, 64 KiB as documented", DefaultDialTimeout, DefaultUpstreamIdleTimeout, DefaultMaxResponseHeaderBytes)
	}
	if u.idleTimeout() != DefaultUpstreamIdleTimeout || u.maxHead() != DefaultMaxResponseHeaderBytes {
		t.Errorf("an Upstream without settings: idle %v, head %d", u.idleTimeout(), u.maxHead())
	}
	u.IdleTimeout, u.MaxResponseHeaderBytes = time.Second, 100
	if u.idleTimeout() != time.Second || u.maxHead() != 100 {
		t.Errorf("an Upstream with settings: idle %v, head %d", u.idleTimeout(), u.maxHead())
	}
}

// TestUpstreamResponseHeadLimit: a response head up to the limit
// (MaxResponseHeaderBytes, default 64 KiB) passes, a longer one is a
// protocol error.
func TestUpstreamResponseHeadLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		limit int
		size  int // the head's size
		ok    bool
	}{
		{"default, under", 0, 64<<10 - 100, true},
		{"default, over", 0, 64<<10 + 100, false},
		{"set, at the limit", 1000, 1000, true},
		{"set, one over", 1000, 1001, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "
			end := "\r\n\r\n"
			head := start + strings.Repeat("p", c.size-len(start)-len(end)) + end
			u, _ := recordingUpstream(t, head+"ok")
			u.MaxResponseHeaderBytes = c.limit
			rec := newRecorder()
			_, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
			var pe *ProtocolError
			switch {
			case c.ok && (err != nil || rec.body.String() != "ok"):
				t.Errorf("a head of %d bytes: got %v", c.size, err)
			case !c.ok && !errors.As(err, &pe):
				t.Errorf("a head of %d bytes: got %v, want a protocol error", c.size, err)
			}
		})
	}
}

// TestUpstreamHandoffLeftOver: a connection handed over to a waiter that
// gave up in the meantime is not lost: the next request takes it (with
// MaxConns 1, losing it would refuse every later request).
func TestUpstreamHandoffLeftOver(t *testing.T) {
	u := idUpstream(t, nil)
	u.MaxConns, u.MaxIdle = 1, 1
	if _, _, err := get(t, u); err != nil {
		t.Fatal(err)
	}
	pc := u.popIdle()
	if pc == nil {
		t.Fatal("no pooled connection")
	}
	u.mu.Lock()
	u.waiting = 1 // a waiter that leaves before taking it
	u.mu.Unlock()
	u.put(pc)
	u.mu.Lock()
	u.waiting = 0
	idle := len(u.idle)
	u.mu.Unlock()
	if idle != 0 || len(u.handoff) != 1 {
		t.Fatalf("got %d idle and %d handed over, want the connection handed over", idle, len(u.handoff))
	}
	body, res, err := get(t, u)
	if err != nil || !res.Reused || body != "1" {
		t.Errorf("got %v %+v %q, want the handed-over connection reused", err, res, body)
	}
	// CloseIdle closes one left in the handoff too.
	pc = u.popIdle()
	u.mu.Lock()
	u.waiting = 1
	u.mu.Unlock()
	u.put(pc)
	u.mu.Lock()
	u.waiting = 0
	u.mu.Unlock()
	u.CloseIdle()
	if open, _ := u.Stats(); open != 0 || len(u.handoff) != 0 {
		t.Errorf("after CloseIdle: %d open, %d handed over", open, len(u.handoff))
	}
}

// TestUpstreamUnsolicitedCallback: OnUnsolicited is called for each
// connection dropped for bytes nobody asked for, buffered or found on the
// socket when the connection leaves the pool.
func TestUpstreamUnsolicitedCallback(t *testing.T) {
	for _, late := range []bool{false, true} {
		var calls, conns atomic.Int64
		pooled, sent := make(chan struct{}), make(chan struct{})
		u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
			c.SetDeadline(soon(t))
			readRequestHead(br)
			switch {
			case conns.Add(1) > 1:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			case late:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				select { // the byte comes once the connection is in the pool
				case <-pooled:
				case <-time.After(time.Until(soon(t))):
				}
				io.WriteString(c, "X")
				close(sent)
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX")
			}
			readRequestHead(br)
		})
		u.OnUnsolicited = func() { calls.Add(1) }
		get(t, u)
		if late {
			close(pooled)
			select { // the late byte is on the pooled socket (loopback: once written)
			case <-sent:
			case <-time.After(time.Until(soon(t))):
				t.Fatal("the upstream did not send the late byte")
			}
		}
		_, res, err := get(t, u)
		if err != nil || res.Reused {
			t.Errorf("late %v: the connection with an extra byte was reused", late)
		}
		if calls.Load() != 1 || u.Unsolicited() != 1 {
			t.Errorf("late %v: OnUnsolicited called %d times, Unsolicited() %d, want 1", late, calls.Load(), u.Unsolicited())
		}
	}
}

// TestUpstreamBufferSizes: a connection's buffers have the sizes set, or
// the defaults (8 KiB to read, 4 KiB to write).
func TestUpstreamBufferSizes(t *testing.T) {
	for _, c := range []struct{ read, write, wantRead, wantWrite int }{
		{0, 0, 8 << 10, 4 << 10},
		{1000, 2000, 1000, 2000},
		{1, 1, 16, 1}, // bufio's least reader; a writer of 1 byte
	} {
		u := idUpstream(t, nil)
		u.MaxIdle, u.ReadBufferSize, u.WriteBufferSize = 1, c.read, c.write
		get(t, u)
		pc := u.popIdle()
		if pc == nil {
			t.Fatal("no pooled connection")
		}
		if pc.br.Size() != c.wantRead || pc.bw.Size() != c.wantWrite {
			t.Errorf("set %d and %d: got buffers of %d and %d, want %d and %d", c.read, c.write, pc.br.Size(), pc.bw.Size(), c.wantRead, c.wantWrite)
		}
		pc.close()
	}
}

// forwardCtx is forwardWithin with the caller's context.
func forwardCtx(t *testing.T, ctx context.Context, u *Upstream, w ResponseWriter, out *Outgoing) (Result, error) {
	t.Helper()
	type ret struct {
		res Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := Forward(ctx, u, w, out)
		done <- ret{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-time.After(time.Until(soon(t))):
		t.Fatal("Forward did not return")
	}
	return Result{}, nil
}

// TestUpstreamClosedIdleNotUsed: a pooled connection the upstream closed
// is noticed when it leaves the pool, so that a request that could not be
// sent again (a body longer than what Begin keeps) goes on a new one.
func TestUpstreamClosedIdleNotUsed(t *testing.T) {
	var conns atomic.Int64
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		conns.Add(1)
		if _, err := readRawRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") // then close
	})
	if _, _, err := get(t, u); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the upstream's FIN arrives (as in TestUpstreamClosedWhileIdle)
	big := strings.Repeat("b", 40<<10)
	rec := newRecorder()
	res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: strings.NewReader(big), ContentLength: int64(len(big))})
	if err != nil || rec.body.String() != "ok" || res.Reused {
		t.Errorf("got %v %q %+v, want ok on a new connection", err, rec.body.String(), res)
	}
	if n := u.Unsolicited(); n != 0 {
		t.Errorf("Unsolicited() = %d, want 0 for a close", n)
	}
}
