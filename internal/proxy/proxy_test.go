package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// seen is what the test back end received.
type seen struct {
	Path, RawQuery, Host string
	Header               http.Header
}

func echoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderCorrelationID, "from-backend")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func forwarder(t *testing.T, b groupconf.Backend, r route.Route) *Forwarder {
	t.Helper()
	if b.Name == "" {
		b.Name = "be"
	}
	d := groupconf.BackendDefaults()
	if b.Timeout == 0 {
		b.Timeout = d.Timeout
	}
	if b.ConnectTimeout == 0 {
		b.ConnectTimeout = d.ConnectTimeout
	}
	if b.MaxIdleConns == 0 {
		b.MaxIdleConns = d.MaxIdleConns
	}
	be, err := NewBackend(b, groupconf.Sample{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.CloseIdleConnections)
	return NewForwarder(be, &r, Options{})
}

// gateway serves f on a real socket with the h1 engine, setting the
// correlation id as the instance does, and returns its base URL.
func gateway(t *testing.T, f *Forwarder) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &h1.Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		r.Header.SetString(HeaderCorrelationID, "Id-abc")
		w.Header().SetString(HeaderCorrelationID, "Id-abc")
		f.Forward(context.Background(), w, r, &Scratch{})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestForwardHeadersAndPath(t *testing.T) {
	srv := echoBackend(t)
	tests := []struct {
		name     string
		base     string
		route    route.Route
		target   string
		wantPath string
	}{
		{"plain", srv.URL, route.Route{Name: "a", Prefix: "/sample"}, "/sample/echo?x=1", "/sample/echo"},
		{"strip", srv.URL, route.Route{Name: "a", Prefix: "/sample", StripPrefix: true}, "/sample/echo?x=1", "/echo"},
		{"strip to root", srv.URL, route.Route{Name: "a", Prefix: "/sample", StripPrefix: true}, "/sample?x=1", "/"},
		{"strip two", srv.URL, route.Route{Name: "a", Prefix: "/a/b", StripPrefix: true}, "/a/b/c/d?x=1", "/c/d"},
		{"base path", srv.URL + "/base", route.Route{Name: "a", Prefix: "/sample", StripPrefix: true}, "/sample/echo?x=1", "/base/echo"},
		{"escaped kept", srv.URL, route.Route{Name: "a", Prefix: "/sample", StripPrefix: true}, "/sample/a%20b?x=1", "/a%20b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forwarder(t, groupconf.Backend{URL: tt.base}, tt.route)
			req, _ := http.NewRequest("GET", gateway(t, f)+tt.target, nil)
			req.Host = "gw.example:8080"
			req.Header.Set("X-Forwarded-For", "10.9.9.9")
			req.Header.Set("X-Forwarded-Host", "evil")
			req.Header.Set("Forwarded", "for=10.9.9.9")
			w, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Body.Close()
			if w.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200", w.StatusCode)
			}
			var got seen
			if err := json.NewDecoder(w.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			checks := []struct{ what, got, want string }{
				{"path", got.Path, tt.wantPath},
				{"query", got.RawQuery, "x=1"},
				{"X-Forwarded-For", strings.Join(got.Header["X-Forwarded-For"], ","), "127.0.0.1"},
				{"Host to back end", got.Host, strings.TrimPrefix(tt.base, "http://")[:len(strings.TrimPrefix(srv.URL, "http://"))]},
				{"X-Forwarded-Host", strings.Join(got.Header["X-Forwarded-Host"], ","), "gw.example:8080"},
				{"X-Forwarded-Proto", got.Header.Get("X-Forwarded-Proto"), "http"},
				{"Forwarded", got.Header.Get("Forwarded"), ""},
				{"correlation id to back end", got.Header.Get(HeaderCorrelationID), "Id-abc"},
				{"correlation id to client", strings.Join(w.Header.Values(HeaderCorrelationID), ","), "Id-abc"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestForwardErrors(t *testing.T) {
	// A port that refuses connections: a socket is bound to it but does not
	// listen, so that no one else can listen there during the test.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	tests := []struct {
		name       string
		backend    groupconf.Backend
		wantStatus int
	}{
		{"refused", groupconf.Backend{URL: closed}, http.StatusBadGateway},
		{"slow", groupconf.Backend{URL: slow.URL, Timeout: groupconf.Seconds(0.1)}, http.StatusGatewayTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forwarder(t, tt.backend, route.Route{Name: "a", Prefix: "/"})
			w, err := http.Get(gateway(t, f) + "/x")
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(w.Body)
			w.Body.Close()
			if w.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %v, want %v", w.StatusCode, tt.wantStatus)
			}
			var body ErrorBody
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			if len(body.Errors) != 1 || body.Errors[0].Code != tt.wantStatus {
				t.Errorf("body: got %+v, want one error with code %d", body, tt.wantStatus)
			}
			if strings.Contains(string(raw), "127.0.0.1") || strings.Contains(string(raw), "dial") {
				t.Errorf("body leaks internals: %s", raw)
			}
			if ct := w.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q, want application/json", ct)
			}
		})
	}
}

// TestStreaming checks that server-sent events reach the client while the
// back end is still writing: the back end sends one event and waits for the
// client to have read it before it ends the response.
func TestStreaming(t *testing.T) {
	read := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-read:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	}))
	defer be.Close()
	f := forwarder(t, groupconf.Backend{URL: be.URL}, route.Route{Name: "a", Prefix: "/"})
	res, err := http.Get(gateway(t, f) + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event: got %q, %v, want %q", line, err, "data: one\n")
	}
	close(read)
	rest, _ := io.ReadAll(br)
	if want := "\ndata: two\n\n"; string(rest) != want {
		t.Errorf("rest: got %q, want %q", rest, want)
	}
}

