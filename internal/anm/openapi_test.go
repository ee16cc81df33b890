package anm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	apispec "github.com/gatehouse-gw/gatehouse/api"
	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/getkin/kin-openapi/openapi3"
)

func TestOpenAPIValid(t *testing.T) { apitest.LoadOpenAPI(t) }

// TestOpenAPIEveryRouteDocumented compares the routes of the management
// API (every area's) with the document's paths and methods outside /nm
// (the node-to-node API's, checked in internal/nodeapi), both ways.
func TestOpenAPIEveryRouteDocumented(t *testing.T) {
	doc := apitest.LoadOpenAPI(t)
	e := newAPIEnv(t)
	served := map[string]bool{}
	for _, rt := range e.a.routes() {
		ms := apitest.RouterMethods
		if rt.relay == nil {
			ms = nil
			for m := range rt.ops {
				ms = append(ms, m)
			}
		}
		for _, m := range ms {
			served[m+" "+apitest.OpenAPIPath(rt.pattern)] = true
		}
	}
	apitest.MatchDocument(t, doc, served, func(path string) bool { return !strings.HasPrefix(path, "/nm/") }, "a route of an area (API.areas)")
}

// TestOpenAPIEveryRouteAnswered calls every operation the document lists
// under /api on the management API of an Admin Node Manager (in a temporary
// install dir, valid credentials, minimal parameters).
func TestOpenAPIEveryRouteAnswered(t *testing.T) {
	doc := apitest.LoadOpenAPI(t)
	e := newAPIEnv(t)
	// What the ids in the paths name: a second host, a group with an instance.
	e.do("POST", "/api/topology/hosts", `{"name":"openapi-target"}`).MustCode(t, 201)
	e.do("POST", "/api/topology/groups", `{"name":"OpenAPI Group"}`).MustCode(t, 201)
	e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"openapi-1","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t))).MustCode(t, 201)
	apitest.CallEveryOperation(t, doc, "/api/", e.url, http.DefaultClient,
		map[string]string{"hostID": "host-2", "groupID": "group-2", "serviceID": "instance-1", "action": "status", "path": "healthcheck", "name": "openapi-user", "archiveID": "1", "jobID": "1",
			"appID": "openapi-app", "keyID": "gk_aaaaaaaaaaaa", "alias": "openapi", "key": "k1",
			"secretID": "openapi-secret", "familyID": "openapi-family", "username": "openapi-oauth-user"},
		openAPIBodies(t), "no management API resource")
}

// openAPIBodies is a valid body for each documented /api operation that
// takes one, by operationId; a new operation with a body needs an entry.
func openAPIBodies(t *testing.T) map[string]string {
	return map[string]string{
		"createHost":           `{"name":"openapi-host"}`,
		"login":                fmt.Sprintf(`{"username":%q,"password":%q}`, apitest.User, apitest.Pass),
		"renameHostByBody":     `{"id":"host-2","name":"openapi-host-b"}`,
		"renameHost":           `{"name":"openapi-host-c"}`,
		"createGroup":          `{"name":"OpenAPI Group 2"}`,
		"createUser":           `{"name":"openapi-user","password":"openapi-pass-1","roles":["Deployer"]}`,
		"updateUser":           `{"roles":["Deployer","Policy Developer"]}`,
		"uploadConfiguration":  "{}\n",
		"setArchiveProperties": `{"comment":"openapi"}`,
		"createApplication":    `{"name":"openapi-app"}`,
		"updateApplication":    `{"description":"openapi"}`,
		"createKey":            `{"expiresIn":"720h"}`,
		"updateKey":            `{"enabled":false}`,
		"rotateKey":            `{"grace":"1h"}`,
		"createClientSecret":   `{"expiresIn":"720h"}`,
		"createOAuthUser":      `{"username":"openapi-oauth-user","password":"openapi-pass-1"}`,
		"updateOAuthUser":      `{"enabled":false}`,
		"defineKPSTable":       `{"collection":"OpenAPI","name":"OpenAPI","alias":"openapi","properties":[{"name":"k","type":"string"}],"primaryKey":"k"}`,
		"insertKPSRow":         `{"values":{"k":"k1"}}`,
		"updateKPSRow":         `{"values":{"k":"k1"}}`,
		"createService":        fmt.Sprintf(`{"name":"openapi-2","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t)),
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
			wantJSON, _ := json.Marshal(apitest.LoadOpenAPI(t))
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
