package h2

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

func TestServe(t *testing.T) {
	var seen struct {
		method, path, query, host, hdr, cookie string
		body                                   string
		bodyErr                                error
		hijackErr                              error
		proto                                  int
		cl                                     int64
	}
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		seen.method, seen.path, seen.query, seen.host = string(r.Method), string(r.Path), string(r.Query), string(r.Host)
		seen.hdr = string(r.Header.Get("X-Test"))
		seen.cookie = string(r.Header.Get("Cookie"))
		seen.proto = r.ProtoMinor
		seen.cl = r.ContentLength
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
	})})
	c := client()
	req, _ := http.NewRequest("POST", "https://"+addr+"/a%20b/c?x=1&y=2", strings.NewReader("hello"))
	req.Header.Set("X-Test", "v")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checks := []struct{ what, got, want string }{
		{"proto", resp.Proto, "HTTP/2.0"},
		{"status", resp.Status, "201 Created"},
		{"body", string(body), "created"},
		{"content-length", resp.Header.Get("Content-Length"), "7"},
		{"X-Out", resp.Header.Get("X-Out"), "yes"},
		{"Connection", resp.Header.Get("Connection"), ""},
		{"date set", boolStr(resp.Header.Get("Date") != ""), "true"},
		{"method", seen.method, "POST"},
		{"path", seen.path, "/a%20b/c"},
		{"query", seen.query, "x=1&y=2"},
		{"host", seen.host, addr},
		{"header", seen.hdr, "v"},
		{"cookie", seen.cookie, "a=1; b=2"},
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
	if seen.proto != 1 {
		t.Errorf("ProtoMinor: got %d, want 1", seen.proto)
	}

	resp, err = c.Post("https://"+addr+"/limited", "text/plain", strings.NewReader("too long"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !errors.Is(seen.bodyErr, h1.ErrBodyTooLarge) {
		t.Errorf("body over MaxBodyBytes: got %v, want ErrBodyTooLarge", seen.bodyErr)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestExpectContinue: a client that waits for "100 Continue" gets it when
// the handler first reads the body.
func TestExpectContinue(t *testing.T) {
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(hello)})
	r := dialRaw(t, addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/", "expect", "100-continue")})
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for 100 Continue: %v", err)
		}
		if h, ok := f.(*http2.HeadersFrame); ok {
			hf, _ := r.dec.DecodeFull(h.HeaderBlockFragment())
			if len(hf) == 0 || hf[0].Value != "100" || h.StreamEnded() {
				t.Fatalf("got %v, want 100 first", hf)
			}
			break
		}
	}
	r.fr.WriteData(1, true, []byte("body"))
	if o := r.wait(1); o.status != 200 || o.body != "hello" {
		t.Errorf("got %+v, want 200 hello", o)
	}
}
