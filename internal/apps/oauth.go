package apps

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// OAuthClient is an application's settings as an OAuth 2.0 client of the
// group's authorization server (docs/oauth.md). Its client_id is the
// application's id; its secrets are made by CreateClientSecret.
type OAuthClient struct {
	// Public: a client that cannot keep a secret (a browser or mobile
	// app): authorization_code with PKCE and refresh_token only, no secret.
	Public       bool     `json:"public"`
	RedirectURIs []string `json:"redirectUris,omitempty"`
	GrantTypes   []string `json:"grantTypes"`
	Scopes       []string `json:"scopes,omitempty"`
	// AuthMethod, when set, is the only client authentication it may use.
	AuthMethod string `json:"authMethod,omitempty"`
	// JWKS is its public keys (a JSON Web Key Set) for private_key_jwt.
	JWKS json.RawMessage `json:"jwks,omitempty"`
}

// ClientSecretsTable holds client secrets, only as keyed hashes.
const ClientSecretsTable = "oauth_client_secrets"

// Limits of an OAuth client's settings.
const (
	MaxRedirectURIs  = 20
	MaxClientSecrets = 5
)

// OAuthHashKey is the authorization server's hashing key, derived from the
// group's hashing key (the two never hash the same things with one key).
func OAuthHashKey(groupHashKey secret.Value) secret.Value {
	m := hmac.New(sha256.New, groupHashKey.Reveal())
	m.Write([]byte("gatehouse oauth hash key v1"))
	return secret.New(m.Sum(nil))
}

// AuthorizeSigningKey signs the authorization pages' forms.
func AuthorizeSigningKey(groupHashKey secret.Value) secret.Value {
	m := hmac.New(sha256.New, groupHashKey.Reveal())
	m.Write([]byte("gatehouse oauth authorize forms v1"))
	return secret.New(m.Sum(nil))
}

func (c *OAuthClient) check() error {
	if c == nil {
		return nil
	}
	if len(c.GrantTypes) == 0 {
		return fmt.Errorf("%w: an OAuth client needs at least one grant type (authorization_code, client_credentials, refresh_token)", errInvalid)
	}
	for _, g := range c.GrantTypes {
		switch g {
		case oauth.GrantAuthorizationCode, oauth.GrantRefreshToken:
		case oauth.GrantClientCredentials:
			if c.Public {
				return fmt.Errorf("%w: a public client cannot use client_credentials (it has no secret)", errInvalid)
			}
		default:
			return fmt.Errorf("%w: grant type %q: want authorization_code, client_credentials or refresh_token (implicit and password are not supported)", errInvalid, g)
		}
	}
	if slices.Contains(c.GrantTypes, oauth.GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return fmt.Errorf("%w: authorization_code needs at least one redirect URI", errInvalid)
	}
	if len(c.RedirectURIs) > MaxRedirectURIs {
		return fmt.Errorf("%w: at most %d redirect URIs", errInvalid, MaxRedirectURIs)
	}
	for _, r := range c.RedirectURIs {
		if err := checkRedirectURI(r); err != nil {
			return err
		}
	}
	for _, s := range c.Scopes {
		if !scopeToken(s) {
			return fmt.Errorf("%w: scope %q: 1 to 128 printable ASCII characters without space, \" or \\", errInvalid, s)
		}
	}
	switch c.AuthMethod {
	case "":
	case oauth.AuthNone:
		if !c.Public {
			return fmt.Errorf("%w: authMethod none is for public clients", errInvalid)
		}
	case oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKey:
		if c.Public {
			return fmt.Errorf("%w: a public client authenticates with none", errInvalid)
		}
	default:
		return fmt.Errorf("%w: authMethod %q: want client_secret_basic, client_secret_post, private_key_jwt or none", errInvalid, c.AuthMethod)
	}
	if len(c.JWKS) > 0 {
		if c.Public {
			return fmt.Errorf("%w: a public client has no keys", errInvalid)
		}
		if _, err := parseJWKS(c.JWKS); err != nil {
			return err
		}
	} else if c.AuthMethod == oauth.AuthPrivateKey {
		return fmt.Errorf("%w: private_key_jwt needs the client's public keys (jwks)", errInvalid)
	}
	return nil
}

func parseJWKS(raw json.RawMessage) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if len(raw) > 64<<10 || json.Unmarshal(raw, &set) != nil || len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: jwks: want a JSON Web Key Set of public keys (up to 64 KiB)", errInvalid)
	}
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, fmt.Errorf("%w: jwks: key %q is not a valid public key", errInvalid, k.KeyID)
		}
	}
	return &set, nil
}

// checkRedirectURI: absolute, https (http only to a loopback host, for
// native apps, RFC 8252 §7.3), no fragment, no user information.
func checkRedirectURI(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || len(s) > 2048:
		return fmt.Errorf("%w: redirect URI %q: want an absolute https URL", errInvalid, s)
	case u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%w: redirect URI %q: no fragment and no user information", errInvalid, s)
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "::1" || u.Hostname() == "localhost"):
	default:
		return fmt.Errorf("%w: redirect URI %q: https, or http to a loopback address", errInvalid, s)
	}
	return nil
}

