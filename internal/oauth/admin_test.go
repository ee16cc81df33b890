package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// grant redeems a fresh code of web and returns the access and refresh
// tokens.
func (e *env) grant(scopes ...string) (access, refresh string) {
	e.t.Helper()
	code, verifier := e.code("web", redirectURI, scopes...)
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	if resp.StatusCode != 200 {
		e.t.Fatalf("redeeming a code: got %d %v", resp.StatusCode, m)
	}
	return m["access_token"].(string), m["refresh_token"].(string)
}

func (e *env) clientCredentials() string {
	e.t.Helper()
	resp, m := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, "svc", svcSecret)
	if resp.StatusCode != 200 {
		e.t.Fatalf("client_credentials: got %d %v", resp.StatusCode, m)
	}
	return m["access_token"].(string)
}

func TestListClientTokens(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a listing that never ends fails
	defer cancel()
	a1, r1 := e.grant("read")
	a2, r2 := e.grant("read", "profile")
	cc := e.clientCredentials()

	list, next, err := ListClientTokens(ctx, e.store, "web", kps.Page{})
	if err != nil || next != "" {
		t.Fatalf("ListClientTokens: got next %q, %v", next, err)
	}
	kinds := map[string]int{}
	families := map[string]bool{}
	for _, ti := range list {
		kinds[ti.Kind]++
		families[ti.FamilyID] = true
		if ti.ClientID != "web" || ti.UserID != "alice" || ti.FamilyID == "" || len(ti.Scopes) == 0 || !ti.ExpiresAt.After(ti.IssuedAt) {
			t.Errorf("token %+v: want web's, alice's, with a family, scopes and a lifetime", ti)
		}
	}
	if kinds["access"] != 2 || kinds["refresh"] != 2 || len(families) != 2 {
		t.Errorf("web's tokens: got %v in %d families, want 2 access and 2 refresh in 2", kinds, len(families))
	}
	b, _ := json.Marshal(list)
	for _, tok := range []string{a1, r1, a2, r2, e.srv.hash.hash(a1), e.srv.hash.hash(r1)} {
		if strings.Contains(string(b), tok) {
			t.Errorf("the listing holds a token or its hash: %s", b)
		}
	}
	// Paged.
	p1, next, err := ListClientTokens(ctx, e.store, "web", kps.Page{Limit: 3})
	if err != nil || len(p1) != 3 || next == "" {
		t.Fatalf("page 1: got %d tokens, next %q, %v", len(p1), next, err)
	}
	p2, next, err := ListClientTokens(ctx, e.store, "web", kps.Page{Limit: 3, Cursor: next})
	if err != nil || len(p2) != 1 || next != "" {
		t.Errorf("page 2: got %d tokens, next %q, %v; want 1, \"\"", len(p2), next, err)
	}
	svc, _, err := ListClientTokens(ctx, e.store, "svc", kps.Page{})
	if err != nil || len(svc) != 1 || svc[0].Kind != "access" || svc[0].FamilyID != "" || svc[0].UserID != "" {
		t.Errorf("svc's tokens: got %+v, %v; want one access token without family or user", svc, err)
	}
	if !e.active(cc) {
		t.Error("the client_credentials token is not active")
	}
	none, _, err := ListClientTokens(ctx, e.store, "nobody", kps.Page{})
	if err != nil || len(none) != 0 {
		t.Errorf("an unknown client: got %v, %v", none, err)
	}

	// A store where the authorization server never ran has nothing.
	fresh := openStore(t)
	if l, _, err := ListClientTokens(ctx, fresh, "web", kps.Page{}); err != nil || l == nil || len(l) != 0 {
		t.Errorf("a store without the tables: got %v, %v; want an empty list", l, err)
	}
	if r, err := RevokeClient(ctx, fresh, "web", e.clock.Now()); err != nil || r != (Revoked{}) {
		t.Errorf("RevokeClient on a store without the tables: got %+v, %v", r, err)
	}
	if err := RevokeGrant(ctx, fresh, "web", "x"); !errors.Is(err, ErrNoGrant) || !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("RevokeGrant on a store without the tables: got %v, want ErrNoGrant", err)
	}
}

