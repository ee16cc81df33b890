package rbac

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A request path with fewer segments than a permission's pattern is simply
// not matched: it must neither panic nor be allowed.
func TestACLPathShorterThanPattern(t *testing.T) {
	a := DefaultACL()
	for _, c := range []struct {
		role, method, path string
		want               bool
	}{
		{RoleOperator, "POST", "/api/management/start", false},
		{RoleOperator, "POST", "/api/management/start/group-2", false},
		{RoleOperator, "POST", "/api/management", false},
		{RoleOperator, "POST", "/", false},
		{RoleOperator, "POST", "", false},
		{RoleOperator, "GET", "/api", false},
		{RoleAdmin, "GET", "/api", true}, // a final ** is zero or more segments
		{RoleAdmin, "GET", "/", false},
		{RoleAdmin, "GET", "", false},
	} {
		if got := a.Allowed([]string{c.role}, c.method, c.path); got != c.want {
			t.Errorf("%s %s %q: got %v, want %v", c.role, c.method, c.path, got, c.want)
		}
	}
}

// Segments are unescaped before matching, the way the API's router sees
// them: an escaped letter is that letter, an escaped slash stays inside its
// segment, an invalid escape is kept as it is.
func TestACLUnescapesSegments(t *testing.T) {
	a := DefaultACL()
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/api/%74opology/hosts", true},
		{"GET", "/%61pi/topology", true},
		{"POST", "/api/management/start/group-2%2Finstance-1", false}, // one segment short
		{"POST", "/api/management/start/group%2F2/instance-1", true},
		{"GET", "/api/topology/%zz", true},
		{"GET", "/api/%zzopology", false},
	} {
		if got := a.Allowed([]string{RoleOperator}, c.method, c.path); got != c.want {
			t.Errorf("operator %s %s: got %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

// Granting names each role once, even when several of its permissions
// would allow the request.
func TestACLGrantingListsEachRoleOnce(t *testing.T) {
	perms, roles := DefaultACL().Granting("GET", "/api/deployment/archives")
	if got, want := strings.Join(perms, ","), "all,deployment.read,deployment.write"; got != want {
		t.Errorf("permissions: got %s, want %s", got, want)
	}
	if got, want := strings.Join(roles, ","), RoleAdmin+","+RoleOperator+","+RoleDeployer; got != want {
		t.Errorf("roles: got %s, want %s", got, want)
	}
	if perms, roles := DefaultACL().Granting("GET", "/elsewhere"); perms != nil || roles != nil {
		t.Errorf("outside /api: got %v %v, want nothing", perms, roles)
	}
}

// A ** that is not the final segment (of a hand-built ACL) is a literal
// segment, never a wildcard.
func TestACLInnerDoubleStarIsLiteral(t *testing.T) {
	a := &ACL{
		Roles:       map[string][]string{"r": {"p"}},
		Permissions: map[string]Permission{"p": {Rules: []Rule{{anyMethod, []string{"/a/**/b"}}}}},
	}
	for _, c := range []struct {
		path string
		want bool
	}{
		{"/a/**/b", true},
		{"/a/x/b", false},
		{"/a/x/y/b", false},
		{"/a/b", false},
		{"/a/**", false},
	} {
		if got := a.Allowed([]string{"r"}, "GET", c.path); got != c.want {
			t.Errorf("%s: got %v, want %v", c.path, got, c.want)
		}
	}
}

// Each refusal of ParseACL names the file, the place and the rule broken.
func TestParseACLRefusals(t *testing.T) {
	const admin = `"API Server Administrator": ["p"]`
	perm := func(rule string) string {
		return `{"roles": {` + admin + `}, "permissions": {"p": {"rules": [` + rule + `]}}}`
	}
	for _, c := range []struct{ name, data, want string }{
		{"empty file", "", "acl.json:1:1: EOF"},
		{"blank lines only", "\n\n", "acl.json:3:1: EOF"},
		{"a number where roles go", "{\n  \"roles\": 5\n}", "acl.json:2:13: cannot unmarshal number"},
		{"no roles", `{}`, `acl.json: no roles ("roles" is empty or missing)`},
		{"empty roles", `{"roles": {}}`, `acl.json: no roles`},
		{"second object", `{"roles": {"API Server Administrator": []}} {}`, "acl.json:1:45: unexpected data after the JSON object"},
		{"rule without methods", perm(`{"methods": [], "paths": ["/api/x"]}`), `acl.json: permission "p" rule 1: want at least one method and one path`},
		{"rule without paths", perm(`{"methods": ["GET"]}`), `permission "p" rule 1: want at least one method and one path`},
		{"relative path", perm(`{"methods": ["GET"], "paths": ["api/x"]}`), `permission "p" rule 1: path "api/x" must start with /`},
		{"** then more", perm(`{"methods": ["GET"], "paths": ["/api/**/x"]}`), `permission "p": path "/api/**/x": ** is allowed only as the last segment`},
		{"*** at the end", perm(`{"methods": ["GET"], "paths": ["/api/***"]}`), `** is allowed only as the last segment`},
		{"second rule bad", perm(`{"methods": ["GET"], "paths": ["/api/x"]}, {"methods": ["GET"], "paths": []}`), `permission "p" rule 2:`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseACL("acl.json", []byte(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// The smallest valid ACL: the administrators' role alone, a rule of one
// method and one path; a final ** is accepted.
func TestParseACLMinimal(t *testing.T) {
	for _, data := range []string{
		`{"roles": {"API Server Administrator": []}}`,
		`{"roles": {"API Server Administrator": ["p"]}, "permissions": {"p": {"rules": [{"methods": ["GET"], "paths": ["/api/x"]}]}}}`,
		`{"roles": {"API Server Administrator": ["p"]}, "permissions": {"p": {"rules": [{"methods": ["*"], "paths": ["/api/**"]}]}}}`,
	} {
		a, err := ParseACL("acl.json", []byte(data))
		if err != nil {
			t.Errorf("%s: %v", data, err)
			continue
		}
		if !a.HasRole(RoleAdmin) || a.HasRole(RoleOperator) {
			t.Errorf("%s: got roles %v, want only %s", data, a.RoleNames(), RoleAdmin)
		}
	}
}

// conf/acl.json: written with mode 0644 (conf 0755), read back as the
// built-in default; missing is the default; unreadable or malformed is an
// error naming the file.
func TestACLFile(t *testing.T) {
	h := newHome(t)
	if a, err := LoadACL(h); err != nil || !a.Allowed([]string{RoleOperator}, "GET", "/api/topology") {
		t.Fatalf("missing file: got %v, want the default ACL", err)
	}
	if err := WriteDefaultACL(h); err != nil {
		t.Fatal(err)
	}
	wantMode(t, ACLFile(h), 0o644)
	wantMode(t, h.ConfDir(), 0o755|os.ModeDir)
	data, _ := os.ReadFile(ACLFile(h))
	if !bytes.Equal(data, DefaultACLJSON()) {
		t.Errorf("got %s, want the default ACL", data)
	}

	os.WriteFile(ACLFile(h), []byte(`{"roles": {"API Server Administrator": []}}`), 0o644)
	a, err := LoadACL(h)
	if err != nil || a.HasRole(RoleOperator) || !a.HasRole(RoleAdmin) {
		t.Fatalf("custom file: got %v, %v, want only the administrators' role", a, err)
	}
	os.WriteFile(ACLFile(h), []byte(`{"roles": `), 0o644)
	if a, err := LoadACL(h); err == nil || !strings.Contains(err.Error(), ACLFile(h)+":1:11:") {
		t.Errorf("malformed file: got %v, %v, want an error naming %s:1:11", a, err, ACLFile(h))
	}
	os.Remove(ACLFile(h))
	blockWithDir(t, ACLFile(h))
	if _, err := LoadACL(h); err == nil || !strings.Contains(err.Error(), "reading "+ACLFile(h)) {
		t.Errorf("unreadable file: got %v, want a reading error", err)
	}
	if err := WriteDefaultACL(h); err == nil {
		t.Error("WriteDefaultACL over a directory: got nil, want an error")
	}

	h2 := newHome(t)
	blockWithFile(t, h2.ConfDir())
	if err := WriteDefaultACL(h2); err == nil || !strings.Contains(err.Error(), "creating "+h2.ConfDir()) {
		t.Errorf("conf is a file: got %v, want a creating error", err)
	}
}

// blockWithFile puts a regular file where a directory is wanted.
func blockWithFile(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// blockWithDir puts a non-empty directory where a file is wanted: reading it
// fails, and so does renaming a file over it.
func blockWithDir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != want {
		t.Errorf("%s: got mode %v, want %v", path, got, want)
	}
}

// MissingDefaults names the permissions of the built-in default that an
// older file lacks, and nothing for the default itself; the file is not
// changed by loading it.
func TestMissingDefaults(t *testing.T) {
	if got := DefaultACL().MissingDefaults(); len(got) != 0 {
		t.Errorf("the default ACL: got %v, want none", got)
	}
	def := DefaultACL()
	delete(def.Permissions, "applications.read")
	delete(def.Permissions, "applications.write")
	for r, perms := range def.Roles {
		def.Roles[r] = slices.DeleteFunc(perms, func(p string) bool { return strings.HasPrefix(p, "applications.") })
	}
	data, _ := json.Marshal(def)
	old, err := ParseACL("acl.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.MissingDefaults(); !slices.Equal(got, []string{"applications.read", "applications.write"}) {
		t.Errorf("an older file: got %v, want [applications.read applications.write]", got)
	}
	if old.Allowed([]string{RoleKPSAdmin}, "GET", "/api/applications/group-2") {
		t.Error("an older file grants the new area: the defaults were merged into it")
	}
	if !DefaultACL().Allowed([]string{RoleKPSAdmin}, "POST", "/api/applications/group-2/x/keys") ||
		!DefaultACL().Allowed([]string{RoleOperator}, "GET", "/api/applications/group-2") ||
		DefaultACL().Allowed([]string{RoleOperator}, "PUT", "/api/applications/group-2/x") ||
		DefaultACL().Allowed([]string{RoleKPSAdmin}, "GET", "/api/deployment/jobs") {
		t.Error("the default ACL's applications permissions are not as docs/rbac.md says")
	}
}