// scopeToken: RFC 6749 §3.3's scope-token, at most 128 characters.
func scopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

// ClientSecret is a client secret as stored (never the secret).
type ClientSecret struct {
	ID        string    `json:"id"`
	AppID     string    `json:"appId"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// CreateClientSecret makes a new secret for an OAuth client application
// (one that is not public) and returns it with the secret itself, which is
// shown once and stored only as a keyed hash. Several may be valid at once
// (a rotation: make a new one, give it to the client, delete the old one);
// at most MaxClientSecrets.
func (m *Manager) CreateClientSecret(ctx context.Context, appID string, expires time.Time) (ClientSecret, secret.Value, error) {
	app, err := m.App(ctx, appID)
	if err != nil {
		return ClientSecret{}, secret.Value{}, err
	}
	switch {
	case app.OAuth == nil:
		return ClientSecret{}, secret.Value{}, fmt.Errorf("%w: application %s is not an OAuth client (give it oauth settings first)", errInvalid, app.ID)
	case app.OAuth.Public:
		return ClientSecret{}, secret.Value{}, fmt.Errorf("%w: application %s is a public client: it has no secret", errInvalid, app.ID)
	}
	now := m.now().UTC().Truncate(time.Millisecond)
	if !expires.IsZero() && !expires.After(now) {
		return ClientSecret{}, secret.Value{}, fmt.Errorf("%w: the expiry is not in the future", errInvalid)
	}
	have, err := m.ClientSecrets(ctx, app.ID)
	if err != nil {
		return ClientSecret{}, secret.Value{}, err
	}
	if len(have) >= MaxClientSecrets {
		return ClientSecret{}, secret.Value{}, fmt.Errorf("%w: application %s has %d secrets already; delete one first", errInvalid, app.ID, len(have))
	}
	s := oauth.NewClientSecret()
	cs := ClientSecret{AppID: app.ID, CreatedAt: now, ExpiresAt: expires.UTC().Truncate(time.Millisecond)}
	var exp int64
	if !cs.ExpiresAt.IsZero() {
		exp = cs.ExpiresAt.UnixMilli()
	}
	r, err := m.store.Insert(ctx, ClientSecretsTable, map[string]any{"appId": app.ID, "hash": oauth.HashSecret(OAuthHashKey(m.hashKey), s.RevealString()),
		"createdAt": now.UnixMilli(), "expiresAt": exp})
	if err != nil {
		// mutate:equivalent delete-stmt memory hygiene: the secret is not returned after this, nothing else holds it
		s.Wipe()
		return ClientSecret{}, secret.Value{}, err
	}
	cs.ID, _ = r.Values["id"].(string)
	return cs, s, nil
}

// ClientSecrets lists an application's client secrets (never their values).
func (m *Manager) ClientSecrets(ctx context.Context, appID string) ([]ClientSecret, error) {
	rows, err := m.clientSecretRows(ctx, m.store, appID)
	if err != nil {
		return nil, err
	}
	out := make([]ClientSecret, 0, len(rows))
	for _, r := range rows {
		cs, _ := secretOf(r)
		out = append(out, cs)
	}
	return out, nil
}

// DeleteClientSecret deletes one of an application's secrets.
func (m *Manager) DeleteClientSecret(ctx context.Context, appID, id string) error {
	r, err := m.store.Get(ctx, ClientSecretsTable, id)
	if err != nil {
		return err
	}
	if cs, _ := secretOf(r); cs.AppID != appID {
		return &kps.Error{Op: "delete", Table: ClientSecretsTable, Key: id, Err: kps.ErrNotFound}
	}
	return m.store.Delete(ctx, ClientSecretsTable, id, r.Version)
}

func (m *Manager) clientSecretRows(ctx context.Context, store kps.Store, appID string) ([]kps.Row, error) {
	// mutate:equivalent const a page larger than the most secrets an application may have: any larger page reads the same rows
	res, err := store.Query(ctx, ClientSecretsTable, "appId", appID, kps.Page{Limit: MaxClientSecrets + 10})
	if err != nil {
		return nil, err
	}
	return res.Rows, nil
}

func secretOf(r kps.Row) (ClientSecret, string) {
	v := r.Values
	cs := ClientSecret{}
	cs.ID, _ = v["id"].(string)
	cs.AppID, _ = v["appId"].(string)
	if ms, ok := v["createdAt"].(int64); ok {
		cs.CreatedAt = time.UnixMilli(ms).UTC()
	}
	if ms, _ := v["expiresAt"].(int64); ms != 0 {
		cs.ExpiresAt = time.UnixMilli(ms).UTC()
	}
	h, _ := v["hash"].(string)
	return cs, h
}

// Registry is the group's client applications as the authorization server
// sees them (oauth.Clients and authorize.Clients): an application with
// OAuth settings, enabled, is a client. Applications come through the
// instance's cache (a change is seen within its TTL); secrets are read
// from the store on each authentication.
type Registry struct {
	cache *kps.Cache
	store kps.Store
	now   func() time.Time

	mu      sync.RWMutex
	clients map[string]registered // Client's answers, for RegistryTTL
}

// registered is a client as Client answered it, and until when.
type registered struct {
	c     oauth.Client
	until time.Time
}

// RegistryTTL is how long Client's answer (the application and its
// secrets) is reused: a secret made or deleted, an application changed,
// counts for the token endpoint at most this late (and never later than
// the application's row in the cache). The token and introspection
// endpoints authenticate a client on every request; without it each
// would read the client's secrets from the store.
const RegistryTTL = time.Second

// maxRegistered bounds the clients remembered.
const maxRegistered = 10000

// NewRegistry reads applications through cache and secrets from store.
func NewRegistry(cache *kps.Cache, store kps.Store) *Registry {
	return &Registry{cache: cache, store: store, now: cache.Now, clients: map[string]registered{}}
}

var (
	_ oauth.Clients     = (*Registry)(nil)
	_ authorize.Clients = (*Registry)(nil)
)

func (g *Registry) app(ctx context.Context, id string) (App, error) {
	r, err := g.cache.Get(ctx, AppsTable, id)
	if errors.Is(err, kps.ErrNotFound) || errors.Is(err, kps.ErrInvalid) {
		return App{}, oauth.ErrUnknownClient
	}
	if err != nil {
		return App{}, err
	}
	a := appOf(r)
	if a.OAuth == nil {
		return App{}, oauth.ErrUnknownClient
	}
	return a, nil
}

// Client implements oauth.Clients.
func (g *Registry) Client(ctx context.Context, id string) (oauth.Client, error) {
	now := g.now()
	g.mu.RLock()
	r, ok := g.clients[id]
	g.mu.RUnlock()
	if ok && now.Before(r.until) {
		return r.c, nil
	}
	row, until, err := g.cache.GetUntil(ctx, AppsTable, id)
	if errors.Is(err, kps.ErrNotFound) || errors.Is(err, kps.ErrInvalid) {
		return oauth.Client{}, oauth.ErrUnknownClient
	}
	if err != nil {
		return oauth.Client{}, err
	}
	a := appOf(row)
	if a.OAuth == nil {
		return oauth.Client{}, oauth.ErrUnknownClient
	}
	c, expires, err := g.client(ctx, a, now)
	if err != nil {
		return oauth.Client{}, err
	}
	until = earliest(until, now.Add(RegistryTTL))
	if !expires.IsZero() {
		until = earliest(until, expires) // a secret expiring is not offered a moment longer
	}
	if now.Before(until) {
		g.mu.Lock()
		if len(g.clients) >= maxRegistered {
			clear(g.clients)
		}
		g.clients[id] = registered{c: c, until: until}
		g.mu.Unlock()
	}
	return c, nil
}

// client is a's settings and its secrets valid at now, with the first of
// their expiries (zero: none expires).
func (g *Registry) client(ctx context.Context, a App, now time.Time) (c oauth.Client, expires time.Time, err error) {
	c = oauth.Client{ID: a.ID, Name: a.Name, Enabled: a.Enabled, Public: a.OAuth.Public, AuthMethod: a.OAuth.AuthMethod,
		RedirectURIs: a.OAuth.RedirectURIs, GrantTypes: a.OAuth.GrantTypes, Scopes: a.OAuth.Scopes}
	// mutate:equivalent boundary,const an empty (or one-byte) key set never passes check(): testing its length only spares parsing nothing
	if len(a.OAuth.JWKS) > 0 {
		if set, err := parseJWKS(a.OAuth.JWKS); err == nil {
			c.JWKS = set
		}
	}
	if !a.OAuth.Public {
		// mutate:equivalent const a page larger than the most secrets an application may have: any larger page reads the same rows
		res, err := g.store.Query(ctx, ClientSecretsTable, "appId", a.ID, kps.Page{Limit: MaxClientSecrets + 10})
		if err != nil {
			return oauth.Client{}, time.Time{}, err
		}
		for _, r := range res.Rows {
			cs, h := secretOf(r)
			if cs.ExpiresAt.IsZero() || now.Before(cs.ExpiresAt) {
				c.SecretHashes = append(c.SecretHashes, h)
				if !cs.ExpiresAt.IsZero() && (expires.IsZero() || cs.ExpiresAt.Before(expires)) {
					expires = cs.ExpiresAt
				}
			}
		}
	}
	return c, expires, nil
}

// AuthorizeClient implements authorize.Clients.
func (g *Registry) AuthorizeClient(ctx context.Context, id string) (authorize.Client, error) {
	a, err := g.app(ctx, id)
	if errors.Is(err, oauth.ErrUnknownClient) {
		return authorize.Client{}, authorize.ErrUnknownClient
	}
	if err != nil {
		return authorize.Client{}, err
	}
	return authorize.Client{ID: a.ID, Name: a.Name, Enabled: a.Enabled, RedirectURIs: a.OAuth.RedirectURIs, Scopes: a.OAuth.Scopes,
		AllowsCode: slices.Contains(a.OAuth.GrantTypes, oauth.GrantAuthorizationCode)}, nil
}
