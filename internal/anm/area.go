package anm

import (
	"log/slog"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
)

// An area is one part of the management API — the topology, deployment,
// the users, … — as one file declares it: its routes and, for every
// operation, what api/openapi.yaml, the ACL and the audit log say of it.
// Its name is the OpenAPI tag of its operations (the document's section).
// area_test.go fails when an operation lacks its OpenAPI entry, is not
// allowed by exactly its declared permissions in rbac.DefaultACL, or
// changes something without a declared audit behaviour.
type area struct {
	name   string
	routes []route
}

// areas is every area of the management API. A new area is a file with
// its area method and a line here.
func (a *API) areas() []area {
	return []area{
		a.openAPIArea(),      // openapi.go
		a.sessionArea(),      // session.go
		a.topologyArea(),     // topology.go
		a.managementArea(),   // management.go
		a.routerArea(),       // router.go
		a.auditArea(),        // audit.go
		a.usersArea(),        // users.go
		a.deploymentArea(),   // deployment.go
		a.applicationsArea(), // applications.go
		a.kpsArea(),          // kps.go
		a.backupArea(),       // backup.go
	}
}

// route is one mux pattern of an area and its operations by method; a
// relay route (the router) sends every method to relay, and ops lists the
// methods the document names. Open routes need no credentials.
type route struct {
	pattern string
	ops     map[string]op
	relay   http.HandlerFunc
	open    bool
}

// op is one operation: its handler and what it is to the rest of the
// system.
type op struct {
	h http.HandlerFunc
	// id is its operationId in api/openapi.yaml ("" for the router, whose
	// operations share one description).
	id string
	// perms are the permissions of rbac.DefaultACL, besides "all", that
	// allow it (none: only an administrator).
	perms []string
	audit auditing
}

// auditing is what the audit log records of an operation: by says how it
// is recorded, or not why it is not. A change (POST, PUT, DELETE) must say
// one of them.
type auditing struct{ by, not string }

func recorded(by string) auditing     { return auditing{by: by} }
func notRecorded(why string) auditing { return auditing{not: why} }

// readOnly is the audit behaviour of a read.
var readOnly = notRecorded("a read changes nothing")

// read is a GET operation.
func read(h http.HandlerFunc, id string, perms ...string) op {
	return op{h: h, id: id, perms: perms, audit: readOnly}
}

// change is an operation that changes something, with its audit behaviour.
func change(h http.HandlerFunc, id string, au auditing, perms ...string) op {
	return op{h: h, id: id, perms: perms, audit: au}
}

// handler serves the route: its relay, or its methods (405 with Allow for
// the others).
func (rt route) handler(log *slog.Logger) http.Handler {
	if rt.relay != nil {
		return rt.relay
	}
	m := apihttp.Methods{}
	for method, o := range rt.ops {
		m[method] = o.h
	}
	return m.With(log)
}
