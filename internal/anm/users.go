package anm

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Authorization and the users API (docs/rbac.md). The ACL is conf/acl.json
// (or the built-in default), loaded once when the Admin Node Manager is
// created; a malformed file stops it from starting.

// usersArea is /api/rbac/users: the admin users and their roles. Every
// change, refused ones too, is in the audit log (recordUser).
func (a *API) usersArea() area {
	byUser := recorded("recordUser, refused changes too")
	return area{name: "rbac", routes: []route{
		{pattern: "/api/rbac/users", ops: map[string]op{
			http.MethodGet:  read(a.listUsers, "listUsers", "users.read"),
			http.MethodPost: change(a.createUser, "createUser", byUser, "users.write"),
		}},
		{pattern: "/api/rbac/users/{name}", ops: map[string]op{
			http.MethodPut:    change(a.updateUser, "updateUser", byUser, "users.write"),
			http.MethodDelete: change(a.deleteUser, "deleteUser", byUser, "users.write"),
		}},
	}}
}

// LoadAccess reads the access settings the Admin Node Manager checks
// before it serves: the ACL into a.acl, and the session lifetimes of
// system/conf/nodemanager.yaml (session.go). Either one malformed stops
// the node manager from starting.
func (a *API) LoadAccess() error {
	acl, err := rbac.LoadACL(a.h)
	if err != nil {
		return fmt.Errorf("loading the access control list: %w", err)
	}
	a.acl = acl
	if missing := acl.MissingDefaults(); len(missing) > 0 {
		a.log.Warn("conf/acl.json lacks permissions of the built-in default ACL; the areas they cover are open to administrators only until they are added (docs/rbac.md, \"Permissions added by a release\")", "missing", missing)
	}
	if err := a.auth.sessions.configure(a.conf.Sessions); err != nil {
		return fmt.Errorf("session lifetimes: %w", err)
	}
	return nil
}

// AuthorizeJoin authenticates POST /nm/join (HTTP Basic or a session, as
// Authenticate) and lets through only a user whose roles may create a host
// (POST /api/topology/hosts: topology.write), since joining creates one and
// makes the domain CA sign its certificate; others get 403 naming the
// permission. The node-to-node API uses it.
func (a *API) AuthorizeJoin(next http.Handler) http.Handler {
	return a.auth.middleware(a.authorizeAs(http.MethodPost, "/api/topology/hosts", next))
}

// AuthorizeMetrics authenticates GET /metrics of the Admin Node Manager's
// listener (HTTP Basic or a session, as Authenticate) and lets through only
// a user whose roles allow it (metrics.read); others get 403 naming the
// permission. The node manager uses it for callers without a domain
// certificate.
func (a *API) AuthorizeMetrics(next http.Handler) http.Handler {
	return a.auth.middleware(a.authorize(next))
}

// authorize lets through a request of an authenticated user (the context
// holds the name) whose roles allow its method and path; others get 403
// naming the permission they lack.
func (a *API) authorize(next http.Handler) http.Handler { return a.authorizeAs("", "", next) }

// authorizeAs is authorize for the method and path given ("": the
// request's own).
func (a *API) authorizeAs(method, path string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, p := method, path
		if m == "" {
			m, p = r.Method, r.URL.EscapedPath()
		}
		acl := a.acl
		if acl == nil {
			acl = rbac.DefaultACL()
		}
		user := apihttp.UserOf(r.Context())
		roles, _, err := rbac.Roles(a.h, user)
		if err != nil {
			a.fail(w, r, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "internal error reading the admin users; the node manager log has the cause", Err: err})
			return
		}
		if acl.Allowed(roles, m, p) {
			next.ServeHTTP(w, r)
			return
		}
		perms, holders := acl.Granting(m, p)
		msg := fmt.Sprintf("user %q (roles: %s) may not %s %s", user, orNone(roles), r.Method, r.URL.Path)
		if method != "" {
			msg += fmt.Sprintf(" (it creates a host, as %s %s does)", m, p)
		}
		if len(perms) > 0 {
			msg += fmt.Sprintf(": missing permission %s (held by the roles: %s)", strings.Join(perms, " or "), orNone(holders))
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// A refused change is as telling as a done one.
			a.record(r.Context(), actor(r), "refused", nil, r.Method+" "+r.URL.Path, msg)
		}
		a.fail(w, r, &apihttp.Error{Code: http.StatusForbidden, Msg: msg})
	})
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// userInfo is a user as the API shows it: never the hash.
type userInfo struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	f, err := rbac.Load(a.h)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]userInfo, 0, len(f.Users))
	for _, u := range f.Users {
		out = append(out, userInfo{Name: u.Name, Roles: u.Roles})
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

type userBody struct {
	Name     string   `json:"name"`
	Password *string  `json:"password"`
	Roles    []string `json:"roles"`
}

// createUser: POST /api/rbac/users. Every attempt that passed the
// authorization is recorded in the audit log (recordUser), refused ones too.
func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	var b userBody
	err := a.doCreateUser(w, r, &b)
	detail := ""
	if b.Name != "" {
		detail = fmt.Sprintf("user %q with roles: %s", b.Name, orNone(b.Roles))
	}
	a.recordUser(r, "create user", b.Name, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("admin user created", "user", apihttp.UserOf(r.Context()), "name", b.Name, "roles", b.Roles)
	apihttp.WriteResult(w, http.StatusCreated, userInfo{Name: b.Name, Roles: b.Roles})
}

func (a *API) doCreateUser(w http.ResponseWriter, r *http.Request, b *userBody) error {
	if err := apihttp.ReadBody(w, r, b, `"name", "password", "roles"`); err != nil {
		return err
	}
	if b.Password == nil || *b.Password == "" {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: `"password" is required`}
	}
	if err := a.checkRoles(b.Roles, true); err != nil {
		return err
	}
	if err := rbac.ValidateUserName(b.Name); err != nil {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()}
	}
	if err := rbac.AddUser(a.h, b.Name, secret.FromString(*b.Password), b.Roles); err != nil {
		return userError(err)
	}
	return nil
}

