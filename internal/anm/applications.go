package anm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
)

// The client applications of a group and their API keys
// (docs/applications.md), kept in the group's Key Property Store through
// apps.Manager:
//
//	GET|POST        /api/applications/{groupID}                               list (paged), create
//	GET|PUT|DELETE  /api/applications/{groupID}/{appID}                       one application (id or name; "oauth": its OAuth client settings)
//	GET|POST        /api/applications/{groupID}/{appID}/keys                  its keys (never values), a new key
//	GET|PUT|DELETE  /api/applications/{groupID}/{appID}/keys/{keyID}         one key: enable, disable, expiry
//	POST            /api/applications/{groupID}/{appID}/keys/{keyID}/rotate  a new key, the old one expiring
//
// A key's value is in the answer of its creation (and of a rotation) and
// nowhere else: not in the store (only its keyed hash), not in the audit
// log, not in the node manager's log. Its id (gk_…) is public. The OAuth
// routes (client secrets, tokens, users, signing keys) are in
// oauthclients.go.

// DefaultRotationGrace is how long a rotated key keeps working when the
// request does not say.
const DefaultRotationGrace = 24 * time.Hour

// applicationsArea is /api/applications. Every change that passed the
// authorization is recorded in the audit log (recordKPS), refused ones too.
func (a *API) applicationsArea() area {
	rd, wr := "applications.read", "applications.write"
	by := recorded("recordKPS, refused changes too; never a key's value")
	return area{name: "applications", routes: append([]route{
		{pattern: "/api/applications/{groupID}", ops: map[string]op{
			http.MethodGet:  read(a.listApps, "listApplications", rd),
			http.MethodPost: change(a.createApp, "createApplication", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}", ops: map[string]op{
			http.MethodGet:    read(a.getApp, "getApplication", rd),
			http.MethodPut:    change(a.updateApp, "updateApplication", by, wr),
			http.MethodDelete: change(a.deleteApp, "deleteApplication", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}/keys", ops: map[string]op{
			http.MethodGet:  read(a.listKeys, "listKeys", rd),
			http.MethodPost: change(a.createKey, "createKey", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}/keys/{keyID}", ops: map[string]op{
			http.MethodGet:    read(a.getKey, "getKey", rd),
			http.MethodPut:    change(a.updateKey, "updateKey", by, wr),
			http.MethodDelete: change(a.deleteKey, "deleteKey", by, wr),
		}},
		{pattern: "/api/applications/{groupID}/{appID}/keys/{keyID}/rotate", ops: map[string]op{
			http.MethodPost: change(a.rotateKey, "rotateKey", by, wr),
		}},
	}, a.oauthRoutes(rd, wr)...)}
}

// appsPage is the answer of GET /api/applications/{groupID}.
type appsPage struct {
	Applications []apps.App `json:"applications"`
	Next         string     `json:"next,omitempty"` // the cursor of the next page; absent on the last
}

// appBody is the body of POST and PUT /api/applications/...: in a PUT a
// field left out keeps its value.
type appBody struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	Contact     *string   `json:"contact"`
	Enabled     *bool     `json:"enabled"`
	APIs        *[]string `json:"apis"`
	// OAuth is the application's settings as an OAuth client
	// (apps.OAuthClient); null in a PUT: it is no longer one.
	OAuth   json.RawMessage `json:"oauth"`
	Version int64           `json:"version"` // PUT: the version the change is based on (or If-Match)
}

const appFields = `"name", "description", "contact", "enabled", "apis", "oauth" (and in PUT "version")`

const oauthFields = `in "oauth": "public", "redirectUris", "grantTypes", "scopes", "authMethod", "jwks"`

// oauthOf reads b's "oauth": set when it was given, nil c for null.
func oauthOf(b appBody) (c *apps.OAuthClient, set bool, err error) {
	if b.OAuth == nil {
		return nil, false, nil
	}
	if string(b.OAuth) == "null" {
		return nil, true, nil
	}
	c = new(apps.OAuthClient)
	if err := apihttp.DecodeJSON(bytes.NewReader(b.OAuth), c, oauthFields); err != nil {
		var ae *apihttp.Error
		if errors.As(err, &ae) {
			ae.Msg = `"oauth": ` + ae.Msg
		}
		return nil, false, err
	}
	return c, true, nil
}

