package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Request is one HTTP request to the authorization server, as the
// gateway's engine (or HTTPHandler) read it. Body is the whole body;
// the caller bounds it (MaxBodyBytes: a longer body is refused).
type Request struct {
	Method     string
	Path       string // the path, not decoded
	RawQuery   string
	Header     http.Header // canonical keys (http.CanonicalHeaderKey)
	Body       []byte
	RemoteAddr netip.Addr
	TLS        bool
}

// Response is the server's answer. Header always has Content-Type and
// Cache-Control when Body is not empty.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// MaxBodyBytes bounds a request body (a form of the token, introspection
// or revocation endpoint): a longer one is refused.
const MaxBodyBytes = 64 << 10

// Options are what New needs. Config, Store, HashKey and Clients are
// required; Keys is required when Config.AccessTokenFormat is jwt (and
// serves the JWKS document when given).
type Options struct {
	Config  Config
	Store   kps.Store
	HashKey secret.Value // the group's hash key, at least 32 bytes
	Clients Clients
	Keys    *KeySet
	Logger  *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Reader serves Verify's store reads (nil: Store); the oauth policy
	// gives a *kps.Cache.
	Reader RowGetter
	// Authorize, when set, serves <prefix>/authorize (the authorization
	// endpoint, a later part); nil: the path answers 404 and the metadata
	// does not list it.
	Authorize func(ctx context.Context, r *Request) *Response
}

// Server is a group's authorization server. Create it with New; it is safe
// for concurrent use.
type Server struct {
	cfg       Config
	store     kps.Store
	reader    RowGetter
	hash      *hasher
	clients   Clients
	keys      *KeySet
	log       *slog.Logger
	now       func() time.Time
	authorize func(ctx context.Context, r *Request) *Response
	jwts      jwtCache
	noCache   bool // benchmarks: measure the JWT verification itself

	tokenURL, introspectURL, revokeURL, jwksURL, authorizeURL string
	wellKnown                                                 string
	metadata                                                  []byte
}

// New checks opt, defines the server's tables in the store and returns the
// server. opt.Config gets its defaults first.
func New(ctx context.Context, opt Options) (*Server, error) {
	cfg := opt.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case opt.Store == nil:
		return nil, errors.New("oauth: no store")
	case opt.Clients == nil:
		return nil, errors.New("oauth: no client registry")
	case len(opt.HashKey.Reveal()) < 32:
		return nil, errors.New("oauth: the hash key must have at least 32 bytes")
	case cfg.AccessTokenFormat == FormatJWT && opt.Keys == nil:
		return nil, errors.New("oauth: accessTokenFormat jwt needs a signing key set")
	}
	s := &Server{
		cfg: cfg, store: opt.Store, reader: opt.Reader, hash: newHasher(opt.HashKey), clients: opt.Clients,
		keys: opt.Keys, log: opt.Logger, now: opt.Now, authorize: opt.Authorize,
	}
	if s.reader == nil {
		s.reader = opt.Store
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "oauth")
	if s.now == nil {
		s.now = time.Now
	}
	base := strings.TrimSuffix(cfg.Issuer, "/")
	s.tokenURL = base + cfg.PathPrefix + "/token"
	s.introspectURL = base + cfg.PathPrefix + "/introspect"
	s.revokeURL = base + cfg.PathPrefix + "/revoke"
	s.jwksURL = base + cfg.PathPrefix + "/jwks"
	s.authorizeURL = base + cfg.PathPrefix + "/authorize"
	// RFC 8414 §3: the well-known suffix goes between the host and the
	// issuer's path.
	u, _ := url.Parse(cfg.Issuer)
	s.wellKnown = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/")
	if err := s.store.Define(ctx, Tables()...); err != nil {
		return nil, fmt.Errorf("defining the oauth tables: %w", err)
	}
	s.metadata = s.buildMetadata()
	return s, nil
}

// Config returns the configuration in use (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// Handle answers a request to one of the server's paths; it returns false
// (and no response) for any other path, which the caller routes on.
func (s *Server) Handle(ctx context.Context, r *Request) (*Response, bool) {
	p := s.cfg.PathPrefix
	switch r.Path {
	case p + "/token":
		return s.post(ctx, r, s.token), true
	case p + "/introspect":
		return s.post(ctx, r, s.introspect), true
	case p + "/revoke":
		return s.post(ctx, r, s.revoke), true
	case p + "/jwks":
		if s.keys == nil {
			return notFound(), true
		}
		return s.get(r, func() *Response {
			b, err := json.Marshal(s.keys.JWKS())
			if err != nil {
				return s.serverError(fmt.Errorf("encoding the JWKS: %w", err)) // mutate:equivalent delete-stmt unreachable: a JWK set of public keys always encodes
			}
			return document(b, "application/jwk-set+json", "public, max-age=300")
		}), true
	case s.wellKnown:
		return s.get(r, func() *Response { return document(s.metadata, "application/json", "public, max-age=3600") }), true
	case p + "/authorize":
		if s.authorize == nil {
			return notFound(), true
		}
		return s.authorize(ctx, r), true
	}
	return nil, false
}

func (s *Server) get(r *Request, f func() *Response) *Response {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return &Response{Status: http.StatusMethodNotAllowed, Header: http.Header{"Allow": {"GET, HEAD"}}}
	}
	resp := f()
	if r.Method == http.MethodHead {
		resp.Header.Set("Content-Length", strconv.Itoa(len(resp.Body)))
		resp.Body = nil
	}
	return resp
}

