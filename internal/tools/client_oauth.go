package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
)

// The OAuth verbs of the operator's client (docs/oauth.md, "Management";
// docs/client.md): the oauth options of apps create|update, and
// gatehouse client secrets list|create|delete -g GROUP --app APP,
// oauth-users list|show|create|passwd|enable|disable|delete -g GROUP,
// tokens list|revoke -g GROUP --app APP and signing-keys rotate -g GROUP.
// The group's OAuth users are "oauth-users": "users" and "user" are the
// management plane's administrators. A client secret is printed once, by
// secrets create; a user's password is read from --new-password-file or a
// prompt without echo, never from the command line.

// oauthOpts are the options of the OAuth verbs.
type oauthOpts struct {
	redirectURIs, grantTypes, scopes []string
	public, confidential, noOAuth    bool
	authMethod, jwksFile, family     string
	hasOAuth                         bool // an option of the oauth settings was given
}

const oauthAppHelp = "\n" +
	"OAuth client settings (docs/oauth.md); in apps update the ones given change, the rest stay:\n" +
	"--grant-type G                 authorization_code, client_credentials or refresh_token; repeat for several\n" +
	"--redirect-uri URI             an exact redirect URI (https, or http to a loopback address); repeat\n" +
	"--scope S                      a scope it may ask for; repeat for several\n" +
	"--public                       a public client (no secret; authorization_code with PKCE)\n" +
	"--auth-method M                the only client authentication it may use: client_secret_basic,\n" +
	"                               client_secret_post, private_key_jwt (or none for a public client)\n" +
	"--jwks-file F                  its public keys for private_key_jwt, a JSON Web Key Set in F"