// keyBody is the body of POST .../keys and PUT .../keys/{keyID}.
// ExpiresAt is an RFC 3339 time ("" in a PUT: never); ExpiresIn a
// duration from now (720h). A field left out keeps its value.
type keyBody struct {
	Enabled   *bool   `json:"enabled"`
	ExpiresAt *string `json:"expiresAt"`
	ExpiresIn *string `json:"expiresIn"`
}

const keyFields = `"expiresAt" (RFC 3339) or "expiresIn" (a duration), and in PUT "enabled"`

// rotateBody is the body of POST .../rotate.
type rotateBody struct {
	Grace *string `json:"grace"` // a duration; default 24h
}

// newKey is the answer of a key's creation: the key's value, this once.
type newKey struct {
	Key   apps.Key `json:"key"`
	Value string   `json:"value"`
	Note  string   `json:"note"`
}

// rotated is the answer of a rotation.
type rotated struct {
	Old   apps.Key `json:"old"`
	Key   apps.Key `json:"key"`
	Value string   `json:"value"`
	Note  string   `json:"note"`
}

const onceNote = "the key's value is shown this once: it is not stored and cannot be read again"

// pageOf reads ?limit= and ?cursor=.
func pageOf(r *http.Request) (kps.Page, error) {
	q := r.URL.Query()
	p := kps.Page{Cursor: q.Get("cursor")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > kps.MaxLimit {
			return p, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("limit %q: want an integer from 1 to %d", s, kps.MaxLimit)}
		}
		p.Limit = n
	}
	return p, nil
}

// readOptionalBody is ReadBody for a body that may be left out.
func readOptionalBody(w http.ResponseWriter, r *http.Request, v any, accepted string) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	return apihttp.ReadBody(w, r, v, accepted)
}

// writeVersioned answers v with its version in ETag.
func writeVersioned(w http.ResponseWriter, code int, v any, version int64) {
	w.Header().Set("ETag", apihttp.ETag(version))
	apihttp.WriteResult(w, code, v)
}

// findApp is the application arg names (id or name) in gs.
func findApp(ctx context.Context, g groupKPS, gs *groupStore, arg string) (apps.App, error) {
	app, err := gs.apps.App(ctx, arg)
	if errors.Is(err, kps.ErrNotFound) {
		return app, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("group %s has no application with the id or name %q", g.group.ID, arg), Err: err}
	}
	return app, err
}

// findKey is key id of app.
func findKey(ctx context.Context, gs *groupStore, app apps.App, id string) (apps.Key, error) {
	k, err := gs.apps.Key(ctx, id)
	if errors.Is(err, kps.ErrNotFound) || err == nil && k.AppID != app.ID {
		return apps.Key{}, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("application %s (%q) has no key %q", app.ID, app.Name, id), Err: err}
	}
	return k, err
}

// checkAPIs refuses the API names of apis that the group's configuration
// does not have, except those of had (kept from before: an API removed by
// a deployment does not block other changes of the application).
func checkAPIs(g groupKPS, apis, had []string) error {
	for _, n := range apis {
		if slices.Contains(g.apis, n) || slices.Contains(had, n) {
			continue
		}
		known := "none"
		if len(g.apis) > 0 {
			known = strings.Join(g.apis, ", ")
		}
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("group %s's configuration (%s) has no API %q; its APIs: %s. Deploy the API first, or leave it out and add it later", g.group.ID, g.source, n, known)}
	}
	return nil
}

// recordKPS writes a change of the applications or kps areas to the audit
// log: who, from where, the targets (group, application or table, key or
// row), what, and the outcome with the message the client got. It is never
// given a key's value.
func (a *API) recordKPS(r *http.Request, action string, targets []string, detail string, err error) {
	targets = slices.DeleteFunc(targets, func(s string) bool { return s == "" })
	a.record(r.Context(), actor(r), action, targets, detail, apihttp.ClientMessage(err))
	if err == nil && len(targets) > 0 {
		a.announceKPS(targets[0], kpsChangedTables(action, targets)) // cluster.go
	}
}

