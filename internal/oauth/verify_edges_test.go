package oauth

import (
	"context"
	"errors"
	"testing"
	"time"
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