var oauthVerbs = []clientVerb{
	{name: "secrets list", opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "GET /api/applications/{groupID}/{appID}/secrets", summary: "an OAuth client's secrets: ids and expiries, never values",
		help: groupHelp + "\n" + appHelp,
		run:  func(ctx context.Context, c *apiClient, _ []string) error { return c.secretsList(ctx) }},
	{name: "secrets create", opts: []string{"group", "app", "expires"}, required: []string{"group", "app"},
		api: "POST /api/applications/{groupID}/{appID}/secrets", summary: "a new client secret; its value is printed this once",
		help: groupHelp + "\n" + appHelp + "\n" +
			"--expires WHEN                 a duration from now (8760h) or an RFC 3339 time; default: never\n" +
			"To rotate a secret: create a new one, give it to the client, delete the old one (at most 5 at a time).",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.secretsCreate(ctx) }},
	{name: "secrets delete", args: []string{"SECRET"}, opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "DELETE /api/applications/{groupID}/{appID}/secrets/{secretID}", summary: "delete a client secret (refused at the token endpoint from then on)",
		help: groupHelp + "\n" + appHelp + "\nSECRET is the secret's id (secrets list shows it).",
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.secretsDelete(ctx, a[0]) }},
	{name: "tokens list", opts: []string{"group", "app"}, required: []string{"group", "app"},
		api: "GET /api/applications/{groupID}/{appID}/tokens", summary: "an application's stored OAuth tokens: kind, user, scopes, grant, times; never a token",
		help: groupHelp + "\n" + appHelp + "\nJWT access tokens are not stored and not listed (those of a grant are revoked with it).",
		run:  func(ctx context.Context, c *apiClient, _ []string) error { return c.tokensList(ctx) }},
	{name: "tokens revoke", opts: []string{"group", "app", "family"}, required: []string{"group", "app"},
		api: "DELETE /api/applications/{groupID}/{appID}/tokens, DELETE …/families/{familyID}", summary: "revoke every token of an application, or one grant's",
		help: groupHelp + "\n" + appHelp + "\n" +
			"--family ID                    only the grant (token family) ID of tokens list; default: all of them\n" +
			"The instances refuse the tokens within kps.cache.ttl. A JWT access token of client_credentials is\n" +
			"not stored and stays valid until it expires. Disable the application first to stop new grants.",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.tokensRevoke(ctx) }},
	{name: "oauth-users list", opts: []string{"group"}, required: []string{"group"},
		api: "GET /api/applications/{groupID}/oauth/users", summary: "the group's OAuth users (who log in on the authorization page)",
		help: groupHelp,
		run:  func(ctx context.Context, c *apiClient, _ []string) error { return c.oauthUsersList(ctx) }},
	{name: "oauth-users show", args: []string{"USERNAME"}, opts: []string{"group"}, required: []string{"group"},
		api: "GET /api/applications/{groupID}/oauth/users/{username}", summary: "one OAuth user (never the password's hash)",
		help: groupHelp,
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.oauthUserShow(ctx, a[0]) }},
	{name: "oauth-users create", args: []string{"USERNAME"}, opts: []string{"group", "name", "new-password-file"}, required: []string{"group"},
		api: "POST /api/applications/{groupID}/oauth/users", summary: "create an OAuth user of the group",
		help: groupHelp + "\n" +
			"--name TEXT                    the user's display name\n" +
			"--new-password-file F          the user's password is the first line of F; otherwise a prompt\n" +
			"                               (twice, without echo), or the next line of stdin",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.oauthUserCreate(ctx, a[0]) }},
	{name: "oauth-users passwd", args: []string{"USERNAME"}, opts: []string{"group", "new-password-file"}, required: []string{"group"},
		api: "PUT /api/applications/{groupID}/oauth/users/{username}", summary: "set an OAuth user's password",
		help: groupHelp + "\n" +
			"--new-password-file F          the new password is the first line of F; otherwise a prompt\n" +
			"                               (twice, without echo), or the next line of stdin",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.oauthUserPasswd(ctx, a[0]) }},
	{name: "oauth-users enable", args: []string{"USERNAME"}, opts: []string{"group"}, required: []string{"group"},
		api: "PUT /api/applications/{groupID}/oauth/users/{username}", summary: "let a disabled OAuth user log in again",
		help: groupHelp,
		run: func(ctx context.Context, c *apiClient, a []string) error {
			return c.oauthUserSetEnabled(ctx, a[0], true)
		}},
	{name: "oauth-users disable", args: []string{"USERNAME"}, opts: []string{"group"}, required: []string{"group"},
		api: "PUT /api/applications/{groupID}/oauth/users/{username}", summary: "stop an OAuth user from logging in (tokens granted before stay until revoked)",
		help: groupHelp,
		run: func(ctx context.Context, c *apiClient, a []string) error {
			return c.oauthUserSetEnabled(ctx, a[0], false)
		}},
	{name: "oauth-users delete", args: []string{"USERNAME"}, opts: []string{"group"}, required: []string{"group"},
		api: "DELETE /api/applications/{groupID}/oauth/users/{username}", summary: "delete an OAuth user",
		help: groupHelp,
		run:  func(ctx context.Context, c *apiClient, a []string) error { return c.oauthUserDelete(ctx, a[0]) }},
	{name: "signing-keys rotate", opts: []string{"group"}, required: []string{"group"},
		api: "POST /api/applications/{groupID}/oauth/signing-keys/rotate", summary: "a new JWT signing key for the group's authorization server; the old ones keep verifying",
		help: groupHelp + "\n" +
			"Only for a group that issues JWT access tokens and whose instances are all on the Admin Node\n" +
			"Manager's host; the instances sign with the new key within 10 seconds.",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.signingKeysRotate(ctx) }},
}

func init() {
	for k, v := range map[string]optKind{"redirect-uri": optRepeat, "grant-type": optRepeat, "scope": optRepeat, "public": optBool,
		"confidential": optBool, "no-oauth": optBool, "auth-method": optString, "jwks-file": optString, "family": optString} {
		clientOptions[k] = v
	}
	for k, v := range map[string]string{"redirect-uri": "URI", "grant-type": "G", "scope": "S", "auth-method": "M", "jwks-file": "F", "family": "ID"} {
		clientOptionArg[k] = v
	}
	for _, n := range []string{"secrets", "tokens", "oauth-users", "signing-keys"} {
		clientNouns[n] = true
	}
	clientVerbs = append(clientVerbs, oauthVerbs...)
	for i := range clientVerbs {
		switch clientVerbs[i].name {
		case "apps create":
			clientVerbs[i].opts = append(clientVerbs[i].opts, "grant-type", "redirect-uri", "scope", "public", "auth-method", "jwks-file")
			clientVerbs[i].help += oauthAppHelp
		case "apps update":
			clientVerbs[i].opts = append(clientVerbs[i].opts, "grant-type", "redirect-uri", "scope", "public", "confidential", "auth-method", "jwks-file", "no-oauth")
			clientVerbs[i].help += oauthAppHelp + "\n" +
				"--confidential                 no longer a public client\n" +
				"--no-oauth                     it is no longer an OAuth client (its settings removed)"
		}
	}
}

