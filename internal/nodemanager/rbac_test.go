package nodemanager

import (
	"crypto/x509"
	"fmt"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
)

// rbacArea is one API area of docs/rbac.md and a representative call. A
// call that is allowed may still fail for its own reasons (an unknown id,
// a body the handler refuses, a path that does not exist yet): what
// matters is 403 or not.
type rbacArea struct {
	name, method, path, body string
}

var rbacAreas = []rbacArea{
	{"topology read", "GET", "/api/topology", ""},
	{"topology change", "POST", "/api/topology/groups", `{}`}, // 400: no name
	{"instance status", "POST", "/api/management/status/group-9/instance-9", ""},
	{"instance start/stop", "POST", "/api/management/stop/group-9/instance-9", ""},
	{"router read", "GET", "/api/router/service/instance-9/healthcheck", ""},
	{"router change", "POST", "/api/router/service/instance-9/trace", `{}`},
	{"audit read", "GET", "/api/audit", ""},
	{"users read", "GET", "/api/rbac/users", ""},
	{"users change", "DELETE", "/api/rbac/users/nobody", ""},
	{"deployment read", "GET", "/api/deployment/domain/deployments", ""},
	{"deployment change", "POST", "/api/deployment/group/configuration/file/group-9", ""},
	{"KPS read", "GET", "/api/kps/collections", ""},
	{"KPS change", "POST", "/api/kps/collections", `{}`},
	{"applications read", "GET", "/api/applications/group-9", ""},
	{"applications change", "POST", "/api/applications/group-9", `{}`},
}

// rbacMatrix is the table of docs/rbac.md, written out independently of
// the ACL: for each role, the areas it may use (in rbacAreas order).
var rbacMatrix = map[string]string{
	//                   topo    inst    router  audit users   deploy  KPS   apps
	//                   r  w    st ctl  r  w    r     r  w    r  w    r  w  r  w
	rbac.RoleAdmin:           "1 1  1 1  1 1  1  1 1  1 1  1 1  1 1",
	rbac.RoleOperator:        "1 0  1 1  1 0  1  1 0  1 0  1 0  1 0",
	rbac.RoleDeployer:        "1 0  0 0  0 0  0  0 0  1 1  0 0  0 0",
	rbac.RoleKPSAdmin:        "1 0  0 0  0 0  0  0 0  0 0  1 1  1 1",
	rbac.RolePolicyDeveloper: "1 0  0 0  1 0  0  0 0  0 0  0 0  0 0",
}

// TestRBACMatrix runs every role against every API area on a real Admin
// Node Manager (nodemanager.New and Start in a temporary install dir, its
// HTTPS listener, the domain CA trusted): a user per role is created
// through the users API, then each area's call must answer 403 exactly
// when the matrix says no, and a 403 must name the missing permission.
// basicCaller sends requests with HTTP Basic credentials (and a JSON
// content type for a body) to n's listener, trusting the domain CA.
func basicCaller(t *testing.T, n *NodeManager, ca *pki.CA) func(user, pass, method, path, body string) apitest.Answer {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := apitest.TLSClient(roots)
	base := "https://" + n.Addr()
	return func(user, pass, method, path, body string) apitest.Answer {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pass)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return apitest.Do(t, c, req)
	}
}

func TestRBACMatrix(t *testing.T) {
	n, ca := startNM(t)
	call := basicCaller(t, n, ca)
	for role := range rbacMatrix {
		name := "u-" + strings.ReplaceAll(strings.ToLower(role), " ", "-")
		body := fmt.Sprintf(`{"name":%q,"password":"pw-%s-123","roles":[%q]}`, name, name, role)
		if a := call(apitest.User, apitest.Pass, "POST", "/api/rbac/users", body); a.Code != http.StatusCreated {
			t.Fatalf("creating %s: got status %d, want 201: %s", name, a.Code, a.Body)
		}
	}
	for role, row := range rbacMatrix {
		allowed := strings.Fields(row)
		if len(allowed) != len(rbacAreas) {
			t.Fatalf("matrix row %q: got %d columns, want %d", role, len(allowed), len(rbacAreas))
		}
		name := "u-" + strings.ReplaceAll(strings.ToLower(role), " ", "-")
		t.Run(role, func(t *testing.T) {
			for i, ar := range rbacAreas {
				a := call(name, "pw-"+name+"-123", ar.method, ar.path, ar.body)
				switch {
				case allowed[i] == "1" && (a.Code == http.StatusForbidden || a.Code == http.StatusUnauthorized || a.Code >= 500 && a.Code != http.StatusBadGateway):
					t.Errorf("%s (%s %s): got status %d, want allowed: %s", ar.name, ar.method, ar.path, a.Code, a.Body)
				case allowed[i] == "0":
					a.WantError(t, http.StatusForbidden, "may not "+ar.method, "missing permission")
				}
			}
		})
	}
}
