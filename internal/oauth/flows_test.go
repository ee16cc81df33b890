package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func oauthCtx(e *env) context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, e.http.Client())
}

// retrieveErr is the RFC 6749 §5.2 error x/oauth2 parsed.
func retrieveErr(t *testing.T, err error) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want an oauth2.RetrieveError", err)
	}
	return re
}

func TestClientCredentials(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
			t.Run(format+"/"+map[oauth2.AuthStyle]string{oauth2.AuthStyleInHeader: "basic", oauth2.AuthStyleInParams: "post"}[style], func(t *testing.T) {
				opts := []envOpt{}
				if format == FormatJWT {
					opts = append(opts, jwtFormat)
				}
				e := newEnv(t, opts...)
				cc := clientcredentials.Config{ClientID: "svc", ClientSecret: svcSecret, TokenURL: e.issuer + "/oauth/token",
					Scopes: []string{"read"}, AuthStyle: style}
				tok, err := cc.Token(oauthCtx(e))
				if err != nil {
					t.Fatal(err)
				}
				if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Extra("scope") != "read" {
					t.Errorf("got type %q refresh %q scope %v, want Bearer, none, read", tok.TokenType, tok.RefreshToken, tok.Extra("scope"))
				}
				if ei := tok.Extra("expires_in"); ei != 3600.0 {
					t.Errorf("expires_in: got %d, want 3600", ei)
				}
				if format == FormatOpaque && (!strings.HasPrefix(tok.AccessToken, PrefixAccessToken) || len(tok.AccessToken) != 56) {
					t.Errorf("opaque token %q: want gat_ and 52 characters", tok.AccessToken)
				}
				cl, err := e.srv.Verify(context.Background(), tok.AccessToken)
				if err != nil {
					t.Fatal(err)
				}
				if cl.ClientID != "svc" || cl.Subject != "svc" || cl.UserID != "" || !slices.Equal(cl.Scopes, []string{"read"}) || cl.Format != format {
					t.Errorf("claims: got %+v", cl)
				}
				m := e.introspect(tok.AccessToken)
				if m["active"] != true || m["client_id"] != "svc" || m["scope"] != "read" || m["token_type"] != "Bearer" || m["iss"] != e.issuer {
					t.Errorf("introspection: got %v", m)
				}
				// The default scope is every scope the client may have.
				cc.Scopes = nil
				tok, err = cc.Token(oauthCtx(e))
				if err != nil {
					t.Fatal(err)
				}
				if tok.Extra("scope") != "read write" {
					t.Errorf("default scope: got %v, want read write", tok.Extra("scope"))
				}
				// Expired: inactive and refused.
				e.clock.Advance(time.Hour + 10*time.Second)
				if e.active(tok.AccessToken) {
					t.Error("an expired token is active")
				}
				if _, err := e.srv.Verify(context.Background(), tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("Verify of an expired token: got %v, want ErrInvalidToken", err)
				}
			})
		}
	}
}

