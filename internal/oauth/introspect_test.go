package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func ccToken(t *testing.T, e *env, client, sec string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: client, ClientSecret: sec, TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(oauthCtx(e))
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func TestIntrospectionInactive(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		t.Run(format, func(t *testing.T) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(t, opts...)
			// Another group: its own store, hash key and signing keys; the
			// same issuer URL, even (two groups behind one name by mistake).
			other := newEnv(t, append(opts, func(o *Options) {
				o.HashKey = secret.FromString(strings.Repeat("o", 32))
				o.Config.Issuer = e.issuer
			})...)
			tokOther := ccToken(t, other, "svc", svcSecret)
			if !other.active(tokOther) {
				t.Fatal("the other group's token is not active there")
			}
			code, verifier := e.code("web", redirectURI, "read")
			resp, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
			if resp.StatusCode != 200 {
				t.Fatalf("code: %d %v", resp.StatusCode, m)
			}
			for name, tok := range map[string]string{
				"another group's token": tokOther,
				"unknown opaque":        PrefixAccessToken + strings.Repeat("a", 52),
				"unknown refresh":       PrefixRefreshToken + strings.Repeat("a", 52),
				"short":                 PrefixAccessToken + "abc",
				"garbage":               "hello",
				"a JWT-looking thing":   "a.b.c",
				"a code":                code,
				"a client secret":       svcSecret,
			} {
				if e.active(tok) {
					t.Errorf("%s is active", name)
				}
				if _, err := e.srv.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("Verify(%s): got %v, want ErrInvalidToken", name, err)
				}
			}
			// A refresh token is not an access token for Verify.
			if _, err := e.srv.Verify(context.Background(), m["refresh_token"].(string)); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Verify(a refresh token): got %v, want ErrInvalidToken", err)
			}
			// The caller must authenticate.
			tok := ccToken(t, e, "svc", svcSecret)
			resp, m = e.post("/oauth/introspect", url.Values{"token": {tok}}, "", "")
			if resp.StatusCode != 401 || m["error"] != "invalid_client" {
				t.Errorf("unauthenticated introspection: got %d %v", resp.StatusCode, m)
			}
			resp, m = e.post("/oauth/introspect", url.Values{"token": {tok}}, "rs", webSecret)
			if resp.StatusCode != 401 || m["error"] != "invalid_client" || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("introspection with a wrong secret: got %d %v", resp.StatusCode, m)
			}
			resp, m = e.post("/oauth/introspect", url.Values{}, "rs", rsSecret)
			if resp.StatusCode != 400 || m["error"] != "invalid_request" {
				t.Errorf("introspection without token: got %d %v", resp.StatusCode, m)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		t.Run(format, func(t *testing.T) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(t, opts...)
			e.clients.Put(Client{ID: "svc2", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, svcSecret)},
				GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"read"}})
			tok := ccToken(t, e, "svc", svcSecret)
			// Another client's revocation: 200 and no effect.
			resp, _ := e.post("/oauth/revoke", url.Values{"token": {tok}}, "svc2", svcSecret)
			if resp.StatusCode != 200 || !e.active(tok) {
				t.Errorf("another client's revocation: got %d, active %v; want 200 and still active", resp.StatusCode, e.active(tok))
			}
			resp, m := e.post("/oauth/revoke", url.Values{"token": {tok}}, "svc", svcSecret)
			if format == FormatOpaque {
				if resp.StatusCode != 200 || e.active(tok) {
					t.Errorf("revoking an access token: got %d, active %v", resp.StatusCode, e.active(tok))
				}
			} else if resp.StatusCode != 400 || m["error"] != "unsupported_token_type" {
				t.Errorf("revoking a client_credentials JWT: got %d %v, want unsupported_token_type", resp.StatusCode, m)
			}
			// Unknown tokens, garbage: 200.
			for _, tk := range []string{"nothing", PrefixAccessToken + strings.Repeat("b", 52), "x.y.z"} {
				if resp, _ := e.post("/oauth/revoke", url.Values{"token": {tk}, "token_type_hint": {"refresh_token"}}, "svc", svcSecret); resp.StatusCode != 200 {
					t.Errorf("revoking %q: got %d, want 200", tk, resp.StatusCode)
				}
			}
			if resp, m := e.post("/oauth/revoke", url.Values{}, "svc", svcSecret); resp.StatusCode != 400 || m["error"] != "invalid_request" {
				t.Errorf("revocation without token: got %d %v", resp.StatusCode, m)
			}
			if resp, m := e.post("/oauth/revoke", url.Values{"token": {tok}}, "", ""); resp.StatusCode != 401 || m["error"] != "invalid_client" {
				t.Errorf("unauthenticated revocation: got %d %v", resp.StatusCode, m)
			}
			// A refresh token revokes its family; a public client may revoke
			// its own tokens with its client_id.
			code, verifier := e.code("spa", "http://127.0.0.1/cb", "read")
			resp, m = e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1/cb"}, "client_id": {"spa"}}, "", "")
			if resp.StatusCode != 200 {
				t.Fatalf("code: %d %v", resp.StatusCode, m)
			}
			at, rt := m["access_token"].(string), m["refresh_token"].(string)
			if resp, _ := e.post("/oauth/revoke", url.Values{"token": {rt}, "client_id": {"spa"}}, "", ""); resp.StatusCode != 200 {
				t.Errorf("revoking a refresh token: %d", resp.StatusCode)
			}
			if e.active(at) {
				t.Error("the access token of a revoked refresh token is still active")
			}
			if resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"spa"}}, "", ""); resp.StatusCode != 400 || m["error"] != "invalid_grant" {
				t.Errorf("a revoked refresh token: got %d %v, want invalid_grant", resp.StatusCode, m)
			}
			// An access token of a grant, as JWT, revokes its grant.
			code, verifier = e.code("web", redirectURI, "read")
			_, m = e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
			at, rt = m["access_token"].(string), m["refresh_token"].(string)
			if resp, _ := e.post("/oauth/revoke", url.Values{"token": {at}}, "web", webSecret); resp.StatusCode != 200 {
				t.Errorf("revoking an access token of a grant: %d", resp.StatusCode)
			}
			if e.active(at) {
				t.Error("a revoked access token is still active")
			}
			if format == FormatJWT && e.activeTo(rt, "web", webSecret) {
				t.Error("revoking a JWT access token of a grant left its refresh token")
			}
		})
	}
}

