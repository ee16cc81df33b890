package rbac

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// signRaw signs any payload text the way SignSession signs JSON, so that
// tests can present tokens SignSession would never make.
func signRaw(key []byte, p string) string {
	return p + "." + base64.RawURLEncoding.EncodeToString(mac(key, "session", p))
}

// The defaults and bounds of the session lifetimes are the documented ones
// (docs/sessions.md): idle 30 min, absolute 8 h, each from 1 s, idle up to
// 24 h, absolute up to 7 days, idle not longer than absolute.
func TestSessionLifetimeBounds(t *testing.T) {
	if got := (SessionLifetimes{}).IdleTimeout(); got != 30*time.Minute {
		t.Errorf("default idle: got %v, want 30m", got)
	}
	if got := (SessionLifetimes{}).AbsoluteTimeout(); got != 8*time.Hour {
		t.Errorf("default absolute: got %v, want 8h", got)
	}
	for _, c := range []struct {
		l    SessionLifetimes
		want string // part of the error; "" valid
	}{
		{SessionLifetimes{Idle: time.Second, Absolute: time.Second}, ""},
		{SessionLifetimes{Idle: 24 * time.Hour, Absolute: 24 * time.Hour}, ""},
		{SessionLifetimes{Idle: 24*time.Hour + time.Second, Absolute: 48 * time.Hour}, "sessions.idleTimeout 24h0m1s: want whole seconds from 1s to 24h"},
		{SessionLifetimes{Absolute: 168 * time.Hour}, ""},
		{SessionLifetimes{Absolute: 168*time.Hour + time.Second}, "sessions.absoluteTimeout 168h0m1s: want whole seconds from 1s to 168h"},
		{SessionLifetimes{Idle: 2 * time.Second, Absolute: time.Second}, "sessions.idleTimeout 2s is longer than sessions.absoluteTimeout 1s"},
		{SessionLifetimes{Idle: 90 * time.Second, Absolute: time.Minute}, "sessions.idleTimeout 1m30s is longer than sessions.absoluteTimeout 1m"},
		{SessionLifetimes{Idle: time.Hour, Absolute: 50 * time.Minute}, "sessions.idleTimeout 1h is longer than sessions.absoluteTimeout 50m"},
	} {
		err := c.l.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: got %v, want %q", c.l, err, c.want)
		}
	}
}

// Durations in messages read as configured: 8h, 30m, 1m30s, 10s.
func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                    "0s",
		10 * time.Second:                     "10s",
		90 * time.Second:                     "1m30s",
		30 * time.Minute:                     "30m",
		8 * time.Hour:                        "8h",
		time.Hour + 30*time.Minute:           "1h30m",
		time.Hour + 20*time.Second:           "1h0m20s",
		500 * time.Millisecond:               "500ms",
		168*time.Hour + 10*time.Minute:       "168h10m",
		24*time.Hour + 30*time.Second:        "24h0m30s",
		2*time.Minute + 500*time.Millisecond: "2m0.5s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v): got %q, want %q", d, got, want)
		}
	}
}

func TestRenewAfterIsAQuarterOfIdle(t *testing.T) {
	if got := (SessionLifetimes{Idle: 2 * time.Minute, Absolute: time.Hour}).RenewAfter(); got != 30*time.Second {
		t.Errorf("idle 2m: got %v, want 30s", got)
	}
}

// A session id is 16 random bytes in hex; the idle end never passes the
// absolute end; End is the earlier of the two.
func TestNewSession(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	a, b := NewSession("u", t0), NewSession("u", t0)
	if id, err := hex.DecodeString(a.ID); err != nil || len(id) != 16 {
		t.Errorf("id %q: want 16 bytes in hex", a.ID)
	}
	if a.ID == b.ID {
		t.Error("two sessions with one id")
	}
	if a.Issued != t0.Unix() || a.Expires != t0.Add(8*time.Hour).Unix() || a.IdleUntil != t0.Add(30*time.Minute).Unix() {
		t.Errorf("got %+v, want issued now, idle end +30m, end +8h", a)
	}
	if !a.End().Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("End: got %v, want the idle end", a.End())
	}
	late := a.Touch(t0.Add(8*time.Hour - time.Minute))
	if late.IdleUntil != late.Expires || !late.End().Equal(t0.Add(8*time.Hour)) {
		t.Errorf("touched near the end: got %+v, want the idle end at the absolute end", late)
	}
	odd := Session{IdleUntil: 200, Expires: 100}
	if odd.End().Unix() != 100 {
		t.Errorf("End of %+v: got %v, want 100", odd, odd.End().Unix())
	}
}

