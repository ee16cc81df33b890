package anm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The management of the group's authorization server (docs/oauth.md,
// "Management"), under /api/applications so that the applications.read
// and applications.write permissions of every ACL file cover it:
//
//	GET|POST  /api/applications/{groupID}/{appID}/secrets               an OAuth client's secrets (never values), a new one
//	DELETE    /api/applications/{groupID}/{appID}/secrets/{secretID}    one secret
//	GET       /api/applications/{groupID}/{appID}/tokens                its stored tokens (metadata only, paged)
//	DELETE    /api/applications/{groupID}/{appID}/tokens                revoke all of them
//	DELETE    /api/applications/{groupID}/{appID}/families/{familyID}   revoke one grant (a token family)
//	GET|POST  /api/applications/{groupID}/oauth/users                   the group's users (never a hash), a new one
//	GET|PUT|DELETE /api/applications/{groupID}/oauth/users/{username}   one user: password, enabled
//	POST      /api/applications/{groupID}/oauth/signing-keys/rotate     a new JWT signing key
//
// A client secret is in the answer of its creation and nowhere else; a
// user's password is in the request that sets it and nowhere else (not in
// the audit log, not in the node manager's log).

func (a *API) oauthRoutes(rd, wr string) []route {
	by := recorded("recordKPS, refused changes too; never a secret's value or a password")
	return []route{
		{pattern: "/api/applications/{groupID}/{appID}/secrets", ops: map[string]op{
			http.MethodGet:  read(a.listSecrets, "listClientSecrets", rd),
			http.MethodPost: change(a.createSecret, "createClientSecret", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}/secrets/{secretID}", ops: map[string]op{
			http.MethodDelete: change(a.deleteSecret, "deleteClientSecret", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}/tokens", ops: map[string]op{
			http.MethodGet:    read(a.listTokens, "listClientTokens", rd),
			http.MethodDelete: change(a.revokeTokens, "revokeClientTokens", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}/families/{familyID}", ops: map[string]op{
			http.MethodDelete: change(a.revokeFamily, "revokeGrant", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/oauth/users", ops: map[string]op{
			http.MethodGet:  read(a.listOAuthUsers, "listOAuthUsers", rd),
			http.MethodPost: change(a.createOAuthUser, "createOAuthUser", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/oauth/users/{username}", ops: map[string]op{
			http.MethodGet:    read(a.getOAuthUser, "getOAuthUser", rd),
			http.MethodPut:    change(a.updateOAuthUser, "updateOAuthUser", by, wr),
			http.MethodDelete: change(a.deleteOAuthUser, "deleteOAuthUser", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/oauth/signing-keys/rotate", ops: map[string]op{
			http.MethodPost: change(a.rotateSigningKey, "rotateSigningKey", recorded("recordKPS, refused ones too; never a key"), wr),
		}},
	}
}

// ---- client secrets -----------------------------------------------------

// secretsList is the answer of GET .../secrets.
type secretsList struct {
	Secrets []apps.ClientSecret `json:"secrets"`
}

// newSecret is the answer of a secret's creation: its value, this once.
type newSecret struct {
	Secret apps.ClientSecret `json:"secret"`
	Value  string            `json:"value"`
	Note   string            `json:"note"`
}

const secretNote = "the client secret is shown this once: it is stored only as a keyed hash and cannot be read again"

func secretDetail(cs apps.ClientSecret) string {
	exp := "never expires"
	if !cs.ExpiresAt.IsZero() {
		exp = "expires " + cs.ExpiresAt.Format(time.RFC3339)
	}
	return fmt.Sprintf("client secret %s, %s", cs.ID, exp)
}

// GET /api/applications/{groupID}/{appID}/secrets
func (a *API) listSecrets(w http.ResponseWriter, r *http.Request) {
	out := secretsList{Secrets: []apps.ClientSecret{}}
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		app, err := findApp(r.Context(), g, gs, r.PathValue("appID"))
		if err != nil {
			return err
		}
		l, err := gs.apps.ClientSecrets(r.Context(), app.ID)
		out.Secrets = append(out.Secrets, l...)
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

// POST /api/applications/{groupID}/{appID}/secrets {"expiresAt"|"expiresIn"}
// (the body may be left out): a new client secret, whose value is in this
// answer only.
func (a *API) createSecret(w http.ResponseWriter, r *http.Request) {
	gid, arg := r.PathValue("groupID"), r.PathValue("appID")
	var b keyBody
	var app apps.App
	var out newSecret
	err := readOptionalBody(w, r, &b, `"expiresAt" (RFC 3339) or "expiresIn" (a duration)`)
	if err == nil && b.Enabled != nil {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `a client secret has no "enabled": delete it to stop it`}
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			var err error
			if app, err = findApp(r.Context(), g, gs, arg); err != nil {
				return err
			}
			exp, _, err := expiryOf(b, time.Now())
			if err != nil {
				return err
			}
			cs, v, err := gs.apps.CreateClientSecret(r.Context(), app.ID, exp)
			if err != nil {
				return err
			}
			out = newSecret{Secret: cs, Value: v.RevealString(), Note: secretNote}
			v.Wipe()
			return nil
		})
	}
	detail := fmt.Sprintf("application %q", arg)
	if app.ID != "" {
		detail = appText(app)
	}
	if out.Secret.ID != "" {
		detail = secretDetail(out.Secret) + " for " + detail
	}
	a.recordKPS(r, "create client secret", []string{gid, cmpOr(app.ID, arg), out.Secret.ID}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("client secret created", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "secret", out.Secret.ID)
	w.Header().Set("Location", "/api/applications/"+gid+"/"+app.ID+"/secrets/"+out.Secret.ID)
	w.Header().Set("Cache-Control", "no-store")
	apihttp.WriteResult(w, http.StatusCreated, out)
}

// DELETE /api/applications/{groupID}/{appID}/secrets/{secretID}
func (a *API) deleteSecret(w http.ResponseWriter, r *http.Request) {
	gid, arg, sid := r.PathValue("groupID"), r.PathValue("appID"), r.PathValue("secretID")
	var app apps.App
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		gid = g.group.ID
		var err error
		if app, err = findApp(r.Context(), g, gs, arg); err != nil {
			return err
		}
		err = gs.apps.DeleteClientSecret(r.Context(), app.ID, sid)
		if errors.Is(err, kps.ErrNotFound) || errors.Is(err, kps.ErrInvalid) {
			return &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("%s has no client secret %q", appText(app), sid), Err: err}
		}
		return err
	})
	detail := fmt.Sprintf("client secret %q of application %q", sid, arg)
	if app.ID != "" {
		detail = fmt.Sprintf("client secret %q of %s", sid, appText(app))
	}
	a.recordKPS(r, "delete client secret", []string{gid, cmpOr(app.ID, arg), sid}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("client secret deleted", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "secret", sid)
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"id": sid})
}