// post checks what every POST endpoint requires (method, no query, a
// form body within bounds) and calls f with the parsed form.
func (s *Server) post(ctx context.Context, r *Request, f func(context.Context, *Request, url.Values) *Response) *Response {
	if r.Method != http.MethodPost {
		return &Response{Status: http.StatusMethodNotAllowed, Header: http.Header{"Allow": {"POST"}}}
	}
	if r.RawQuery != "" {
		// RFC 6749 §2.3.1 and §3.2: credentials and parameters go in the
		// body; a query could leak them into logs.
		return errorResponse(errRequest("parameters in the URL query are not accepted: send them in the form body"))
	}
	form, oe := ParseForm(r.Header.Get("Content-Type"), r.Body)
	if oe != nil {
		return errorResponse(oe)
	}
	return f(ctx, r, form)
}

// Error is an OAuth error answer (RFC 6749 §5.2): its code, a description
// for the developer and the HTTP status.
type Error struct {
	Code        string
	Description string
	Status      int
	basicAuth   bool // invalid_client after Basic: WWW-Authenticate
	cause       error
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// The error codes.
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidClient        = "invalid_client"
	ErrCodeInvalidGrant         = "invalid_grant"
	ErrCodeUnauthorizedClient   = "unauthorized_client"
	ErrCodeUnsupportedGrantType = "unsupported_grant_type"
	ErrCodeInvalidScope         = "invalid_scope"
	ErrCodeUnsupportedTokenType = "unsupported_token_type" // RFC 7009 §2.2.1
	ErrCodeServerError          = "server_error"
	ErrCodeUnavailable          = "temporarily_unavailable"
)

func errRequest(format string, a ...any) *Error {
	return &Error{Code: ErrCodeInvalidRequest, Description: fmt.Sprintf(format, a...), Status: 400}
}
func errGrant(format string, a ...any) *Error {
	return &Error{Code: ErrCodeInvalidGrant, Description: fmt.Sprintf(format, a...), Status: 400}
}
func errScope(format string, a ...any) *Error {
	return &Error{Code: ErrCodeInvalidScope, Description: fmt.Sprintf(format, a...), Status: 400}
}
func errUnauthorized(format string, a ...any) *Error {
	return &Error{Code: ErrCodeUnauthorizedClient, Description: fmt.Sprintf(format, a...), Status: 400}
}
func errClient(basic bool, format string, a ...any) *Error {
	return &Error{Code: ErrCodeInvalidClient, Description: fmt.Sprintf(format, a...), Status: 401, basicAuth: basic}
}

// errStore is the answer to a store or registry failure: 503 when the
// store is unavailable (retry), 500 otherwise. It is never an
// authentication failure.
func errStore(err error) *Error {
	if errors.Is(err, kps.ErrUnavailable) {
		return &Error{Code: ErrCodeUnavailable, Description: "the token store is unavailable; retry later", Status: 503, cause: err}
	}
	return &Error{Code: ErrCodeServerError, Description: "internal error", Status: 500, cause: err}
}

func errorResponse(e *Error) *Response {
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
	h := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "Pragma": {"no-cache"}}
	if e.Status == 401 {
		h.Set("WWW-Authenticate", `Basic realm="oauth", charset="UTF-8"`)
	}
	if e.Status == 503 {
		h.Set("Retry-After", "1")
	}
	return &Response{Status: e.Status, Header: h, Body: b}
}

func (s *Server) fail(ctx context.Context, e *Error) *Response {
	if e.cause != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "oauth request failed", slog.String("error", e.Code), slog.Any("cause", e.cause))
	}
	return errorResponse(e)
}

func (s *Server) serverError(err error) *Response {
	s.log.Error("oauth request failed", "cause", err)
	return errorResponse(&Error{Code: ErrCodeServerError, Description: "internal error", Status: 500}) // mutate:equivalent const unreachable: only an encoding failure of the JWKS calls it
}

func jsonResponse(status int, v any) *Response {
	b, err := json.Marshal(v)
	if err != nil {
		// mutate:equivalent * unreachable: the answers encoded are structs and maps of strings, numbers and booleans
		return errorResponse(&Error{Code: ErrCodeServerError, Description: "internal error", Status: 500})
	}
	return &Response{Status: status, Header: http.Header{
		"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "Pragma": {"no-cache"},
	}, Body: b}
}

func document(b []byte, ctype, cache string) *Response {
	return &Response{Status: 200, Header: http.Header{"Content-Type": {ctype}, "Cache-Control": {cache}}, Body: b}
}

func notFound() *Response {
	return &Response{Status: 404, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Cache-Control": {"no-store"}}, Body: []byte("not found\n")}
}

// HTTPHandler adapts the server to net/http (tests, tools). Paths that are
// not the server's answer 404. The body is read up to MaxBodyBytes.
func (s *Server) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		body, err := io.ReadAll(io.LimitReader(hr.Body, MaxBodyBytes+1))
		if err != nil {
			http.Error(w, "reading the request body failed", http.StatusBadRequest)
			return
		}
		r := &Request{
			Method: hr.Method, Path: hr.URL.EscapedPath(), RawQuery: hr.URL.RawQuery,
			Header: hr.Header, Body: body, TLS: hr.TLS != nil,
		}
		if ap, err := netip.ParseAddrPort(hr.RemoteAddr); err == nil {
			r.RemoteAddr = ap.Addr()
		}
		resp, ok := s.Handle(hr.Context(), r)
		if !ok {
			http.NotFound(w, hr)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.Status)
		io.Copy(w, bytes.NewReader(resp.Body))
	})
}