func TestClientCredentialsSecretRotation(t *testing.T) {
	e := newEnv(t)
	for _, sec := range []string{"old-secret", svcSecret} {
		cc := clientcredentials.Config{ClientID: "svc", ClientSecret: sec, TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
		if _, err := cc.Token(oauthCtx(e)); err != nil {
			t.Errorf("secret %q: %v", sec, err)
		}
	}
	cc := clientcredentials.Config{ClientID: "svc", ClientSecret: webSecret, TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	_, err := cc.Token(oauthCtx(e))
	if re := retrieveErr(t, err); re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
		t.Errorf("a wrong secret: got %s %d, want invalid_client 401", re.ErrorCode, re.Response.StatusCode)
	}
}

func webConfig(e *env) *oauth2.Config {
	return &oauth2.Config{ClientID: "web", ClientSecret: webSecret, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
}

func TestAuthorizationCodeAndRefresh(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		t.Run(format, func(t *testing.T) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(t, opts...)
			ctx := oauthCtx(e)
			conf := webConfig(e)
			code, verifier := e.code("web", redirectURI, "read", "profile")
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok.RefreshToken, PrefixRefreshToken) || tok.Extra("scope") != "read profile" {
				t.Fatalf("got refresh %q scope %v", tok.RefreshToken, tok.Extra("scope"))
			}
			cl, err := e.srv.Verify(context.Background(), tok.AccessToken)
			if err != nil || cl.UserID != "alice" || cl.Subject != "alice" || cl.ClientID != "web" || cl.FamilyID == "" {
				t.Fatalf("Verify: got %+v, %v", cl, err)
			}
			// The refresh token is active (to its client's resource server too).
			if !e.activeTo(tok.RefreshToken, "web", webSecret) {
				t.Error("the refresh token is not active")
			}
			if e.active(tok.RefreshToken) {
				t.Error("a refresh token is active to a client that is not its own")
			}
			// Refresh through the library: the access token has expired.
			// (x/oauth2 decides by the real clock whether to refresh.)
			e.clock.Advance(time.Hour + time.Minute)
			ts := conf.TokenSource(ctx, &oauth2.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Second)})
			tok2, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == tok.RefreshToken || tok2.RefreshToken == "" {
				t.Fatal("refresh did not rotate both tokens")
			}
			if e.activeTo(tok.RefreshToken, "web", webSecret) {
				t.Error("a used refresh token is still active")
			}
			if !e.active(tok2.AccessToken) || !e.activeTo(tok2.RefreshToken, "web", webSecret) {
				t.Error("the new tokens are not active")
			}
			// Narrowing the scope on refresh; widening is refused.
			resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "scope": {"read admin"}}, "web", webSecret)
			if resp.StatusCode != 400 || m["error"] != "invalid_scope" {
				t.Errorf("widening on refresh: got %d %v, want invalid_scope", resp.StatusCode, m)
			}
			resp, m = e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "scope": {"read"}}, "web", webSecret)
			if resp.StatusCode != 200 || m["scope"] != "read" {
				t.Fatalf("narrowing on refresh: got %d %v", resp.StatusCode, m)
			}
			tok3 := m["refresh_token"].(string)
			at3 := m["access_token"].(string)
			// The refresh token kept the grant's scopes: widening back works.
			resp, m = e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok3}, "scope": {"read profile"}}, "web", webSecret)
			if resp.StatusCode != 200 || m["scope"] != "read profile" {
				t.Fatalf("back to the grant's scopes: got %d %v", resp.StatusCode, m)
			}
			tok4, at4 := m["refresh_token"].(string), m["access_token"].(string)

			// Reuse of a rotated refresh token revokes the whole family.
			_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken, Expiry: time.Now().Add(-time.Second)}).Token()
			if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 400 {
				t.Errorf("reuse: got %s %d, want invalid_grant 400", re.ErrorCode, re.Response.StatusCode)
			}
			for name, tk := range map[string]string{"the latest refresh token": tok4, "the latest access token": at4, "an earlier access token": at3, "the first access token": tok2.AccessToken} {
				if e.activeTo(tk, "web", webSecret) {
					t.Errorf("after reuse, %s is still active", name)
				}
				if name != "the latest refresh token" {
					if _, err := e.srv.Verify(context.Background(), tk); !errors.Is(err, ErrInvalidToken) {
						t.Errorf("after reuse, Verify(%s): got %v, want ErrInvalidToken", name, err)
					}
				}
			}
			resp, m = e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok4}}, "web", webSecret)
			if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
				t.Errorf("the latest refresh token after reuse: got %d %v, want invalid_grant", resp.StatusCode, m)
			}
		})
	}
}

