package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
)

// The client applications and API keys verbs of the operator's client
// (docs/applications.md, docs/client.md): gatehouse client apps
// list|show|create|update|delete -g GROUP and gatehouse client keys
// list|create|disable|enable|rotate|delete -g GROUP --app APP. GROUP is a
// group id or name (resolveGroup), APP an application id or name (the API
// takes either). A key's value is printed once, by keys create and keys
// rotate.

// appsOpts are the options of the apps and keys verbs.
type appsOpts struct {
	app, name, description, contact string
	hasDescription, hasContact      bool
	apis                            []string
	noAPIs                          bool
	disabled, enable, disable       bool
	expires, grace                  string
	oauthOpts                       // the OAuth options (client_oauth.go)
}

const (
	groupHelp = "-g, --group GROUP              the group: its id (group-2) or its name"
	appHelp   = "--app APP                      the application: its id or its name"
)

var appsVerbs = []clientVerb{
	{name: "apps list", opts: []string{"group"}, required: []string{"group"}, api: "GET /api/applications/{groupID}",
		summary: "the group's client applications",
		help:    groupHelp,
		run:     func(ctx context.Context, c *apiClient, _ []string) error { return c.appsList(ctx) }},
	{name: "apps show", args: []string{"APP"}, opts: []string{"group"}, required: []string{"group"},
		api: "GET /api/applications/{groupID}/{appID}, GET …/keys", summary: "an application and its keys (never their values)",
		help: groupHelp,
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.appsShow(ctx, a[0]) }},
	{name: "apps create", args: []string{"NAME"}, opts: []string{"group", "description", "contact", "api", "disabled"}, required: []string{"group"},
		api: "POST /api/applications/{groupID}", summary: "create a client application",
		help: groupHelp + "\n" +
			"--description TEXT             what it is\n" +
			"--contact TEXT                 who to call about it\n" +
			"--api NAME                     an API of the group's configuration it may call; repeat for several\n" +
			"--disabled                     create it disabled (its keys open nothing until apps update --enable)",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.appsCreate(ctx, a[0]) }},
	{name: "apps update", args: []string{"APP"}, opts: []string{"group", "name", "description", "contact", "api", "no-apis", "enable", "disable"}, required: []string{"group"},
		api: "PUT /api/applications/{groupID}/{appID}", summary: "change an application (the options given; the rest stays)",
		help: groupHelp + "\n" +
			"--name NAME                    a new name\n" +
			"--description TEXT             a new description\n" +
			"--contact TEXT                 a new contact\n" +
			"--api NAME                     its APIs become exactly the ones given (repeat for several)\n" +
			"--no-apis                      it may call no API\n" +
			"--enable, --disable            enable or disable it (and so every key of it)",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.appsUpdate(ctx, a[0]) }},
	{name: "apps delete", args: []string{"APP"}, opts: []string{"group"}, required: []string{"group"},
		api: "DELETE /api/applications/{groupID}/{appID}", summary: "delete an application and every key of it",
		help: groupHelp,
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.appsDelete(ctx, a[0]) }},
	{name: "keys list", opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "GET /api/applications/{groupID}/{appID}/keys", summary: "an application's API keys: ids and states, never values",
		help: groupHelp + "\n" + appHelp,
		run:  func(ctx context.Context, c *apiClient, _ []string) error { return c.keysList(ctx) }},
	{name: "keys create", opts: []string{"group", "app", "expires"}, required: []string{"group", "app"},
		api: "POST /api/applications/{groupID}/{appID}/keys", summary: "a new API key for an application; its value is printed this once",
		help: groupHelp + "\n" + appHelp + "\n" +
			"--expires WHEN                 a duration from now (720h) or an RFC 3339 time (2027-01-31T00:00:00Z);\n" +
			"                               default: never",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.keysCreate(ctx) }},
	{name: "keys disable", args: []string{"KEY"}, opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "PUT /api/applications/{groupID}/{appID}/keys/{keyID}", summary: "disable a key (refused by the instances within kps.cache.ttl)",
		help: groupHelp + "\n" + appHelp + "\nKEY is the key's id (gk_ and 12 characters).",
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.keysSetEnabled(ctx, a[0], false) }},
	{name: "keys enable", args: []string{"KEY"}, opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "PUT /api/applications/{groupID}/{appID}/keys/{keyID}", summary: "enable a disabled key again",
		help: groupHelp + "\n" + appHelp + "\nKEY is the key's id (gk_ and 12 characters).",
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.keysSetEnabled(ctx, a[0], true) }},
	{name: "keys rotate", args: []string{"KEY"}, opts: []string{"group", "app", "grace"}, required: []string{"group", "app"},
		api: "POST /api/applications/{groupID}/{appID}/keys/{keyID}/rotate", summary: "a new key in place of KEY, which keeps working for the grace period; the new value is printed this once",
		help: groupHelp + "\n" + appHelp + "\n" +
			"--grace D                      how long the old key keeps working (default 24h; 0s: it stops now)",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.keysRotate(ctx, a[0]) }},
	{name: "keys delete", args: []string{"KEY"}, opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "DELETE /api/applications/{groupID}/{appID}/keys/{keyID}", summary: "delete a key",
		help: groupHelp + "\n" + appHelp,
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.keysDelete(ctx, a[0]) }},
}