func appText(app apps.App) string { return fmt.Sprintf("application %s (%q)", app.ID, app.Name) }

func appDetail(app apps.App) string {
	apis := "no API"
	if len(app.APIs) > 0 {
		apis = "APIs " + strings.Join(app.APIs, ", ")
	}
	oc := ""
	if c := app.OAuth; c != nil {
		kind := "confidential"
		if c.Public {
			kind = "public"
		}
		oc = fmt.Sprintf(", OAuth client (%s; grants %s; scopes %s; redirect URIs %s", kind, strings.Join(c.GrantTypes, " "), orNone(c.Scopes), orNone(c.RedirectURIs))
		if c.AuthMethod != "" {
			oc += "; auth method " + c.AuthMethod
		}
		if len(c.JWKS) > 0 {
			oc += "; with public keys"
		}
		oc += ")"
	}
	return fmt.Sprintf("%s, enabled %t, %s%s, version %d", appText(app), app.Enabled, apis, oc, app.Version)
}

func keyDetail(k apps.Key) string {
	exp := "never expires"
	if !k.ExpiresAt.IsZero() {
		exp = "expires " + k.ExpiresAt.Format(time.RFC3339)
	}
	return fmt.Sprintf("key %s, enabled %t, %s", k.ID, k.Enabled, exp)
}

// ---- applications -------------------------------------------------------

// GET /api/applications/{groupID}?limit=&cursor=
func (a *API) listApps(w http.ResponseWriter, r *http.Request) {
	page, err := pageOf(r)
	var out appsPage
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			list, next, err := gs.apps.Apps(r.Context(), page)
			out = appsPage{Applications: list, Next: next}
			return err
		})
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if out.Applications == nil {
		out.Applications = []apps.App{}
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

// POST /api/applications/{groupID}
func (a *API) createApp(w http.ResponseWriter, r *http.Request) {
	gid := r.PathValue("groupID")
	var b appBody
	var out apps.App
	err := apihttp.ReadBody(w, r, &b, appFields)
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			switch {
			case b.Name == nil:
				return &apihttp.Error{Code: http.StatusBadRequest, Msg: `"name" is required`}
			case b.Version != 0:
				return &apihttp.Error{Code: http.StatusBadRequest, Msg: `a new application has no "version" yet; leave it out`}
			}
			app := apps.App{Name: *b.Name, Enabled: true}
			if err := fillApp(&app, b); err != nil {
				return err
			}
			if err := checkAPIs(g, app.APIs, nil); err != nil {
				return err
			}
			var err error
			out, err = gs.apps.CreateApp(r.Context(), app)
			if errors.Is(err, kps.ErrExists) {
				return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s has an application called %q already", g.group.ID, app.Name), Err: err}
			}
			return err
		})
	}
	detail := ""
	if out.ID != "" {
		detail = appDetail(out)
	} else if b.Name != nil {
		detail = fmt.Sprintf("application %q", *b.Name)
	}
	a.recordKPS(r, "create application", []string{gid, out.ID}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("application created", "user", apihttp.UserOf(r.Context()), "group", gid, "application", out.ID, "name", out.Name)
	w.Header().Set("Location", "/api/applications/"+gid+"/"+out.ID)
	writeVersioned(w, http.StatusCreated, out, out.Version)
}

// fillApp sets the fields b gives.
func fillApp(app *apps.App, b appBody) error {
	if b.Name != nil {
		app.Name = *b.Name
	}
	if b.Description != nil {
		app.Description = *b.Description
	}
	if b.Contact != nil {
		app.Contact = *b.Contact
	}
	if b.Enabled != nil {
		app.Enabled = *b.Enabled
	}
	if b.APIs != nil {
		app.APIs = *b.APIs
	}
	c, set, err := oauthOf(b)
	if set {
		app.OAuth = c
	}
	return err
}

// GET /api/applications/{groupID}/{appID}
func (a *API) getApp(w http.ResponseWriter, r *http.Request) {
	var out apps.App
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		var err error
		out, err = findApp(r.Context(), g, gs, r.PathValue("appID"))
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, out, out.Version)
}

