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

	"time"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// ErrHijack is returned by Hijack on an HTTP/2 stream.
var ErrHijack = errors.New("hijacking is not possible over HTTP/2")

// Handler returns an http.Handler that serves every request with h.
func Handler(h h1.Handler) http.Handler {
	return bridge{h: h}
}

type bridge struct{ h h1.Handler }

func (b bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
