// Package proxy forwards requests to back-end services over the h1 engine. A
// Backend is one back end of the configuration (a base URL, or this
// instance's sample service) with its remote host (remotehost.Host: the
// addresses, their connection pools, load balancing and retries); a
// Forwarder forwards the requests of one route to its Backend. Bodies are
// streamed both ways, never held whole; responses are flushed whenever the
// back end pauses, so server-sent events and chunks reach the client as they
// are produced; WebSocket upgrades are spliced.
//
// The forwarded request carries X-Forwarded-For, X-Forwarded-Proto and
// X-Forwarded-Host as the caller resolved them (Scratch.Forwarded; by default
// the connection's peer, its TLS and the Host: the X-Forwarded-* and
// Forwarded headers received are always dropped), and the
// request's X-CorrelationID; its Host is the back end's. Failures answer with
// a JSON error body (see WriteError): 502 when the back end cannot be reached
// or answers badly, 504 when it does not answer in time, 503 when no
// address is up or no connection is available, 413 over the remote host's
// maxSentBytes, 411 for a body of unknown length to an HTTP/1.0 back end.
// The cause is logged, never sent to the client.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/remotehost"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// HeaderCorrelationID is the request and response header that carries the
// correlation id.
const HeaderCorrelationID = "X-CorrelationID"

// Backend is a compiled back end: where requests go and the connection pool
// that takes them there. It is safe for concurrent use.
type Backend struct {
	Name     string
	Target   *url.URL // scheme, host and base path
	basePath []byte   // Target's escaped path without a trailing slash ("" for none)
	host     []byte   // Host header sent to the back end
	rh       *remotehost.Host
}

// NewBackend builds the back end b on a remote host of its own with the
// default Remote Host Settings (see remotehost.Standalone). sample is the
// instance's sample-service setting, used when b.Sample is set.
func NewBackend(b groupconf.Backend, sample groupconf.Sample) (*Backend, error) {
	rh, err := remotehost.Standalone(b, sample, remotehost.Options{})
	if err != nil {
		return nil, fmt.Errorf("back end %q: %w", b.Name, err)
	}
	return NewBackendOn(b, sample, rh)
}

// NewBackendOn builds the back end b over the remote host rh (from the
// instance's remotehost.Registry).
func NewBackendOn(b groupconf.Backend, sample groupconf.Sample, rh *remotehost.Host) (*Backend, error) {
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
	return &Backend{
		Name:     b.Name,
		Target:   target,
		basePath: []byte(strings.TrimSuffix(target.EscapedPath(), "/")),
		host:     rh.HostHeader,
		rh:       rh,
	}, nil
}

// RemoteHost returns the remote host the back end sends to.
func (b *Backend) RemoteHost() *remotehost.Host { return b.rh }

// CloseIdleConnections closes the pools' idle connections. Connections in
// use are closed when their request ends.
func (b *Backend) CloseIdleConnections() { b.rh.CloseIdle() }

// Options are what every Forwarder of an instance shares.
type Options struct {
	Logger *slog.Logger // for forwarding errors; nil discards
}

// Forwarder forwards the requests of one route to its back end. It is safe
// for concurrent use.
type Forwarder struct {
	backend *Backend
	route   *route.Route
	strip   int // path segments to remove
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
	return f
}

// Backend returns the back end the Forwarder sends to.
func (f *Forwarder) Backend() *Backend { return f.backend }

// Scratch is per-request memory a Forwarder uses; keep one per connection
// or request (pooled by the caller) to avoid allocations.
type Scratch struct {
	out     h1.Outgoing
	attempt h1.Attempt
	path    []byte
	xff     []byte
	id      []byte                // the request's correlation id
	modify  func(int, *h1.Header) // made once per Scratch: puts id on the response

	// Forwarded is what the back end is told about the client; the caller
	// sets it before each Forward (docs/transparent-lb.md).
	Forwarded ForwardedInfo
	// Edit, when set, edits the response head before it is sent: the back
	// end's, or the gateway's own error answer (the API's policies; made
	// once per Scratch by the caller, set before each Forward).
	Edit func(status int, h *h1.Header)
}

// ForwardedInfo is what a forwarded request says about its client. Each nil
// field falls back to what the connection shows. The slices must stay valid
// until Forward returns.
type ForwardedInfo struct {
	For   []byte // X-Forwarded-For value; nil: the connection's peer address
	Proto []byte // X-Forwarded-Proto; nil: "https" on a TLS connection, else "http"
	Host  []byte // X-Forwarded-Host; nil: the request's Host
}

// ownID makes the response carry the gateway's correlation id, not one the
// back end sent.
func (s *Scratch) ownID(status int, h *h1.Header) {
	h.Del(HeaderCorrelationID)
	if len(s.id) > 0 {
		h.Set(HeaderCorrelationID, s.id)
	}
	if s.Edit != nil {
		s.Edit(status, h)
	}
}

// Fields the gateway sets itself; the client's values are dropped.
var dropped = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Host"}

