// Package apihttp is the HTTP and JSON plumbing shared by the node
// manager's two servers, the node-to-node API (internal/nodeapi) and the
// Admin Node Manager's management API (internal/anm): the error shape
// {"errors":[{"code","message"}]} and the one place that classifies an
// error into a status (Classify), the {"result": …} envelope, request
// bodies (one JSON object of at most MaxBodyBytes, unknown fields refused),
// a method table answering 405 with Allow, the request's user and
// remote address, and Guard, the listener's outermost handler (431 for an
// oversized head; a lingering read of a body answered before its end).
//
// It owns no state and imports only the domain's model packages
// (topology, domain, home); nothing of the node manager.
package apihttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// MaxBodyBytes limits every request body of the management and
// node-to-node APIs (1 MiB) but uploads; a larger body is refused with 413.
const MaxBodyBytes = 1 << 20

// Methods maps HTTP methods to handlers of one path; another method is
// answered 405 with Allow.
type Methods map[string]http.HandlerFunc

// With is the handler of the path; refusals are logged to log.
func (m Methods) With(log *slog.Logger) http.Handler {
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	slices.Sort(allow)
	allowed := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := m[r.Method]; ok {
			h(w, r)
			return
		}
		w.Header().Set("Allow", allowed)
		WriteError(w, r, log, &Error{Code: http.StatusMethodNotAllowed, Msg: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allowed)})
	})
}

// Error is an error with the status and the client-safe message the API
// answers; Err is the cause, logged.
type Error struct {
	Code int
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Classify is the one place that turns an error into a status and the
// message the client sees. Messages of the topology and domain errors name
// what was asked for and are safe to show to an administrator; anything
// unclassified is a 500 whose cause only the log sees.
func Classify(err error) (int, string) {
	var ae *Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae.Code, ae.Msg
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes", mbe.Limit)
	case errors.Is(err, topology.ErrConflict):
		return http.StatusConflict, err.Error() + "; read the topology again (GET /api/topology) and send its version in If-Match"
	case errors.Is(err, topology.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, topology.ErrExists), errors.Is(err, domain.ErrPortInUse), errors.Is(err, home.ErrRunning):
		return http.StatusConflict, err.Error()
	case errors.Is(err, topology.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, home.ErrLocked), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "the topology is being changed by another tool; try again"
	}
	return http.StatusInternalServerError, "internal error; the node manager log has the cause"
}

// ClientMessage is the message the API answers for err (Classify); "" for
// nil.
func ClientMessage(err error) string {
	if err == nil {
		return ""
	}
	_, msg := Classify(err)
	return msg
}

// ErrorBody is every error answer.
type ErrorBody struct {
	Errors []ErrorItem `json:"errors"`
}

// ErrorItem is one error of an ErrorBody.
type ErrorItem struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// WriteError answers err in the {"errors":[{"code","message"}]} shape and
// logs it with its cause.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code, msg := Classify(err)
	level := slog.LevelInfo
	if code >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "management API error", "method", r.Method, "path", r.URL.Path, "remote", RemoteIP(r), "user", UserOf(r.Context()), "status", code, "err", err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Gatehouse", charset="UTF-8"`)
	}
	WriteJSON(w, code, ErrorBody{Errors: []ErrorItem{{Code: code, Message: msg}}})
}

// envelope is every successful answer. Changes carry the topology version
// they wrote in Version (and in the ETag header).
type envelope struct {
	Result  any   `json:"result"`
	Version int64 `json:"version,omitempty"`
}

// WriteResult answers {"result": v}.
func WriteResult(w http.ResponseWriter, code int, v any) { WriteJSON(w, code, envelope{Result: v}) }

// WriteChange answers a change that wrote topology version.
func WriteChange(w http.ResponseWriter, code int, v any, version int64) {
	w.Header().Set("ETag", ETag(version))
	WriteJSON(w, code, envelope{Result: v, Version: version})
}

