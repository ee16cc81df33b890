package nodemanager

import (
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

	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// maxBodyBytes limits every management API request body (1 MiB); a larger
// body is refused with 413.
const maxBodyBytes = 1 << 20

// supervisor is what the management API needs of the Supervisor
// (supervise.go); tests give a fake.
type supervisor interface {
	StartInstance(ctx context.Context, id string) (InstanceState, error)
	StopInstance(ctx context.Context, id string) (InstanceState, error)
	Status(id string) (InstanceState, error)
	States() []InstanceState
	Deploy(ctx context.Context, id string, m deploy.Meta) (InstanceState, error) // deploy_instance.go
	SetInService(ctx context.Context, id string, in bool) (InstanceState, error)
	SetArchive(ctx context.Context, id string, m deploy.Meta) (InstanceState, error)
}

// api is the management API under /api, served by the Admin Node Manager.
// Every request is authenticated (auth.go's HTTP Basic against
// conf/adminUsers.json) before it is routed. It is safe for concurrent use.
type api struct {
	n     *NodeManager
	h     home.Home
	log   *slog.Logger
	sup   supervisor
	auth  *authenticator
	relay *relay
	acl   *rbac.ACL // api_rbac.go; set by loadACL before serving

	archives *deploy.Store // deploy_api.go: the domain's deployment archives
	jobs     *jobs         // deploy_rollout.go: rollouts run by this ANM
}

func newAPI(n *NodeManager, sup supervisor) *api {
	log := n.log.With("subsystem", "api")
	return &api{n: n, h: n.opts.Home, log: log, sup: sup, auth: newAuthenticator(n.opts.Home, log), relay: newRelay(log, n.mgmt),
		archives: deploy.NewStore(n.opts.Home), jobs: newJobs()}
}

// route is one entry of the management API's table: a mux pattern and its
// methods, or relay for a pattern that takes any method (the router).
// Open routes need no credentials (the API's description, api_openapi.go).
// api/openapi.yaml documents every route of the table; openapi_test.go
// holds the two to each other.
type route struct {
	pattern string
	methods methods
	relay   http.HandlerFunc
	open    bool
	wrap    func(http.Handler) http.Handler // /nm/join: HTTP Basic
}

// routes is the management API: every path under /api the handler serves.
func (a *api) routes() []route {
	return append([]route{
		{pattern: "/api/openapi.yaml", methods: methods{http.MethodGet: a.serveOpenAPI("yaml")}, open: true},
		{pattern: "/api/openapi.json", methods: methods{http.MethodGet: a.serveOpenAPI("json")}, open: true},
		{pattern: "/api/rbac/login", methods: methods{http.MethodPost: a.login}, open: true}, // api_session.go
		{pattern: "/api/rbac/currentuser", methods: methods{http.MethodGet: a.currentUser}},
		{pattern: "/api/rbac/logout", methods: methods{http.MethodGet: a.logout, http.MethodPost: a.logout}},
		{pattern: "/api/topology", methods: methods{http.MethodGet: a.getTopology}},
		{pattern: "/api/topology/hosts", methods: methods{http.MethodGet: a.listHosts, http.MethodPost: a.createHost, http.MethodPut: a.updateHost}},
		{pattern: "/api/topology/hosts/{hostID}", methods: methods{http.MethodGet: a.getHost, http.MethodPut: a.updateHost, http.MethodDelete: a.deleteHost}},
		{pattern: "/api/topology/groups", methods: methods{http.MethodGet: a.listGroups, http.MethodPost: a.createGroup}},
		{pattern: "/api/topology/groups/{groupID}", methods: methods{http.MethodGet: a.getGroup, http.MethodDelete: a.deleteGroup}},
		{pattern: "/api/topology/services/{groupID}", methods: methods{http.MethodGet: a.listServices, http.MethodPost: a.createService}},
		{pattern: "/api/topology/services/{groupID}/{serviceID}", methods: methods{http.MethodGet: a.getService, http.MethodDelete: a.deleteService}},
		{pattern: "/api/management/{action}/{groupID}/{serviceID}", methods: methods{http.MethodPost: a.manage}},
		{pattern: "/api/audit", methods: methods{http.MethodGet: a.getAudit}},
		{pattern: "/api/rbac/users", methods: methods{http.MethodGet: a.listUsers, http.MethodPost: a.createUser}},
		{pattern: "/api/rbac/users/{name}", methods: methods{http.MethodPut: a.updateUser, http.MethodDelete: a.deleteUser}},
		{pattern: "/api/router/service/{serviceID}/{path...}", relay: a.routeAny}, // nm_remote.go: other hosts through their node manager
	}, a.deploymentRoutes()...)
}

// handler routes /api. On a node manager that is not the Admin Node Manager
// every /api path answers 404 naming the ANM.
func (a *api) handler() http.Handler {
	if !a.n.admin {
		return http.HandlerFunc(a.notAdmin)
	}
	mux, open := http.NewServeMux(), http.NewServeMux()
	for _, rt := range a.routes() {
		var h http.Handler = rt.relay
		if rt.relay == nil {
			h = rt.methods.with(a.log)
		}
		if rt.open {
			open.Handle(rt.pattern, h)
		} else {
			mux.Handle(rt.pattern, h)
		}
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, &apiError{Code: http.StatusNotFound, Msg: fmt.Sprintf("no management API resource %s (docs/management-api.md lists them)", r.URL.Path)})
	})
	open.Handle("/", a.auth.middleware(a.authorize(a.pushAfterChange(mux))))
	return open
}

