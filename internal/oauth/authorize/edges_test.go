package authorize

import (
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// TestAuthorizeLimits: each length limit at its edge (accepted at the
// limit, refused one past it).
func TestAuthorizeLimits(t *testing.T) {
	e := newEnv(t)
	base := []string{"response_type", "code", "client_id", "shop", "redirect_uri", cb, "code_challenge", challenge, "code_challenge_method", "S256"}
	for _, c := range []struct {
		what     string
		extra    []string
		accepted bool
	}{
		{"a state of 1024 bytes", []string{"state", strings.Repeat("s", 1024)}, true},
		{"a state of 1025 bytes", []string{"state", strings.Repeat("s", 1025)}, false},
		{"a nonce of 512 bytes", []string{"nonce", strings.Repeat("n", 512)}, true},
		{"a nonce of 513 bytes", []string{"nonce", strings.Repeat("n", 513)}, false},
	} {
		a := e.get(params(append(base, c.extra...)...))
		if got := a.status == 200; got != c.accepted {
			t.Errorf("%s: %d %s", c.what, a.status, a.header.Get("Location"))
		}
	}
	flow := e.get(params(base...)).flow(t)
	login := func(user, pw string) int {
		return e.post(url.Values{"flow": {flow}, "username": {user}, "password": {pw}}).status
	}
	// A name of 128 bytes is checked (401: no such user); 129 is refused unchecked, as is a password over 1024.
	if s := login(strings.Repeat("u", 128), "wrong password!!"); s != 401 {
		t.Errorf("a name of 128 bytes: %d", s)
	}
	if s := login("alice", strings.Repeat("p", 1024)); s != 401 {
		t.Errorf("a password of 1024 bytes: %d", s)
	}
	if s := login("alice", "correct horse battery"); s != 200 {
		t.Errorf("the right password after: %d", s)
	}
	// The signed form field: up to 8 KiB.
	flow = e.get(params(base...)).flow(t)
	if len(flow) >= 8<<10 {
		t.Fatalf("a flow field of %d bytes", len(flow))
	}
	padded := flow + strings.Repeat("A", 8<<10-len(flow)+1)
	if a := e.post(url.Values{"flow": {padded}, "username": {"alice"}, "password": {"correct horse battery"}}); a.status != 400 {
		t.Errorf("a flow field over 8 KiB: %d", a.status)
	}
	// User names at Create: 128 bytes accepted, 129 refused.
	if _, err := e.users.Create(t.Context(), strings.Repeat("b", 128), "", mustPW()); err != nil {
		t.Errorf("a user name of 128 bytes: %v", err)
	}
	if _, err := e.users.Create(t.Context(), strings.Repeat("b", 129), "", mustPW()); err == nil {
		t.Error("a user name of 129 bytes was accepted")
	}
}

func mustPW() secret.Value { return secret.FromString("correct horse battery") }