// PUT /api/applications/{groupID}/{appID}: the fields given change, the
// others stay; with a version (If-Match, ?version or "version") only if
// the application is still at it.
func (a *API) updateApp(w http.ResponseWriter, r *http.Request) {
	gid, arg := r.PathValue("groupID"), r.PathValue("appID")
	var b appBody
	var before, out apps.App
	expect, err := requestVersion(r, "application's version")
	if err == nil {
		err = apihttp.ReadBody(w, r, &b, appFields)
	}
	if err == nil && expect != 0 && b.Version != 0 && expect != b.Version {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`If-Match says version %d and "version" %d; send one`, expect, b.Version)}
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			var err error
			if before, err = findApp(r.Context(), g, gs, arg); err != nil {
				return err
			}
			app := before
			if err := fillApp(&app, b); err != nil {
				return err
			}
			if err := checkAPIs(g, app.APIs, before.APIs); err != nil {
				return err
			}
			app.Version = max(expect, b.Version)
			if app.Version == 0 {
				app.Version = before.Version
			}
			out, err = gs.apps.UpdateApp(r.Context(), app)
			if errors.Is(err, kps.ErrExists) {
				return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s has an application called %q already", g.group.ID, app.Name), Err: err}
			}
			if errors.Is(err, kps.ErrConflict) {
				return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("%s is no longer at version %d (it changed since it was read); read it again (GET) and retry with its version", appText(before), app.Version), Err: err}
			}
			return err
		})
	}
	detail := fmt.Sprintf("application %q", arg)
	switch {
	case out.ID != "":
		detail = appDetail(out) + fmt.Sprintf(" (was: %s)", appDetail(before))
	case before.ID != "":
		detail = appDetail(before)
	}
	a.recordKPS(r, "change application", []string{gid, cmpOr(before.ID, arg)}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("application changed", "user", apihttp.UserOf(r.Context()), "group", gid, "application", out.ID, "version", out.Version)
	writeVersioned(w, http.StatusOK, out, out.Version)
}

func cmpOr(s, alt string) string {
	if s != "" {
		return s
	}
	return alt
}

// DELETE /api/applications/{groupID}/{appID}: the application, its keys
// and its OAuth tokens (revoked); with a version (If-Match or ?version) only if it is still at it.
func (a *API) deleteApp(w http.ResponseWriter, r *http.Request) {
	gid, arg := r.PathValue("groupID"), r.PathValue("appID")
	var app apps.App
	var keys []apps.Key
	var revoked oauth.Revoked
	expect, err := requestVersion(r, "application's version")
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			var err error
			if app, err = findApp(r.Context(), g, gs, arg); err != nil {
				return err
			}
			if expect != 0 && expect != app.Version {
				return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("%s is at version %d, not %d; read it again (GET) and retry with its version", appText(app), app.Version, expect)}
			}
			if keys, err = gs.apps.Keys(r.Context(), app.ID); err != nil {
				return err
			}
			// Its OAuth tokens first: the authorization server checks a
			// token, not the client, on each request.
			if revoked, err = oauth.RevokeClient(r.Context(), gs.store, app.ID, time.Now()); err != nil {
				return err
			}
			return gs.apps.DeleteApp(r.Context(), app.ID, expect)
		})
	}
	detail := fmt.Sprintf("application %q", arg)
	if app.ID != "" {
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		detail = appDetail(app) + fmt.Sprintf(", with %d key(s) %s", len(keys), strings.Join(ids, " "))
		if revoked != (oauth.Revoked{}) {
			detail += "; OAuth tokens revoked: " + revokedDetail(revoked)
		}
	}
	a.recordKPS(r, "delete application", []string{gid, cmpOr(app.ID, arg)}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("application deleted", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "keys", len(keys))
	apihttp.WriteResult(w, http.StatusOK, map[string]any{"id": app.ID, "deletedKeys": len(keys), "revokedTokens": revoked})
}

// ---- keys -------------------------------------------------------------

// keysList is the answer of GET .../keys.
type keysList struct {
	Keys []apps.Key `json:"keys"`
}

