// Package proxy forwards requests to back-end services. A Backend is one
// back end of the configuration (a base URL, or this instance's sample
// service) with its own tuned connection pool; a Forwarder forwards the
// requests of one route to its Backend through net/http/httputil's
// ReverseProxy. Bodies are streamed, never buffered whole; server-sent events
// and responses without a length are flushed as they arrive; protocol
// upgrades (WebSocket) are passed through.
//
// The forwarded request carries X-Forwarded-For (the client's IP only:
// X-Forwarded-* and Forwarded headers from the client are dropped, as there
// are no trusted proxies yet), X-Forwarded-Proto and X-Forwarded-Host, and the
// request's X-CorrelationID. Failures answer with a JSON error body (see
// WriteError): 502 when the back end cannot be reached, 504 when it does not
// answer in time. The cause is logged, never sent to the client.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// HeaderCorrelationID is the request and response header that carries the
// correlation id.
const HeaderCorrelationID = "X-CorrelationID"

// Backend is a compiled back end: where requests go and the connection pool
// that takes them there. It is safe for concurrent use.
type Backend struct {
	Name      string
	Target    *url.URL // scheme, host and base path
	transport *http.Transport
}

// NewBackend builds the back end b. sample is the instance's sample-service
// setting, used when b.Sample is set.
func NewBackend(b groupconf.Backend, sample groupconf.Sample) (*Backend, error) {
	var target *url.URL
	if b.Sample {
		host := sample.Address
		if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
			host = "127.0.0.1"
		}
		target = &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(sample.Port))}
	} else {
		u, err := url.Parse(b.URL)
		if err != nil {
			return nil, fmt.Errorf("back end %q: parsing url: %w", b.Name, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("back end %q: url %q is not an http:// or https:// URL with a host", b.Name, b.URL)
		}
		target = u
	}
	dialer := &net.Dialer{Timeout: b.ConnectTimeout.D(), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // never the environment's proxy: back ends are reached directly
		DialContext:           dialer.DialContext,
		MaxIdleConns:          b.MaxIdleConns,
		MaxIdleConnsPerHost:   b.MaxIdleConns,
		IdleConnTimeout:       b.IdleTimeout.D(),
		ResponseHeaderTimeout: b.Timeout.D(),
		TLSHandshakeTimeout:   b.ConnectTimeout.D(),
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
		DisableCompression:    true, // pass the client's Accept-Encoding and the back end's encoding through untouched
		DisableKeepAlives:     b.MaxIdleConns == 0,
	}
	return &Backend{Name: b.Name, Target: target, transport: tr}, nil
}

// CloseIdleConnections closes the pool's idle connections. Connections in
// use are closed when their request ends.
func (b *Backend) CloseIdleConnections() { b.transport.CloseIdleConnections() }

// Options are what every Forwarder of an instance shares.
type Options struct {
	Logger     *slog.Logger        // for forwarding errors; nil discards
	BufferPool httputil.BufferPool // buffers for copying bodies; nil allocates per copy
}

// Forwarder forwards the requests of one route to its back end. It is safe
// for concurrent use.
type Forwarder struct {
	backend *Backend
	route   *route.Route
	strip   int // path segments to remove
	rp      *httputil.ReverseProxy
	log     *slog.Logger
}

// NewForwarder returns the Forwarder for requests matched by r.
func NewForwarder(b *Backend, r *route.Route, opts Options) *Forwarder {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{backend: b, route: r, log: log}
	if r.StripPrefix {
		f.strip = r.PrefixSegments()
	}
	f.rp = &httputil.ReverseProxy{
		Rewrite:        f.rewrite,
		Transport:      b.transport,
		BufferPool:     opts.BufferPool,
		ModifyResponse: modifyResponse,
		ErrorHandler:   f.fail,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// FlushInterval 0: ReverseProxy flushes text/event-stream responses
		// and responses of unknown length at once (-1) by itself.
	}
	return f
}

