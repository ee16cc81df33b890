// Package apihttp is the HTTP and JSON plumbing shared by the node
// manager's two servers, the node-to-node API (internal/nodeapi) and the
// Admin Node Manager's management API (internal/anm): the error shape
// {"errors":[{"code","message"}]} and the one place that classifies an
// error into a status (Classify), the {"result": …} envelope, request
// bodies (one JSON object of at most MaxBodyBytes, unknown fields refused),
// a method table answering 405 with Allow, and the request's user and
// remote address.
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
