package oauth

import (
	"net/url"
	"sync"
	"testing"
)

// TestConcurrentRedemption: the same code redeemed by 8 requests at once.
// Whatever the interleaving, at most one gets tokens, and since the others
// are replays, none of the tokens issued stays active.
func TestConcurrentRedemption(t *testing.T) {
	e := newEnv(t)
	for round := range 3 {
		code, verifier := e.code("web", redirectURI, "read")
		var mu sync.Mutex
		var issued []string
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				resp, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
				switch {
				case resp.StatusCode == 200:
					mu.Lock()
					issued = append(issued, m["access_token"].(string), m["refresh_token"].(string))
					mu.Unlock()
				case resp.StatusCode != 400 || m["error"] != "invalid_grant":
					t.Errorf("round %d: got %d %v, want 200 or invalid_grant", round, resp.StatusCode, m)
				}
			})
		}
		wg.Wait()
		if len(issued) > 2 {
			t.Errorf("round %d: %d tokens issued for one code", round, len(issued))
		}
		for _, tok := range issued {
			if e.active(tok) {
				t.Errorf("round %d: a token of a replayed code is active", round)
			}
		}
	}
}

// TestConcurrentRefresh: one refresh token used by 8 requests at once: at
// most one succeeds, and the family ends revoked.
func TestConcurrentRefresh(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code("web", redirectURI, "read")
	_, m := e.post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}, "web", webSecret)
	rt := m["refresh_token"].(string)
	var mu sync.Mutex
	var issued []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, m := e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web", webSecret)
			if resp.StatusCode == 200 {
				mu.Lock()
				issued = append(issued, m["access_token"].(string), m["refresh_token"].(string))
				mu.Unlock()
			} else if m["error"] != "invalid_grant" {
				t.Errorf("got %d %v, want 200 or invalid_grant", resp.StatusCode, m)
			}
		})
	}
	wg.Wait()
	if len(issued) > 2 {
		t.Errorf("%d tokens issued for one refresh token", len(issued))
	}
	for _, tok := range issued {
		if e.active(tok) {
			t.Error("a token issued from a reused refresh token is active")
		}
	}
}
