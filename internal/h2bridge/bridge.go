// Package h2bridge serves HTTP/2 requests with an h1.Handler, so that the
// gateway has one request path (health checks, routing, policies, forwarding,
// access log) whatever protocol the client speaks. Go's net/http serves the
// HTTP/2 connections (TLS with ALPN "h2"); each request is converted to an
// h1.Request and answered through an h1.ResponseWriter that writes to the
// HTTP/2 stream.
//
// Differences from HTTP/1.1, by the nature of HTTP/2: connection-specific
// response fields (Connection, Keep-Alive, Transfer-Encoding, Upgrade,
// Proxy-Connection) are dropped; Hijack is not available, so WebSocket
// upgrades are HTTP/1.1 only (RFC 8441 extended CONNECT is not offered).
package h2bridge

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// ErrHijack is returned by Hijack on an HTTP/2 stream.
var ErrHijack = errors.New("hijacking is not possible over HTTP/2")

// Options are what the bridge shares with the HTTP/1.1 server it stands
// beside: how a refused request is answered and reported.
type Options struct {
	// ErrorBody makes the body of a refusal (as h1.Server.ErrorBody);
	// nil answers plain text.
	ErrorBody func(status int, reason string) (contentType string, body []byte)
	// OnReject is called for each refused request (as h1.Server.OnReject).
	OnReject func(status int, reason string, remote netip.AddrPort)
}

// Handler returns an http.Handler that serves every request with h.
func Handler(h h1.Handler) http.Handler { return HandlerWith(h, Options{}) }

// HandlerWith is Handler with the refusals answered and reported as o
// says.
func HandlerWith(h h1.Handler, o Options) http.Handler {
	return bridge{h: h, o: o}
}

type bridge struct {
	h h1.Handler
	o Options
}

// check refuses, before anything reaches the handler (and so before
// anything is forwarded), the requests that Go's HTTP/2 server lets
// through but that nginx and HAProxy refuse: Content-Length fields that
// disagree (Go takes the first), a :path with bytes that HTTP/1.1 forbids
// in a request-target (a space would be forwarded percent-encoded), a
// declared length with no body to match, and a body after a declared
// length of 0 (Go resets the stream only when the DATA arrives, after the
// head would have been forwarded).
func check(r *http.Request) (status int, reason string) {
	if r.RequestURI != "*" && !h1.ValidTarget(r.RequestURI) {
		return 400, "invalid byte in :path"
	}
	if vs, ok := r.Header["Content-Length"]; ok {
		n, ok := h1.ContentLengthValues(vs)
		if !ok {
			return 400, "invalid or conflicting content-length"
		}
		if r.ContentLength == 0 && n > 0 {
			return 400, "content-length without a body"
		}
	}
	if r.ContentLength == 0 && r.Body != nil && r.Body != http.NoBody {
		// A stream still open after a declared length of 0 (or none
		// declared and the stream ended): its end must come before
		// anything else.
		var b [1]byte
		if n, err := r.Body.Read(b[:]); n > 0 || err != io.EOF {
			return 400, "request body longer than its content-length"
		}
	}
	return 0, ""
}

func (b bridge) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	if b.o.OnReject != nil {
		b.o.OnReject(status, reason, remote)
	}
	ctype, body := "text/plain; charset=utf-8", []byte(http.StatusText(status)+"\n")
	if b.o.ErrorBody != nil {
		ctype, body = b.o.ErrorBody(status, reason)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func (b bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status, reason := check(r); status != 0 {
		b.reject(w, r, status, reason)
		return
	}
	req := &h1.Request{
		Method:        []byte(r.Method),
		URI:           []byte(r.RequestURI),
		Path:          []byte(r.URL.EscapedPath()),
		ProtoMinor:    1,
		Host:          []byte(r.Host),
		ContentLength: r.ContentLength,
		ReceivedAt:    time.Now(),
		TLS:           r.TLS,
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		req.Query = []byte(r.URL.RawQuery)
	}
	if r.RequestURI == "*" {
		req.Path = []byte("*")
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.RemoteAddr = ap
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			req.LocalAddr = ap
		}
	}
	for name, values := range r.Header {
		for _, v := range values {
			req.Header.AddString(name, v)
		}
	}
	req.Header.SetString("Host", r.Host)
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		req.Body = http.NoBody
		req.ContentLength = 0
	} else {
		req.Body = &limitedBody{r: r.Body, req: req}
	}
	rw := &responseWriter{w: w, rc: http.NewResponseController(w)}
	b.h.ServeH1(rw, req)
	if rw.aborted {
		// The response failed after it started: reset the stream so that
		// the client cannot take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// limitedBody enforces the request's MaxBodyBytes, which the handler may set
// after the request was built.
type limitedBody struct {
	r    io.Reader
	req  *h1.Request
	read int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if max := l.req.MaxBodyBytes; max > 0 && l.read > max {
		return n, h1.ErrBodyTooLarge
	}
	return n, err
}

// hopByHop are the response fields that HTTP/2 forbids.
var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Upgrade": true, "Proxy-Connection": true}

type responseWriter struct {
	aborted bool
	w       http.ResponseWriter
	rc      *http.ResponseController
	h       h1.Header
	status  int
	written int64
}

func (w *responseWriter) Header() *h1.Header { return &w.h }

func (w *responseWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	if status < 200 {
		// Interim responses (100, 103) pass; 101 cannot happen over HTTP/2.
		if status == http.StatusSwitchingProtocols {
			status = http.StatusBadGateway
		} else {
			w.copyHeader()
			w.w.WriteHeader(status)
			return
		}
	}
	w.status = status
	w.copyHeader()
	w.w.WriteHeader(status)
}

func (w *responseWriter) copyHeader() {
	out := w.w.Header()
	w.h.Each(func(name, value []byte) bool {
		k := http.CanonicalHeaderKey(string(name))
		if !hopByHop[k] {
			out[k] = append(out[k], string(value))
		}
		return true
	})
	w.h.Reset()
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.w.Write(p)
	w.written += int64(n)
	return n, err
}

func (w *responseWriter) Flush() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.rc.Flush()
}

// Abort marks the response as failed (h1.Aborter); the stream is reset once
// the handler returns.
func (w *responseWriter) Abort() { w.aborted = true }

func (w *responseWriter) Hijack() (net.Conn, *bufio.Reader, error) { return nil, nil, ErrHijack }
func (w *responseWriter) Written() int64                           { return w.written }
func (w *responseWriter) Status() int                              { return w.status }

var (
	_ h1.ResponseWriter = (*responseWriter)(nil)
	_ h1.Aborter        = (*responseWriter)(nil)
)