// oauthOptsFrom fills o's OAuth options from vals.
func oauthOptsFrom(verb *clientVerb, p *oauthOpts, vals map[string][]string) error {
	one := func(name string) string {
		if v := vals[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p.redirectURIs, p.grantTypes, p.scopes = vals["redirect-uri"], vals["grant-type"], vals["scope"]
	p.public, p.confidential, p.noOAuth = vals["public"] != nil, vals["confidential"] != nil, vals["no-oauth"] != nil
	p.authMethod, p.jwksFile, p.family = one("auth-method"), one("jwks-file"), one("family")
	for _, n := range []string{"redirect-uri", "grant-type", "scope", "public", "confidential", "auth-method", "jwks-file"} {
		p.hasOAuth = p.hasOAuth || vals[n] != nil
	}
	switch {
	case p.public && p.confidential:
		return usagef("client", "give --public or --confidential, not both")
	case p.noOAuth && p.hasOAuth:
		return usagef("client", "--no-oauth removes the OAuth settings: give it alone, without --grant-type, --redirect-uri, --scope, --public, --confidential, --auth-method or --jwks-file")
	case vals["family"] != nil && strings.TrimSpace(p.family) == "":
		return usagef("client", "--family wants a grant's id (the FAMILY column of tokens list), got an empty one")
	case vals["jwks-file"] != nil && p.jwksFile == "":
		return usagef("client", "--jwks-file wants a file with a JSON Web Key Set")
	}
	for _, g := range p.grantTypes {
		if !slices.Contains([]string{oauth.GrantAuthorizationCode, oauth.GrantClientCredentials, oauth.GrantRefreshToken}, g) {
			return usagef("client", "--grant-type %q: want authorization_code, client_credentials or refresh_token", g)
		}
	}
	if m := p.authMethod; m != "" && !slices.Contains([]string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKey, oauth.AuthNone}, m) {
		return usagef("client", "--auth-method %q: want client_secret_basic, client_secret_post, private_key_jwt or none", m)
	}
	return nil
}

// oauthSettings is the oauth object of apps create and update: from the
// application's current settings (nil for create) with the options given.
func (c *apiClient) oauthSettings(cur *apps.OAuthClient) (*apps.OAuthClient, error) {
	p := c.o.oauthOpts
	out := apps.OAuthClient{}
	if cur != nil {
		out = *cur
	}
	if p.grantTypes != nil {
		out.GrantTypes = p.grantTypes
	}
	if p.redirectURIs != nil {
		out.RedirectURIs = p.redirectURIs
	}
	if p.scopes != nil {
		out.Scopes = p.scopes
	}
	if p.public {
		out.Public = true
	}
	if p.confidential {
		out.Public = false
	}
	if p.authMethod != "" {
		out.AuthMethod = p.authMethod
	}
	if p.jwksFile != "" {
		b, err := os.ReadFile(p.jwksFile)
		if err != nil {
			return nil, fmt.Errorf("--jwks-file: %w", err)
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("--jwks-file %s: not JSON; want a JSON Web Key Set ({\"keys\": [...]}) of public keys", p.jwksFile)
		}
		out.JWKS = json.RawMessage(b)
	}
	return &out, nil
}

// oauthText is an application's OAuth settings on one line.
func oauthText(o *apps.OAuthClient) string {
	if o == nil {
		return "not an OAuth client"
	}
	kind := "confidential"
	if o.Public {
		kind = "public"
	}
	s := fmt.Sprintf("%s client; grants %s; scopes %s; redirect URIs %s", kind, orDash(strings.Join(o.GrantTypes, " ")),
		orDash(strings.Join(o.Scopes, " ")), orDash(strings.Join(o.RedirectURIs, " ")))
	if o.AuthMethod != "" {
		s += "; auth method " + o.AuthMethod
	}
	if len(o.JWKS) > 0 {
		s += "; with public keys"
	}
	return s
}

// ---- secrets ------------------------------------------------------------

func (c *apiClient) secretsList(ctx context.Context) error {
	_, path, err := c.appsPath(ctx, c.o.app, "secrets")
	if err != nil {
		return err
	}
	raw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: path})
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(mustJSONField(raw, "secrets"))
	}
	var sl struct {
		Secrets []apps.ClientSecret `json:"secrets"`
	}
	if err := json.Unmarshal(raw, &sl); err != nil {
		return fmt.Errorf("secrets list answer: %w", err)
	}
	if len(sl.Secrets) == 0 {
		fmt.Fprintf(c.env.Stdout, "application %s has no client secret (gatehouse client secrets create -g %s --app %q)\n", c.o.app, c.o.group, c.o.app)
		return nil
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SECRET\tEXPIRES\tCREATED")
	for _, s := range sl.Secrets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID, expiresText(apps.Key{ExpiresAt: s.ExpiresAt}), s.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

// secretOnceLine follows a client secret on the terminal.
const secretOnceLine = "This is the only time the secret is shown: only a keyed hash of it is stored. Keep it now."

func (c *apiClient) secretsCreate(ctx context.Context) error {
	_, path, err := c.appsPath(ctx, c.o.app, "secrets")
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
	var ns struct {
		Secret apps.ClientSecret `json:"secret"`
		Value  string            `json:"value"`
	}
	if err := json.Unmarshal(raw, &ns); err != nil {
		return fmt.Errorf("secrets create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created client secret %s for application %s (client_id %s), expires: %s\n%s\n%s\n",
		ns.Secret.ID, ns.Secret.AppID, ns.Secret.AppID, expiresText(apps.Key{ExpiresAt: ns.Secret.ExpiresAt}), ns.Value, secretOnceLine)
	return nil
}

func (c *apiClient) secretsDelete(ctx context.Context, id string) error {
	_, path, err := c.appsPath(ctx, c.o.app, "secrets", id)
	if err != nil {
		return err
	}
	_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path})
	if err != nil || done {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "deleted client secret %s of application %s\n", id, c.o.app)
	return nil
}