func TestPublicClientPKCE(t *testing.T) {
	e := newEnv(t)
	ctx := oauthCtx(e)
	conf := &oauth2.Config{ClientID: "spa", RedirectURL: "http://127.0.0.1/cb",
		Endpoint: oauth2.Endpoint{TokenURL: e.issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
	code, verifier := e.code("spa", "http://127.0.0.1/cb", "read")
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Second)}).Token(); err != nil {
		t.Fatalf("a public client's refresh: %v", err)
	}
	// A public client cannot use client_credentials, nor introspect.
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"}}, "", "")
	if resp.StatusCode != 400 || m["error"] != "unauthorized_client" {
		t.Errorf("client_credentials by a public client: got %d %v, want unauthorized_client", resp.StatusCode, m)
	}
	resp, m = e.post("/oauth/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {"spa"}}, "", "")
	if resp.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Errorf("introspection by a public client: got %d %v, want invalid_client 401", resp.StatusCode, m)
	}
	// A confidential client cannot skip its authentication by naming itself.
	resp, m = e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}}, "", "")
	if resp.StatusCode != 401 || m["error"] != "invalid_client" || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("a confidential client without its secret: got %d %v, want invalid_client 401 with WWW-Authenticate", resp.StatusCode, m)
	}
}

func TestCodeReplayRevokesTokens(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		t.Run(format, func(t *testing.T) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(t, opts...)
			ctx := oauthCtx(e)
			conf := webConfig(e)
			code, verifier := e.code("web", redirectURI, "read")
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if !e.active(tok.AccessToken) || !e.activeTo(tok.RefreshToken, "web", webSecret) {
				t.Fatal("tokens not active")
			}
			_, err = conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if re := retrieveErr(t, err); re.ErrorCode != "invalid_grant" {
				t.Errorf("replay: got %s, want invalid_grant", re.ErrorCode)
			}
			if e.active(tok.AccessToken) || e.activeTo(tok.RefreshToken, "web", webSecret) {
				t.Error("the tokens of a replayed code are still active")
			}
			if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
				t.Error("the refresh token of a replayed code still refreshes")
			}
		})
	}
}

func TestCodeRedemptionErrors(t *testing.T) {
	e := newEnv(t)
	type tc struct {
		name    string
		mutate  func(form url.Values)
		user    string
		pass    string
		advance time.Duration
		status  int
		err     string
	}
	cases := []tc{
		{name: "pkce mismatch", mutate: func(f url.Values) { f.Set("code_verifier", strings.Repeat("x", 43)) }, status: 400, err: "invalid_grant"},
		{name: "verifier too short", mutate: func(f url.Values) { f.Set("code_verifier", "short") }, status: 400, err: "invalid_grant"},
		{name: "no verifier", mutate: func(f url.Values) { f.Del("code_verifier") }, status: 400, err: "invalid_request"},
		{name: "no code", mutate: func(f url.Values) { f.Del("code") }, status: 400, err: "invalid_request"},
		{name: "unknown code", mutate: func(f url.Values) { f.Set("code", PrefixCode+strings.Repeat("a", 52)) }, status: 400, err: "invalid_grant"},
		{name: "redirect differs", mutate: func(f url.Values) { f.Set("redirect_uri", redirectURI+"/") }, status: 400, err: "invalid_grant"},
		{name: "redirect missing", mutate: func(f url.Values) { f.Del("redirect_uri") }, status: 400, err: "invalid_grant"},
		{name: "another client", user: "svc", pass: svcSecret, status: 400, err: "unauthorized_client"},
		{name: "expired", advance: 61 * time.Second, status: 400, err: "invalid_grant"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, verifier := e.code("web", redirectURI, "read")
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}
			if c.mutate != nil {
				c.mutate(form)
			}
			if c.user == "" {
				c.user, c.pass = "web", webSecret
			}
			e.clock.Advance(c.advance)
			resp, m := e.post("/oauth/token", form, c.user, c.pass)
			if resp.StatusCode != c.status || m["error"] != c.err {
				t.Errorf("got %d %v, want %d %s", resp.StatusCode, m, c.status, c.err)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", resp.Header.Get("Cache-Control"))
			}
			// A failed attempt consumed the code (when it reached it).
			if c.name != "no verifier" && c.name != "no code" && c.name != "unknown code" && c.name != "another client" {
				form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}
				resp, m := e.post("/oauth/token", form, "web", webSecret)
				if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
					t.Errorf("the right request after a failed one: got %d %v, want invalid_grant", resp.StatusCode, m)
				}
			}
		})
	}
	// A code of client web presented by another client allowed the grant.
	e.clients.Put(Client{ID: "web2", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, webSecret)},
		GrantTypes: []string{GrantAuthorizationCode}, RedirectURIs: []string{redirectURI}})
	code, verifier := e.code("web", redirectURI)
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web2", webSecret)
	if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
		t.Errorf("a code of another client: got %d %v, want invalid_grant", resp.StatusCode, m)
	}
}

