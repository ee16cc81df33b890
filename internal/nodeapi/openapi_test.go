package nodeapi

import (
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
)

// TestOpenAPIEveryRouteDocumented compares the node-to-node API's routes
// (Server.Routes) with the document's paths and methods under /nm, both
// ways.
func TestOpenAPIEveryRouteDocumented(t *testing.T) {
	doc := apitest.LoadOpenAPI(t)
	served := map[string]bool{}
	for _, rt := range (&Server{}).Routes() {
		ms := apitest.RouterMethods
		if rt.Relay == nil {
			ms = nil
			for m := range rt.Methods {
				ms = append(ms, m)
			}
		}
		for _, m := range ms {
			served[m+" "+apitest.OpenAPIPath(rt.Pattern)] = true
		}
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/nm/") {
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
			t.Errorf("%s is in api/openapi.yaml but not in Server.Routes", op)
		}
	}
}