// WriteJSON answers v as JSON, not cached.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"errors":[{"code":500,"message":"internal error: encoding the answer"}]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// ETag is the entity tag of topology version.
func ETag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// DecodeJSON reads one JSON object of at most MaxBodyBytes from body into
// v, refusing unknown fields (accepted lists the fields for the message)
// and anything after the object. Its errors are *Error with 400, 413 or
// 415.
func DecodeJSON(body io.Reader, v any, accepted string) error {
	data, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes", MaxBodyBytes), Err: err}
		}
		return &Error{Code: http.StatusBadRequest, Msg: "reading the request body: " + err.Error(), Err: err}
	}
	if len(data) > MaxBodyBytes {
		return &Error{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes", MaxBodyBytes)}
	}
	if !utf8.Valid(data) {
		// encoding/json would turn the bad bytes into U+FFFD and store a
		// name nobody sent.
		return &Error{Code: http.StatusBadRequest, Msg: "the request body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BodyError(err, dec, accepted)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		if err == nil {
			return &Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("unexpected data after the JSON object at offset %d; send one object", dec.InputOffset()-int64(len(extra)))}
		}
		return BodyError(err, dec, accepted)
	}
	if dec.InputOffset() > MaxBodyBytes {
		return &Error{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes", MaxBodyBytes)}
	}
	return nil
}

// BodyError is the *Error for a failure of dec decoding a request body
// (accepted names what the body may hold).
func BodyError(err error, dec *json.Decoder, accepted string) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || dec.InputOffset() > MaxBodyBytes:
		return &Error{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes", MaxBodyBytes), Err: err}
	case errors.Is(err, io.EOF):
		return &Error{Code: http.StatusBadRequest, Msg: "empty request body; want a JSON object with " + accepted, Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("malformed JSON: the body ends in the middle of a value (offset %d)", dec.InputOffset()), Err: err}
	case errors.As(err, &syn):
		return &Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("malformed JSON at offset %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: ")), Err: err}
	case errors.As(err, &typ):
		what := "the body"
		if typ.Field != "" {
			what = fmt.Sprintf("field %q", typ.Field)
		}
		return &Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s at offset %d: got a JSON %s, want %s", what, typ.Offset, typ.Value, jsonKind(typ.Type.Kind().String())), Err: err}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("unknown field %s at offset %d; accepted: %s", strings.TrimPrefix(err.Error(), "json: unknown field "), dec.InputOffset(), accepted), Err: err}
	}
	return &Error{Code: http.StatusBadRequest, Msg: "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: "), Err: err}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32":
		return "an integer"
	case "bool":
		return "true or false"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return goKind
}

// Validator is a request body that knows its rules: ReadBody checks it
// once for every handler.
type Validator interface {
	Validate() error
}

// ReadBody checks the content type (application/json, required: a body
// without one is refused, so that a cross-site form can never pass for a
// JSON call) and limits the body of r, then decodes it into v (DecodeJSON)
// and, when v is a Validator, validates it.
func ReadBody(w http.ResponseWriter, r *http.Request, v any, accepted string) error {
	if err := RequireJSON(r); err != nil {
		return err
	}
	if err := DecodeJSON(http.MaxBytesReader(w, r.Body, MaxBodyBytes), v, accepted); err != nil {
		return err
	}
	if vv, ok := v.(Validator); ok {
		return vv.Validate()
	}
	return nil
}

// UploadReadTime is how long a request that carries an upload (a
// deployment archive, up to 8 MiB) may take to arrive; every other request
// has the server's read timeout (30 s).
const UploadReadTime = 5 * time.Minute

// AllowSlowUpload lifts the server's read timeout for this request's body
// to UploadReadTime from now.
func AllowSlowUpload(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(UploadReadTime))
}

// RequireJSON refuses (415) a request whose Content-Type is not
// application/json (or a +json type), or that has none.
func RequireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return &Error{Code: http.StatusUnsupportedMediaType, Msg: "no Content-Type: want application/json"}
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return &Error{Code: http.StatusUnsupportedMediaType, Msg: fmt.Sprintf("Content-Type %q: want application/json", ct)}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return &Error{Code: http.StatusUnsupportedMediaType, Msg: fmt.Sprintf("Content-Type %q: JSON is read as UTF-8 only", ct)}
	}
	return nil
}

type ctxKey int

const userKey ctxKey = 0

// WithUser is ctx with the authenticated user name.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey, user)
}

// UserOf is the authenticated user of a request's context ("" for none).
func UserOf(ctx context.Context) string {
	u, _ := ctx.Value(userKey).(string)
	return u
}

