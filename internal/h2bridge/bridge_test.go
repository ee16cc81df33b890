package h2bridge

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

func TestBridge(t *testing.T) {
	var seen struct {
		method, path, query, host, hdr string
		body                           string
		bodyErr                        error
		hijackErr                      error
		proto                          int
	}
	srv := httptest.NewUnstartedServer(Handler(h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		seen.method, seen.path, seen.query, seen.host = string(r.Method), string(r.Path), string(r.Query), string(r.Host)
		seen.hdr = string(r.Header.Get("X-Test"))
		seen.proto = r.ProtoMinor
		if string(r.Path) == "/limited" {
			r.MaxBodyBytes = 4
		}
		b, err := io.ReadAll(r.Body)
		seen.body, seen.bodyErr = string(b), err
		_, _, seen.hijackErr = w.Hijack()
		w.Header().SetString("Connection", "close") // must not reach an HTTP/2 client
		w.Header().SetString("X-Out", "yes")
		w.WriteHeader(201)
		w.Write([]byte("created"))
		if w.Status() != 201 || w.Written() != 7 {
			t.Errorf("status/written: got %d/%d, want 201/7", w.Status(), w.Written())
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := srv.Client()

	req, _ := http.NewRequest("POST", srv.URL+"/a%20b/c?x=1&y=2", strings.NewReader("hello"))
	req.Header.Set("X-Test", "v")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("got %s, want HTTP/2", resp.Proto)
	}
	checks := []struct{ what, got, want string }{
		{"status", resp.Status, "201 Created"},
		{"body", string(body), "created"},
		{"X-Out", resp.Header.Get("X-Out"), "yes"},
		{"Connection", resp.Header.Get("Connection"), ""},
		{"method", seen.method, "POST"},
		{"path", seen.path, "/a%20b/c"},
		{"query", seen.query, "x=1&y=2"},
		{"host", seen.host, strings.TrimPrefix(srv.URL, "https://")},
		{"header", seen.hdr, "v"},
		{"request body", seen.body, "hello"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
		}
	}
	if !errors.Is(seen.hijackErr, ErrHijack) {
		t.Errorf("hijack: got %v, want ErrHijack", seen.hijackErr)
	}

	resp, err = c.Post(srv.URL+"/limited", "text/plain", strings.NewReader("too long"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !errors.Is(seen.bodyErr, h1.ErrBodyTooLarge) {
		t.Errorf("body over MaxBodyBytes: got %v, want ErrBodyTooLarge", seen.bodyErr)
	}
}

func TestAbortResetsStream(t *testing.T) {
	srv := httptest.NewUnstartedServer(Handler(h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		w.Header().SetString("Content-Type", "text/plain")
		w.WriteHeader(200)
		w.Write([]byte("partial"))
		w.Flush()
		w.(h1.Aborter).Abort()
	})))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("reading an aborted response: got no error, want a stream reset")
	}
}
