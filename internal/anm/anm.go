// Package anm is the management API of the Admin Node Manager: every path
// under /api (docs/management-api.md). It owns authentication (HTTP Basic
// and sessions, the failed-login slow-down), authorization by role
// (conf/acl.json), the audit entries of what it changes, and its areas:
// the API's description (OpenAPI), sessions, topology, management of
// instances, the router, the audit log, admin users, deployment and
// rollouts, client applications and their API keys, and the groups' key
// property stores (opened as each group's configuration says and kept
// until Close, kpsstores.go).
//
// A new API area is one new file with a method that returns its area (its
// routes, and for each operation the OpenAPI operationId, the RBAC
// permissions that allow it and whether the audit log records it) and one
// line in (*API).areas. area_test.go holds every operation to
// api/openapi.yaml, to rbac.DefaultACL and to a declared audit behaviour.
//
// It may use internal/nodeapi (to reach the other hosts and this host's
// router), internal/supervisor's types, internal/apihttp and the domain's
// packages; nothing imports it but the node manager process
// (internal/nodemanager), which hands it what it needs in a Config.
package anm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Config is what the management API needs of the node manager.
type Config struct {
	Home  home.Home
	Conf  domain.NodeManagerConf // this node manager
	Admin bool                   // it is the Admin Node Manager: otherwise every /api path is 404
	Store *topology.Store
	Audit audit.Recorder // this host's audit log
	// Logger is the node manager's; "subsystem" is "api".
	Logger    *slog.Logger
	Instances nodeapi.Instances // this host's supervisor
	Net       *nodeapi.Net      // the other hosts, through their node managers
	Router    *nodeapi.Router   // the router of this host's instances
	// SwitchPort moves this node manager's listener to another port
	// (PUT /api/topology/hosts/{hostID} with "nodeManagerPort" for the
	// ANM's own host); nil: refused.
	SwitchPort func(port int) (nodeapi.PortSwitch, error)
	// Version is the Gatehouse version (written into backups).
	Version string
}

// API is the management API under /api, served by the Admin Node Manager.
// Every request is authenticated (auth.go's HTTP Basic against
// conf/adminUsers.json, or a session) and authorized (users.go) before it
// is routed. It is safe for concurrent use.
type API struct {
	h      home.Home
	conf   domain.NodeManagerConf
	admin  bool
	store  *topology.Store
	audit  audit.Recorder
	log    *slog.Logger
	sup    nodeapi.Instances
	net    *nodeapi.Net
	router *nodeapi.Router
	auth   *authenticator

	switchPort func(port int) (nodeapi.PortSwitch, error)
	acl        *rbac.ACL // users.go; set by LoadAccess before serving

	archives *deploy.Store // deployment.go: the domain's deployment archives
	// kpsStores are the groups' key property stores opened by the
	// applications and kps areas (kpsstores.go).
	kpsStores *kpsStores
	jobs      *jobs         // rollout.go: rollouts run by this ANM
	uploads   chan struct{} // deployment.go: a token per upload being read and validated
	// rolloutLease is the out-of-service lease of a rollout step (0:
	// rolloutLease; tests shorten it).
	rolloutLease time.Duration
	version      string
	backups      chan struct{} // backup.go: one backup written at a time
}

// New makes the management API of c. Call LoadAccess before serving.
func New(c Config) *API {
	a := &API{h: c.Home, conf: c.Conf, admin: c.Admin, store: c.Store, audit: c.Audit, log: c.Logger,
		sup: c.Instances, net: c.Net, router: c.Router, auth: newAuthenticator(c.Home, c.Logger), switchPort: c.SwitchPort,
		archives: deploy.NewStore(c.Home), kpsStores: newKPSStores(c.Home, c.Logger), jobs: newJobs(), uploads: make(chan struct{}, maxUploadsAtOnce),
		version: c.Version, backups: make(chan struct{}, 1)}
	a.jobs.journal = newJournal(c.Home, c.Logger)
	a.rolloutLease, _ = c.Conf.Rollout.Lease() // checked by LoadJobs, before serving
	return a
}

// Authenticate lets through requests of an admin user (HTTP Basic or a
// session) with the user in the context (apihttp.UserOf); others get 401.
// The node-to-node API uses it for POST /nm/join.
func (a *API) Authenticate(next http.Handler) http.Handler { return a.auth.middleware(next) }

// Wait waits, within ctx, for the rollouts running in the background: the
// node manager stops only after them.
func (a *API) Wait(ctx context.Context) error { return a.jobs.wait(ctx) }

// routes is the management API: every path under /api the handler serves,
// area by area.
func (a *API) routes() []route {
	var out []route
	for _, ar := range a.areas() {
		out = append(out, ar.routes...)
	}
	return out
}

// Handler routes /api. On a node manager that is not the Admin Node
// Manager every /api path answers 404 naming the ANM.
func (a *API) Handler() http.Handler {
	if !a.admin {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.fail(w, r, nodeapi.NotAdmin(a.store, a.conf))
		})
	}
	mux, open := http.NewServeMux(), http.NewServeMux()
	for _, rt := range a.routes() {
		if rt.open {
			open.Handle(rt.pattern, rt.handler(a.log))
		} else {
			mux.Handle(rt.pattern, rt.handler(a.log))
		}
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("no management API resource %s (docs/management-api.md lists them)", r.URL.Path)})
	})
	open.Handle("/", a.auth.middleware(a.authorize(a.pushAfterChange(mux))))
	return open
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	apihttp.WriteError(w, r, a.log, err)
}

// expectedVersion is the topology version a change is based on: the
// If-Match header ("5", 5 or *) or the version query parameter. 0 means
// none was sent (or *): the change applies to the current version.
func expectedVersion(r *http.Request) (int64, error) { return requestVersion(r, "topology version") }

// requestVersion is the version of what (the topology, an application, a
// row) a change is based on: If-Match or the version query parameter, as
// expectedVersion; 0 when none was sent.
func requestVersion(r *http.Request, of string) (int64, error) {
	parse := func(what, s string) (int64, error) {
		s = strings.TrimSpace(s)
		if s == "*" && what == "If-Match" {
			return 0, nil
		}
		u := strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
		v, err := strconv.ParseInt(u, 10, 64)
		if err != nil || v < 1 {
			return 0, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s %q: want the %s, a positive integer (e.g. %s: \"5\")", what, s, of, what)}
		}
		return v, nil
	}
	var fromHeader, fromQuery int64
	var err error
	if hv := r.Header.Values("If-Match"); len(hv) > 0 {
		if len(hv) > 1 || strings.Contains(hv[0], ",") {
			return 0, &apihttp.Error{Code: http.StatusBadRequest, Msg: "If-Match: want one " + of}
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
		return 0, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("If-Match says version %d and the version parameter %d; send one", fromHeader, fromQuery)}
	}
	return max(fromHeader, fromQuery), nil
}

// actor is who makes a change through the API.
func actor(r *http.Request) topology.Actor {
	return topology.Actor{User: apihttp.UserOf(r.Context()), Via: "api", Remote: apihttp.RemoteIP(r)}
}
