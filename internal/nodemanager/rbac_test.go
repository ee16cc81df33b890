package nodemanager

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

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
}

// rbacMatrix is the table of docs/rbac.md, written out independently of
// the ACL: for each role, the areas it may use (in rbacAreas order).
var rbacMatrix = map[string]string{
	//                   topo    inst    router  audit users   deploy  KPS
	//                   r  w    st ctl  r  w    r     r  w    r  w    r  w
	rbac.RoleAdmin:           "1 1  1 1  1 1  1  1 1  1 1  1 1",
	rbac.RoleOperator:        "1 0  1 1  1 0  1  1 0  1 0  1 0",
	rbac.RoleDeployer:        "1 0  0 0  0 0  0  0 0  1 1  0 0",
	rbac.RoleKPSAdmin:        "1 0  0 0  0 0  0  0 0  0 0  1 1",
	rbac.RolePolicyDeveloper: "1 0  0 0  1 0  0  0 0  0 0  0 0",
}

// TestRBACMatrix runs every role against every API area on a real Admin
// Node Manager (nodemanager.New and Start in a temporary install dir, its
// HTTPS listener, the domain CA trusted): a user per role is created
// through the users API, then each area's call must answer 403 exactly
// when the matrix says no, and a 403 must name the missing permission.
func TestRBACMatrix(t *testing.T) {
	n, ca := startNM(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := tlsClient(roots)
	base := "https://" + n.Addr()
	call := func(user, pass, method, path, body string) answer {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pass)
		return doReq(t, c, req)
	}
	for role := range rbacMatrix {
		name := "u-" + strings.ReplaceAll(strings.ToLower(role), " ", "-")
		body := fmt.Sprintf(`{"name":%q,"password":"pw-%s-123","roles":[%q]}`, name, name, role)
		if a := call(testUser, testPass, "POST", "/api/rbac/users", body); a.Code != http.StatusCreated {
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
					a.wantError(t, http.StatusForbidden, "may not "+ar.method, "missing permission")
				}
			}
		})
	}
}

func TestRBACUsersAPI(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).mustCode(t, 201)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["Deployer"]}`).wantError(t, 409, "exists")
	e.do("POST", "/api/rbac/users", `{"name":"x","password":"short","roles":["Deployer"]}`).wantError(t, 400, "at least 8")
	e.do("POST", "/api/rbac/users", `{"name":"x","password":"long-enough-1","roles":["Root"]}`).wantError(t, 400, `unknown role "Root"`)
	e.do("POST", "/api/rbac/users", `{"name":"x","password":"long-enough-1","roles":[]}`).wantError(t, 400, "at least one")
	e.do("POST", "/api/rbac/users", `{"name":"a:b","password":"long-enough-1","roles":["Deployer"]}`).wantError(t, 400, "colon")

	a := e.do("GET", "/api/rbac/users", "")
	a.mustCode(t, 200)
	if strings.Contains(a.Body, "pbkdf2") || strings.Contains(a.Body, "operator-pw-1") {
		t.Errorf("users list shows a hash or a password: %s", a.Body)
	}
	var users []userInfo
	a.decode(t, &users)
	if len(users) != 2 || users[1].Name != "op" || users[1].Roles[0] != rbac.RoleOperator {
		t.Errorf("got users %+v, want admin and op (API Server Operator)", users)
	}
	data, _ := os.ReadFile(e.h.AdminUsersFile())
	if !strings.Contains(string(data), "pbkdf2-sha256$600000$") || strings.Contains(string(data), "operator-pw-1") {
		t.Errorf("users file: want a PBKDF2 hash and no password:\n%s", data)
	}

	// The last administrator can neither be deleted nor demoted; with a
	// second administrator the first can go.
	e.do("DELETE", "/api/rbac/users/admin", "").wantError(t, 409, "last administrator")
	e.do("PUT", "/api/rbac/users/admin", `{"roles":["Deployer"]}`).wantError(t, 409, "last administrator")
	e.do("PUT", "/api/rbac/users/nobody", `{"roles":["Deployer"]}`).wantError(t, 404, "nobody")
	e.do("PUT", "/api/rbac/users/op", `{}`).wantError(t, 400, "nothing to change")
	e.do("PUT", "/api/rbac/users/op", `{"roles":["API Server Administrator"],"password":"new-op-pw-2"}`).mustCode(t, 200)

	// op's new password works, the old one no longer does, and op is now
	// an administrator.
	req, _ := http.NewRequest("GET", e.url+"/api/rbac/users", nil)
	req.SetBasicAuth("op", "operator-pw-1")
	doReq(t, http.DefaultClient, req).mustCode(t, 401)
	req, _ = http.NewRequest("DELETE", e.url+"/api/rbac/users/admin", nil)
	req.SetBasicAuth("op", "new-op-pw-2")
	doReq(t, http.DefaultClient, req).mustCode(t, 200)
}

func TestRBACOperatorRefused(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).mustCode(t, 201)
	req, _ := http.NewRequest("POST", e.url+"/api/rbac/users", strings.NewReader(`{"name":"evil","password":"evil-pw-123","roles":["API Server Administrator"]}`))
	req.SetBasicAuth("op", "operator-pw-1")
	a := doReq(t, http.DefaultClient, req)
	a.wantError(t, 403, `user "op"`, "missing permission", "users.write")
	// An escaped slash does not smuggle a path past the ACL.
	req, _ = http.NewRequest("DELETE", e.url+"/api/topology%2Fx/hosts/host-1", nil)
	req.SetBasicAuth("op", "operator-pw-1")
	doReq(t, http.DefaultClient, req).mustCode(t, 403)
}

// TestRBACACLFile: a missing acl.json is the default; a malformed one stops
// the Admin Node Manager with the file and position.
func TestRBACACLFile(t *testing.T) {
	h := testDomain(t)
	data, err := os.ReadFile(rbac.ACLFile(h))
	if err != nil {
		t.Fatalf("domain creation wrote no acl.json: %v", err)
	}
	var got, want any
	json.Unmarshal(data, &got)
	json.Unmarshal(rbac.DefaultACLJSON(), &want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("acl.json is not the built-in default:\n%s", data)
	}
	os.Remove(rbac.ACLFile(h))
	if _, err := New(Options{Home: h}); err != nil {
		t.Errorf("without acl.json: got %v, want the default ACL", err)
	}
	os.WriteFile(rbac.ACLFile(h), []byte("{\n  \"roles\": {\n    \"x\": [1]\n  }\n}\n"), 0o644)
	_, err = New(Options{Home: h})
	if err == nil || !strings.Contains(err.Error(), "acl.json:3:") {
		t.Errorf("malformed acl.json: got %v, want an error naming acl.json and line 3", err)
	}
}