// RemoteIP is the client's address without its port.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Limits of a request's head and of what is read of a body nobody wanted
// (docs/management-api.md, "Limits and timeouts").
const (
	// MaxHeadBytes is the largest request head the API takes: the request
	// line (method, target, protocol) and every header field as HTTP/1.1
	// sends them (HeadSize). A larger one is answered 431 in the API's
	// error shape, over HTTP/1.1 and HTTP/2 alike.
	MaxHeadBytes = 64 << 10
	// ServerMaxHeaderBytes is the server's own bound
	// (http.Server.MaxHeaderBytes), twice MaxHeadBytes so that a head
	// between the two reaches Guard and gets the JSON 431. Above it the
	// standard library answers by itself: a plain-text 431 over HTTP/1.1;
	// over HTTP/2 its HPACK decoder refuses a field longer than the header
	// list size (about ServerMaxHeaderBytes) as a connection error
	// (GOAWAY COMPRESSION_ERROR), which it cannot turn into an answer.
	ServerMaxHeaderBytes = 2 * MaxHeadBytes
	// LingerBytes and LingerTime bound what is read and thrown away of a
	// request body the handler did not read to its end (an upload refused
	// with 413 past its limit, a refused login's body) after the answer
	// is sent, so that a client still sending sees the answer instead of
	// a connection reset (a "lingering close").
	LingerBytes = 16 << 20
	LingerTime  = 10 * time.Second
	LingerIdle  = 500 * time.Millisecond
)

// HeadSize is the size of r's head as HTTP/1.1 sends it: "METHOD TARGET
// PROTO\r\n", "Host: …\r\n" and "Name: value\r\n" for every field,
// whatever protocol r came by.
func HeadSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for k, vv := range r.Header {
		for _, v := range vv {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// Guard is the outermost handler of the node manager's listener. It
// answers 431 (in the API's error shape) to a request whose head is over
// MaxHeadBytes, and after next answers a request whose body it did not read
// to the end, it sends the answer and reads and throws away the rest of
// the body, at most LingerBytes for at most LingerTime: a client still
// sending its body gets the whole answer before the connection is closed
// (HTTP/1.1, "Connection: close") or the stream reset (HTTP/2). A body
// whose reading failed (the server's read timeout cut off a trickle) is
// not read again.
func Guard(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			if !headFits(w, r, log) {
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		orig := r.Body
		body := &watchedBody{ReadCloser: orig}
		if headFits(w, r, log) {
			r2 := r.WithContext(r.Context()) // a copy: the server keeps its own view of r.Body
			r2.Body = body
			next.ServeHTTP(w, r2)
			r.MultipartForm = r2.MultipartForm // for the server to remove its files
		}
		if !body.ended && !body.failed { // a failed read (the read timeout) is not waited for again
			linger(w, r, orig)
		}
	})
}

// headFits answers 431 when r's head is over MaxHeadBytes.
func headFits(w http.ResponseWriter, r *http.Request, log *slog.Logger) bool {
	size := HeadSize(r)
	if size <= MaxHeadBytes {
		return true
	}
	path := r.URL.Path
	if len(path) > 200 {
		path = path[:200] + "…"
	}
	log.Info("management API error", "method", r.Method, "path", path, "remote", RemoteIP(r), "status", http.StatusRequestHeaderFieldsTooLarge, "headBytes", size, "proto", r.Proto)
	msg := fmt.Sprintf("the request line and header fields are %d bytes, over the limit of %d (64 KiB)", size, MaxHeadBytes)
	WriteJSON(w, http.StatusRequestHeaderFieldsTooLarge, ErrorBody{Errors: []ErrorItem{{Code: http.StatusRequestHeaderFieldsTooLarge, Message: msg}}})
	return false
}

// linger sends the answer written so far and reads and discards what is
// left of body: until its end, LingerBytes, LingerTime in all, or
// LingerIdle without a byte (a client that stopped sending when it saw the
// answer: net/http's HTTP/2 client on a status over 299). Over HTTP/1.1
// the connection is closed afterwards; over HTTP/2 the stream ends and the
// connection goes on.
func linger(w http.ResponseWriter, r *http.Request, body io.Reader) {
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close") // when the handler wrote nothing yet
	}
	if err := rc.Flush(); err != nil {
		return // hijacked or gone
	}
	end := time.Now().Add(LingerTime)
	buf := make([]byte, 32<<10)
	for left := int64(LingerBytes); left > 0; {
		d := time.Now().Add(LingerIdle)
		if d.After(end) {
			d = end
		}
		_ = rc.SetReadDeadline(d)
		n, err := body.Read(buf[:min(int64(len(buf)), left)])
		left -= int64(n)
		if err != nil {
			return
		}
	}
}

// watchedBody tells whether the handler read the body to its end, or
// reading it failed.
type watchedBody struct {
	io.ReadCloser
	ended, failed bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.ended = true
	} else if err != nil {
		b.failed = true
	}
	return n, err
}