// Backend returns the back end the Forwarder sends to.
func (f *Forwarder) Backend() *Backend { return f.backend }

// ServeHTTP forwards r. The caller has matched the route and set the
// X-CorrelationID header on r and on w.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.rp.ServeHTTP(w, r)
}

func (f *Forwarder) rewrite(pr *httputil.ProxyRequest) {
	if f.strip > 0 {
		pr.Out.URL.Path = StripSegments(pr.In.URL.Path, f.strip)
		if pr.In.URL.RawPath != "" {
			pr.Out.URL.RawPath = StripSegments(pr.In.URL.RawPath, f.strip)
		}
	}
	pr.SetURL(f.backend.Target)
	pr.SetXForwarded()
}

// modifyResponse drops a correlation id set by the back end: the client gets
// the gateway's, already on the response.
func modifyResponse(res *http.Response) error {
	res.Header.Del(HeaderCorrelationID)
	return nil
}

// fail is the ReverseProxy's ErrorHandler: it classifies err, logs the cause
// and answers with a client-safe JSON error.
func (f *Forwarder) fail(w http.ResponseWriter, r *http.Request, err error) {
	attrs := []any{
		"api", f.route.Name, "backend", f.backend.Name,
		"correlationId", r.Header.Get(HeaderCorrelationID), "error", err.Error(),
	}
	if r.Context().Err() != nil {
		// The client went away (or the server is closing): nobody to answer.
		f.log.Debug("request abandoned while forwarding", attrs...)
		return
	}
	status, msg := Classify(err)
	f.log.Warn("forwarding failed", append(attrs, "status", status)...)
	WriteError(w, status, msg)
}

// Classify maps a forwarding error to a status and a client-safe message:
// 504 when the back end did not connect or answer within its timeouts, 502
// for anything else (connection refused, reset, unreachable, bad response).
func Classify(err error) (status int, message string) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, "the back end did not answer in time"
	}
	return http.StatusBadGateway, "the back end could not be reached"
}

// StripSegments removes the first n segments of path p (which starts with
// "/"): StripSegments("/a/b/c", 1) is "/b/c", and a path that has no more
// than n segments becomes "/".
func StripSegments(p string, n int) string {
	i := 0
	for ; n > 0; n-- {
		j := strings.IndexByte(p[i+1:], '/')
		if j < 0 {
			return "/"
		}
		i += 1 + j
	}
	return p[i:]
}

// ErrorItem is one entry of an error body.
type ErrorItem struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// ErrorBody is the JSON body of every error the gateway itself answers:
// {"errors":[{"code":404,"message":"..."}]}.
type ErrorBody struct {
	Errors []ErrorItem `json:"errors"`
}

// WriteError answers status with an ErrorBody holding message, which must be
// safe to show to the client.
func WriteError(w http.ResponseWriter, status int, message string) {
	b, err := json.Marshal(ErrorBody{Errors: []ErrorItem{{Code: status, Message: message}}})
	if err != nil {
		b = []byte(`{"errors":[{"code":500,"message":"internal error"}]}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// BufferPool is an httputil.BufferPool of 32 KiB buffers, for the bodies of
// one instance's forwarded requests and responses.
type BufferPool struct {
	p sync.Pool
}

// BufferSize is the size of the buffers of a BufferPool.
const BufferSize = 32 << 10

// NewBufferPool returns an empty pool.
func NewBufferPool() *BufferPool {
	return &BufferPool{p: sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}}
}

// Get returns a buffer of BufferSize bytes.
func (p *BufferPool) Get() []byte { return *(p.p.Get().(*[]byte)) }

// Put returns a buffer to the pool; buffers of another size are dropped.
func (p *BufferPool) Put(b []byte) {
	if cap(b) != BufferSize {
		return
	}
	b = b[:BufferSize]
	p.p.Put(&b)
}

var _ httputil.BufferPool = (*BufferPool)(nil)
