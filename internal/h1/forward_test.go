package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// proxyServer starts a Server whose handler forwards every request to u and
// returns its address. Errors of Forward are recorded in *lastErr.
func proxyServer(t testing.TB, u *Upstream, lastErr *atomic.Pointer[ForwardError]) string {
	t.Helper()
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		out := Outgoing{Method: r.Method, Path: r.Path, Query: r.Query, Host: r.Host, Header: &r.Header,
			Body: r.Body, ContentLength: r.ContentLength, Upgrade: r.Upgrade}
		_, err := Forward(context.Background(), u, w, &out)
		if err != nil {
			var fe *ForwardError
			if !errors.As(err, &fe) {
				t.Errorf("got error %T, want *ForwardError", err)
				return
			}
			if lastErr != nil {
				lastErr.Store(fe)
			}
			if !fe.Responded {
				status := 502
				switch fe.Kind {
				case ErrTimeout:
					status = 504
				case ErrNoConnAvailable:
					status = 503
				case ErrClient:
					status = 400
				}
				w.WriteHeader(status)
			}
		}
	})}
	return startServer(t, s)
}

func upstreamFor(t testing.TB, h http.Handler) *Upstream {
	t.Helper()
	ts := httptest.NewServer(h)
	// Close waits for the handlers: a proxy stuck in the middle of a request
	// must not keep one waiting forever (the test fails instead of hanging).
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return &Upstream{Addr: ts.Listener.Addr().String(), MaxIdle: 8}
}

func TestForwardBasic(t *testing.T) {
	u := upstreamFor(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Path", r.URL.RequestURI())
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Te", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Hop", r.Header.Get("X-Hop")+"|"+r.Header.Get("Keep-Alive")+"|"+r.Header.Get("X-Kept"))
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "must not pass")
		fmt.Fprintf(w, "body=%s", b)
	}))
	addr := proxyServer(t, u, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /p?q=1 HTTP/1.1\r\nHost: front\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello")
	r := readResponse(t, br, false)
	if r.status != 200 || r.body != "body=hello" {
		t.Fatalf("got %d %q, want 200 body=hello", r.status, r.body)
	}
	if r.header["x-path"] != "/p?q=1" || r.header["x-host"] != "front" || r.header["x-method"] != "POST" {
		t.Errorf("got %v", r.header)
	}
	if r.header["x-hop"] != "||yes" {
		t.Errorf("got X-Hop %q, want hop-by-hop fields removed", r.header["x-hop"])
	}
	if _, ok := r.header["x-secret"]; ok {
		t.Errorf("a field named in the upstream's Connection passed through")
	}
	// Chunked request body upstream, second request on the same connections.
	io.WriteString(c, "POST /c HTTP/1.1\r\nHost: front\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	r = readResponse(t, br, false)
	if r.status != 200 || r.body != "body=abc" {
		t.Fatalf("got %d %q, want 200 body=abc", r.status, r.body)
	}
}
