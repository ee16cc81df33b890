package rbac

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func TestSessionToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	t0 := time.Unix(1_800_000_000, 0)
	s := NewSession("admin", t0)
	tok := SignSession(key, s)
	p, sig, _ := strings.Cut(tok, ".")
	flip := func(x string) string {
		b := []byte(x)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	renewed := SignSession(key, s.Touch(t0.Add(SessionIdle-time.Minute)))
	for _, c := range []struct {
		name  string
		key   []byte
		token string
		at    time.Time
		want  error
	}{
		{"fresh", key, tok, t0, nil},
		{"just before idle end", key, tok, t0.Add(SessionIdle - time.Second), nil},
		{"idle", key, tok, t0.Add(SessionIdle), ErrSessionExpired},
		{"renewed then used", key, renewed, t0.Add(SessionIdle + time.Minute), nil},
		{"absolute end", key, SignSession(key, s.Touch(t0.Add(SessionMax-time.Minute))), t0.Add(SessionMax), ErrSessionExpired},
		{"wrong key", other, tok, t0, ErrSessionInvalid},
		{"tampered payload", key, flip(p) + "." + sig, t0, ErrSessionInvalid},
		{"tampered signature", key, p + "." + flip(sig), t0, ErrSessionInvalid},
		{"no signature", key, p, t0, ErrSessionInvalid},
		{"empty", key, "", t0, ErrSessionInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := VerifySession(c.key, c.token, c.at)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if err == nil && (got.User != "admin" || got.ID != s.ID) {
				t.Errorf("got %+v, want user admin, id %s", got, s.ID)
			}
		})
	}
	// A payload with a longer absolute life than SessionMax, even when
	// signed, is refused.
	long := s
	long.Expires += 3600
	if _, err := VerifySession(key, SignSession(key, long), t0); !errors.Is(err, ErrSessionExpired) {
		t.Errorf("got %v, want ErrSessionExpired", err)
	}
	if CheckCSRF(key, s, "") || CheckCSRF(other, s, CSRFToken(key, s)) || !CheckCSRF(key, s, CSRFToken(key, s)) {
		t.Error("CSRF token check wrong")
	}
}

func TestSessionKeyAndRevocation(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateSessionKey(h); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(SessionKeyFile(h))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("got mode %v, want 0600", fi.Mode().Perm())
	}
	if k, err := LoadSessionKey(h); err != nil || len(k) != 32 {
		t.Fatalf("got %d bytes, %v; want 32", len(k), err)
	}
	now := time.Now()
	old := NewSession("a", now.Add(-SessionMax-time.Hour))
	cur := NewSession("a", now)
	if err := RevokeSession(h, old, now.Add(-SessionMax)); err != nil {
		t.Fatal(err)
	}
	if err := RevokeSession(h, cur, now); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRevoked(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r[cur.ID]; !ok || len(r) != 1 {
		t.Errorf("got %v, want only %s (the ended one pruned)", r, cur.ID)
	}
}