// Forward sends r to the back end and streams the answer to w. The caller
// has matched the route and put the X-CorrelationID on r.Header and on w.
// It writes the JSON error itself when forwarding fails before the response
// started, and returns the error for the access log (nil on success).
func (f *Forwarder) Forward(ctx context.Context, w h1.ResponseWriter, r *h1.Request, s *Scratch) (h1.Result, error) {
	out := &s.out
	*out = h1.Outgoing{Method: r.Method, Query: r.Query, Host: f.backend.host, Header: &r.Header, Body: r.Body, ContentLength: r.ContentLength, Upgrade: r.Upgrade}
	path := r.Path
	if f.strip > 0 {
		path = StripSegments(path, f.strip)
	}
	if len(f.backend.basePath) > 0 {
		s.path = append(append(s.path[:0], f.backend.basePath...), path...)
		path = s.path
	}
	out.Path = path
	forwardedHost := r.Header.Get("Host")
	if forwardedHost == nil {
		forwardedHost = r.Host
	}
	xfh := forwardedHost // points into the connection's buffer; still valid
	if s.Forwarded.Host != nil {
		xfh = s.Forwarded.Host
	}
	for _, name := range dropped {
		r.Header.Del(name)
	}
	if s.Forwarded.For != nil {
		r.Header.Add("X-Forwarded-For", s.Forwarded.For)
	} else {
		s.xff = r.RemoteAddr.Addr().AppendTo(s.xff[:0])
		r.Header.Add("X-Forwarded-For", s.xff)
	}
	switch {
	case s.Forwarded.Proto != nil:
		r.Header.Add("X-Forwarded-Proto", s.Forwarded.Proto)
	case r.TLS != nil:
		r.Header.AddString("X-Forwarded-Proto", "https")
	default:
		r.Header.AddString("X-Forwarded-Proto", "http")
	}
	if len(xfh) > 0 {
		r.Header.Add("X-Forwarded-Host", xfh)
	}
	if s.modify == nil {
		s.modify = s.ownID
	}
	s.id = r.Header.Get(HeaderCorrelationID)
	out.ModifyResponse = s.modify
	res, err := f.backend.rh.Forward(ctx, w, out, &s.attempt)
	s.id = nil
	if err == nil {
		return res, nil
	}
	var fe *h1.ForwardError
	status, msg := Classify(err)
	attrs := []any{"api", f.route.Name, "backend", f.backend.Name, "remoteHost", f.backend.rh.Name, "correlationId", string(r.Header.Get(HeaderCorrelationID)), "error", err.Error()}
	if errors.As(err, &fe) && fe.Responded {
		if errors.Is(err, h1.ErrMaxReceived) {
			f.log.Warn("response over maxReceivedBytes; client connection aborted", attrs...)
		} else {
			f.log.Debug("forwarding ended early", attrs...)
		}
		return res, err
	}
	if fe != nil && fe.Kind == h1.ErrClient && !errors.Is(err, h1.ErrMaxSent) && !errors.Is(err, h1.ErrLengthRequired) {
		f.log.Debug("forwarding ended early", attrs...)
		return res, err
	}
	f.log.Warn("forwarding failed", append(attrs, "status", status)...)
	if s.Edit != nil {
		s.Edit(status, w.Header())
	}
	WriteError(w, status, msg)
	res.Status = status
	return res, err
}

// Classify maps a forwarding error to a status and a client-safe message.
func Classify(err error) (status int, message string) {
	if errors.Is(err, remotehost.ErrNoAddress) {
		return http.StatusServiceUnavailable, "no address of the back end is available"
	}
	var fe *h1.ForwardError
	if errors.As(err, &fe) {
		switch {
		case errors.Is(err, h1.ErrMaxSent):
			return http.StatusRequestEntityTooLarge, "the request body is larger than the back end accepts"
		case errors.Is(err, h1.ErrLengthRequired):
			return http.StatusLengthRequired, "the back end needs a request body of known length (Content-Length)"
		case errors.Is(err, h1.ErrMaxReceived):
			return http.StatusBadGateway, "the back end's response is larger than accepted"
		}
		switch fe.Kind {
		case h1.ErrTimeout:
			return http.StatusGatewayTimeout, "the back end did not answer in time"
		case h1.ErrNoConnAvailable:
			return http.StatusServiceUnavailable, "no connection to the back end is available"
		case h1.ErrUpstreamProtocol:
			return http.StatusBadGateway, "the back end answered with an invalid response"
		case h1.ErrClient:
			if errors.Is(err, h1.ErrBodyTooLarge) {
				return http.StatusRequestEntityTooLarge, "the request body is larger than this API accepts"
			}
			return http.StatusBadRequest, "the request body could not be read"
		}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, "the back end did not answer in time"
	}
	return http.StatusBadGateway, "the back end could not be reached"
}

// StripSegments removes the first n segments of path p (which starts with
// "/"): StripSegments("/a/b/c", 1) is "/b/c", and a path that has no more
// than n segments becomes "/". The result shares p's memory.
func StripSegments(p []byte, n int) []byte {
	i := 0
	for ; n > 0; n-- {
		j := indexByte(p[i+1:], '/')
		if j < 0 {
			return slash
		}
		i += 1 + j
	}
	return p[i:]
}

var slash = []byte("/")

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
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
// safe to show to the client. It does nothing when the response has started.
func WriteError(w h1.ResponseWriter, status int, message string) {
	if w.Status() != 0 {
		return
	}
	b := ErrorJSON(status, message)
	h := w.Header()
	h.SetString("Content-Type", "application/json")
	h.SetString("Content-Length", strconv.Itoa(len(b)))
	h.SetString("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ErrorJSON is the ErrorBody of status and message, with a final newline.
func ErrorJSON(status int, message string) []byte {
	b, err := json.Marshal(ErrorBody{Errors: []ErrorItem{{Code: status, Message: message}}})
	if err != nil {
		b = []byte(`{"errors":[{"code":500,"message":"internal error"}]}`)
	}
	return append(b, '\n')
}

// WriteHTTPError is WriteError for net/http handlers (the management
// listener).
func WriteHTTPError(w http.ResponseWriter, status int, message string) {
	b := ErrorJSON(status, message)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