// ---- tokens -------------------------------------------------------------

// tokensPage is the answer of GET .../tokens.
type tokensPage struct {
	Tokens []oauth.TokenInfo `json:"tokens"`
	Next   string            `json:"next,omitempty"`
}

// GET /api/applications/{groupID}/{appID}/tokens?limit=&cursor=: the
// application's stored tokens (opaque access tokens and refresh tokens;
// JWT access tokens are not stored), never a token or its hash.
func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	page, err := pageOf(r)
	var out tokensPage
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			app, err := findApp(r.Context(), g, gs, r.PathValue("appID"))
			if err != nil {
				return err
			}
			out.Tokens, out.Next, err = oauth.ListClientTokens(r.Context(), gs.store, app.ID, page)
			return err
		})
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

func revokedDetail(n oauth.Revoked) string {
	return fmt.Sprintf("%d grant(s), %d code(s) not redeemed, %d token(s) without a grant", n.Families, n.Codes, n.Tokens)
}

// DELETE /api/applications/{groupID}/{appID}/tokens: revoke every grant
// and token of the application (oauth.RevokeClient).
func (a *API) revokeTokens(w http.ResponseWriter, r *http.Request) {
	gid, arg := r.PathValue("groupID"), r.PathValue("appID")
	var app apps.App
	var out oauth.Revoked
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		gid = g.group.ID
		var err error
		if app, err = findApp(r.Context(), g, gs, arg); err != nil {
			return err
		}
		out, err = oauth.RevokeClient(r.Context(), gs.store, app.ID, time.Now())
		return err
	})
	detail := fmt.Sprintf("the tokens of application %q", arg)
	if app.ID != "" {
		detail = "the tokens of " + appText(app) + ": " + revokedDetail(out)
	}
	a.recordKPS(r, "revoke oauth tokens", []string{gid, cmpOr(app.ID, arg)}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("OAuth tokens revoked", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID,
		"grants", out.Families, "codes", out.Codes, "tokens", out.Tokens)
	apihttp.WriteResult(w, http.StatusOK, out)
}