func init() {
	for k, v := range map[string]optKind{"app": optString, "name": optString, "description": optString, "contact": optString,
		"api": optRepeat, "no-apis": optBool, "disabled": optBool, "enable": optBool, "disable": optBool, "expires": optString, "grace": optString} {
		clientOptions[k] = v
	}
	for k, v := range map[string]string{"app": "APP", "name": "NAME", "description": "TEXT", "contact": "TEXT", "api": "NAME", "expires": "WHEN", "grace": "D"} {
		clientOptionArg[k] = v
	}
	clientNouns["apps"], clientNouns["keys"] = true, true
	clientVerbs = append(clientVerbs, appsVerbs...)
}

// appsOptsFrom fills o's apps and keys options from vals (the options have
// been checked to belong to verb).
func appsOptsFrom(verb *clientVerb, o *clientOpts, vals map[string][]string) error {
	one := func(name string) string {
		if v := vals[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p := &o.appsOpts
	p.app, p.name, p.description, p.contact = one("app"), one("name"), one("description"), one("contact")
	p.hasDescription, p.hasContact = vals["description"] != nil, vals["contact"] != nil
	p.apis, p.noAPIs = vals["api"], vals["no-apis"] != nil
	p.disabled, p.enable, p.disable = vals["disabled"] != nil, vals["enable"] != nil, vals["disable"] != nil
	p.expires, p.grace = one("expires"), one("grace")
	switch {
	case vals["app"] != nil && strings.TrimSpace(p.app) == "":
		return usagef("client", "--app wants an application id or name, got an empty one")
	case p.enable && p.disable:
		return usagef("client", "give --enable or --disable, not both")
	case p.noAPIs && len(p.apis) > 0:
		return usagef("client", "give --api NAME or --no-apis, not both")
	}
	if err := oauthOptsFrom(verb, &p.oauthOpts, vals); err != nil {
		return err
	}
	if verb.name == "apps update" && vals["name"] == nil && !p.hasDescription && !p.hasContact && p.apis == nil && !p.noAPIs && !p.enable && !p.disable && !p.hasOAuth && !p.noOAuth {
		return usagef("client", "apps update wants something to change: --name, --description, --contact, --api, --no-apis, --enable, --disable or an OAuth setting (--grant-type, --redirect-uri, --scope, --public, --confidential, --auth-method, --jwks-file, --no-oauth)")
	}
	if vals["name"] != nil && strings.TrimSpace(p.name) == "" {
		return usagef("client", "--name wants a name, got an empty one")
	}
	if p.grace != "" {
		if d, err := time.ParseDuration(p.grace); err != nil || d < 0 {
			return usagef("client", "--grace %q: want a duration, 0 or more (24h, 30m, 0s)", p.grace)
		}
	}
	if p.expires != "" {
		if _, _, err := expiresBody(p.expires); err != nil {
			return err
		}
	}
	return nil
}

// expiresBody is the field of POST …/keys for --expires: expiresIn for a
// duration, expiresAt for a time.
func expiresBody(s string) (field, value string, err error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return "", "", usagef("client", "--expires %q: want a positive duration or a time in the future", s)
		}
		return "expiresIn", s, nil
	}
	if _, err := time.Parse(time.RFC3339, s); err == nil {
		return "expiresAt", s, nil
	}
	return "", "", usagef("client", "--expires %q: want a duration from now (720h) or an RFC 3339 time (2027-01-31T00:00:00Z)", s)
}