// ---- tokens -------------------------------------------------------------

func (c *apiClient) tokensList(ctx context.Context) error {
	_, path, err := c.appsPath(ctx, c.o.app, "tokens")
	if err != nil {
		return err
	}
	var all []oauth.TokenInfo
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
			Tokens []json.RawMessage `json:"tokens"`
			Next   string            `json:"next"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("tokens list answer: %w", err)
		}
		for _, r := range page.Tokens {
			var ti oauth.TokenInfo
			if err := json.Unmarshal(r, &ti); err != nil {
				return fmt.Errorf("tokens list answer: %w", err)
			}
			all, raws = append(all, ti), append(raws, r)
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
		fmt.Fprintf(c.env.Stdout, "application %s has no stored token\n", c.o.app)
		return nil
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tUSER\tSCOPES\tFAMILY\tISSUED\tEXPIRES")
	for _, ti := range all {
		kind := ti.Kind
		if ti.Used {
			kind += " (used)"
		}
		exp := ti.ExpiresAt.Format(time.RFC3339)
		if !ti.ExpiresAt.After(time.Now()) {
			exp += " (expired)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", kind, orDash(ti.UserID), orDash(strings.Join(ti.Scopes, " ")), orDash(ti.FamilyID),
			ti.IssuedAt.Format(time.RFC3339), exp)
	}
	return tw.Flush()
}

func (c *apiClient) tokensRevoke(ctx context.Context) error {
	if c.o.family != "" {
		_, path, err := c.appsPath(ctx, c.o.app, "families", c.o.family)
		if err != nil {
			return err
		}
		_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path})
		if err != nil || done {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "revoked grant %s of application %s: its tokens are refused within kps.cache.ttl\n", c.o.family, c.o.app)
		return nil
	}
	_, path, err := c.appsPath(ctx, c.o.app, "tokens")
	if err != nil {
		return err
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path})
	if err != nil || done {
		return err
	}
	var rv oauth.Revoked
	if err := json.Unmarshal(raw, &rv); err != nil {
		return fmt.Errorf("tokens revoke answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "revoked the tokens of application %s: %d grant(s), %d code(s) not redeemed, %d token(s) without a grant\n",
		c.o.app, rv.Families, rv.Codes, rv.Tokens)
	return nil
}

// ---- users --------------------------------------------------------------

// oauthUsersPath is /applications/{gid}/oauth/users[/{username}].
func (c *apiClient) oauthUsersPath(ctx context.Context, username ...string) (string, error) {
	_, path, err := c.appsPath(ctx, append([]string{"oauth", "users"}, username...)...)
	return path, err
}

func (c *apiClient) printOAuthUsers(users []authorize.User) error {
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tNAME\tENABLED\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", u.Username, u.ID, orDash(u.Name), u.Enabled, u.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func (c *apiClient) oauthUsersList(ctx context.Context) error {
	path, err := c.oauthUsersPath(ctx)
	if err != nil {
		return err
	}
	var all []authorize.User
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
			Users []json.RawMessage `json:"users"`
			Next  string            `json:"next"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("oauth-users list answer: %w", err)
		}
		for _, r := range page.Users {
			var u authorize.User
			if err := json.Unmarshal(r, &u); err != nil {
				return fmt.Errorf("oauth-users list answer: %w", err)
			}
			all, raws = append(all, u), append(raws, r)
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
		fmt.Fprintf(c.env.Stdout, "group %s has no OAuth user (gatehouse client oauth-users create -g %s USERNAME)\n", c.o.group, c.o.group)
		return nil
	}
	return c.printOAuthUsers(all)
}