// DELETE /api/applications/{groupID}/{appID}/families/{familyID}: revoke
// one grant of the application (its familyId in GET .../tokens).
func (a *API) revokeFamily(w http.ResponseWriter, r *http.Request) {
	gid, arg, fid := r.PathValue("groupID"), r.PathValue("appID"), r.PathValue("familyID")
	var app apps.App
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		gid = g.group.ID
		var err error
		if app, err = findApp(r.Context(), g, gs, arg); err != nil {
			return err
		}
		err = oauth.RevokeGrant(r.Context(), gs.store, app.ID, fid)
		if errors.Is(err, oauth.ErrNoGrant) {
			return &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("%s has no grant (token family) %q", appText(app), fid), Err: err}
		}
		return err
	})
	detail := fmt.Sprintf("grant %q of application %q", fid, arg)
	if app.ID != "" {
		detail = fmt.Sprintf("grant %q of %s", fid, appText(app))
	}
	a.recordKPS(r, "revoke oauth grant", []string{gid, cmpOr(app.ID, arg), fid}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("OAuth grant revoked", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "family", fid)
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"familyId": fid})
}

// ---- users --------------------------------------------------------------

// usersPage is the answer of GET .../oauth/users.
type usersPage struct {
	Users []authorize.User `json:"users"`
	Next  string           `json:"next,omitempty"`
}

// oauthUserBody is the body of POST and PUT .../oauth/users: in a PUT a
// field left out keeps its value.
type oauthUserBody struct {
	Username *string `json:"username"`
	Name     *string `json:"name"`
	Password *string `json:"password"`
	Enabled  *bool   `json:"enabled"`
}

// withUsers is withGroupStore with the group's users table.
func (a *API) withUsers(r *http.Request, f func(g groupKPS, gs *groupStore, u *authorize.Users) error) error {
	return a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		u, err := authorize.NewUsers(r.Context(), gs.store)
		if err != nil {
			return err
		}
		return f(g, gs, u)
	})
}

func findUser(ctx context.Context, g groupKPS, u *authorize.Users, name string) (authorize.User, error) {
	user, err := u.Get(ctx, name)
	if errors.Is(err, kps.ErrNotFound) || errors.Is(err, kps.ErrInvalid) {
		return user, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("group %s has no OAuth user %q", g.group.ID, name), Err: err}
	}
	return user, err
}

func userDetail(u authorize.User) string {
	return fmt.Sprintf("OAuth user %s (%q), enabled %t", u.ID, u.Username, u.Enabled)
}

