package rbac

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// The five roles of the management plane (docs/rbac.md has the matrix).
const (
	RoleOperator        = "API Server Operator"
	RoleDeployer        = "Deployer"
	RoleKPSAdmin        = "KPS Administrator"
	RolePolicyDeveloper = "Policy Developer"
)

// ACLFile is conf/acl.json of h.
func ACLFile(h home.Home) string { return h.Path("conf", "acl.json") }

// ACL is the content of conf/acl.json: roles → permission names, and
// permissions → rules (methods and path patterns). A request is allowed
// when one permission of one of the user's roles has a rule matching its
// method and path. An ACL is immutable once loaded and safe for concurrent
// use.
type ACL struct {
	Roles       map[string][]string   `json:"roles"`
	Permissions map[string]Permission `json:"permissions"`
}

// Permission is a named set of rules.
type Permission struct {
	Description string `json:"description,omitempty"`
	Rules       []Rule `json:"rules"`
}

// Rule allows Methods ("*": any) on Paths. A path pattern is matched
// segment by segment against the request path: "*" matches one segment,
// a final "**" matches zero or more segments, anything else itself.
type Rule struct {
	Methods []string `json:"methods"`
	Paths   []string `json:"paths"`
}

var (
	readMethods = []string{"GET", "HEAD"}
	anyMethod   = []string{"*"}
)

// DefaultACL is the built-in ACL, used when conf/acl.json is missing and
// written there at domain creation. docs/rbac.md is its description.
func DefaultACL() *ACL {
	return &ACL{
		Roles: map[string][]string{
			RoleAdmin:           {"all", "metrics.read"},
			RoleOperator:        {"session", "topology.read", "instances.status", "instances.control", "router.read", "audit.read", "users.read", "deployment.read", "kps.read", "applications.read", "metrics.read", "backup.create", "backup.status"},
			RoleDeployer:        {"session", "topology.read", "deployment.read", "deployment.write"},
			RoleKPSAdmin:        {"session", "topology.read", "kps.read", "kps.write", "applications.read", "applications.write"},
			RolePolicyDeveloper: {"session", "topology.read", "router.read"},
		},
		Permissions: map[string]Permission{
			"all":                {Description: "every method on every management API path", Rules: []Rule{{anyMethod, []string{"/api/**"}}}},
			"session":            {Description: "log in and out, read the current user", Rules: []Rule{{anyMethod, []string{"/api/rbac/login", "/api/rbac/logout", "/api/rbac/currentuser"}}}},
			"topology.read":      {Description: "read hosts, groups and instances", Rules: []Rule{{readMethods, []string{"/api/topology/**"}}}},
			"topology.write":     {Description: "create, rename and delete hosts, groups and instances", Rules: []Rule{{[]string{"POST", "PUT", "DELETE"}, []string{"/api/topology/**"}}}},
			"instances.status":   {Description: "read an instance's process state", Rules: []Rule{{[]string{"POST"}, []string{"/api/management/status/*/*"}}}},
			"instances.control":  {Description: "start and stop instances", Rules: []Rule{{[]string{"POST"}, []string{"/api/management/start/*/*", "/api/management/stop/*/*"}}}},
			"router.read":        {Description: "read an instance's management API through the router", Rules: []Rule{{readMethods, []string{"/api/router/service/**"}}}},
			"router.write":       {Description: "change an instance through the router", Rules: []Rule{{anyMethod, []string{"/api/router/service/**"}}}},
			"audit.read":         {Description: "read the domain audit log", Rules: []Rule{{readMethods, []string{"/api/audit/**"}}}},
			"users.read":         {Description: "list the admin users and their roles", Rules: []Rule{{readMethods, []string{"/api/rbac/users/**"}}}},
			"users.write":        {Description: "create, change and delete admin users", Rules: []Rule{{[]string{"POST", "PUT", "DELETE"}, []string{"/api/rbac/users/**"}}}},
			"deployment.read":    {Description: "list deployments, download archives", Rules: []Rule{{readMethods, []string{"/api/deployment/**"}}}},
			"deployment.write":   {Description: "upload and deploy configurations", Rules: []Rule{{anyMethod, []string{"/api/deployment/**"}}}},
			"kps.read":           {Description: "read KPS collections, tables and rows", Rules: []Rule{{readMethods, []string{"/api/kps/**"}}}},
			"kps.write":          {Description: "add, change and delete rows of custom KPS tables", Rules: []Rule{{[]string{"POST", "PUT", "DELETE"}, []string{"/api/kps/**"}}}},
			"applications.read":  {Description: "read client applications and their API keys (never a key's value or hash)", Rules: []Rule{{readMethods, []string{"/api/applications/**"}}}},
			"applications.write": {Description: "create, change and delete client applications; create, disable, rotate and delete API keys", Rules: []Rule{{[]string{"POST", "PUT", "DELETE"}, []string{"/api/applications/**"}}}},
			"backup.create":      {Description: "take a backup of the Admin Node Manager's host (POST /api/backup); with secrets that no passphrase seals, only a role that also allows POST /api/backup/clear-secrets (the administrator's)", Rules: []Rule{{[]string{"POST"}, []string{"/api/backup"}}}},
			"backup.status":      {Description: "read every host's scheduled backups (GET /api/backup/status)", Rules: []Rule{{readMethods, []string{"/api/backup/status"}}}},
			"metrics.read":       {Description: "read the Admin Node Manager's Prometheus metrics (GET /metrics on its port, when on)", Rules: []Rule{{readMethods, []string{"/metrics"}}}},
		},
	}
}

// DefaultACLJSON is DefaultACL as the file's content.
func DefaultACLJSON() []byte {
	data, _ := json.MarshalIndent(DefaultACL(), "", "  ") // maps of strings and slices: cannot fail
	return append(data, '\n')
}