func (c *apiClient) oauthUserShow(ctx context.Context, username string) error {
	path, err := c.oauthUsersPath(ctx, username)
	if err != nil {
		return err
	}
	raw, _, err := c.send(ctx, apiRequest{Method: http.MethodGet, Path: path})
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	var u authorize.User
	if err := json.Unmarshal(raw, &u); err != nil {
		return fmt.Errorf("oauth-users show answer: %w", err)
	}
	return c.printOAuthUsers([]authorize.User{u})
}

// oauthUserBody is the body of POST and PUT …/oauth/users.
type oauthUserBody struct {
	Username string  `json:"username,omitempty"`
	Name     string  `json:"name,omitempty"`
	Password *string `json:"password,omitempty"`
	Enabled  *bool   `json:"enabled,omitempty"`
}

func (c *apiClient) oauthUserCreate(ctx context.Context, username string) error {
	path, err := c.oauthUsersPath(ctx)
	if err != nil {
		return err
	}
	pw, err := readNewPassword(c.env, c.o, username)
	if err != nil {
		return err
	}
	defer pw.Wipe()
	p := pw.RevealString()
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: path, JSON: oauthUserBody{Username: username, Name: c.o.name, Password: &p}})
	if err != nil || done {
		return err
	}
	var u authorize.User
	if err := json.Unmarshal(raw, &u); err != nil {
		return fmt.Errorf("oauth-users create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created OAuth user %s (id %s) in %s, enabled\n", u.Username, u.ID, c.o.group)
	return nil
}

func (c *apiClient) oauthUserPasswd(ctx context.Context, username string) error {
	path, err := c.oauthUsersPath(ctx, username)
	if err != nil {
		return err
	}
	pw, err := readNewPassword(c.env, c.o, username)
	if err != nil {
		return err
	}
	defer pw.Wipe()
	p := pw.RevealString()
	_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: path, JSON: oauthUserBody{Password: &p}})
	if err != nil || done {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "set the password of OAuth user %s\n", username)
	return nil
}

func (c *apiClient) oauthUserSetEnabled(ctx context.Context, username string, enabled bool) error {
	path, err := c.oauthUsersPath(ctx, username)
	if err != nil {
		return err
	}
	_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: path, JSON: oauthUserBody{Enabled: &enabled}})
	if err != nil || done {
		return err
	}
	if enabled {
		fmt.Fprintf(c.env.Stdout, "enabled OAuth user %s\n", username)
		return nil
	}
	fmt.Fprintf(c.env.Stdout, "disabled OAuth user %s: the login page refuses it (tokens granted before stay until revoked)\n", username)
	return nil
}

func (c *apiClient) oauthUserDelete(ctx context.Context, username string) error {
	path, err := c.oauthUsersPath(ctx, username)
	if err != nil {
		return err
	}
	_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path})
	if err != nil || done {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "deleted OAuth user %s\n", username)
	return nil
}

// ---- signing keys -------------------------------------------------------

func (c *apiClient) signingKeysRotate(ctx context.Context) error {
	gid, path, err := c.appsPath(ctx, "oauth", "signing-keys", "rotate")
	if err != nil {
		return err
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: path})
	if err != nil || done {
		return err
	}
	var rk struct {
		Kid  string   `json:"kid"`
		Alg  string   `json:"alg"`
		Kids []string `json:"kids"`
	}
	if err := json.Unmarshal(raw, &rk); err != nil {
		return fmt.Errorf("signing-keys rotate answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "new signing key %s (%s) for %s; the instances sign with it within 10 s; keys in the set: %s\n",
		rk.Kid, rk.Alg, gid, strings.Join(rk.Kids, ", "))
	return nil
}