func TestIssueCodeRefusals(t *testing.T) {
	e := newEnv(t)
	ch := S256Challenge(strings.Repeat("v", 43))
	good := CodeGrant{ClientID: "web", UserID: "alice", RedirectURI: redirectURI, Scopes: []string{"read"}, CodeChallenge: ch}
	cases := map[string]func(g *CodeGrant){
		"plain":             func(g *CodeGrant) { g.CodeChallengeMethod = "plain" },
		"short challenge":   func(g *CodeGrant) { g.CodeChallenge = "abc" },
		"bad characters":    func(g *CodeGrant) { g.CodeChallenge = strings.Repeat("+", 43) },
		"no user":           func(g *CodeGrant) { g.UserID = "" },
		"unknown client":    func(g *CodeGrant) { g.ClientID = "nobody" },
		"disabled client":   func(g *CodeGrant) { g.ClientID = "off" },
		"grant not allowed": func(g *CodeGrant) { g.ClientID = "svc" },
		"other redirect":    func(g *CodeGrant) { g.RedirectURI = "https://evil.example/callback" },
		"redirect prefix":   func(g *CodeGrant) { g.RedirectURI = redirectURI + "x" },
		"scope not allowed": func(g *CodeGrant) { g.Scopes = []string{"admin"} },
		"scope unknown":     func(g *CodeGrant) { g.Scopes = []string{"nope"} },
	}
	for name, f := range cases {
		g := good
		f(&g)
		if _, err := e.srv.IssueCode(context.Background(), g); !errors.Is(err, ErrInvalidCodeGrant) {
			t.Errorf("%s: got %v, want ErrInvalidCodeGrant", name, err)
		}
	}
	if _, err := e.srv.IssueCode(context.Background(), good); err != nil {
		t.Errorf("the good grant: %v", err)
	}
}

func TestUnsupportedGrants(t *testing.T) {
	e := newEnv(t)
	for _, gt := range []string{"password", "implicit", "token", "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:device_code"} {
		resp, m := e.post("/oauth/token", url.Values{"grant_type": {gt}, "username": {"a"}, "password": {"b"}}, "svc", svcSecret)
		if resp.StatusCode != 400 || m["error"] != "unsupported_grant_type" {
			t.Errorf("%s: got %d %v, want unsupported_grant_type", gt, resp.StatusCode, m)
		}
	}
}

// TestCodeWithoutRefresh: a client not allowed refresh_token gets no
// refresh token from a code.
func TestCodeWithoutRefresh(t *testing.T) {
	e := newEnv(t)
	e.clients.Put(Client{ID: "web3", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, webSecret)},
		GrantTypes: []string{GrantAuthorizationCode}, Scopes: []string{"read"}, RedirectURIs: []string{redirectURI}})
	code, verifier := e.code("web3", redirectURI, "read")
	conf := webConfig(e)
	conf.ClientID = "web3"
	tok, err := conf.Exchange(oauthCtx(e), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" || !e.active(tok.AccessToken) {
		t.Errorf("got refresh token %q, access active %v; want none and active", tok.RefreshToken, e.active(tok.AccessToken))
	}
}

