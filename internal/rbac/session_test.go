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

func TestSessionLifetimes(t *testing.T) {
	for _, c := range []struct {
		l    SessionLifetimes
		want string // part of the error; "" valid
	}{
		{SessionLifetimes{}, ""},
		{SessionLifetimes{Idle: 2 * time.Second, Absolute: 10 * time.Second}, ""},
		{SessionLifetimes{Idle: MaxSessionIdle, Absolute: MaxSessionAbsolute}, ""},
		{SessionLifetimes{Idle: 500 * time.Millisecond}, "sessions.idleTimeout 500ms: want whole seconds from 1s to 24h"},
		{SessionLifetimes{Idle: 1500 * time.Millisecond}, "sessions.idleTimeout"},
		{SessionLifetimes{Idle: -time.Second}, "sessions.idleTimeout"},
		{SessionLifetimes{Idle: 25 * time.Hour, Absolute: 48 * time.Hour}, "sessions.idleTimeout 25h0m0s"},
		{SessionLifetimes{Absolute: 8 * 24 * time.Hour}, "sessions.absoluteTimeout 192h0m0s: want whole seconds from 1s to 168h"},
		{SessionLifetimes{Idle: 9 * time.Hour}, "sessions.idleTimeout 9h is longer than sessions.absoluteTimeout 8h"},
		{SessionLifetimes{Absolute: 10 * time.Minute}, "sessions.idleTimeout 30m is longer than sessions.absoluteTimeout 10m"},
	} {
		err := c.l.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: got %v, want %q", c.l, err, c.want)
		}
	}

	// Short lifetimes: idle end, renewal, absolute end, and a token of a
	// longer configured life refused once the life is shortened.
	key := []byte("0123456789abcdef0123456789abcdef")
	l := SessionLifetimes{Idle: 3 * time.Second, Absolute: 8 * time.Second}
	t0 := time.Unix(1_800_000_000, 0)
	s := l.NewSession("admin", t0)
	if s.IdleUntil != t0.Unix()+3 || s.Expires != t0.Unix()+8 {
		t.Fatalf("got %+v, want idle end +3 s, end +8 s", s)
	}
	for _, c := range []struct {
		name  string
		token string
		at    time.Duration
		want  error
	}{
		{"before idle end", SignSession(key, s), 2 * time.Second, nil},
		{"idle", SignSession(key, s), 3 * time.Second, ErrSessionExpired},
		{"renewed", SignSession(key, l.Touch(s, t0.Add(2*time.Second))), 4 * time.Second, nil},
		{"renewed at the end", SignSession(key, l.Touch(s, t0.Add(7*time.Second))), 8 * time.Second, ErrSessionExpired},
		{"default-life token", SignSession(key, NewSession("admin", t0)), time.Second, ErrSessionExpired},
	} {
		if _, err := l.Verify(key, c.token, t0.Add(c.at)); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if got := l.RenewAfter(); got != time.Second {
		t.Errorf("RenewAfter with idle 3s: got %v, want 1s", got)
	}
	if got := (SessionLifetimes{}).RenewAfter(); got != time.Minute {
		t.Errorf("RenewAfter with the default idle: got %v, want 1m", got)
	}
}