// GET /api/applications/{groupID}/{appID}/keys
func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	out := keysList{Keys: []apps.Key{}}
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		app, err := findApp(r.Context(), g, gs, r.PathValue("appID"))
		if err != nil {
			return err
		}
		keys, err := gs.apps.Keys(r.Context(), app.ID)
		out.Keys = append(out.Keys, keys...)
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

// GET /api/applications/{groupID}/{appID}/keys/{keyID}
func (a *API) getKey(w http.ResponseWriter, r *http.Request) {
	var out apps.Key
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		app, err := findApp(r.Context(), g, gs, r.PathValue("appID"))
		if err == nil {
			out, err = findKey(r.Context(), gs, app, r.PathValue("keyID"))
		}
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, out, out.Version)
}

// expiryOf reads "expiresAt" or "expiresIn" of b (set: one was given;
// zero t with set: never).
func expiryOf(b keyBody, now time.Time) (t time.Time, set bool, err error) {
	switch {
	case b.ExpiresAt != nil && b.ExpiresIn != nil:
		return t, false, &apihttp.Error{Code: http.StatusBadRequest, Msg: `give "expiresAt" or "expiresIn", not both`}
	case b.ExpiresIn != nil:
		d, err := time.ParseDuration(*b.ExpiresIn)
		if err != nil || d <= 0 {
			return t, false, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`"expiresIn" %q: want a positive duration (720h, 90m)`, *b.ExpiresIn)}
		}
		return now.Add(d), true, nil
	case b.ExpiresAt != nil && *b.ExpiresAt == "":
		return t, true, nil
	case b.ExpiresAt != nil:
		t, err := time.Parse(time.RFC3339, *b.ExpiresAt)
		if err != nil {
			return t, false, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`"expiresAt" %q: want an RFC 3339 time (2027-01-31T00:00:00Z), or "" for never`, *b.ExpiresAt)}
		}
		return t, true, nil
	}
	return t, false, nil
}

// POST /api/applications/{groupID}/{appID}/keys {"expiresAt"|"expiresIn"}
// (the body may be left out): a new key, whose value is in this answer
// only.
func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	gid, arg := r.PathValue("groupID"), r.PathValue("appID")
	var b keyBody
	var app apps.App
	var out newKey
	err := readOptionalBody(w, r, &b, keyFields)
	if err == nil && b.Enabled != nil {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `a new key is enabled; leave "enabled" out (PUT .../keys/{keyID} disables it)`}
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
			k, key, err := gs.apps.CreateKey(r.Context(), app.ID, exp)
			if err != nil {
				return err
			}
			out = newKey{Key: k, Value: key.RevealString(), Note: onceNote}
			key.Wipe()
			return nil
		})
	}
	detail := fmt.Sprintf("application %q", arg)
	if app.ID != "" {
		detail = appText(app)
	}
	if out.Key.ID != "" {
		detail = keyDetail(out.Key) + " for " + detail
	}
	a.recordKPS(r, "create api key", []string{gid, cmpOr(app.ID, arg), out.Key.ID}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("API key created", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "key", out.Key.ID)
	w.Header().Set("Location", "/api/applications/"+gid+"/"+app.ID+"/keys/"+out.Key.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeVersioned(w, http.StatusCreated, out, out.Key.Version)
}

// PUT /api/applications/{groupID}/{appID}/keys/{keyID}
// {"enabled", "expiresAt"|"expiresIn"}: enable or disable a key, change
// its expiry ("expiresAt": "" for never); a field left out stays.
func (a *API) updateKey(w http.ResponseWriter, r *http.Request) {
	gid, arg, kid := r.PathValue("groupID"), r.PathValue("appID"), r.PathValue("keyID")
	var b keyBody
	var app apps.App
	var before, out apps.Key
	err := apihttp.ReadBody(w, r, &b, keyFields)
	if err == nil && b.Enabled == nil && b.ExpiresAt == nil && b.ExpiresIn == nil {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `nothing to change: give "enabled", "expiresAt" or "expiresIn"`}
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			var err error
			if app, err = findApp(r.Context(), g, gs, arg); err != nil {
				return err
			}
			if before, err = findKey(r.Context(), gs, app, kid); err != nil {
				return err
			}
			enabled, exp := before.Enabled, before.ExpiresAt
			if b.Enabled != nil {
				enabled = *b.Enabled
			}
			if t, set, err := expiryOf(b, time.Now()); err != nil {
				return err
			} else if set {
				exp = t
			}
			out, err = gs.apps.SetKey(r.Context(), kid, enabled, exp)
			return err
		})
	}
	action := "change api key"
	switch {
	case b.Enabled != nil && *b.Enabled && !before.Enabled:
		action = "enable api key"
	case b.Enabled != nil && !*b.Enabled && (before.Enabled || before.ID == ""):
		action = "disable api key"
	}
	detail := fmt.Sprintf("key %q of application %q", kid, arg)
	if out.ID != "" {
		detail = keyDetail(out) + " of " + appText(app) + " (was: " + keyDetail(before) + ")"
	}
	a.recordKPS(r, action, []string{gid, cmpOr(app.ID, arg), kid}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("API key changed", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "key", kid, "enabled", out.Enabled)
	writeVersioned(w, http.StatusOK, out, out.Version)
}