// The token and CSRF formats are the documented ones, so that every Admin
// Node Manager of a domain (of any version) accepts the others' sessions:
// base64url(payload) "." base64url(HMAC-SHA256(key, "session" NUL
// base64url(payload))), and base64url(HMAC-SHA256(key, "csrf" NUL sid)).
func TestSessionTokenFormat(t *testing.T) {
	s := NewSession("admin", time.Unix(1_800_000_000, 0))
	tok := SignSession(testKey, s)
	p, sig, _ := strings.Cut(tok, ".")
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte("session\x00" + p))
	if want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); sig != want {
		t.Errorf("signature: got %s, want %s", sig, want)
	}
	m = hmac.New(sha256.New, testKey)
	m.Write([]byte("csrf\x00" + s.ID))
	if got, want := CSRFToken(testKey, s), base64.RawURLEncoding.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("CSRF token: got %s, want %s", got, want)
	}
}

// Tokens that are signed with the right key but say something invalid, or
// are too long, are refused.
func TestVerifySessionRefusesSignedNonsense(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now, idle, end := t0.Unix(), t0.Unix()+60, t0.Unix()+3600
	payload := func(json string) string { return base64.RawURLEncoding.EncodeToString([]byte(json)) }
	claims := func(u, sid string, iat, exp, idle int64) string {
		return payload(`{"u":"` + u + `","sid":"` + sid + `","iat":` + itoa(iat) + `,"exp":` + itoa(exp) + `,"idle":` + itoa(idle) + `}`)
	}
	if _, err := VerifySession(testKey, signRaw(testKey, claims("admin", "s1", now, end, idle)), t0); err != nil {
		t.Fatalf("a valid hand-made token: %v", err)
	}
	valid := signRaw(testKey, claims("admin", "s1", now, end, idle))
	junkAfter := claims("admin12", "s1", now, end, idle) + "!!!!" // claims of 78 bytes: whole base64 quanta before the junk
	if b, err := base64.RawURLEncoding.DecodeString(junkAfter); err == nil || !json.Valid(b) {
		t.Fatalf("the junk case decodes to %q, %v; want whole claims and an error", b, err)
	}
	for _, c := range []struct {
		name, token string
		want        error
	}{
		{"signature cut", valid[:len(valid)-1], ErrSessionInvalid},
		{"payload not base64", signRaw(testKey, "!!!!"), ErrSessionInvalid},
		// base64 decoding stops at the junk and returns what it decoded
		// before it: valid claims, which must not count.
		{"valid claims then junk", signRaw(testKey, junkAfter), ErrSessionInvalid},
		{"payload not JSON", signRaw(testKey, payload("admin")), ErrSessionInvalid},
		{"no user", signRaw(testKey, claims("", "s1", now, end, idle)), ErrSessionInvalid},
		{"no session id", signRaw(testKey, claims("admin", "", now, end, idle)), ErrSessionInvalid},
		{"at its absolute end, idle end later", signRaw(testKey, claims("admin", "s1", now-10, now, now+60)), ErrSessionExpired},
		{"at its idle end", signRaw(testKey, claims("admin", "s1", now-10, end, now)), ErrSessionExpired},
		{"absolute end past the lifetime", signRaw(testKey, claims("admin", "s1", now, now+8*3600+1, idle)), ErrSessionExpired},
		{"signature only", "." + strings.SplitN(signRaw(testKey, ""), ".", 2)[1], ErrSessionInvalid},
		{"dot only", ".", ErrSessionInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := VerifySession(testKey, c.token, t0); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, err := VerifySession(testKey, signRaw(testKey, claims("admin", "s1", now, now+8*3600, idle)), t0); err != nil {
		t.Errorf("absolute end exactly the lifetime: got %v, want valid", err)
	}
}

// A token of 1024 bytes is accepted, one of 1025 refused, even when signed
// (base64 decoding skips newlines, which pads the payload to any length).
func TestVerifySessionLengthLimit(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := NewSession("admin", t0)
	good := SignSession(testKey, s)
	p, _, _ := strings.Cut(good, ".")
	sigLen := len(good) - len(p) - 1
	for _, c := range []struct {
		length int
		want   error
	}{{1024, nil}, {1025, ErrSessionInvalid}} {
		padded := p + strings.Repeat("\n", c.length-len(p)-1-sigLen)
		tok := signRaw(testKey, padded)
		if len(tok) != c.length {
			t.Fatalf("made a token of %d bytes, want %d", len(tok), c.length)
		}
		if _, err := VerifySession(testKey, tok, t0); !errors.Is(err, c.want) {
			t.Errorf("%d bytes: got %v, want %v", c.length, err, c.want)
		}
	}
}

// conf/sessionKey: 32 random bytes in hex and a newline, mode 0600; a file
// of another length, empty, not hex or missing is an error (never a short
// or empty key that would make tokens forgeable).
func TestSessionKeyFile(t *testing.T) {
	h := newHome(t)
	if _, err := LoadSessionKey(h); err == nil {
		t.Error("missing key: got nil, want an error")
	}
	if err := CreateSessionKey(h); err != nil {
		t.Fatal(err)
	}
	wantMode(t, h.ConfDir(), 0o755|os.ModeDir)
	data, _ := os.ReadFile(SessionKeyFile(h))
	if len(data) != 65 || data[64] != '\n' {
		t.Errorf("got %q, want 64 hex digits and a newline", data)
	}
	k, err := LoadSessionKey(h)
	if err != nil || hex.EncodeToString(k)+"\n" != string(data) {
		t.Errorf("got %x, %v, want the key in the file", k, err)
	}
	for _, c := range []struct{ name, content string }{
		{"empty", ""},
		{"newline only", "\n"},
		{"31 bytes", strings.Repeat("ab", 31) + "\n"},
		{"33 bytes", strings.Repeat("ab", 33) + "\n"},
		{"not hex", strings.Repeat("zz", 32) + "\n"},
	} {
		os.WriteFile(SessionKeyFile(h), []byte(c.content), 0o600)
		if k, err := LoadSessionKey(h); err == nil || !strings.Contains(err.Error(), "want 32 bytes in hex") {
			t.Errorf("%s: got %x, %v, want an error", c.name, k, err)
		}
	}
	os.WriteFile(SessionKeyFile(h), []byte("  "+strings.Repeat("0f", 32)+"\r\n"), 0o600)
	if k, err := LoadSessionKey(h); err != nil || len(k) != 32 {
		t.Errorf("key with spaces around: got %x, %v, want 32 bytes", k, err)
	}

	os.Remove(SessionKeyFile(h))
	blockWithDir(t, SessionKeyFile(h))
	if err := CreateSessionKey(h); err == nil {
		t.Error("sessionKey is a directory: got nil, want an error")
	}
	if _, err := LoadSessionKey(h); err == nil || !strings.Contains(err.Error(), "reading session key") {
		t.Errorf("sessionKey is a directory: got %v, want a reading error", err)
	}
	h2 := newHome(t)
	blockWithFile(t, h2.ConfDir())
	if err := CreateSessionKey(h2); err == nil || !strings.Contains(err.Error(), "creating "+h2.ConfDir()) {
		t.Errorf("conf is a file: got %v, want a creating error", err)
	}
}

// conf/revokedSessions.json: mode 0600 under var/run (0755); an entry is
// dropped once its absolute end is reached; a file of "{}" is an empty
// list; a malformed or unreadable file is an error and is left as it is.
func TestRevokedSessionsFile(t *testing.T) {
	h := newHome(t)
	os.MkdirAll(h.ConfDir(), 0o755)
	r, err := LoadRevoked(h)
	if err != nil || r == nil || len(r) != 0 {
		t.Fatalf("missing file: got %v, %v, want an empty list", r, err)
	}
	now := time.Unix(1_800_000_000, 0)
	ending := Session{ID: "ending", Expires: now.Unix()}
	later := Session{ID: "later", Expires: now.Unix() + 1}
	for _, s := range []Session{ending, later} {
		if err := RevokeSession(h, s, now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	wantMode(t, RevokedSessionsFile(h), 0o600)
	wantMode(t, h.RunDir(), 0o755|os.ModeDir)
	if err := RevokeSession(h, Session{ID: "new", Expires: now.Unix() + 60}, now); err != nil {
		t.Fatal(err)
	}
	r, _ = LoadRevoked(h)
	if _, ok := r["ending"]; ok || len(r) != 2 || r["later"] != now.Unix()+1 {
		t.Errorf("got %v, want later and new (ending pruned at its end)", r)
	}

	os.WriteFile(RevokedSessionsFile(h), []byte("{}"), 0o600)
	if err := RevokeSession(h, later, now); err != nil {
		t.Fatalf(`after "{}": %v`, err)
	}
	for _, c := range []struct{ name, content, want string }{
		{"malformed", `{"revoked": [`, "parsing " + RevokedSessionsFile(h)},
		{"wrong type", `{"revoked": {"a": "b"}}`, "parsing"},
	} {
		os.WriteFile(RevokedSessionsFile(h), []byte(c.content), 0o600)
		if _, err := LoadRevoked(h); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
		if err := RevokeSession(h, later, now); err == nil {
			t.Errorf("%s: RevokeSession got nil, want an error", c.name)
		}
		if data, _ := os.ReadFile(RevokedSessionsFile(h)); string(data) != c.content {
			t.Errorf("%s: file changed to %s", c.name, data)
		}
	}
	os.Remove(RevokedSessionsFile(h))
	blockWithDir(t, RevokedSessionsFile(h))
	if _, err := LoadRevoked(h); err == nil || !strings.Contains(err.Error(), "reading revoked sessions") {
		t.Errorf("unreadable: got %v, want a reading error", err)
	}

	h2 := newHome(t)
	blockWithFile(t, filepath.Dir(h2.RunDir()))
	if err := RevokeSession(h2, later, now); err == nil || !strings.Contains(err.Error(), "creating run directory") {
		t.Errorf("var is a file: got %v, want a creating error", err)
	}
	h3 := newHome(t)
	blockWithDir(t, filepath.Join(h3.RunDir(), "revokedSessions.lock"))
	if err := RevokeSession(h3, later, now); err == nil || !strings.Contains(err.Error(), "another request is revoking") {
		t.Errorf("lock unusable: got %v, want a lock error", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// FuzzVerifySession: any cookie value gives a session or an error, never
// a panic; a session accepted has a user and an id and has not ended.
func FuzzVerifySession(f *testing.F) {
	t0 := time.Unix(1_800_000_000, 0)
	tok := SignSession(testKey, NewSession("admin", t0))
	p, sig, _ := strings.Cut(tok, ".")
	for _, s := range []string{tok, "", ".", "..", p, p + ".", "." + sig, tok[:len(tok)-1], tok + ".", tok + "=", p[:len(p)-1] + "." + sig, strings.Repeat("A", 1025)} {
		f.Add(s, int64(0))
	}
	f.Add(tok, int64(30*60))
	f.Add(tok, int64(-1))
	f.Fuzz(func(t *testing.T, token string, at int64) {
		s, err := VerifySession(testKey, token, t0.Add(time.Duration(at)*time.Second))
		if err != nil {
			return
		}
		if s.User == "" || s.ID == "" || !t0.Add(time.Duration(at)*time.Second).Before(s.End()) {
			t.Fatalf("accepted %+v at %d", s, at)
		}
	})
}