func TestRevokeGrantAndClient(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		t.Run(format, func(t *testing.T) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(t, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a listing that never ends fails
			defer cancel()
			a1, r1 := e.grant("read")
			a2, r2 := e.grant("read")
			cc := e.clientCredentials()
			pending, verifier := e.code("web", redirectURI, "read")

			fam1, err := e.srv.Verify(ctx, a1)
			if err != nil {
				t.Fatal(err)
			}
			if err := RevokeGrant(ctx, e.store, "svc", fam1.FamilyID); !errors.Is(err, ErrNoGrant) {
				t.Errorf("another client's grant: got %v, want ErrNoGrant", err)
			}
			if err := RevokeGrant(ctx, e.store, "web", "no-such-family"); !errors.Is(err, ErrNoGrant) {
				t.Errorf("an unknown grant: got %v, want ErrNoGrant", err)
			}
			if err := RevokeGrant(ctx, e.store, "web", fam1.FamilyID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.srv.Verify(ctx, a1); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("the revoked grant's access token: got %v, want ErrInvalidToken", err)
			}
			if e.activeTo(r1, "web", webSecret) {
				t.Error("the revoked grant's refresh token is active")
			}
			if _, err := e.srv.Verify(ctx, a2); err != nil {
				t.Errorf("the other grant's access token: %v", err)
			}
			if !e.activeTo(r2, "web", webSecret) {
				t.Error("the other grant's refresh token is not active")
			}

			got, err := RevokeClient(ctx, e.store, "web", e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if want := (Revoked{Families: 1, Codes: 1}); got != want {
				t.Errorf("RevokeClient(web): got %+v, want %+v", got, want)
			}
			if _, err := e.srv.Verify(ctx, a2); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("after RevokeClient, an access token: got %v, want ErrInvalidToken", err)
			}
			resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r2}}, "web", webSecret)
			if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
				t.Errorf("after RevokeClient, a refresh: got %d %v, want invalid_grant", resp.StatusCode, m)
			}
			resp, m = e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {pending}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
			if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
				t.Errorf("after RevokeClient, a code issued before: got %d %v, want invalid_grant", resp.StatusCode, m)
			}
			if l, _, _ := ListClientTokens(ctx, e.store, "web", kps.Page{}); len(l) != 0 {
				t.Errorf("after RevokeClient, web's tokens: %+v", l)
			}
			// svc's token was not touched; then revoked.
			if _, err := e.srv.Verify(ctx, cc); err != nil {
				t.Errorf("another client's token after RevokeClient(web): %v", err)
			}
			got, err = RevokeClient(ctx, e.store, "svc", e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if format == FormatOpaque {
				if want := (Revoked{Tokens: 1}); got != want {
					t.Errorf("RevokeClient(svc): got %+v, want %+v", got, want)
				}
				if _, err := e.srv.Verify(ctx, cc); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("svc's opaque token after RevokeClient: got %v, want ErrInvalidToken", err)
				}
			} else if got != (Revoked{}) {
				// A JWT of client_credentials is not stored: nothing to revoke.
				t.Errorf("RevokeClient(svc) with JWTs: got %+v, want nothing", got)
			}
			// Again: nothing left, no error.
			if got, err := RevokeClient(ctx, e.store, "web", e.clock.Now()); err != nil || got != (Revoked{}) {
				t.Errorf("RevokeClient again: got %+v, %v", got, err)
			}
			// The client gets new grants afterwards.
			a3, _ := e.grant("read")
			if _, err := e.srv.Verify(ctx, a3); err != nil {
				t.Errorf("a grant after the revocation: %v", err)
			}
		})
	}
}
