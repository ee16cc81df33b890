package nodemanager

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Authorization and the users API (docs/rbac.md). The ACL is conf/acl.json
// (or the built-in default), loaded once when the Admin Node Manager is
// created; a malformed file stops it from starting.

// loadACL reads the ACL into a.acl.
func (a *api) loadACL() error {
	acl, err := rbac.LoadACL(a.h)
	if err != nil {
		return fmt.Errorf("loading the access control list: %w", err)
	}
	a.acl = acl
	return nil
}

// authorize lets through a request of an authenticated user (the context
// holds the name) whose roles allow its method and path; others get 403
// naming the permission they lack.
func (a *api) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acl := a.acl
		if acl == nil {
			acl = rbac.DefaultACL()
		}
		user := userOf(r.Context())
		roles, _, err := rbac.Roles(a.h, user)
		if err != nil {
			a.fail(w, r, &apiError{Code: http.StatusInternalServerError, Msg: "internal error reading the admin users; the node manager log has the cause", Err: err})
			return
		}
		if acl.Allowed(roles, r.Method, r.URL.EscapedPath()) {
			next.ServeHTTP(w, r)
			return
		}
		perms, holders := acl.Granting(r.Method, r.URL.EscapedPath())
		msg := fmt.Sprintf("user %q (roles: %s) may not %s %s", user, orNone(roles), r.Method, r.URL.Path)
		if len(perms) > 0 {
			msg += fmt.Sprintf(": missing permission %s (held by the roles: %s)", strings.Join(perms, " or "), orNone(holders))
		}
		a.fail(w, r, &apiError{Code: http.StatusForbidden, Msg: msg})
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

func (a *api) listUsers(w http.ResponseWriter, r *http.Request) {
	f, err := rbac.Load(a.h)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]userInfo, 0, len(f.Users))
	for _, u := range f.Users {
		out = append(out, userInfo{Name: u.Name, Roles: u.Roles})
	}
	writeResult(w, http.StatusOK, out)
}

type userBody struct {
	Name     string   `json:"name"`
	Password *string  `json:"password"`
	Roles    []string `json:"roles"`
}

func (a *api) createUser(w http.ResponseWriter, r *http.Request) {
	var b userBody
	if err := readBody(w, r, &b, `"name", "password", "roles"`); err != nil {
		a.fail(w, r, err)
		return
	}
	if b.Password == nil || *b.Password == "" {
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: `"password" is required`})
		return
	}
	if err := a.checkRoles(b.Roles, true); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := rbac.ValidateUserName(b.Name); err != nil {
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: err.Error()})
		return
	}
	pw := secret.FromString(*b.Password)
	if err := rbac.AddUser(a.h, b.Name, pw, b.Roles); err != nil {
		a.fail(w, r, userError(err))
		return
	}
	a.log.Info("admin user created", "user", userOf(r.Context()), "name", b.Name, "roles", b.Roles)
	writeResult(w, http.StatusCreated, userInfo{Name: b.Name, Roles: b.Roles})
}

func (a *api) updateUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var b struct {
		Password *string  `json:"password"`
		Roles    []string `json:"roles"`
	}
	if err := readBody(w, r, &b, `"password", "roles"`); err != nil {
		a.fail(w, r, err)
		return
	}
	if b.Password == nil && b.Roles == nil {
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: `nothing to change: give "roles", "password" or both`})
		return
	}
	if b.Roles != nil {
		if err := a.checkRoles(b.Roles, true); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	var pw secret.Value
	if b.Password != nil {
		if *b.Password == "" {
			a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: `"password" is empty`})
			return
		}
		pw = secret.FromString(*b.Password)
	}
	if err := rbac.UpdateUser(a.h, name, pw, b.Roles); err != nil {
		a.fail(w, r, userError(err))
		return
	}
	roles, _, err := rbac.Roles(a.h, name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("admin user changed", "user", userOf(r.Context()), "name", name, "roles", roles, "passwordChanged", b.Password != nil)
	writeResult(w, http.StatusOK, userInfo{Name: name, Roles: roles})
}

func (a *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	roles, _, err := rbac.Roles(a.h, name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := rbac.DeleteUser(a.h, name); err != nil {
		a.fail(w, r, userError(err))
		return
	}
	a.log.Info("admin user deleted", "user", userOf(r.Context()), "name", name)
	writeResult(w, http.StatusOK, userInfo{Name: name, Roles: roles})
}

// checkRoles refuses an empty list (when required) and unknown roles.
func (a *api) checkRoles(roles []string, required bool) error {
	acl := a.acl
	if acl == nil {
		acl = rbac.DefaultACL()
	}
	if len(roles) == 0 && required {
		return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`"roles": give at least one of: %s`, strings.Join(acl.RoleNames(), ", "))}
	}
	for _, role := range roles {
		if !acl.HasRole(role) {
			return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("unknown role %q; the roles are: %s", role, strings.Join(acl.RoleNames(), ", "))}
		}
	}
	for i, role := range roles {
		if slices.Contains(roles[i+1:], role) {
			return &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("role %q is given twice", role)}
		}
	}
	return nil
}

// userError maps the errors of rbac's user changes to statuses; their
// messages never contain a password.
func userError(err error) error {
	switch {
	case errors.Is(err, rbac.ErrUserNotFound):
		return &apiError{Code: http.StatusNotFound, Msg: err.Error(), Err: err}
	case errors.Is(err, rbac.ErrUserExists), errors.Is(err, rbac.ErrLastAdmin):
		return &apiError{Code: http.StatusConflict, Msg: err.Error(), Err: err}
	case errors.Is(err, rbac.ErrWeakPassword):
		return &apiError{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
	}
	return err
}
