package rbac

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Session lifetimes (docs/sessions.md): the defaults, and the bounds a
// configured value (system/conf/nodemanager.yaml, sessions.idleTimeout and
// sessions.absoluteTimeout) must keep.
const (
	// SessionIdle ends a session that was not used for this long; every
	// use refreshes it (a new cookie), up to SessionMax.
	SessionIdle = 30 * time.Minute
	// SessionMax ends every session this long after login, used or not.
	SessionMax = 8 * time.Hour

	// MinSessionLifetime is the shortest configurable lifetime (tokens
	// count whole seconds).
	MinSessionLifetime = time.Second
	// MaxSessionIdle and MaxSessionAbsolute are the longest configurable
	// lifetimes.
	MaxSessionIdle     = 24 * time.Hour
	MaxSessionAbsolute = 7 * 24 * time.Hour
)

// SessionLifetimes are the idle and absolute lifetimes of the sessions an
// Admin Node Manager issues and accepts. The zero value is the defaults
// (SessionIdle, SessionMax). A value is immutable; its methods are safe for
// concurrent use.
type SessionLifetimes struct {
	// Idle ends a session not used for this long (0: SessionIdle).
	Idle time.Duration
	// Absolute ends a session this long after login (0: SessionMax).
	Absolute time.Duration
}

func (l SessionLifetimes) idle() time.Duration {
	if l.Idle == 0 {
		return SessionIdle
	}
	return l.Idle
}

func (l SessionLifetimes) absolute() time.Duration {
	if l.Absolute == 0 {
		return SessionMax
	}
	return l.Absolute
}

// IdleTimeout and AbsoluteTimeout are the lifetimes in effect (the
// defaults for zero fields).
func (l SessionLifetimes) IdleTimeout() time.Duration     { return l.idle() }
func (l SessionLifetimes) AbsoluteTimeout() time.Duration { return l.absolute() }

// Validate checks the bounds: each lifetime whole seconds, idle from
// MinSessionLifetime to MaxSessionIdle, absolute from MinSessionLifetime to
// MaxSessionAbsolute, and idle not longer than absolute. Its errors name
// the settings by their nodemanager.yaml keys.
func (l SessionLifetimes) Validate() error {
	for _, c := range []struct {
		key      string
		d, upper time.Duration
	}{{"sessions.idleTimeout", l.Idle, MaxSessionIdle}, {"sessions.absoluteTimeout", l.Absolute, MaxSessionAbsolute}} {
		if c.d == 0 {
			continue
		}
		if c.d < MinSessionLifetime || c.d > c.upper || c.d%time.Second != 0 {
			return fmt.Errorf("%s %s: want whole seconds from %s to %s (e.g. 30m, 8h)", c.key, c.d, MinSessionLifetime, fmtDuration(c.upper))
		}
	}
	if l.idle() > l.absolute() {
		return fmt.Errorf("sessions.idleTimeout %s is longer than sessions.absoluteTimeout %s", fmtDuration(l.idle()), fmtDuration(l.absolute()))
	}
	return nil
}

// fmtDuration writes 8h0m0s as 8h and 30m0s as 30m (and 1m30s, 90s, 0s
// as they are).
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// RenewAfter is how much a use must move a session's idle end before the
// Admin Node Manager sends a renewed cookie: a quarter of the idle
// lifetime, at least a second and at most a minute.
func (l SessionLifetimes) RenewAfter() time.Duration {
	return min(time.Minute, max(time.Second, l.idle()/4))
}

// NewSession starts a session for user at now.
func (l SessionLifetimes) NewSession(user string, now time.Time) Session {
	id := make([]byte, 16)
	rand.Read(id)
	s := Session{User: user, ID: hex.EncodeToString(id), Issued: now.Unix(), Expires: now.Add(l.absolute()).Unix()}
	return l.Touch(s, now)
}

// Touch returns s used at now: its idle end moved to now plus the idle
// lifetime, never past its absolute end.
func (l SessionLifetimes) Touch(s Session, now time.Time) Session {
	s.IdleUntil = min(now.Add(l.idle()).Unix(), s.Expires)
	return s
}

