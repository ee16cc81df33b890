package rbac

import (
	"strings"
	"testing"
)

func TestACLAllowed(t *testing.T) {
	a := DefaultACL()
	tests := []struct {
		role, method, path string
		want               bool
	}{
		{RoleAdmin, "DELETE", "/api/topology/hosts/host-2", true},
		{RoleAdmin, "GET", "/api/anything/new", true},
		{RoleOperator, "GET", "/api/topology", true},
		{RoleOperator, "GET", "/api/topology/hosts/host-1", true},
		{RoleOperator, "POST", "/api/topology/hosts", false},
		{RoleOperator, "POST", "/api/management/start/group-2/instance-1", true},
		{RoleOperator, "POST", "/api/management/start/group-2/instance-1/x", false},
		{RoleOperator, "POST", "/api/management/delete/group-2/instance-1", false},
		{RoleOperator, "POST", "/api/rbac/users", false},
		{RoleOperator, "GET", "/api/rbac/users", true},
		{RoleOperator, "GET", "/api/topology%2F..%2Frbac/users", false},
		{RoleDeployer, "POST", "/api/deployment/group/configuration/file/group-2", true},
		{RoleDeployer, "GET", "/api/audit", false},
		{RoleKPSAdmin, "PUT", "/api/kps/collections/x", true},
		{RoleKPSAdmin, "POST", "/api/management/status/group-2/instance-1", false},
		{RolePolicyDeveloper, "GET", "/api/router/service/instance-1/status", true},
		{RolePolicyDeveloper, "POST", "/api/router/service/instance-1/trace", false},
		{RolePolicyDeveloper, "GET", "/api/rbac/currentuser", true},
		{"Unknown Role", "GET", "/api/topology", false},
	}
	for _, tt := range tests {
		if got := a.Allowed([]string{tt.role}, tt.method, tt.path); got != tt.want {
			t.Errorf("%s %s %s: got %v, want %v", tt.role, tt.method, tt.path, got, tt.want)
		}
	}
	perms, roles := a.Granting("POST", "/api/rbac/users")
	if strings.Join(perms, ",") != "all,users.write" || strings.Join(roles, ",") != RoleAdmin {
		t.Errorf("Granting: got %v %v, want [all users.write] [%s]", perms, roles, RoleAdmin)
	}
}

func TestParseACL(t *testing.T) {
	if _, err := ParseACL("acl.json", DefaultACLJSON()); err != nil {
		t.Fatalf("default: %v", err)
	}
	tests := []struct{ data, want string }{
		{"{\n  \"roles\": {,\n}", "acl.json:2:14: invalid character ','"},
		{"{\"roles\": {\"API Server Administrator\": [\"nope\"]}}", `unknown permission "nope"`},
		{"{\"roles\": {\"x\": []}}", `role "API Server Administrator" is missing`},
		{"{\"rolez\": {}}", `acl.json:1:`},
		{"{\n  \"roles\": {\n", `acl.json:3:1: unexpected EOF`},
		{"{\"roles\": {\"API Server Administrator\": [\"p\"]}, \"permissions\": {\"p\": {\"rules\": [{\"methods\": [\"GET\"], \"paths\": [\"/api/**/x\"]}]}}}", "** is allowed only"},
		{"{\"roles\": {\"API Server Administrator\": []}} {}", "acl.json:1:"},
	}
	for _, tt := range tests {
		_, err := ParseACL("acl.json", []byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseACL(%q): got %v, want an error containing %q", tt.data, err, tt.want)
		}
	}
}

func FuzzParseACL(f *testing.F) {
	f.Add(DefaultACLJSON())
	f.Add([]byte(`{"roles":{}}`))
	// Ends of input: nothing, blank, cut inside the object, a string or a
	// pattern; data after the object; patterns ending in *, ** and /.
	def := DefaultACLJSON()
	f.Add([]byte(""))
	f.Add([]byte("\n\n"))
	f.Add([]byte("{"))
	f.Add([]byte(`{"roles":`))
	f.Add([]byte(`{"roles":{"API Server Administrator":["all"`))
	f.Add([]byte(`{"roles":{"API Server Administrator":"\`))
	f.Add(def[:len(def)/2])
	f.Add(def[:len(def)-2])
	f.Add([]byte(`{"roles":{"API Server Administrator":[]}} {`))
	for _, pat := range []string{"/", "/*", "/**", "/api/*", "/api/**", "/api/*/**", "/api/x**", "/api/***", "/**/"} {
		f.Add([]byte(`{"roles":{"API Server Administrator":["p"]},"permissions":{"p":{"rules":[{"methods":["*"],"paths":["` + pat + `"]}]}}}`))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseACL("acl.json", data)
		if err != nil {
			return
		}
		// Any request path, however short, is answered without a panic.
		for _, p := range []string{"", "/", "/api", "/api/", "/api/topology", "/api/management/start", "/api/%zz", "/a/b/c/d/e/f"} {
			for _, role := range a.RoleNames() {
				a.Allowed([]string{role}, "GET", p)
			}
			a.Granting("POST", p)
		}
	})
}