func (a *api) notAdmin(w http.ResponseWriter, r *http.Request) {
	msg := fmt.Sprintf("this is the node manager %s of host %s, not the Admin Node Manager; the management API is not served here", a.n.conf.NodeManagerID, a.n.conf.HostID)
	if t, err := a.n.store.Load(); err == nil {
		if anm, err := t.AdminNodeManager(); err == nil {
			where := anm.HostID
			if h, err := t.Host(anm.HostID); err == nil {
				where = fmt.Sprintf("%s (%s)", h.Name, h.ID)
			}
			msg = fmt.Sprintf("this is the node manager %s of host %s, not the Admin Node Manager; the management API is served by %s on host %s, port %d", a.n.conf.NodeManagerID, a.n.conf.HostID, anm.ID, where, anm.ManagementPort)
		}
	}
	a.fail(w, r, &apiError{Code: http.StatusNotFound, Msg: msg})
}

func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) { writeError(w, r, a.log, err) }

// methods maps HTTP methods to handlers of one path; another method is
// answered 405 with Allow.
type methods map[string]http.HandlerFunc

func (m methods) with(log *slog.Logger) http.Handler {
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
		writeError(w, r, log, &apiError{Code: http.StatusMethodNotAllowed, Msg: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allowed)})
	})
}

// apiError is an error with the status and the client-safe message the API
// answers; Err is the cause, logged.
type apiError struct {
	Code int
	Msg  string
	Err  error
}

func (e *apiError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *apiError) Unwrap() error { return e.Err }

// classify is the one place that turns an error into a status and the
// message the client sees. Messages of the topology and domain errors name
// what was asked for and are safe to show to an administrator; anything
// unclassified is a 500 whose cause only the log sees.
func classify(err error) (int, string) {
	var ae *apiError
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

type errorBody struct {
	Errors []errorItem `json:"errors"`
}

type errorItem struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeError answers err in the {"errors":[{"code","message"}]} shape and
// logs it with its cause.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code, msg := classify(err)
	level := slog.LevelInfo
	if code >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "management API error", "method", r.Method, "path", r.URL.Path, "remote", remoteIP(r), "user", userOf(r.Context()), "status", code, "err", err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Gatehouse", charset="UTF-8"`)
	}
	writeJSON(w, code, errorBody{Errors: []errorItem{{Code: code, Message: msg}}})
}

// envelope is every successful answer. Changes carry the topology version
// they wrote in Version (and in the ETag header).
type envelope struct {
	Result  any   `json:"result"`
	Version int64 `json:"version,omitempty"`
}

func writeResult(w http.ResponseWriter, code int, v any) { writeJSON(w, code, envelope{Result: v}) }