// updateUser: PUT /api/rbac/users/{name}, recorded like createUser; the
// entry says which roles were replaced by which, and whether the password
// was changed (never the password).
func (a *API) updateUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var b userUpdate
	before, _, _ := rbac.Roles(a.h, name)
	roles, err := a.doUpdateUser(w, r, name, &b)
	var changes []string
	if b.Roles != nil {
		changes = append(changes, fmt.Sprintf("roles: %s (were: %s)", orNone(b.Roles), orNone(before)))
	}
	if b.Password != nil {
		changes = append(changes, "new password")
	}
	detail := fmt.Sprintf("user %q", name)
	if len(changes) > 0 {
		detail += ": " + strings.Join(changes, "; ")
	}
	a.recordUser(r, "change user", name, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("admin user changed", "user", apihttp.UserOf(r.Context()), "name", name, "roles", roles, "passwordChanged", b.Password != nil)
	apihttp.WriteResult(w, http.StatusOK, userInfo{Name: name, Roles: roles})
}

// userUpdate is the body of PUT /api/rbac/users/{name}.
type userUpdate struct {
	Password *string  `json:"password"`
	Roles    []string `json:"roles"`
}

func (a *API) doUpdateUser(w http.ResponseWriter, r *http.Request, name string, b *userUpdate) ([]string, error) {
	if err := apihttp.ReadBody(w, r, b, `"password", "roles"`); err != nil {
		return nil, err
	}
	if b.Password == nil && b.Roles == nil {
		return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: `nothing to change: give "roles", "password" or both`}
	}
	if b.Roles != nil {
		if err := a.checkRoles(b.Roles, true); err != nil {
			return nil, err
		}
	}
	var pw secret.Value
	if b.Password != nil {
		if *b.Password == "" {
			return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: `"password" is empty`}
		}
		pw = secret.FromString(*b.Password)
	}
	if err := rbac.UpdateUser(a.h, name, pw, b.Roles); err != nil {
		return nil, userError(err)
	}
	roles, _, err := rbac.Roles(a.h, name)
	return roles, err
}

// deleteUser: DELETE /api/rbac/users/{name}, recorded like createUser.
func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	roles, _, err := rbac.Roles(a.h, name)
	if err == nil {
		err = rbac.DeleteUser(a.h, name)
		err = userErrorOrNil(err)
	}
	a.recordUser(r, "delete user", name, fmt.Sprintf("user %q with roles: %s", name, orNone(roles)), err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("admin user deleted", "user", apihttp.UserOf(r.Context()), "name", name)
	apihttp.WriteResult(w, http.StatusOK, userInfo{Name: name, Roles: roles})
}

// recordUser writes a change of an admin user through the API to the audit
// log: who, from where, which user (target), what, and the outcome with
// the message the client got. The entry never holds a password.
func (a *API) recordUser(r *http.Request, action, name, detail string, err error) {
	var targets []string
	if name != "" {
		targets = []string{name}
	}
	a.record(r.Context(), actor(r), action, targets, detail, apihttp.ClientMessage(err))
}

func userErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return userError(err)
}

// checkRoles refuses an empty list (when required) and unknown roles.
func (a *API) checkRoles(roles []string, required bool) error {
	acl := a.acl
	if acl == nil {
		acl = rbac.DefaultACL()
	}
	if len(roles) == 0 && required {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`"roles": give at least one of: %s`, strings.Join(acl.RoleNames(), ", "))}
	}
	for _, role := range roles {
		if !acl.HasRole(role) {
			return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("unknown role %q; the roles are: %s", role, strings.Join(acl.RoleNames(), ", "))}
		}
	}
	for i, role := range roles {
		if slices.Contains(roles[i+1:], role) {
			return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("role %q is given twice", role)}
		}
	}
	return nil
}

// userError maps the errors of rbac's user changes to statuses; their
// messages never contain a password.
func userError(err error) error {
	switch {
	case errors.Is(err, rbac.ErrUserNotFound):
		return &apihttp.Error{Code: http.StatusNotFound, Msg: err.Error(), Err: err}
	case errors.Is(err, rbac.ErrUserExists), errors.Is(err, rbac.ErrLastAdmin):
		return &apihttp.Error{Code: http.StatusConflict, Msg: err.Error(), Err: err}
	case errors.Is(err, rbac.ErrWeakPassword):
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
	}
	return err
}