func TestSampleBackendTarget(t *testing.T) {
	tests := []struct {
		addr string
		want string
	}{
		{"127.0.0.1", "http://127.0.0.1:8081"},
		{"", "http://127.0.0.1:8081"},
		{"0.0.0.0", "http://127.0.0.1:8081"},
		{"::1", "http://[::1]:8081"},
	}
	for _, tt := range tests {
		b, err := NewBackend(groupconf.Backend{Name: "s", Sample: true}, groupconf.Sample{Enabled: true, Address: tt.addr, Port: 8081})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Target.String(); got != tt.want {
			t.Errorf("sample target for %q: got %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestStripSegments(t *testing.T) {
	tests := []struct {
		p    string
		n    int
		want string
	}{
		{"/a/b/c", 0, "/a/b/c"},
		{"/a/b/c", 1, "/b/c"},
		{"/a/b/c", 2, "/c"},
		{"/a/b/c", 3, "/"},
		{"/a/b/c", 4, "/"},
		{"/a", 1, "/"},
		{"/a/", 1, "/"},
		{"/", 1, "/"},
	}
	for _, tt := range tests {
		if got := string(StripSegments([]byte(tt.p), tt.n)); got != tt.want {
			t.Errorf("StripSegments(%q, %d): got %q, want %q", tt.p, tt.n, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{context.DeadlineExceeded, 504},
		{&net.OpError{Op: "dial", Err: timeoutErr{}}, 504},
		{&url.Error{Op: "Get", Err: timeoutErr{}}, 504},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, 502},
		{io.ErrUnexpectedEOF, 502},
		{&h1.ForwardError{Kind: h1.ErrTimeout}, 504},
		{&h1.ForwardError{Kind: h1.ErrConnect}, 502},
		{&h1.ForwardError{Kind: h1.ErrNoConnAvailable}, 503},
		{&h1.ForwardError{Kind: h1.ErrUpstreamProtocol}, 502},
	}
	for _, tt := range tests {
		if got, _ := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
}