// failing is a store whose operations fail with ErrUnavailable while down.
// When only is set ("get families", "update", …: an operation, and
// optionally a table), only the matching operations fail.
type failing struct {
	kps.Store
	down atomic.Bool
	only atomic.Value // string
}

func (f *failing) fails(op, table string) bool {
	if !f.down.Load() {
		return false
	}
	only, _ := f.only.Load().(string)
	return only == "" || only == op || only == op+" "+table
}

func (f *failing) err(op string) error {
	return &kps.Error{Op: op, Err: fmt.Errorf("%w: connection refused", kps.ErrUnavailable)}
}
func (f *failing) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	if f.fails("get", table) {
		return kps.Row{}, f.err("get")
	}
	return f.Store.Get(ctx, table, key)
}
func (f *failing) Insert(ctx context.Context, table string, v map[string]any) (kps.Row, error) {
	if f.fails("insert", table) {
		return kps.Row{}, f.err("insert")
	}
	return f.Store.Insert(ctx, table, v)
}
func (f *failing) Update(ctx context.Context, table string, r kps.Row) (kps.Row, error) {
	if f.fails("update", table) {
		return kps.Row{}, f.err("update")
	}
	return f.Store.Update(ctx, table, r)
}
func (f *failing) Delete(ctx context.Context, table string, key any, version int64) error {
	if f.fails("delete", table) {
		return f.err("delete")
	}
	return f.Store.Delete(ctx, table, key, version)
}
func (f *failing) Query(ctx context.Context, table, p string, v any, page kps.Page) (kps.Result, error) {
	if f.fails("query", table) {
		return kps.Result{}, f.err("query")
	}
	return f.Store.Query(ctx, table, p, v, page)
}
func (f *failing) List(ctx context.Context, table string, page kps.Page) (kps.Result, error) {
	if f.fails("list", table) {
		return kps.Result{}, f.err("list")
	}
	return f.Store.List(ctx, table, page)
}

