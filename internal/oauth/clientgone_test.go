package oauth

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// failingClients is a registry that cannot answer.
type failingClients struct{}

func (failingClients) Client(context.Context, string) (Client, error) {
	return Client{}, kps.Unavailable(errors.New("registry down"))
}

// TestTokensDieWithTheirClient: a token whose client was disabled or
// deleted is refused by Verify and inactive to introspection, whatever
// its format; a registry that cannot answer is an outage, not an invalid
// token.
func TestTokensDieWithTheirClient(t *testing.T) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		t.Run(format, func(t *testing.T) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(t, opts...)
			_, m := e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, "svc", svcSecret)
			tok, _ := m["access_token"].(string)
			if tok == "" {
				t.Fatalf("no token: %v", m)
			}
			ctx := context.Background()
			if _, err := e.srv.Verify(ctx, tok); err != nil || !e.active(tok) {
				t.Fatalf("a fresh token: %v, active %v", err, e.active(tok))
			}
			svc, _ := e.clients.Client(ctx, "svc")
			svc.Enabled = false
			e.clients.Put(svc)
			if _, err := e.srv.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("client disabled: %v, want ErrInvalidToken", err)
			}
			if e.active(tok) {
				t.Error("client disabled: the token is still active to introspection")
			}
			svc.Enabled = true
			e.clients.Put(svc)
			if _, err := e.srv.Verify(ctx, tok); err != nil {
				t.Errorf("client enabled again: %v", err)
			}
			e.clients.mu.Lock()
			delete(e.clients.m, "svc")
			e.clients.mu.Unlock()
			if _, err := e.srv.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("client deleted: %v, want ErrInvalidToken", err)
			}
			e.srv.clients = failingClients{}
			if _, err := e.srv.Verify(ctx, tok); err == nil || errors.Is(err, ErrInvalidToken) || !errors.Is(err, kps.ErrUnavailable) {
				t.Errorf("registry down: %v, want an outage", err)
			}
		})
	}
}
