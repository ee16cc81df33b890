package anm

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
)

// paramSamples are the values a path parameter is tried with when the
// permissions of an operation depend on it; other parameters are "x".
var paramSamples = map[string][]string{"action": {"start", "stop", "status"}}

// samplePaths are the request paths of pattern with every combination of
// paramSamples.
func samplePaths(pattern string) []string {
	paths := []string{""}
	for _, seg := range strings.Split(strings.TrimPrefix(pattern, "/"), "/") {
		vals := []string{seg}
		if strings.HasPrefix(seg, "{") {
			name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}"), "...")
			vals = paramSamples[name]
			if vals == nil {
				vals = []string{"x"}
			}
		}
		var next []string
		for _, p := range paths {
			for _, v := range vals {
				next = append(next, p+"/"+v)
			}
		}
		paths = next
	}
	return paths
}

// changes are the methods that change something: each of their
// operations must say what the audit log records of it.
var changes = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// TestAreas holds every operation of every area to what the rest of the
// system says of it:
//   - OpenAPI: api/openapi.yaml has the method and path, with the declared
//     operationId, tagged with the area's name (its section); the
//     document's security is empty exactly for open routes;
//   - RBAC: the permissions of rbac.DefaultACL (besides "all") that allow
//     the operation are exactly the declared ones, and there is one
//     unless the route is open;
//   - audit: it declares what the audit log records of it, and an
//     operation that changes something (POST, PUT, PATCH, DELETE) is not
//     declared a read.
func TestAreas(t *testing.T) {
	doc := apitest.LoadOpenAPI(t)
	e := newAPIEnv(t)
	acl := rbac.DefaultACL()
	tags := map[string]bool{}
	for _, tg := range doc.Tags {
		tags[tg.Name] = true
	}
	seen := map[string]string{}
	for _, ar := range e.a.areas() {
		if !tags[ar.name] {
			t.Errorf("area %q: no tag %q in api/openapi.yaml (the area's section)", ar.name, ar.name)
		}
		if len(ar.routes) == 0 {
			t.Errorf("area %q has no route", ar.name)
		}
		for _, rt := range ar.routes {
			if prev, ok := seen[rt.pattern]; ok {
				t.Errorf("%s: in areas %q and %q", rt.pattern, prev, ar.name)
			}
			seen[rt.pattern] = ar.name
			if len(rt.ops) == 0 {
				t.Errorf("%s (area %q): no operation", rt.pattern, ar.name)
			}
			item := doc.Paths.Find(apitest.OpenAPIPath(rt.pattern))
			for method, o := range rt.ops {
				name := method + " " + rt.pattern
				// OpenAPI
				if item == nil || item.GetOperation(method) == nil {
					t.Errorf("%s (area %q): not in api/openapi.yaml", name, ar.name)
				} else {
					d := item.GetOperation(method)
					if d.OperationID != o.id {
						t.Errorf("%s: operationId %q, the document says %q", name, o.id, d.OperationID)
					}
					if !slices.Contains(d.Tags, ar.name) {
						t.Errorf("%s: the document tags it %v, not with its area %q", name, d.Tags, ar.name)
					}
					open := d.Security != nil && len(*d.Security) == 0
					if open != rt.open {
						t.Errorf("%s: open %t, but the document's security says open %t", name, rt.open, open)
					}
				}
				// RBAC
				granted := map[string]bool{}
				for _, p := range samplePaths(rt.pattern) {
					perms, _ := acl.Granting(method, p)
					for _, perm := range perms {
						if perm != "all" {
							granted[perm] = true
						}
					}
				}
				got := slices.Sorted(func(yield func(string) bool) {
					for p := range granted {
						if !yield(p) {
							return
						}
					}
				})
				if !rt.open && len(o.perms) == 0 {
					t.Errorf("%s: no permission but \"all\" allows it; give it an RBAC area in rbac.DefaultACL (and docs/rbac.md)", name)
				}
				want := slices.Sorted(slices.Values(o.perms))
				if !slices.Equal(got, want) {
					t.Errorf("%s: declared permissions %v, rbac.DefaultACL grants it by %v", name, want, got)
				}
				// Audit
				switch {
				case o.audit == (auditing{}) || o.audit.by != "" && o.audit.not != "":
					t.Errorf("%s: say what the audit log records of it: recorded(how) or notRecorded(why)", name)
				case slices.Contains(changes, method) && o.audit == readOnly:
					t.Errorf("%s changes something: it is not a read for the audit log", name)
				}
			}
		}
	}
}

var paramRE = regexp.MustCompile(`\{[^}/]+\}`)

// TestSamplePaths checks the helper.
func TestSamplePaths(t *testing.T) {
	got := samplePaths("/api/management/{action}/{groupID}/{serviceID}")
	want := []string{"/api/management/start/x/x", "/api/management/stop/x/x", "/api/management/status/x/x"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := samplePaths("/api/router/service/{serviceID}/{path...}"); len(got) != 1 || paramRE.MatchString(got[0]) {
		t.Errorf("got %v, want one path without parameters", got)
	}
}