// TestPartialOutages: a store that fails one kind of operation in the
// middle of a flow: 503 (or kps.ErrUnavailable), never a token, never 401.
func TestPartialOutages(t *testing.T) {
	var f *failing
	e := newEnv(t, func(o *Options) {
		f = &failing{Store: o.Store}
		o.Store = f
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a purge that never ends fails
	defer cancel()
	redeem := func() (*http.Response, map[string]any) {
		code, verifier := e.code("web", redirectURI, "read")
		f.down.Store(true)
		defer f.down.Store(false)
		return e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	}
	for _, only := range []string{"update oauth_codes", "insert oauth_families", "insert oauth_tokens"} {
		f.only.Store(only)
		if resp, m := redeem(); resp.StatusCode != 503 {
			t.Errorf("code redemption with %q failing: got %d %v, want 503", only, resp.StatusCode, m)
		}
	}
	f.only.Store("")
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	f.down.Store(true)
	f.only.Store("get oauth_families")
	if _, err := e.srv.Verify(ctx, at); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("Verify with the families unreadable: got %v, want kps.ErrUnavailable", err)
	}
	for _, only := range []string{"get oauth_families", "update oauth_tokens", "update oauth_families"} {
		f.only.Store(only)
		resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web", webSecret)
		if resp.StatusCode != 503 {
			t.Errorf("refresh with %q failing: got %d %v, want 503", only, resp.StatusCode, m)
		}
		if only == "update oauth_tokens" {
			continue // the token was not marked used: still usable
		}
		break // the token is now used: what follows is a reuse
	}
	// A replayed code whose tokens cannot be revoked now: 503, so that
	// the client retries (and the replay is revoked then).
	code, verifier = e.code("web", redirectURI, "read")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}
	f.down.Store(false)
	e.post("/oauth/token", form, "web", webSecret)
	f.down.Store(true)
	f.only.Store("get oauth_families")
	if resp, m := e.post("/oauth/token", form, "web", webSecret); resp.StatusCode != 503 {
		t.Errorf("a replay with the families unreadable: got %d %v, want 503", resp.StatusCode, m)
	}
	// Revoking a JWT-less grant token with the families unreadable.
	f.only.Store("query oauth_tokens")
	if resp, _ := e.post("/oauth/revoke", url.Values{"token": {rt}}, "web", webSecret); resp.StatusCode != 503 {
		t.Errorf("revoking a refresh token with its family's tokens unlistable: got %d, want 503", resp.StatusCode)
	}
	// Introspecting a refresh token with the tokens unreadable; revoking
	// one whose family's tokens cannot be deleted.
	code, verifier = e.code("web", redirectURI, "read")
	f.down.Store(false)
	_, m = e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	rt2 := m["refresh_token"].(string)
	f.down.Store(true)
	for _, only := range []string{"get oauth_tokens", "get oauth_families"} {
		f.only.Store(only)
		if resp, m := e.post("/oauth/introspect", url.Values{"token": {rt2}}, "web", webSecret); resp.StatusCode != 503 {
			t.Errorf("introspecting a refresh token with %q failing: got %d %v, want 503", only, resp.StatusCode, m)
		}
	}
	f.only.Store("delete oauth_tokens")
	if resp, _ := e.post("/oauth/revoke", url.Values{"token": {rt2}}, "web", webSecret); resp.StatusCode != 503 {
		t.Errorf("revoking a refresh token with its tokens undeletable: got %d, want 503", resp.StatusCode)
	}
	// Revocation and purge with deletions failing.
	f.only.Store("query")
	if resp, _ := e.post("/oauth/revoke", url.Values{"token": {at}}, "web", webSecret); resp.StatusCode != 200 {
		// deleting an opaque access token does not query
		t.Errorf("revoking an access token with queries failing: got %d", resp.StatusCode)
	}
	// The first purge scans; later ones query buckets.
	for _, only := range []string{"list", "get oauth_meta"} {
		f.only.Store(only)
		if _, err := e.srv.Purge(ctx); !errors.Is(err, kps.ErrUnavailable) {
			t.Errorf("the first Purge with %q failing: got %v, want kps.ErrUnavailable", only, err)
		}
	}
	f.only.Store("delete oauth_codes")
	e.clock.Advance(time.Hour)
	if _, err := e.srv.Purge(ctx); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("the first Purge with deletions failing: got %v, want kps.ErrUnavailable", err)
	}
	f.only.Store("insert oauth_meta")
	if _, err := e.srv.Purge(ctx); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("Purge with the watermark unwritable: got %v, want kps.ErrUnavailable", err)
	}
	f.only.Store("")
	f.down.Store(false)
	if _, err := e.srv.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	e.code("web", redirectURI) // a row for the next purge to delete
	f.down.Store(true)
	e.clock.Advance(time.Hour)
	for _, only := range []string{"query", "delete oauth_codes"} {
		f.only.Store(only)
		if _, err := e.srv.Purge(ctx); !errors.Is(err, kps.ErrUnavailable) {
			t.Errorf("Purge with %q failing: got %v, want kps.ErrUnavailable", only, err)
		}
	}
	f.down.Store(false)
}

// downClients is a registry that cannot answer.
type downClients struct{}

func (downClients) Client(context.Context, string) (Client, error) {
	return Client{}, fmt.Errorf("%w: registry down", kps.ErrUnavailable)
}