// appsPath is /applications/{gid}[/{app}[/keys[/{key}]]] with each part
// escaped; -g is resolved first.
func (c *apiClient) appsPath(ctx context.Context, parts ...string) (gid, path string, err error) {
	gid, err = c.resolveGroup(ctx, c.o.group)
	if err != nil {
		return "", "", err
	}
	path = "/applications/" + url.PathEscape(gid)
	for _, p := range parts {
		path += "/" + url.PathEscape(p)
	}
	return gid, path, nil
}

func (c *apiClient) appsList(ctx context.Context) error {
	gid, path, err := c.appsPath(ctx)
	if err != nil {
		return err
	}
	var all []apps.App
	var raws []json.RawMessage
	cursor := ""
	for {
		p := path
		if cursor != "" {
			p += "?cursor=" + url.QueryEscape(cursor)
		}
		raw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: p})
		if err != nil {
			return err
		}
		var page struct {
			Applications []json.RawMessage `json:"applications"`
			Next         string            `json:"next"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("apps list answer: %w", err)
		}
		for _, r := range page.Applications {
			var a apps.App
			if err := json.Unmarshal(r, &a); err != nil {
				return fmt.Errorf("apps list answer: %w", err)
			}
			all, raws = append(all, a), append(raws, r)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if c.o.json {
		b, _ := json.Marshal(raws)
		if raws == nil {
			b = []byte("[]")
		}
		return c.printJSON(b)
	}
	if len(all) == 0 {
		fmt.Fprintf(c.env.Stdout, "group %s has no client application (gatehouse client apps create -g %s NAME)\n", gid, gid)
		return nil
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tENABLED\tAPIS\tCONTACT")
	for _, a := range all {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", a.ID, a.Name, a.Enabled, orDash(strings.Join(a.APIs, ", ")), orDash(a.Contact))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *apiClient) appsShow(ctx context.Context, app string) error {
	_, path, err := c.appsPath(ctx, app)
	if err != nil {
		return err
	}
	raw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: path})
	if err != nil {
		return err
	}
	var a apps.App
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Errorf("apps show answer: %w", err)
	}
	kraw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: path + "/keys"})
	if err != nil {
		return err
	}
	var kl struct {
		Keys []apps.Key `json:"keys"`
	}
	if err := json.Unmarshal(kraw, &kl); err != nil {
		return fmt.Errorf("keys answer: %w", err)
	}
	if c.o.json {
		return c.printJSON(json.RawMessage(fmt.Sprintf(`{"application":%s,"keys":%s}`, raw, mustJSONField(kraw, "keys"))))
	}
	w := c.env.Stdout
	fmt.Fprintf(w, "application %s (%s), version %d\n", a.ID, a.Name, a.Version)
	fmt.Fprintf(w, "  enabled:     %t\n  APIs:        %s\n  description: %s\n  contact:     %s\n  created:     %s\n  OAuth:       %s\n",
		a.Enabled, orDash(strings.Join(a.APIs, ", ")), orDash(a.Description), orDash(a.Contact), a.CreatedAt.Format(time.RFC3339), oauthText(a.OAuth))
	if len(kl.Keys) == 0 {
		fmt.Fprintln(w, "  keys:        none")
		return nil
	}
	fmt.Fprintln(w, "  keys:")
	return c.printKeys(kl.Keys, "    ")
}

// mustJSONField is the raw value of field in the object raw ("[]" when
// absent).
func mustJSONField(raw json.RawMessage, field string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m[field] == nil {
		return json.RawMessage("[]")
	}
	return m[field]
}

func (c *apiClient) printKeys(keys []apps.Key, indent string) error {
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%sKEY\tENABLED\tEXPIRES\tCREATED\n", indent)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s%s\t%t\t%s\t%s\n", indent, k.ID, k.Enabled, expiresText(k), k.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func expiresText(k apps.Key) string {
	switch {
	case k.ExpiresAt.IsZero():
		return "never"
	case !k.ExpiresAt.After(time.Now()):
		return k.ExpiresAt.Format(time.RFC3339) + " (expired)"
	}
	return k.ExpiresAt.Format(time.RFC3339)
}

// appBodyOf is the body of apps create and update from the options; cur
// is the application's current OAuth settings (update), which the OAuth
// options change.
func (c *apiClient) appBodyOf(create bool, name string, cur *apps.OAuthClient) (map[string]any, error) {
	p := c.o.appsOpts
	b := map[string]any{}
	if create {
		b["name"], b["enabled"] = name, !p.disabled
	} else if p.name != "" {
		b["name"] = p.name
	}
	if p.hasDescription {
		b["description"] = p.description
	}
	if p.hasContact {
		b["contact"] = p.contact
	}
	switch {
	case p.noAPIs:
		b["apis"] = []string{}
	case p.apis != nil:
		b["apis"] = p.apis
	}
	if p.enable || p.disable {
		b["enabled"] = p.enable
	}
	switch {
	case p.noOAuth:
		b["oauth"] = nil
	case p.hasOAuth:
		o, err := c.oauthSettings(cur)
		if err != nil {
			return nil, err
		}
		b["oauth"] = o
	}
	return b, nil
}

func (c *apiClient) appsCreate(ctx context.Context, name string) error {
	gid, path, err := c.appsPath(ctx)
	if err != nil {
		return err
	}
	body, err := c.appBodyOf(true, name, nil)
	if err != nil {
		return err
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: path, JSON: body})
	if err != nil || done {
		return err
	}
	var a apps.App
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Errorf("apps create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created application %s (%s) in %s, enabled %t, APIs: %s\n", a.ID, a.Name, gid, a.Enabled, orDash(strings.Join(a.APIs, ", ")))
	if a.OAuth != nil {
		fmt.Fprintf(c.env.Stdout, "OAuth client_id %s: %s\n", a.ID, oauthText(a.OAuth))
	}
	return nil
}

func (c *apiClient) appsUpdate(ctx context.Context, app string) error {
	_, path, err := c.appsPath(ctx, app)
	if err != nil {
		return err
	}
	// The OAuth options change the current settings: read them, and send
	// the version read, so that a change made meanwhile is not lost.
	var cur apps.App
	if c.o.hasOAuth {
		raw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: path})
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &cur); err != nil {
			return fmt.Errorf("apps update: reading the application: %w", err)
		}
	}
	body, err := c.appBodyOf(false, "", cur.OAuth)
	if err != nil {
		return err
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: path, JSON: body, Version: cur.Version})
	if err != nil || done {
		return err
	}
	var a apps.App
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Errorf("apps update answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "changed application %s (%s): enabled %t, APIs: %s (version %d)\n", a.ID, a.Name, a.Enabled, orDash(strings.Join(a.APIs, ", ")), a.Version)
	if c.o.hasOAuth || c.o.noOAuth {
		fmt.Fprintf(c.env.Stdout, "OAuth: %s\n", oauthText(a.OAuth))
	}
	return nil
}

func (c *apiClient) appsDelete(ctx context.Context, app string) error {
	_, path, err := c.appsPath(ctx, app)
	if err != nil {
		return err
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path})
	if err != nil || done {
		return err
	}
	var d struct {
		ID            string        `json:"id"`
		DeletedKeys   int           `json:"deletedKeys"`
		RevokedTokens oauth.Revoked `json:"revokedTokens"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("apps delete answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "deleted application %s and its %d key(s)\n", d.ID, d.DeletedKeys)
	if rv := d.RevokedTokens; rv != (oauth.Revoked{}) {
		fmt.Fprintf(c.env.Stdout, "revoked its OAuth tokens: %d grant(s), %d code(s) not redeemed, %d token(s) without a grant\n", rv.Families, rv.Codes, rv.Tokens)
	}
	return nil
}

func (c *apiClient) keysList(ctx context.Context) error {
	_, path, err := c.appsPath(ctx, c.o.app, "keys")
	if err != nil {
		return err
	}
	raw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: path})
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(mustJSONField(raw, "keys"))
	}
	var kl struct {
		Keys []apps.Key `json:"keys"`
	}
	if err := json.Unmarshal(raw, &kl); err != nil {
		return fmt.Errorf("keys list answer: %w", err)
	}
	if len(kl.Keys) == 0 {
		fmt.Fprintf(c.env.Stdout, "application %s has no key (gatehouse client keys create -g %s --app %s)\n", c.o.app, c.o.group, strconv.Quote(c.o.app))
		return nil
	}
	return c.printKeys(kl.Keys, "")
}

