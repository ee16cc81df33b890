package h2

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// TestRefusedBeforeForwarding: the requests that h2bridge refused never
// reach the handler with this engine either, and the refusals that get a
// status are reported through OnReject with ErrorBody's body.
func TestRefusedBeforeForwarding(t *testing.T) {
	var handled atomic.Int64
	var mu sync.Mutex
	rejected := map[netip.AddrPort]int{}
	addr := startServer(t, &Server{
		Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
			handled.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Write([]byte("ok"))
		}),
		OnReject: func(_ int, _ string, remote netip.AddrPort) {
			mu.Lock()
			rejected[remote]++
			mu.Unlock()
		},
		ErrorBody: func(status int, reason string) (string, []byte) {
			return "application/json", []byte(`{"r":"` + reason + `"}`)
		},
	})
	base := func(method, path string, extra ...string) []string {
		return append([]string{":method", method, ":scheme", "https", ":authority", "a", ":path", path}, extra...)
	}
	tests := []struct {
		name      string
		fields    []string
		endStream bool
		data      []string
		want      int           // status, or 0 for a reset
		code      http2.ErrCode // the reset's code when want is 0
	}{
		{"two different content-length, body matching the first", base("POST", "/", "content-length", "5", "content-length", "10"), false, []string{"hello"}, 400, 0},
		{"two different content-length, body matching the second", base("POST", "/", "content-length", "10", "content-length", "5"), false, []string{"hello"}, 400, 0},
		{"content-length list that differs", base("POST", "/", "content-length", "5, 6"), false, []string{"hello"}, 400, 0},
		{"content-length with a sign", base("POST", "/", "content-length", "+5"), false, []string{"hello"}, 400, 0},
		{"space in :path", base("GET", "/a b"), true, nil, 400, 0},
		{"control byte in :path", base("GET", "/a\x01b"), true, nil, 0, http2.ErrCodeProtocol}, // refused by the Framer (RFC 9113 section 8.2.1)
		{"bad percent in :path", base("GET", "/a%zz"), true, nil, 400, 0},
		{"relative :path", base("GET", "a/b"), true, nil, 400, 0},
		{"asterisk :path with GET", base("GET", "*"), true, nil, 400, 0},
		{"content-length 0 then data", base("POST", "/", "content-length", "0"), false, []string{"smuggled"}, 400, 0},
		{"content-length without a body", base("POST", "/", "content-length", "5"), true, nil, 400, 0},
		{"host differs from :authority", base("GET", "/", "host", "b"), true, nil, 400, 0},
		{"no :authority nor host", []string{":method", "GET", ":scheme", "https", ":path", "/"}, true, nil, 400, 0},
		{"connect", []string{":method", "CONNECT", ":authority", "a:443"}, true, nil, 405, 0},
		{"too many fields", base("GET", "/", manyFields(101)...), true, nil, 431, 0},
		{"body longer than content-length", base("POST", "/", "content-length", "3"), false, []string{"hello"}, 0, http2.ErrCodeProtocol},
		{"body shorter than content-length", base("POST", "/", "content-length", "9"), false, []string{"hello"}, 0, http2.ErrCodeProtocol},
		{"connection field", base("GET", "/", "connection", "close"), true, nil, 0, http2.ErrCodeProtocol},
		{"transfer-encoding field", base("POST", "/", "transfer-encoding", "chunked"), false, []string{"5\r\nhello\r\n0\r\n\r\n"}, 0, http2.ErrCodeProtocol},
		{"upgrade field", base("GET", "/", "upgrade", "websocket"), true, nil, 0, http2.ErrCodeProtocol},
		{"te other than trailers", base("GET", "/", "te", "gzip"), true, nil, 0, http2.ErrCodeProtocol},
		{"missing :path", []string{":method", "GET", ":scheme", "https", ":authority", "a"}, true, nil, 0, http2.ErrCodeProtocol},
		{":status in a request", base("GET", "/", ":status", "200"), true, nil, 0, http2.ErrCodeProtocol},
		{"upper-case name", base("GET", "/", "X-Up", "1"), true, nil, 0, http2.ErrCodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handled.Store(0)
			r := dialRaw(t, addr)
			from, _ := netip.ParseAddrPort(r.c.LocalAddr().String())
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(tt.fields...), EndStream: tt.endStream, EndHeaders: true})
			for i, d := range tt.data {
				r.fr.WriteData(1, i == len(tt.data)-1, []byte(d))
			}
			o := r.wait(1)
			switch {
			case tt.want != 0 && o.status != tt.want:
				t.Errorf("got status %d (reset %v %v), want %d", o.status, o.gotRST, o.rst, tt.want)
			case tt.want == 0 && (!o.gotRST || o.rst != tt.code):
				t.Errorf("got status %d, reset %v %v; want a reset %v", o.status, o.gotRST, o.rst, tt.code)
			}
			if tt.want >= 400 && o.body == "" {
				t.Errorf("got no body, want ErrorBody's")
			}
			if n := handled.Load(); n != 0 && tt.want != 0 {
				t.Errorf("the handler saw the request (%d times)", n)
			}
			if tt.want != 0 {
				mu.Lock()
				n := rejected[from]
				mu.Unlock()
				if n != 1 {
					t.Errorf("OnReject called %d times, want 1", n)
				}
			}
		})
	}
	valid := []struct {
		name      string
		fields    []string
		endStream bool
		data      []string
	}{
		{"identical content-length twice", base("POST", "/", "content-length", "5", "content-length", "5"), false, []string{"hello"}},
		{"content-length 0, stream ended by empty data", base("POST", "/", "content-length", "0"), false, []string{""}},
		{"get without body", base("GET", "/a/b?c=d%20e"), true, nil},
		{"body without content-length", base("POST", "/"), false, []string{"he", "llo"}},
		{"te trailers", base("GET", "/", "te", "trailers"), true, nil},
		{"asterisk with OPTIONS", base("OPTIONS", "*"), true, nil},
		{"host equal to :authority", base("GET", "/", "host", "a"), true, nil},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			handled.Store(0)
			r := dialRaw(t, addr)
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(tt.fields...), EndStream: tt.endStream, EndHeaders: true})
			for i, d := range tt.data {
				r.fr.WriteData(1, i == len(tt.data)-1, []byte(d))
			}
			if o := r.wait(1); o.status != 200 || handled.Load() != 1 {
				t.Errorf("got %d (handled %d), want 200", o.status, handled.Load())
			}
		})
	}
}