// GET /api/applications/{groupID}/oauth/users?limit=&cursor=
func (a *API) listOAuthUsers(w http.ResponseWriter, r *http.Request) {
	page, err := pageOf(r)
	var out usersPage
	if err == nil {
		err = a.withUsers(r, func(_ groupKPS, _ *groupStore, u *authorize.Users) error {
			var err error
			out.Users, out.Next, err = u.List(r.Context(), page)
			return err
		})
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

// GET /api/applications/{groupID}/oauth/users/{username}
func (a *API) getOAuthUser(w http.ResponseWriter, r *http.Request) {
	var out authorize.User
	err := a.withUsers(r, func(g groupKPS, _ *groupStore, u *authorize.Users) error {
		var err error
		out, err = findUser(r.Context(), g, u, r.PathValue("username"))
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

const oauthUserFields = `"username", "name", "password" (and in PUT "enabled")`

// POST /api/applications/{groupID}/oauth/users {"username", "name",
// "password"}: a new user, enabled.
func (a *API) createOAuthUser(w http.ResponseWriter, r *http.Request) {
	gid := r.PathValue("groupID")
	var b oauthUserBody
	var out authorize.User
	err := apihttp.ReadBody(w, r, &b, oauthUserFields)
	switch {
	case err != nil:
	case b.Username == nil:
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `"username" is required`}
	case b.Password == nil:
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `"password" is required`}
	case b.Enabled != nil:
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `a new user is enabled; leave "enabled" out (PUT disables it)`}
	}
	if err == nil {
		pw := secret.FromString(*b.Password)
		defer pw.Wipe()
		err = a.withUsers(r, func(g groupKPS, _ *groupStore, u *authorize.Users) error {
			gid = g.group.ID
			var err error
			name := ""
			if b.Name != nil {
				name = *b.Name
			}
			out, err = u.Create(r.Context(), *b.Username, name, pw)
			if errors.Is(err, kps.ErrExists) {
				return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s has an OAuth user %q already", g.group.ID, *b.Username), Err: err}
			}
			return err
		})
	}
	detail := "OAuth user"
	if out.ID != "" {
		detail = userDetail(out)
	} else if b.Username != nil {
		detail = fmt.Sprintf("OAuth user %q", *b.Username)
	}
	a.recordKPS(r, "create oauth user", []string{gid, out.ID}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("OAuth user created", "user", apihttp.UserOf(r.Context()), "group", gid, "oauth_user", out.Username)
	w.Header().Set("Location", "/api/applications/"+gid+"/oauth/users/"+out.Username)
	apihttp.WriteResult(w, http.StatusCreated, out)
}

// PUT /api/applications/{groupID}/oauth/users/{username} {"password",
// "enabled"}: a new password, enable or disable; a field left out stays.
func (a *API) updateOAuthUser(w http.ResponseWriter, r *http.Request) {
	gid, name := r.PathValue("groupID"), r.PathValue("username")
	var b oauthUserBody
	var before, out authorize.User
	err := apihttp.ReadBody(w, r, &b, `"password", "enabled"`)
	switch {
	case err != nil:
	case b.Username != nil || b.Name != nil:
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `a user's "username" and "name" cannot change; give "password" or "enabled"`}
	case b.Password == nil && b.Enabled == nil:
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `nothing to change: give "password" or "enabled"`}
	}
	if err == nil {
		err = a.withUsers(r, func(g groupKPS, _ *groupStore, u *authorize.Users) error {
			gid = g.group.ID
			var err error
			if before, err = findUser(r.Context(), g, u, name); err != nil {
				return err
			}
			if b.Password != nil {
				pw := secret.FromString(*b.Password)
				err = u.SetPassword(r.Context(), name, pw)
				pw.Wipe()
				if err != nil {
					return err
				}
			}
			if b.Enabled != nil {
				if err := u.SetEnabled(r.Context(), name, *b.Enabled); err != nil {
					return err
				}
			}
			out, err = u.Get(r.Context(), name)
			return err
		})
	}
	action := "change oauth user"
	switch {
	case b.Password != nil && b.Enabled == nil:
		action = "set oauth user password"
	case b.Password == nil && b.Enabled != nil && *b.Enabled:
		action = "enable oauth user"
	case b.Password == nil && b.Enabled != nil:
		action = "disable oauth user"
	}
	detail := fmt.Sprintf("OAuth user %q", name)
	switch {
	case out.ID != "":
		detail = userDetail(out)
		if b.Password != nil {
			detail += ", password set"
		}
	case before.ID != "":
		detail = userDetail(before)
	}
	a.recordKPS(r, action, []string{gid, cmpOr(before.ID, name)}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("OAuth user changed", "user", apihttp.UserOf(r.Context()), "group", gid, "oauth_user", name, "enabled", out.Enabled, "password_set", b.Password != nil)
	apihttp.WriteResult(w, http.StatusOK, out)
}

// DELETE /api/applications/{groupID}/oauth/users/{username}
func (a *API) deleteOAuthUser(w http.ResponseWriter, r *http.Request) {
	gid, name := r.PathValue("groupID"), r.PathValue("username")
	var user authorize.User
	err := a.withUsers(r, func(g groupKPS, _ *groupStore, u *authorize.Users) error {
		gid = g.group.ID
		var err error
		if user, err = findUser(r.Context(), g, u, name); err != nil {
			return err
		}
		return u.Delete(r.Context(), name)
	})
	detail := fmt.Sprintf("OAuth user %q", name)
	if user.ID != "" {
		detail = userDetail(user)
	}
	a.recordKPS(r, "delete oauth user", []string{gid, cmpOr(user.ID, name)}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("OAuth user deleted", "user", apihttp.UserOf(r.Context()), "group", gid, "oauth_user", name)
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"id": user.ID, "username": user.Username})
}

// ---- signing keys -------------------------------------------------------

// rotatedSigningKey is the answer of a signing key's rotation.
type rotatedSigningKey struct {
	Kid  string   `json:"kid"`  // the new signing key
	Alg  string   `json:"alg"`  // its algorithm
	Kids []string `json:"kids"` // every key in the set, newest first: the older ones kept for verification
	Note string   `json:"note"`
}

// POST /api/applications/{groupID}/oauth/signing-keys/rotate: a new JWT
// signing key in groups/<group-id>/conf/oauth/keys, which the group's
// instances sign with within 10 seconds; the older keys stay for
// verification until their tokens expired. Only where every instance of
// the group is on the ANM's host (409 otherwise): the directory is a file
// tree of each instance's host.
func (a *API) rotateSigningKey(w http.ResponseWriter, r *http.Request) {
	gid := r.PathValue("groupID")
	var out rotatedSigningKey
	err := func() error {
		t, err := a.store.Load()
		if err != nil {
			return err
		}
		g, err := t.FindGroup(gid)
		if err != nil {
			return err
		}
		gid = g.ID
		if hasNodeManager(g) {
			return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("group %s (%q) is the node managers' group: it has no authorization server; give a gateway group", g.ID, g.Name)}
		}
		var remote []string
		for _, s := range g.Services {
			if s.Type == topology.TypeGateway && s.HostID != a.conf.HostID {
				remote = append(remote, fmt.Sprintf("%s on %s", s.ID, s.HostID))
			}
		}
		local := a.localInstances(g)
		switch {
		case len(local) == 0:
			return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s (%q) has no instance on the Admin Node Manager's host (%s): its signing keys (groups/%s/conf/oauth/keys) are on the hosts of its instances. Rotate them there (docs/oauth.md)", g.ID, g.Name, a.conf.HostID, g.ID)}
		case len(remote) > 0:
			return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s (%q) has instances on other hosts (%s): its signing keys (groups/%s/conf/oauth/keys) are one directory per host, and a key made here would reach only the instances of the Admin Node Manager's host (docs/oauth.md)", g.ID, g.Name, strings.Join(remote, ", "), g.ID)}
		}
		cfg, source, err := a.groupConfig(g.ID, local)
		if err != nil {
			return err
		}
		if !cfg.OAuth.Enabled || cfg.OAuth.ServerConfig().WithDefaults().AccessTokenFormat != oauth.FormatJWT {
			return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s's configuration (%s) issues no JWT access tokens (oauth.enabled and oauth.accessTokenFormat jwt): it has no signing key to rotate", g.ID, source)}
		}
		dir := filepath.Join(a.h.GroupConfDir(g.ID), "oauth", "keys")
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s has no signing keys yet (%s): its instances make the first one when they start with accessTokenFormat jwt", g.ID, a.h.Rel(dir))}
		}
		ks, err := oauth.LoadKeySet(a.h, dir, cfg.OAuth.SigningAlgorithm, nil)
		if err != nil {
			return &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the group's signing keys: " + err.Error(), Err: err}
		}
		kid, err := ks.Rotate()
		if err != nil {
			return &apihttp.Error{Code: http.StatusInternalServerError, Msg: "rotating the group's signing key: " + err.Error(), Err: err}
		}
		_, alg := ks.Current()
		out = rotatedSigningKey{Kid: kid, Alg: alg, Note: "the group's instances sign with the new key within 10 seconds; the older keys verify until their tokens expire"}
		for _, k := range ks.JWKS().Keys {
			out.Kids = append(out.Kids, k.KeyID)
		}
		return nil
	}()
	detail := "the OAuth signing keys of group " + gid
	if out.Kid != "" {
		detail += fmt.Sprintf(": new key %s (%s), %d key(s) in the set", out.Kid, out.Alg, len(out.Kids))
	}
	a.recordKPS(r, "rotate oauth signing key", []string{gid, out.Kid}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("OAuth signing key rotated", "user", apihttp.UserOf(r.Context()), "group", gid, "kid", out.Kid)
	apihttp.WriteResult(w, http.StatusOK, out)
}

// localInstances are the ids of g's gateway instances on the ANM's host.
func (a *API) localInstances(g *topology.Group) []string {
	var ids []string
	for _, s := range g.Services {
		if s.Type == topology.TypeGateway && s.HostID == a.conf.HostID {
			ids = append(ids, s.ID)
		}
	}
	return ids
}