// POST /api/applications/{groupID}/{appID}/keys/{keyID}/rotate
// {"grace": "24h"} (the body may be left out): a new key for the
// application, whose value is in this answer only; the old one keeps
// working for the grace period (0: it stops now).
func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) {
	gid, arg, kid := r.PathValue("groupID"), r.PathValue("appID"), r.PathValue("keyID")
	var b rotateBody
	var app apps.App
	var out rotated
	grace := DefaultRotationGrace
	err := readOptionalBody(w, r, &b, `"grace" (a duration, default 24h)`)
	if err == nil && b.Grace != nil {
		d, perr := time.ParseDuration(*b.Grace)
		if perr != nil || d < 0 {
			err = &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`"grace" %q: want a duration, 0 or more (24h, 30m, 0s)`, *b.Grace)}
		}
		grace = d
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			var err error
			if app, err = findApp(r.Context(), g, gs, arg); err != nil {
				return err
			}
			if _, err = findKey(r.Context(), gs, app, kid); err != nil {
				return err
			}
			old, fresh, key, err := gs.apps.RotateKey(r.Context(), kid, grace)
			if err != nil {
				return err
			}
			out = rotated{Old: old, Key: fresh, Value: key.RevealString(), Note: onceNote}
			key.Wipe()
			return nil
		})
	}
	detail := fmt.Sprintf("key %q of application %q, grace %s", kid, arg, grace)
	if out.Key.ID != "" {
		detail = fmt.Sprintf("key %s of %s replaced by %s; the old one: %s (grace %s)", kid, appText(app), out.Key.ID, keyDetail(out.Old), grace)
	}
	a.recordKPS(r, "rotate api key", []string{gid, cmpOr(app.ID, arg), kid, out.Key.ID}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("API key rotated", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "old", kid, "key", out.Key.ID, "grace", grace.String())
	w.Header().Set("Location", "/api/applications/"+gid+"/"+app.ID+"/keys/"+out.Key.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeVersioned(w, http.StatusCreated, out, out.Key.Version)
}

// DELETE /api/applications/{groupID}/{appID}/keys/{keyID}
func (a *API) deleteKey(w http.ResponseWriter, r *http.Request) {
	gid, arg, kid := r.PathValue("groupID"), r.PathValue("appID"), r.PathValue("keyID")
	var app apps.App
	var k apps.Key
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		gid = g.group.ID
		var err error
		if app, err = findApp(r.Context(), g, gs, arg); err != nil {
			return err
		}
		if k, err = findKey(r.Context(), gs, app, kid); err != nil {
			return err
		}
		return gs.apps.DeleteKey(r.Context(), kid)
	})
	detail := fmt.Sprintf("key %q of application %q", kid, arg)
	if k.ID != "" {
		detail = keyDetail(k) + " of " + appText(app)
	}
	a.recordKPS(r, "delete api key", []string{gid, cmpOr(app.ID, arg), kid}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("API key deleted", "user", apihttp.UserOf(r.Context()), "group", gid, "application", app.ID, "key", kid)
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"id": kid})
}