// TestRefreshWrongToken: an access token, or another client's refresh
// token, is not a refresh token for this client.
func TestRefreshWrongToken(t *testing.T) {
	e := newEnv(t)
	e.clients.Put(Client{ID: "web2", Enabled: true, SecretHashes: []string{HashSecret(testHashKey, webSecret)},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scopes: []string{"read"}, RedirectURIs: []string{redirectURI}})
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	for name, c := range map[string]struct{ client, tok string }{
		"an access token":  {"web", at},
		"another client's": {"web2", rt},
		"a code":           {"web", code},
	} {
		resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.tok}}, c.client, webSecret)
		if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
			t.Errorf("%s: got %d %v, want invalid_grant", name, resp.StatusCode, m)
		}
	}
	// None of these burnt the real one.
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web", webSecret)
	if resp.StatusCode != 200 {
		t.Errorf("the real refresh token afterwards: got %d %v", resp.StatusCode, m)
	}
}

// TestHandleStatuses: the statuses as Handle returns them (an HTTP client
// would not see a 1xx, say).
func TestHandleStatuses(t *testing.T) {
	e := newEnv(t)
	req := func(path string, form url.Values) *Request {
		return &Request{Method: "POST", Path: path, Body: []byte(form.Encode()), Header: http.Header{
			"Content-Type":  {"application/x-www-form-urlencoded"},
			"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("rs:"+rsSecret))},
		}}
	}
	for _, tok := range []string{"nothing", PrefixRefreshToken + "x", ccToken(t, e, "svc", svcSecret)} {
		resp, ok := e.srv.Handle(context.Background(), req("/oauth/introspect", url.Values{"token": {tok}}))
		if !ok || resp.Status != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("introspection of %q: got %v %+v", tok, ok, resp)
		}
		resp, ok = e.srv.Handle(context.Background(), req("/oauth/revoke", url.Values{"token": {tok}}))
		if !ok || resp.Status != 200 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("revocation of %q: got %v %+v", tok, ok, resp)
		}
	}
}

// TestHandleBareRequest: a request with no header and no body, as an
// engine might pass one.
func TestHandleBareRequest(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/oauth/token", "/oauth/introspect", "/oauth/revoke"} {
		resp, ok := e.srv.Handle(context.Background(), &Request{Method: "POST", Path: path})
		if !ok || resp.Status != 400 {
			t.Errorf("a bare POST %s: got %v %+v, want 400", path, ok, resp)
		}
	}
	resp, ok := e.srv.Handle(context.Background(), &Request{Method: "GET", Path: "/oauth/jwks"})
	if !ok || resp.Status != 200 {
		t.Errorf("a bare GET of the JWKS: got %v %+v", ok, resp)
	}
}

// TestVerifierLengths: RFC 7636 §4.1's 43 to 128 characters, at the edges.
func TestVerifierLengths(t *testing.T) {
	e := newEnv(t)
	for n, want := range map[int]int{42: 400, 43: 200, 128: 200, 129: 400} {
		verifier := strings.Repeat("a", n-2) + "-~"
		code, err := e.srv.IssueCode(context.Background(), CodeGrant{ClientID: "web", UserID: "u", RedirectURI: redirectURI, CodeChallenge: S256Challenge(verifier)})
		if err != nil {
			t.Fatal(err)
		}
		resp, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
		if resp.StatusCode != want {
			t.Errorf("a verifier of %d characters: got %d %v, want %d", n, resp.StatusCode, m, want)
		}
	}
}

// TestRefreshExpired: a refresh token past its lifetime (not purged yet).
func TestRefreshExpired(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	rt := m["refresh_token"].(string)
	e.clock.Advance(30*24*time.Hour - time.Second)
	if !e.activeTo(rt, "web", webSecret) {
		t.Fatal("the refresh token expired early")
	}
	e.clock.Advance(time.Second)
	if e.activeTo(rt, "web", webSecret) {
		t.Error("an expired refresh token is active")
	}
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web", webSecret)
	if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
		t.Errorf("an expired refresh token: got %d %v, want invalid_grant", resp.StatusCode, m)
	}
}
