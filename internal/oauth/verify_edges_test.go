package oauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// TestJWTLeeway: a JWT access token of another instance is accepted up to
// 5 s past its exp and with an iat up to 5 s ahead, not beyond.
func TestJWTLeeway(t *testing.T) {
	e := newEnv(t, jwtFormat)
	ctx := context.Background()
	tok := ccToken(t, e, "svc", svcSecret)
	e.clock.Advance(time.Hour + 5*time.Second - time.Nanosecond)
	if _, err := e.srv.Verify(ctx, tok); err != nil {
		t.Errorf("1 ns before exp + 5 s: %v", err)
	}
	e.clock.Advance(time.Nanosecond)
	if _, err := e.srv.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("at exp + 5 s: %v", err)
	}
	for ahead, ok := range map[time.Duration]bool{5 * time.Second: true, 6 * time.Second: false} {
		e.clock.Advance(ahead)
		tok := ccToken(t, e, "svc", svcSecret)
		e.clock.Advance(-ahead)
		if _, err := e.srv.Verify(ctx, tok); (err == nil) != ok {
			t.Errorf("an iat %v ahead: %v", ahead, err)
		}
	}
	if !(Claims{Scopes: []string{"read", "write"}}).HasScope("write") || (Claims{Scopes: []string{"read"}}).HasScope("write") {
		t.Error("HasScope")
	}
}

// TestMalformedOpaqueNoRead: an opaque token of the wrong length is
// refused without a store read (so an outage does not turn it into a 503).
func TestMalformedOpaqueNoRead(t *testing.T) {
	e, f := faultyEnv(t)
	f.set(&fault{op: "get", table: TokensTable, err: errDown})
	for _, tok := range []string{PrefixAccessToken + "abc", PrefixAccessToken + strings.Repeat("a", 53)} {
		if _, err := e.srv.verify(context.Background(), tok, f); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%q with the store down: %v", tok, err)
		}
	}
}

// TestJWTRequiredClaims: a JWT access token signed with the server's key
// but without exp, iat, sub or client_id is refused.
func TestJWTRequiredClaims(t *testing.T) {
	e := newEnv(t, jwtFormat)
	now := e.clock.Now()
	good := func() jwtClaims {
		return jwtClaims{Claims: jwt.Claims{Issuer: e.issuer, Subject: "svc", Audience: jwt.Audience{e.srv.cfg.Audience},
			Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), ID: "j1"}, ClientID: "svc", Scope: "read"}
	}
	sign := func(c jwtClaims) string {
		tok, err := jwt.Signed(e.keys.current().signer).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if _, err := e.srv.Verify(context.Background(), sign(good())); err != nil {
		t.Fatalf("the good token: %v", err)
	}
	for what, mut := range map[string]func(*jwtClaims){
		"no exp":       func(c *jwtClaims) { c.Expiry = nil },
		"no iat":       func(c *jwtClaims) { c.IssuedAt = nil },
		"no sub":       func(c *jwtClaims) { c.Subject = "" },
		"no client_id": func(c *jwtClaims) { c.ClientID = "" },
	} {
		c := good()
		mut(&c)
		if _, err := e.srv.Verify(context.Background(), sign(c)); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// TestJWTUserAndID: a JWT of a grant names its user even when the user's
// id is the client's; its jti is 26 characters (130 random bits).
func TestJWTUserAndID(t *testing.T) {
	e := newEnv(t, jwtFormat)
	ctx := context.Background()
	verifier := strings.Repeat("v", 43)
	code, err := e.srv.IssueCode(ctx, CodeGrant{ClientID: "web", UserID: "web", RedirectURI: redirectURI, Scopes: []string{"read"}, CodeChallenge: S256Challenge(verifier)})
	if err != nil {
		t.Fatal(err)
	}
	_, _, m := e.tokenAs("web", webSecret, redeemForm(code, verifier))
	at, _ := m["access_token"].(string)
	cl, err := e.srv.Verify(ctx, at)
	if err != nil || cl.UserID != "web" || cl.Subject != "web" || len(cl.TokenID) != 26 {
		t.Errorf("a grant of user web to client web: %+v %v", cl, err)
	}
}
