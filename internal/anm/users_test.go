package anm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
)

func TestRBACUsersAPI(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).MustCode(t, 201)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["Deployer"]}`).WantError(t, 409, "exists")
	e.do("POST", "/api/rbac/users", `{"name":"x","password":"short","roles":["Deployer"]}`).WantError(t, 400, "at least 8")
	e.do("POST", "/api/rbac/users", `{"name":"x","password":"long-enough-1","roles":["Root"]}`).WantError(t, 400, `unknown role "Root"`)
	e.do("POST", "/api/rbac/users", `{"name":"x","password":"long-enough-1","roles":[]}`).WantError(t, 400, "at least one")
	e.do("POST", "/api/rbac/users", `{"name":"a:b","password":"long-enough-1","roles":["Deployer"]}`).WantError(t, 400, "colon")

	a := e.do("GET", "/api/rbac/users", "")
	a.MustCode(t, 200)
	if strings.Contains(a.Body, "pbkdf2") || strings.Contains(a.Body, "operator-pw-1") {
		t.Errorf("users list shows a hash or a password: %s", a.Body)
	}
	var users []userInfo
	a.Decode(t, &users)
	if len(users) != 2 || users[1].Name != "op" || users[1].Roles[0] != rbac.RoleOperator {
		t.Errorf("got users %+v, want admin and op (API Server Operator)", users)
	}
	data, _ := os.ReadFile(e.h.AdminUsersFile())
	if !strings.Contains(string(data), "pbkdf2-sha256$600000$") || strings.Contains(string(data), "operator-pw-1") {
		t.Errorf("users file: want a PBKDF2 hash and no password:\n%s", data)
	}

	// The last administrator can neither be deleted nor demoted; with a
	// second administrator the first can go.
	e.do("DELETE", "/api/rbac/users/admin", "").WantError(t, 409, "last administrator")
	e.do("PUT", "/api/rbac/users/admin", `{"roles":["Deployer"]}`).WantError(t, 409, "last administrator")
	e.do("PUT", "/api/rbac/users/nobody", `{"roles":["Deployer"]}`).WantError(t, 404, "nobody")
	e.do("PUT", "/api/rbac/users/op", `{}`).WantError(t, 400, "nothing to change")
	e.do("PUT", "/api/rbac/users/op", `{"roles":["API Server Administrator"],"password":"new-op-pw-2"}`).MustCode(t, 200)

	// op's new password works, the old one no longer does, and op is now
	// an administrator.
	req, _ := http.NewRequest("GET", e.url+"/api/rbac/users", nil)
	req.SetBasicAuth("op", "operator-pw-1")
	apitest.Do(t, http.DefaultClient, req).MustCode(t, 401)
	req, _ = http.NewRequest("DELETE", e.url+"/api/rbac/users/admin", nil)
	req.SetBasicAuth("op", "new-op-pw-2")
	apitest.Do(t, http.DefaultClient, req).MustCode(t, 200)
}

func TestRBACOperatorRefused(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).MustCode(t, 201)
	req, _ := http.NewRequest("POST", e.url+"/api/rbac/users", strings.NewReader(`{"name":"evil","password":"evil-pw-123","roles":["API Server Administrator"]}`))
	req.SetBasicAuth("op", "operator-pw-1")
	a := apitest.Do(t, http.DefaultClient, req)
	a.WantError(t, 403, `user "op"`, "missing permission", "users.write")
	// An escaped slash does not smuggle a path past the ACL.
	req, _ = http.NewRequest("DELETE", e.url+"/api/topology%2Fx/hosts/host-1", nil)
	req.SetBasicAuth("op", "operator-pw-1")
	apitest.Do(t, http.DefaultClient, req).MustCode(t, 403)
}

// TestRBACACLFile: a missing acl.json is the default; a malformed one stops
// the Admin Node Manager with the file and position.
func TestRBACACLFile(t *testing.T) {
	h := apitest.Domain(t)
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
	if _, err := newAPIAt(t, h); err != nil {
		t.Errorf("without acl.json: got %v, want the default ACL", err)
	}
	os.WriteFile(rbac.ACLFile(h), []byte("{\n  \"roles\": {\n    \"x\": [1]\n  }\n}\n"), 0o644)
	_, err = newAPIAt(t, h)
	if err == nil || !strings.Contains(err.Error(), "acl.json:3:") {
		t.Errorf("malformed acl.json: got %v, want an error naming acl.json and line 3", err)
	}
}

// TestRefusalsAndRouterChangesAudited: a refused change (403) and a change
// through the router leave an entry in the audit log; a refused read does
// not.
func TestRefusalsAndRouterChangesAudited(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).MustCode(t, 201)
	as := func(method, path, body string) apitest.Answer {
		req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
		req.SetBasicAuth("op", "operator-pw-1")
		req.Header.Set("Content-Type", "application/json")
		return apitest.Do(t, http.DefaultClient, req)
	}
	as("POST", "/api/topology/groups", `{"name":"X"}`).WantError(t, 403, "topology.write")
	as("GET", "/api/rbac/users/admin/x", "")
	e.do("POST", "/api/router/service/instance-9/deployment/lb", `{"inService": false}`)
	var got struct {
		Entries []struct{ User, Action, Detail, Error string }
	}
	e.do("GET", "/api/audit?limit=50", "").Decode(t, &got)
	var refused, routed int
	for _, en := range got.Entries {
		switch en.Action {
		case "refused":
			refused++
			if en.User != "op" || en.Detail != "POST /api/topology/groups" || !strings.Contains(en.Error, "topology.write") {
				t.Errorf("refusal entry: %+v", en)
			}
		case "router POST":
			routed++
			if en.User != apitest.User || en.Detail != "/deployment/lb" || en.Error == "" {
				t.Errorf("router entry: %+v (the unknown instance's answer is an error)", en)
			}
		}
	}
	if refused != 1 || routed != 1 {
		t.Errorf("got %d refusal and %d router entries, want 1 and 1: %+v", refused, routed, got.Entries)
	}
}