// WriteDefaultACL writes the built-in ACL to conf/acl.json atomically
// (mode 0644).
func WriteDefaultACL(h home.Home) error {
	if err := os.MkdirAll(h.ConfDir(), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", h.ConfDir(), err)
	}
	return home.WriteFileAtomic(ACLFile(h), DefaultACLJSON(), 0o644)
}

// LoadACL reads conf/acl.json of h; a missing file is DefaultACL. A
// malformed or inconsistent file is an error naming the file and the line
// and column.
func LoadACL(h home.Home) (*ACL, error) {
	path := ACLFile(h)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return DefaultACL(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return ParseACL(path, data)
}

// ParseACL parses and validates the content of an ACL file; name is used
// in errors.
func ParseACL(name string, data []byte) (*ACL, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a ACL
	if err := dec.Decode(&a); err != nil {
		off := dec.InputOffset()
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		if errors.As(err, &syn) {
			off = syn.Offset
		} else if errors.As(err, &typ) {
			off = typ.Offset
		} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			off = int64(len(data))
		}
		line, col := lineCol(data, off)
		return nil, fmt.Errorf("%s:%d:%d: %s (want {\"roles\": {ROLE: [PERMISSION…]}, \"permissions\": {PERMISSION: {\"rules\": [{\"methods\": […], \"paths\": […]}]}})", name, line, col, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		line, col := lineCol(data, dec.InputOffset())
		return nil, fmt.Errorf("%s:%d:%d: unexpected data after the JSON object", name, line, col)
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &a, nil
}

func lineCol(data []byte, off int64) (int, int) {
	off = min(off, int64(len(data))) // encoding/json's offsets are never negative
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

func (a *ACL) validate() error {
	if len(a.Roles) == 0 {
		return errors.New(`no roles ("roles" is empty or missing)`)
	}
	if _, ok := a.Roles[RoleAdmin]; !ok {
		return fmt.Errorf("role %q is missing (the administrators' role must exist)", RoleAdmin)
	}
	for role, perms := range a.Roles {
		for _, p := range perms {
			if _, ok := a.Permissions[p]; !ok {
				return fmt.Errorf("role %q: unknown permission %q (defined: %s)", role, p, strings.Join(a.permissionNames(), ", "))
			}
		}
	}
	for name, p := range a.Permissions {
		for i, r := range p.Rules {
			if len(r.Methods) == 0 || len(r.Paths) == 0 {
				return fmt.Errorf("permission %q rule %d: want at least one method and one path", name, i+1)
			}
			for _, pat := range r.Paths {
				if !strings.HasPrefix(pat, "/") {
					return fmt.Errorf("permission %q rule %d: path %q must start with /", name, i+1, pat)
				}
				if i := strings.Index(pat, "**"); i != -1 && i != len(pat)-2 {
					return fmt.Errorf("permission %q: path %q: ** is allowed only as the last segment", name, pat)
				}
			}
		}
	}
	return nil
}

func (a *ACL) permissionNames() []string {
	var out []string
	for n := range a.Permissions {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// HasRole reports whether role is defined.
func (a *ACL) HasRole(role string) bool { _, ok := a.Roles[role]; return ok }

// RoleNames lists the defined roles, sorted.
func (a *ACL) RoleNames() []string {
	var out []string
	for r := range a.Roles {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Allowed reports whether a user with roles may call method on the
// escaped request path (r.URL.EscapedPath()).
func (a *ACL) Allowed(roles []string, method, escapedPath string) bool {
	segs := splitPath(escapedPath)
	for _, role := range roles {
		for _, p := range a.Roles[role] {
			if a.Permissions[p].matches(method, segs) {
				return true
			}
		}
	}
	return false
}

// Granting lists the permissions (sorted) that would allow method on the
// escaped path, and the roles holding any of them.
func (a *ACL) Granting(method, escapedPath string) (perms, roles []string) {
	segs := splitPath(escapedPath)
	for _, n := range a.permissionNames() {
		if a.Permissions[n].matches(method, segs) {
			perms = append(perms, n)
		}
	}
	for _, r := range a.RoleNames() {
		for _, p := range a.Roles[r] {
			if slices.Contains(perms, p) {
				roles = append(roles, r)
				break
			}
		}
	}
	return perms, roles
}

func (p Permission) matches(method string, segs []string) bool {
	for _, r := range p.Rules {
		if !slices.Contains(r.Methods, "*") && !slices.Contains(r.Methods, method) {
			continue
		}
		for _, pat := range r.Paths {
			if matchPath(splitPath(pat), segs) {
				return true
			}
		}
	}
	return false
}

// splitPath splits an escaped path into its unescaped segments, the way
// net/http.ServeMux does (an escaped slash stays inside its segment).
func splitPath(p string) []string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		if u, err := url.PathUnescape(s); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func matchPath(pat, segs []string) bool {
	for i, ps := range pat {
		if ps == "**" && i == len(pat)-1 {
			return true
		}
		if i >= len(segs) || (ps != "*" && ps != segs[i]) {
			return false
		}
	}
	return len(pat) == len(segs)
}

// MissingDefaults lists, sorted, the permissions of DefaultACL that a is
// without: a conf/acl.json written by an older release lacks the
// permissions of areas added since (applications.read, …). LoadACL never
// adds them by itself: an operator's file is the operator's (docs/rbac.md
// says how to add them); the Admin Node Manager logs the list at start.
func (a *ACL) MissingDefaults() []string {
	var out []string
	for _, n := range DefaultACL().permissionNames() {
		if _, ok := a.Permissions[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}
