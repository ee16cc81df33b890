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
	apitest.MatchDocument(t, doc, served, func(path string) bool { return strings.HasPrefix(path, "/nm/") }, "Server.Routes")
}