func manyFields(n int) []string {
	var f []string
	for i := 0; i < n; i++ {
		f = append(f, "x-f", "v")
	}
	return f
}

// TestTrailers: request trailers end the body; trailers with a
// pseudo-header, or that do not end the stream, are malformed.
func TestTrailers(t *testing.T) {
	var got atomic.Value
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil {
			got.Store(string(b))
		}
		w.Write([]byte("ok"))
	})})
	post := []string{":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/"}
	tests := []struct {
		name     string
		trailers []string
		end      bool
		want     int
	}{
		{"trailers", []string{"x-checksum", "1"}, true, 200},
		{"trailers without END_STREAM", []string{"x-checksum", "1"}, false, 0},
		{"trailers with a pseudo-header", []string{":path", "/"}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, addr)
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(post...), EndHeaders: true})
			r.fr.WriteData(1, false, []byte("body"))
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(tt.trailers...), EndStream: tt.end, EndHeaders: true})
			o := r.wait(1)
			if tt.want == 0 {
				if !o.gotRST && !o.gotGoAway && !o.closed {
					t.Errorf("got status %d, want a reset or a connection error", o.status)
				}
				return
			}
			if o.status != tt.want || got.Load() != "body" {
				t.Errorf("got %d, body %v; want %d, body", o.status, got.Load(), tt.want)
			}
		})
	}
}

// TestAbortResetsStream: a response aborted after its head reaches the
// client as a reset stream, never as a complete body.
func TestAbortResetsStream(t *testing.T) {
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		w.Header().SetString("Content-Type", "text/plain")
		w.WriteHeader(200)
		w.Write([]byte("partial"))
		w.Flush()
		w.(h1.Aborter).Abort()
	})})
	resp, err := client().Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("reading an aborted response: got no error, want a stream reset")
	}
}

// TestShortBodyResets: a response shorter than its declared length is
// reset, not ended.
func TestShortBodyResets(t *testing.T) {
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		w.Header().SetString("Content-Length", "10")
		w.Write([]byte("short"))
	})})
	r := dialRaw(t, addr)
	r.get(1, "/")
	if o := r.wait(1); !o.gotRST || o.body != "short" {
		t.Errorf("got %+v, want the 5 bytes then a reset", o)
	}
}

// TestPanicResets: a handler that panics gets its stream reset and the
// connection lives on.
func TestPanicResets(t *testing.T) {
	var logged bytes.Buffer
	var logMu sync.Mutex
	addr := startServer(t, &Server{Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil)), Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		if string(r.Path) == "/panic" {
			panic("boom")
		}
		w.Write([]byte("ok"))
	})})
	r := dialRaw(t, addr)
	r.get(1, "/panic")
	if o := r.wait(1); !o.gotRST {
		t.Errorf("got %+v, want a reset", o)
	}
	r.get(3, "/")
	if o := r.wait(3); o.status != 200 {
		t.Errorf("after a panic: got %+v, want 200", o)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logged.String(), "handler panicked") || !strings.Contains(logged.String(), "boom") {
		t.Errorf("log: got %q, want the panic logged", logged.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestBodyIdleTimeout: a client that stops sending its body is reset.
func TestBodyIdleTimeout(t *testing.T) {
	errc := make(chan error, 1)
	addr := startServer(t, &Server{BodyIdleTimeout: 100 * time.Millisecond, Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		_, err := io.ReadAll(r.Body)
		errc <- err
	})})
	r := dialRaw(t, addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/")})
	r.fr.WriteData(1, false, []byte("he"))
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("got no error reading a stalled body")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still waits for the body")
	}
	if o := r.wait(1); !o.gotRST {
		t.Errorf("got %+v, want a reset", o)
	}
}

// TestReadTimeout: a body still incomplete ReadTimeout after its head
// resets the stream, however steadily it trickles.
func TestReadTimeout(t *testing.T) {
	errc := make(chan error, 1)
	addr := startServer(t, &Server{ReadTimeout: 300 * time.Millisecond, Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		_, err := io.ReadAll(r.Body)
		errc <- err
	})})
	r := dialRaw(t, addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/")})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				r.fr.WriteData(1, false, []byte("x"))
			}
		}
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("got no error reading a body past ReadTimeout")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still reads the body")
	}
}
