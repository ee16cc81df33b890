// Package apitest holds the helpers of the tests of the node manager's
// HTTP APIs (internal/anm, internal/nodeapi, internal/nodemanager): a
// domain whose admin password is cheap to check, requests and their
// decoded answers, TLS clients, and api/openapi.yaml with the check that
// calls every operation it lists. Only tests import it.
package apitest

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	apispec "github.com/gatehouse-gw/gatehouse/api"
	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The admin user of Domain.
const (
	User = "admin"
	Pass = "changeme-Secret1"
)

// TLSClient trusts roots and presents certs.
func TLSClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
}

// Domain creates a domain (the Admin Node Manager listening on
// 127.0.0.1 and a free port) whose admin user's hash is cheap to check.
func Domain(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port := gwtest.FreePort(t)
	if _, err := domain.Init(t.Context(), h, domain.InitOptions{DomainName: "D", HostName: "gw1", Username: User, Password: secret.FromString(Pass), Port: port, Actor: topology.Actor{User: "t", Via: "test"}}); err != nil {
		t.Fatal(err)
	}
	SetNMConf(t, h, func(c *domain.NodeManagerConf) { c.Address = "127.0.0.1" })
	// The same user with 1000 iterations instead of 600000 (the count is in
	// the hash).
	salt := []byte("0123456789abcdef")
	key, _ := pbkdf2.Key(sha256.New, Pass, salt, 1000, 32)
	enc := base64.RawStdEncoding
	users := fmt.Sprintf(`{"users":[{"name":%q,"roles":["API Server Administrator"],"hash":"pbkdf2-sha256$1000$%s$%s"}]}`, User, enc.EncodeToString(salt), enc.EncodeToString(key))
	if err := os.WriteFile(h.AdminUsersFile(), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

func SetNMConf(t *testing.T, h home.Home, fn func(c *domain.NodeManagerConf)) {
	t.Helper()
	c, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		t.Fatal(err)
	}
	fn(&c)
	data := fmt.Sprintf("hostID: %s\nnodeManagerID: %s\nport: %d\naddress: %q\n", c.HostID, c.NodeManagerID, c.Port, c.Address)
	if err := os.WriteFile(h.NodeManagerConf(), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Answer is an API answer, its envelope decoded.
type Answer struct {
	Code    int
	Header  http.Header
	Body    string
	Result  json.RawMessage
	Version int64
	Errors  []apihttp.ErrorItem
}

// Do sends req with c and reads the answer.
func Do(t *testing.T, c *http.Client, req *http.Request) Answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := Answer{Code: resp.StatusCode, Header: resp.Header, Body: string(b)}
	var env struct {
		Result  json.RawMessage     `json:"result"`
		Version int64               `json:"version"`
		Errors  []apihttp.ErrorItem `json:"errors"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v\n%s", req.Method, req.URL, err, b)
		}
	}
	a.Result, a.Version, a.Errors = env.Result, env.Version, env.Errors
	return a
}

// WantError checks an error answer: status, the envelope, and a message
// containing every one of subs.
func (a Answer) WantError(t *testing.T, code int, subs ...string) {
	t.Helper()
	if a.Code != code {
		t.Errorf("got status %d, want %d: %s", a.Code, code, a.Body)
		return
	}
	if len(a.Errors) != 1 || a.Errors[0].Code != code {
		t.Errorf("got errors %+v, want one with code %d: %s", a.Errors, code, a.Body)
		return
	}
	for _, s := range subs {
		if !strings.Contains(a.Errors[0].Message, s) {
			t.Errorf("message %q does not contain %q", a.Errors[0].Message, s)
		}
	}
}

// Decode decodes the result into v.
func (a Answer) Decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.Result, v); err != nil {
		t.Fatalf("result: %v\n%s", err, a.Body)
	}
}

// MustCode stops the test unless the status is code.
func (a Answer) MustCode(t *testing.T, code int) {
	t.Helper()
	if a.Code != code {
		t.Fatalf("got status %d, want %d: %s", a.Code, code, a.Body)
	}
}

// LoadOpenAPI loads api/openapi.yaml with kin-openapi and validates it.
func LoadOpenAPI(t *testing.T) *openapi3.T {
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

// RouterMethods are the methods the document lists for a relay route
// (which answers every method).
var RouterMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// OpenAPIPath turns a mux pattern into the document's path template:
// {path...} is {path}.
func OpenAPIPath(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

// MatchDocument compares the operations a server serves ("METHOD /path",
// paths as OpenAPIPath writes them) with those doc lists under the paths
// that in accepts, both ways; table names where the routes are declared.
func MatchDocument(t *testing.T, doc *openapi3.T, served map[string]bool, in func(path string) bool, table string) {
	t.Helper()
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if !in(path) {
			continue
		}
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
			t.Errorf("%s is in api/openapi.yaml but not in %s", op, table)
		}
	}
}

// CallEveryOperation calls each operation of doc under prefix at base, with
// the test user's credentials, params in the path and bodies by
// operationId, in the order reads, creations, changes, deletions. Each
// answer must have a status the document lists for the operation, must not
// be the mux's "no such resource" (noRoute), and must match the document's
// schema (openapi3filter).
func CallEveryOperation(t *testing.T, doc *openapi3.T, prefix, base string, client *http.Client, params, bodies map[string]string, noRoute string) {
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
			req.SetBasicAuth(User, Pass)
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