// onceLine follows a key's value on the terminal.
const onceLine = "This is the only time the key is shown: it is not stored and cannot be shown again. Keep it now."

func (c *apiClient) keysCreate(ctx context.Context) error {
	_, path, err := c.appsPath(ctx, c.o.app, "keys")
	if err != nil {
		return err
	}
	body := map[string]string{}
	if c.o.expires != "" {
		f, v, err := expiresBody(c.o.expires)
		if err != nil {
			return err
		}
		body[f] = v
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: path, JSON: body})
	if err != nil || done {
		return err
	}
	var nk struct {
		Key   apps.Key `json:"key"`
		Value string   `json:"value"`
	}
	if err := json.Unmarshal(raw, &nk); err != nil {
		return fmt.Errorf("keys create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created key %s for application %s, expires: %s\n%s\n%s\n", nk.Key.ID, nk.Key.AppID, expiresText(nk.Key), nk.Value, onceLine)
	return nil
}

func (c *apiClient) keysSetEnabled(ctx context.Context, key string, enabled bool) error {
	_, path, err := c.appsPath(ctx, c.o.app, "keys", key)
	if err != nil {
		return err
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: path, JSON: map[string]bool{"enabled": enabled}})
	if err != nil || done {
		return err
	}
	var k apps.Key
	if err := json.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("keys answer: %w", err)
	}
	if enabled {
		fmt.Fprintf(c.env.Stdout, "enabled key %s of application %s (expires: %s)\n", k.ID, k.AppID, expiresText(k))
		return nil
	}
	fmt.Fprintf(c.env.Stdout, "disabled key %s of application %s; the instances refuse it within their kps.cache.ttl (default 5s)\n", k.ID, k.AppID)
	return nil
}

func (c *apiClient) keysRotate(ctx context.Context, key string) error {
	_, path, err := c.appsPath(ctx, c.o.app, "keys", key, "rotate")
	if err != nil {
		return err
	}
	body := map[string]string{}
	if c.o.grace != "" {
		body["grace"] = c.o.grace
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: path, JSON: body})
	if err != nil || done {
		return err
	}
	var rk struct {
		Old   apps.Key `json:"old"`
		Key   apps.Key `json:"key"`
		Value string   `json:"value"`
	}
	if err := json.Unmarshal(raw, &rk); err != nil {
		return fmt.Errorf("keys rotate answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created key %s for application %s in place of %s, which works until %s\n%s\n%s\n",
		rk.Key.ID, rk.Key.AppID, rk.Old.ID, expiresText(rk.Old), rk.Value, onceLine)
	return nil
}

func (c *apiClient) keysDelete(ctx context.Context, key string) error {
	_, path, err := c.appsPath(ctx, c.o.app, "keys", key)
	if err != nil {
		return err
	}
	_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path})
	if err != nil || done {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "deleted key %s of application %s\n", key, c.o.app)
	return nil
}
