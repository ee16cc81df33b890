package remotehost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// logRec keeps the level and message of every record.
type logRec struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRec) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRec) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logRec) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRec) WithGroup(string) slog.Handler      { return l }

// count is the number of records whose "LEVEL message" contains s.
func (l *logRec) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// server is a back end on 127.0.0.1: /drop closes the connection without
// answering, /hang reads the request and never answers, anything else
// answers 200 with the path; every connection is reported on conns and
// closed ones on closed.
type server struct {
	port   int
	conns  chan struct{}
	closed chan struct{}
}

func newServer(t *testing.T) *server { return startServer(t, false) }

// dropServer closes every connection without answering.
func dropServer(t *testing.T) *server { return startServer(t, true) }

func startServer(t *testing.T, dropAll bool) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{port: ln.Addr().(*net.TCPAddr).Port, conns: make(chan struct{}, 100), closed: make(chan struct{}, 100)}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- struct{}{}
			go func() {
				defer func() { c.Close(); s.closed <- struct{}{} }()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if dropAll {
						return
					}
					switch req.URL.Path {
					case "/drop":
						return
					case "/hang":
						select {
						case <-done:
						case <-time.After(20 * time.Second):
						}
						return
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
				}
			}()
		}
	}()
	return s
}

// refusedPort is a loopback port nothing listens on.
func refusedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// twoPorts is a remote host with 127.0.0.1:first in priority group 1 and
// 127.0.0.1:second in group 2.
func twoPorts(t *testing.T, r *Registry, first, second int, more string) *Host {
	return host(t, r, load(t, fmt.Sprintf(`    addresses:
      - {address: 127.0.0.1, port: %d, priority: 1}
      - {address: 127.0.0.1, port: %d, priority: 2}
`, first, second)+more))
}

func stateOf(r *Registry, i int) AddressState { return r.State().RemoteHosts[0].Addresses[i] }

// TestRetries: which failed tries go on to the next address.
func TestRetries(t *testing.T) {
	ok := newServer(t)
	bad := dropServer(t)
	tests := []struct {
		name      string
		first     int // port of the first address
		method    string
		path      string
		body      string
		wantRetry bool
	}{
		{"a GET whose connection closed before any response byte", bad.port, "GET", "/get", "", true},
		{"a PUT with a short body whose connection closed", bad.port, "PUT", "/put", "x", true},
		{"a POST whose connection closed after it was sent", bad.port, "POST", "/drop", "x", false},
		{"a PATCH whose connection closed after it was sent", bad.port, "PATCH", "/patch", "", false},
		{"a POST that could not connect", refusedPort(t), "POST", "/post", "x", true},
	}
	for _, tt := range tests {
		r := NewRegistry(Options{})
		h := twoPorts(t, r, tt.first, ok.port, "")
		var body *strings.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		w, err := forward(h, tt.method, tt.path, body, int64(len(tt.body)))
		second := stateOf(r, 1)
		if tt.wantRetry {
			if err != nil || w.body.String() != tt.path || second.Requests != 1 {
				t.Errorf("%s: got %v %q (%d requests on the next address), want the next address's answer", tt.name, err, w.body.String(), second.Requests)
			}
		} else {
			var ae *AddressError
			var fe *h1.ForwardError
			if !errors.As(err, &ae) || ae.Tried != 1 || !errors.As(err, &fe) || fe.Kind != h1.ErrUpstreamProtocol || second.Requests != 0 {
				t.Errorf("%s: got %v (%d requests on the next address), want the first address's error, no retry", tt.name, err, second.Requests)
			}
		}
		if first := stateOf(r, 0); first.Requests != 1 || first.Failures != 1 || first.Up {
			t.Errorf("%s: first address got %+v, want 1 request, 1 failure, skipped", tt.name, first)
		}
	}
}

// TestEveryAddressTriedOnce: when every address fails the request ends
// with the last address's error, each address tried once.
func TestEveryAddressTriedOnce(t *testing.T) {
	r := NewRegistry(Options{})
	h := twoPorts(t, r, refusedPort(t), refusedPort(t), "")
	_, err := forward(h, "GET", "/", nil, 0)
	var ae *AddressError
	if !errors.As(err, &ae) || ae.Tried != 2 || errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), "(2 tried)") {
		t.Fatalf("got %v, want the second address's error after 2 tries", err)
	}
	for i := range 2 {
		if s := stateOf(r, i); s.Requests != 1 || s.InFlight != 0 {
			t.Errorf("address %d: got %+v, want 1 request, none in flight", i, s)
		}
	}
}

func TestNoAddressUp(t *testing.T) {
	r := NewRegistry(Options{})
	h := twoPorts(t, r, refusedPort(t), refusedPort(t), "")
	for _, a := range h.groups.Load().all {
		a.st.watchdogDown.Store(true)
	}
	if _, err := forward(h, "GET", "/", nil, 0); !errors.Is(err, ErrNoAddress) {
		t.Errorf("every address down by the watchdog: got %v, want ErrNoAddress", err)
	}
}

// TestEndedRequestNotRetried: a request whose deadline passed is not sent
// to the next address.
func TestEndedRequestNotRetried(t *testing.T) {
	r := NewRegistry(Options{})
	h := twoPorts(t, r, refusedPort(t), refusedPort(t), "")
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	var a h1.Attempt
	_, err := h.Forward(ctx, &rec{}, &h1.Outgoing{Method: []byte("GET"), Path: []byte("/")}, &a)
	var ae *AddressError
	if !errors.As(err, &ae) || ae.Tried != 1 || stateOf(r, 1).Requests != 0 {
		t.Errorf("got %v, want the first address's error and no second try", err)
	}
}