// Verify checks token's signature with key and its expiry at now; a token
// claiming a longer absolute life than l allows is refused as expired.
// Errors: ErrSessionInvalid, ErrSessionExpired.
func (l SessionLifetimes) Verify(key []byte, token string, now time.Time) (Session, error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok || len(token) > 1024 {
		return Session{}, ErrSessionInvalid
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(key, "session", p)) {
		return Session{}, ErrSessionInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Session{}, ErrSessionInvalid
	}
	var s Session
	if err := json.Unmarshal(payload, &s); err != nil || s.User == "" || s.ID == "" {
		return Session{}, ErrSessionInvalid
	}
	if t := now.Unix(); t >= s.Expires || t >= s.IdleUntil || s.Expires > s.Issued+int64(l.absolute()/time.Second) {
		return Session{}, ErrSessionExpired
	}
	return s, nil
}

// sessionKeyLen is the length of the domain session key.
const sessionKeyLen = 32

// Errors of VerifySession.
var (
	ErrSessionInvalid = errors.New("session token is malformed or not signed by this domain's session key")
	ErrSessionExpired = errors.New("session expired")
)

// SessionKeyFile is conf/sessionKey: the domain's session signing key
// (32 random bytes, hex), mode 0600. Every Admin Node Manager of the
// domain must hold the same file to accept the others' sessions.
func SessionKeyFile(h home.Home) string { return h.Path("conf", "sessionKey") }

// CreateSessionKey writes a new random session key to conf/sessionKey,
// replacing any there (every session signed with the old key ends).
func CreateSessionKey(h home.Home) error {
	k := make([]byte, sessionKeyLen)
	rand.Read(k) // never fails (crypto/rand)
	if err := os.MkdirAll(h.ConfDir(), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", h.ConfDir(), err)
	}
	return secret.WriteFile(h, SessionKeyFile(h), []byte(hex.EncodeToString(k)+"\n"), 0o600)
}

// LoadSessionKey reads conf/sessionKey.
func LoadSessionKey(h home.Home) ([]byte, error) {
	data, err := secret.ReadFile(h, SessionKeyFile(h))
	if err != nil {
		return nil, fmt.Errorf("reading session key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(k) != sessionKeyLen {
		return nil, fmt.Errorf("%s: want %d bytes in hex", SessionKeyFile(h), sessionKeyLen)
	}
	return k, nil
}

// Session is what a session token says. Times are Unix seconds.
type Session struct {
	User string `json:"u"`
	ID   string `json:"sid"`
	// Issued is the login time.
	Issued int64 `json:"iat"`
	// Expires is the absolute end (Issued + the absolute lifetime).
	Expires int64 `json:"exp"`
	// IdleUntil is the end unless the session is used (and its token
	// renewed) before then: last use + the idle lifetime, at most Expires.
	IdleUntil int64 `json:"idle"`
	// Gen is the generation of the user record at login (User.Gen): the
	// session is valid only while the record has it.
	Gen int64 `json:"gen,omitempty"`
}

// NewSession starts a session for user at now with the default lifetimes.
func NewSession(user string, now time.Time) Session {
	return SessionLifetimes{}.NewSession(user, now)
}

// Touch returns s used at now with the default idle lifetime.
func (s Session) Touch(now time.Time) Session { return SessionLifetimes{}.Touch(s, now) }

// End is when s ends unless used again.
func (s Session) End() time.Time { return time.Unix(min(s.IdleUntil, s.Expires), 0) }

// SignSession returns the token of s: base64url(JSON) "." base64url(HMAC-
// SHA256(key, base64url(JSON))).
func SignSession(key []byte, s Session) string {
	payload, _ := json.Marshal(s)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(mac(key, "session", p))
}

// VerifySession is SessionLifetimes.Verify with the default lifetimes.
func VerifySession(key []byte, token string, now time.Time) (Session, error) {
	return SessionLifetimes{}.Verify(key, token, now)
}

// CSRFToken is the token a session's state-changing requests send in the
// csrf-token header: an HMAC of the session id under the domain key, so
// any Admin Node Manager of the domain can check it without storing it.
func CSRFToken(key []byte, s Session) string {
	return base64.RawURLEncoding.EncodeToString(mac(key, "csrf", s.ID))
}

// CheckCSRF reports whether token is the CSRF token of s, in constant time.
func CheckCSRF(key []byte, s Session, token string) bool {
	return hmac.Equal([]byte(token), []byte(CSRFToken(key, s)))
}

func mac(key []byte, purpose, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(data))
	return m.Sum(nil)
}