// writeChange answers a change that wrote topology version.
func writeChange(w http.ResponseWriter, code int, v any, version int64) {
	w.Header().Set("ETag", etag(version))
	writeJSON(w, code, envelope{Result: v, Version: version})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
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

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// expectedVersion is the topology version a change is based on: the
// If-Match header ("5", 5 or *) or the version query parameter. 0 means
// none was sent (or *): the change applies to the current version.
func expectedVersion(r *http.Request) (int64, error) {
	parse := func(what, s string) (int64, error) {
		s = strings.TrimSpace(s)
		if s == "*" && what == "If-Match" {
			return 0, nil
		}
		u := strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
		v, err := strconv.ParseInt(u, 10, 64)
		if err != nil || v < 1 {
			return 0, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s %q: want the topology version, a positive integer (e.g. %s: \"5\")", what, s, what)}
		}
		return v, nil
	}
	var fromHeader, fromQuery int64
	var err error
	if hv := r.Header.Values("If-Match"); len(hv) > 0 {
		if len(hv) > 1 || strings.Contains(hv[0], ",") {
			return 0, &apiError{Code: http.StatusBadRequest, Msg: "If-Match: want one topology version"}
		}
		if fromHeader, err = parse("If-Match", hv[0]); err != nil {
			return 0, err
		}
	}
	if q := r.URL.Query(); q.Has("version") {
		if fromQuery, err = parse("version", q.Get("version")); err != nil {
			return 0, err
		}
	}
	if fromHeader != 0 && fromQuery != 0 && fromHeader != fromQuery {
		return 0, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("If-Match says version %d and the version parameter %d; send one", fromHeader, fromQuery)}
	}
	return max(fromHeader, fromQuery), nil
}

// decodeJSON reads one JSON object of at most maxBodyBytes from body into
// v, refusing unknown fields (accepted lists the fields for the message)
// and anything after the object. Its errors are *apiError with 400, 413 or
// 415.
func decodeJSON(body io.Reader, v any, accepted string) error {
	dec := json.NewDecoder(io.LimitReader(body, maxBodyBytes+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err, dec, accepted)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		if err == nil {
			return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("unexpected data after the JSON object at offset %d; send one object", dec.InputOffset()-int64(len(extra)))}
		}
		return bodyError(err, dec, accepted)
	}
	if dec.InputOffset() > maxBodyBytes {
		return &apiError{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes", maxBodyBytes)}
	}
	return nil
}

func bodyError(err error, dec *json.Decoder, accepted string) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || dec.InputOffset() > maxBodyBytes:
		return &apiError{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes", maxBodyBytes), Err: err}
	case errors.Is(err, io.EOF):
		return &apiError{Code: http.StatusBadRequest, Msg: "empty request body; want a JSON object with " + accepted, Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("malformed JSON: the body ends in the middle of a value (offset %d)", dec.InputOffset()), Err: err}
	case errors.As(err, &syn):
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("malformed JSON at offset %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: ")), Err: err}
	case errors.As(err, &typ):
		what := "the body"
		if typ.Field != "" {
			what = fmt.Sprintf("field %q", typ.Field)
		}
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s at offset %d: got a JSON %s, want %s", what, typ.Offset, typ.Value, jsonKind(typ.Type.Kind().String())), Err: err}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("unknown field %s at offset %d; accepted: %s", strings.TrimPrefix(err.Error(), "json: unknown field "), dec.InputOffset(), accepted), Err: err}
	}
	return &apiError{Code: http.StatusBadRequest, Msg: "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: "), Err: err}
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

// readBody checks the content type and limits the body of r, then decodes it.
func readBody(w http.ResponseWriter, r *http.Request, v any, accepted string) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &apiError{Code: http.StatusUnsupportedMediaType, Msg: fmt.Sprintf("Content-Type %q: want application/json", ct)}
		}
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxBodyBytes), v, accepted); err != nil {
		return err
	}
	// Bodies that know their rules are checked here, once for every handler.
	if vv, ok := v.(interface{ validate() error }); ok {
		return vv.validate()
	}
	return nil
}

type ctxKey int

const userKey ctxKey = 0

func userOf(ctx context.Context) string {
	u, _ := ctx.Value(userKey).(string)
	return u
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// actor is who makes a change through the API.
func actor(r *http.Request) topology.Actor {
	return topology.Actor{User: userOf(r.Context()), Via: "api", Remote: remoteIP(r)}
}
