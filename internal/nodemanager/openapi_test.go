package nodemanager

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	apispec "github.com/gatehouse-gw/gatehouse/api"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// loadOpenAPI loads api/openapi.yaml with kin-openapi and validates it.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(apispec.YAML)
	if err != nil {
		t.Fatalf("loading api/openapi.yaml: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

func TestOpenAPIValid(t *testing.T) { loadOpenAPI(t) }

// routerMethods are the methods the document lists for a relay route
// (which answers every method).
var routerMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// openAPIPath turns a mux pattern into the document's path template:
// {path...} is {path}.
func openAPIPath(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

// TestOpenAPIEveryRouteDocumented compares the route tables of the
// management API (api.routes) and of the node-to-node API
// (server.nmRouteTable) with the document's paths and methods, both ways.
func TestOpenAPIEveryRouteDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newAPIEnv(t)
	served := map[string]bool{}
	for _, rt := range append(e.n.srv.api.routes(), e.n.srv.nmRouteTable()...) {
		ms := routerMethods
		if rt.relay == nil {
			ms = nil
			for m := range rt.methods {
				ms = append(ms, m)
			}
		}
		for _, m := range ms {
			served[m+" "+openAPIPath(rt.pattern)] = true
		}
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			documented[m+" "+path] = true
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("%s is served but not in api/openapi.yaml", op)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("%s is in api/openapi.yaml but not in a route table (api.routes, server.nmRouteTable)", op)
		}
	}
}

// TestOpenAPIEveryRouteAnswered calls every operation the document lists
// under /api on a real Admin Node Manager (nodemanager.New in a temporary
// install dir, valid credentials, minimal parameters).
func TestOpenAPIEveryRouteAnswered(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newAPIEnv(t)
	// What the ids in the paths name: a second host, a group with an instance.
	e.do("POST", "/api/topology/hosts", `{"name":"openapi-target"}`).mustCode(t, 201)
	e.do("POST", "/api/topology/groups", `{"name":"OpenAPI Group"}`).mustCode(t, 201)
	e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"openapi-1","trafficPort":%d,"managementPort":%d}`, freePort(t), freePort(t))).mustCode(t, 201)
	callEveryOperation(t, doc, "/api/", e.url, http.DefaultClient,
		map[string]string{"hostID": "host-2", "groupID": "group-2", "serviceID": "instance-1", "action": "status", "path": "healthcheck", "name": "openapi-user", "archiveID": "1", "jobID": "1"},
		openAPIBodies(t), "no management API resource")
}

// TestOpenAPIEveryNodeRouteAnswered does the same for /nm on a real Admin
// Node Manager's TLS listener, presenting its own node manager certificate
// (the one the ANM-only paths accept).
func TestOpenAPIEveryNodeRouteAnswered(t *testing.T) {
	doc := loadOpenAPI(t)
	n, ca := startNM(t)
	cert, err := pki.LoadKeyPair(pki.NodeManagerCertFile(n.opts.Home), pki.NodeManagerKeyFile(n.opts.Home))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	bodies := map[string]string{
		"nmJoin":                   `{"hostName":"openapi-joiner","csr":"not a CSR"}`,
		"nmPrepareInstance":        `{"groupID":"group-1","instanceID":"instance-9"}`,
		"nmPutInstanceCertificate": `{"certificate":"not a certificate"}`,
		"nmPutTopology":            `{}`,
		"nmPutArchive":             `{"meta":{"group":"group-1","id":1},"archive":""}`,
		"nmInstanceAction":         "",
	}
	callEveryOperation(t, doc, "/nm/", "https://"+n.srv.addr(), tlsClient(roots, cert),
		map[string]string{"instanceID": "instance-9", "action": "status", "path": "healthcheck", "groupID": "group-1", "archiveID": "1"},
		bodies, "no node manager resource")
}

// openAPIBodies is a valid body for each documented /api operation that
// takes one, by operationId; a new operation with a body needs an entry.
func openAPIBodies(t *testing.T) map[string]string {
	return map[string]string{
		"createHost":          `{"name":"openapi-host"}`,
		"login":               fmt.Sprintf(`{"username":%q,"password":%q}`, testUser, testPass),
		"renameHostByBody":    `{"id":"host-2","name":"openapi-host-b"}`,
		"renameHost":          `{"name":"openapi-host-c"}`,
		"createGroup":         `{"name":"OpenAPI Group 2"}`,
		"createUser":          `{"name":"openapi-user","password":"openapi-pass-1","roles":["Deployer"]}`,
		"updateUser":          `{"roles":["Deployer","Policy Developer"]}`,
		"uploadConfiguration": "{}\n",
		"createService":       fmt.Sprintf(`{"name":"openapi-2","trafficPort":%d,"managementPort":%d}`, freePort(t), freePort(t)),
	}
}

// callEveryOperation calls each operation of doc under prefix at base, with
// the test user's credentials, params in the path and bodies by
// operationId, in the order reads, creations, changes, deletions. Each
// answer must have a status the document lists for the operation, must not
// be the mux's "no such resource" (noRoute), and must match the document's
// schema (openapi3filter).
func callEveryOperation(t *testing.T, doc *openapi3.T, prefix, base string, client *http.Client, params, bodies map[string]string, noRoute string) {
	t.Helper()
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		method, path string
		op           *openapi3.Operation
	}
	var calls []call
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		for m, op := range item.Operations() {
			calls = append(calls, call{m, path, op})
		}
	}
	order := []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}
	slices.SortFunc(calls, func(a, b call) int {
		if d := slices.Index(order, a.method) - slices.Index(order, b.method); d != 0 {
			return d
		}
		if a.method == "DELETE" { // services before their groups
			return strings.Compare(b.path, a.path)
		}
		return strings.Compare(a.path, b.path)
	})
	for _, c := range calls {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			path := c.path
			for k, v := range params {
				path = strings.ReplaceAll(path, "{"+k+"}", v)
			}
			body := ""
			if c.op.RequestBody != nil {
				b, ok := bodies[c.op.OperationID]
				if !ok {
					t.Fatalf("no body for operation %q", c.op.OperationID)
				}
				body = b
			}
			req, err := http.NewRequest(c.method, base+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth(testUser, testPass)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("%s %s: %d", c.method, path, resp.StatusCode)
			if resp.StatusCode == 404 && strings.Contains(string(got), noRoute) {
				t.Fatalf("got the mux's 404 for a documented route: %s", got)
			}
			if c.op.Responses.Status(resp.StatusCode) == nil && c.op.Responses.Default() == nil {
				t.Fatalf("got status %d, not one the document lists (%v): %s", resp.StatusCode, slices.Sorted(maps.Keys(c.op.Responses.Map())), got)
			}
			if c.method == "HEAD" {
				return
			}
			vreq, _ := http.NewRequest(c.method, base+path, strings.NewReader(body))
			route, pathParams, err := router.FindRoute(vreq)
			if err != nil {
				t.Fatalf("finding the route in the document: %v", err)
			}
			in := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: pathParams, Route: route},
				Status:                 resp.StatusCode,
				Header:                 resp.Header,
				Options:                &openapi3filter.Options{IncludeResponseStatus: true},
			}
			in.SetBodyBytes(got)
			if err := openapi3filter.ValidateResponse(t.Context(), in); err != nil {
				t.Errorf("the answer (%d) does not match the document: %v\n%s", resp.StatusCode, err, got)
			}
		})
	}
}

// TestOpenAPIServed fetches the document from the ANM without credentials,
// as YAML (the embedded file) and JSON (the same document).
func TestOpenAPIServed(t *testing.T) {
	e := newAPIEnv(t)
	for _, c := range []struct{ path, ctype string }{{"/api/openapi.yaml", "application/yaml"}, {"/api/openapi.json", "application/json"}} {
		resp, err := http.Get(e.url + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) {
			t.Fatalf("GET %s: got %d %q, want 200 %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype)
		}
		if c.ctype == "application/yaml" && !bytes.Equal(b, apispec.YAML) {
			t.Errorf("GET %s: got a document other than api/openapi.yaml", c.path)
		}
		if c.ctype == "application/json" {
			doc, err := openapi3.NewLoader().LoadFromData(b)
			if err != nil {
				t.Fatalf("GET %s: %v", c.path, err)
			}
			if err := doc.Validate(t.Context()); err != nil {
				t.Errorf("GET %s: not valid: %v", c.path, err)
			}
			gotJSON, _ := json.Marshal(doc)
			wantJSON, _ := json.Marshal(loadOpenAPI(t))
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("GET %s: not the same document as api/openapi.yaml", c.path)
			}
		}
	}
	// The rest of /api still wants credentials.
	resp, err := http.Get(e.url + "/api/topology")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("GET /api/topology without credentials: got %d, want 401", resp.StatusCode)
	}
}

func (a answer) mustCode(t *testing.T, code int) {
	t.Helper()
	if a.Code != code {
		t.Fatalf("got status %d, want %d: %s", a.Code, code, a.Body)
	}
}