// TestClientBodyFailsFirst: a client body that cannot be read before
// anything is sent is the client's error; no address is tried.
func TestClientBodyFailsFirst(t *testing.T) {
	srv := newServer(t)
	r := NewRegistry(Options{})
	h := twoPorts(t, r, srv.port, refusedPort(t), "")
	w := &rec{}
	var a h1.Attempt
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := h.Forward(ctx, w, &h1.Outgoing{Method: []byte("POST"), Path: []byte("/"), Body: &failingBody{}, ContentLength: 10}, &a)
	var fe *h1.ForwardError
	if !errors.As(err, &fe) || fe.Kind != h1.ErrClient {
		t.Errorf("got %v, want the client's error", err)
	}
	if s := stateOf(r, 0); s.Requests != 0 || s.Failures != 0 {
		t.Errorf("address: got %+v, want untouched", s)
	}
}

// TestCountersFollowExchanges: requests, in-flight and the response time
// of an address follow its exchanges, a timeout included.
func TestCountersFollowExchanges(t *testing.T) {
	srv := newServer(t)
	r := NewRegistry(Options{})
	h := twoPorts(t, r, srv.port, refusedPort(t), "    activeTimeout: 200ms\n")
	for range 2 {
		if w, err := forward(h, "GET", "/ok", nil, 0); err != nil || w.body.String() != "/ok" {
			t.Fatalf("got %v %q, want /ok", err, w.body.String())
		}
	}
	if s := stateOf(r, 0); s.Requests != 2 || s.InFlight != 0 || s.AvgResponseMs <= 0 || s.AvgResponseMs > 150 {
		t.Errorf("after two answers: got %+v, want 2 requests, none in flight, a response time", s)
	}
	_, err := forward(h, "GET", "/hang", nil, 0)
	var fe *h1.ForwardError
	if !errors.As(err, &fe) || fe.Kind != h1.ErrTimeout {
		t.Fatalf("/hang: got %v, want a timeout", err)
	}
	// (x + y + 0.2 s) / 3 with x, y the quick answers: over 66 ms.
	if s := stateOf(r, 0); s.Requests != 3 || s.InFlight != 0 || s.AvgResponseMs < 60 || s.Up || stateOf(r, 1).Requests != 0 {
		t.Errorf("after a timeout: got %+v, want 3 requests, the timeout's time in the average, skipped, no retry", s)
	}
}

// TestFallbackLogged: the fallback (every address skipped, requests sent
// anyway) is logged once when it starts and once when it ends.
func TestFallbackLogged(t *testing.T) {
	srv := newServer(t)
	lr := &logRec{}
	r := NewRegistry(Options{Logger: slog.New(lr)})
	h := host(t, r, load(t, fmt.Sprintf("    addresses:\n      - {address: 127.0.0.1, port: %d}\n", srv.port)))
	steps := []struct {
		path           string
		ok             bool
		fallback       bool
		warned, infoed int
	}{
		{"/drop", false, false, 0, 0},
		{"/drop", false, true, 1, 0},
		{"/drop", false, true, 1, 0},
		{"/ok", true, false, 1, 1},
		{"/ok", true, false, 1, 1},
	}
	for i, s := range steps {
		_, err := forward(h, "GET", s.path, nil, 0)
		if (err == nil) != s.ok {
			t.Fatalf("step %d %s: got %v, want success %v", i, s.path, err, s.ok)
		}
		w, in := lr.count("WARN every address of the remote host is skipped"), lr.count("INFO an address of the remote host is in rotation again")
		if w != s.warned || in != s.infoed || r.State().RemoteHosts[0].Fallback != s.fallback {
			t.Errorf("step %d %s: got %d warnings, %d infos, fallback %v; want %d, %d, %v", i, s.path, w, in, r.State().RemoteHosts[0].Fallback, s.warned, s.infoed, s.fallback)
		}
	}
	if got := stateOf(r, 0).FallbackRequests; got != 3 {
		t.Errorf("fallback requests: got %d, want 3", got)
	}
}

// TestCloseIdle: closing a set's idle connections closes the pooled
// connection to the back end.
func TestCloseIdle(t *testing.T) {
	srv := newServer(t)
	r := NewRegistry(Options{})
	s, err := r.Build(load(t, fmt.Sprintf("    addresses:\n      - {address: 127.0.0.1, port: %d}\n", srv.port)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forward(s.Host(0), "GET", "/ok", nil, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.closed:
		t.Fatal("the connection closed before CloseIdle")
	default:
	}
	s.CloseIdle()
	select {
	case <-srv.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("CloseIdle: the back end's connection is still open")
	}
}

func TestAddressErrorUnwraps(t *testing.T) {
	inner := &h1.ForwardError{Kind: h1.ErrConnect, Err: io.EOF}
	err := error(&AddressError{RemoteHost: "api.test:80", Address: "10.0.0.1:80", Tried: 1, Err: inner})
	var fe *h1.ForwardError
	if !errors.As(err, &fe) || fe != inner || !errors.Is(err, io.EOF) {
		t.Errorf("got %v, want it to unwrap to its ForwardError", err)
	}
}