func TestStoreUnavailable(t *testing.T) {
	var f *failing
	e := newEnv(t, func(o *Options) {
		f = &failing{Store: o.Store}
		o.Store = f
	})
	tok := ccToken(t, e, "svc", svcSecret)
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	rt, at := m["refresh_token"].(string), m["access_token"].(string)
	code2, verifier2 := e.code("web", redirectURI, "read")
	f.down.Store(true)
	if _, err := e.srv.Verify(context.Background(), tok); !errors.Is(err, kps.ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify with the store down: got %v, want kps.ErrUnavailable and not ErrInvalidToken", err)
	}
	if _, err := e.srv.Verify(context.Background(), at); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("Verify of a grant's token with the store down: got %v, want kps.ErrUnavailable", err)
	}
	for name, form := range map[string]url.Values{
		"client_credentials": {"grant_type": {"client_credentials"}},
		"code":               {"grant_type": {"authorization_code"}, "code": {code2}, "code_verifier": {verifier2}, "redirect_uri": {redirectURI}},
		"refresh":            {"grant_type": {"refresh_token"}, "refresh_token": {rt}},
	} {
		user, pass := "svc", svcSecret
		if name != "client_credentials" {
			user, pass = "web", webSecret
		}
		resp, m := e.post("/oauth/token", form, user, pass)
		if resp.StatusCode != 503 || m["error"] != "temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s with the store down: got %d %v, want 503", name, resp.StatusCode, m)
		}
	}
	for _, path := range []string{"/oauth/introspect", "/oauth/revoke"} {
		resp, m := e.post(path, url.Values{"token": {tok}}, "rs", rsSecret)
		if path == "/oauth/revoke" {
			resp, m = e.post(path, url.Values{"token": {tok}}, "svc", svcSecret)
		}
		if resp.StatusCode != 503 {
			t.Errorf("%s with the store down: got %d %v, want 503", path, resp.StatusCode, m)
		}
	}
	if _, err := e.srv.IssueCode(context.Background(), CodeGrant{ClientID: "web", UserID: "u", RedirectURI: redirectURI, CodeChallenge: S256Challenge(strings.Repeat("v", 43))}); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("IssueCode with the store down: got %v, want kps.ErrUnavailable", err)
	}
	f.down.Store(false)
	if !e.active(tok) {
		t.Error("the token is not active after the outage")
	}
	// The code was not consumed by the failed attempt.
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code2}, "code_verifier": {verifier2}, "redirect_uri": {redirectURI}}, "web", webSecret)
	if resp.StatusCode != 200 {
		t.Errorf("the code after the outage: got %d %v", resp.StatusCode, m)
	}

	// A registry that cannot answer: 503, never invalid_client.
	e2 := newEnv(t, func(o *Options) { o.Clients = downClients{} })
	resp, m = e2.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret)
	if resp.StatusCode != 503 {
		t.Errorf("registry down: got %d %v, want 503", resp.StatusCode, m)
	}
}

// countingReader counts the reads Verify makes through Options.Reader.
type countingReader struct {
	RowGetter
	n atomic.Int64
}

func (c *countingReader) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	c.n.Add(1)
	return c.RowGetter.Get(ctx, table, key)
}

// TestReader: Verify reads through Options.Reader (the policy's cache);
// introspection reads the store itself, so it is authoritative.
func TestReader(t *testing.T) {
	var cr *countingReader
	e := newEnv(t, func(o *Options) {
		cr = &countingReader{RowGetter: o.Store}
		o.Reader = cr
	})
	tok := ccToken(t, e, "svc", svcSecret)
	if _, err := e.srv.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if cr.n.Load() != 1 {
		t.Errorf("Verify: %d reads through the Reader, want 1", cr.n.Load())
	}
	e.active(tok)
	if cr.n.Load() != 1 {
		t.Errorf("introspection read through the Reader")
	}
}

// TestJWTRevocationOutage: revoking a grant's JWT while the store cannot
// record it is 503, and the token stays what it was.
func TestJWTRevocationOutage(t *testing.T) {
	var f *failing
	e := newEnv(t, jwtFormat, func(o *Options) {
		f = &failing{Store: o.Store}
		o.Store = f
	})
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	at := m["access_token"].(string)
	f.down.Store(true)
	f.only.Store("update oauth_families")
	if resp, m := e.post("/oauth/revoke", url.Values{"token": {at}}, "web", webSecret); resp.StatusCode != 503 {
		t.Errorf("revoking a JWT with the families unwritable: got %d %v, want 503", resp.StatusCode, m)
	}
	f.only.Store("get oauth_families")
	if resp, m := e.post("/oauth/revoke", url.Values{"token": {at}}, "web", webSecret); resp.StatusCode != 503 {
		t.Errorf("revoking a JWT with the families unreadable: got %d %v, want 503", resp.StatusCode, m)
	}
	f.down.Store(false)
	if !e.active(at) {
		t.Error("the token changed state in a failed revocation")
	}
}
