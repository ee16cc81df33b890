package jwt

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// TestNewBearer: a policy whose tokens another verifier checks (the oauth
// policy) answers as the jwt policy does, under its own name and variables.
func TestNewBearer(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	calls := 0
	var answer Token
	var fail error
	verify := func(_ context.Context, tok string) (Token, error) {
		calls++
		if fail != nil {
			return Token{}, fail
		}
		if tok != "good" {
			return Token{}, ErrInvalidToken
		}
		return answer, nil
	}
	p, err := NewBearer("oauth", groupconf.JWTPolicy{Scopes: []string{"read"}, TokenCacheTTL: groupconf.Duration(time.Minute)}, verify, Options{Now: func() time.Time { return now }})
	if err != nil || p.Name() != "oauth" {
		t.Fatalf("NewBearer: %v %v", p, err)
	}
	apply := func(tok string) (*policy.Exchange, error) {
		r := &h1.Request{Method: []byte("GET"), Path: []byte("/a")}
		r.Header.AddString("Authorization", "Bearer "+tok)
		r.Header.AddString("X-Gatehouse-Subject", "spoofed")
		ex := &policy.Exchange{R: r}
		return ex, p.Apply(ex)
	}
	status := func(err error) int {
		var pe *policy.Error
		if errors.As(err, &pe) {
			return pe.Status
		}
		return 0
	}
	if _, err := apply("bad"); status(err) != http.StatusUnauthorized {
		t.Errorf("an invalid token: %v", err)
	}
	answer = Token{Subject: "alice", ClientID: "shop", Scopes: []string{"read", "write"}, ExpiresAt: now.Add(30 * time.Second)}
	ex, err := apply("good")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := ex.Var("oauth.sub"); v != "alice" || ex.Application != "shop" || string(ex.R.Header.Get("X-Gatehouse-Subject")) != "alice" {
		t.Errorf("a good token: vars %v, application %q, subject field %q", ex.Vars, ex.Application, ex.R.Header.Get("X-Gatehouse-Subject"))
	}
	if v, _ := ex.Var("oauth.scope"); v != "read write" {
		t.Errorf("oauth.scope %q", v)
	}
	// Remembered until its expiry (30 s), before the cache's minute.
	apply("good")
	if calls != 2 {
		t.Errorf("%d verifier calls, want 2 (the second good one from the cache)", calls)
	}
	now = now.Add(30 * time.Second)
	answer.ExpiresAt = now
	if _, err := apply("good"); status(err) != http.StatusUnauthorized || calls != 3 {
		t.Errorf("at its expiry: %v after %d calls", err, calls)
	}
	answer = Token{Subject: "bob", ClientID: "shop", Scopes: []string{"write"}, ExpiresAt: now.Add(time.Hour)}
	if _, err := apply("good"); status(err) != http.StatusForbidden {
		t.Errorf("without the scope: %v", err)
	}
	answer = Token{Subject: "bo\nb", ClientID: "shop", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)}
	now = now.Add(2 * time.Minute)
	if _, err := apply("good"); status(err) != http.StatusUnauthorized {
		t.Errorf("a subject with a line break: %v", err)
	}
	fail = errors.New("store down")
	now = now.Add(2 * time.Minute)
	_, err = apply("good")
	var pe *policy.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusServiceUnavailable || len(pe.Fields) != 1 || pe.Fields[0][0] != "Retry-After" {
		t.Errorf("verifier failing: %v", err)
	}
}
