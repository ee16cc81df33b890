package anm

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Authentication limits (docs/management-api.md).
const (
	// authCacheTTL: a verified user name and password are remembered this
	// long (as an HMAC under a key made at start, never the password), so
	// that a script's requests do not each pay the slow hash. A change of
	// conf/adminUsers.json forgets them all.
	authCacheTTL = time.Minute
	authCacheMax = 1024
	// authWait bounds the wait for a free verification slot; then 503.
	authWait = 5 * time.Second
)

// authenticator checks HTTP Basic credentials against conf/adminUsers.json
// (rbac.Verify: PBKDF2, deliberately slow). At most one verification per
// CPU runs at a time, so a flood of guesses cannot take every core. It is
// safe for concurrent use.
type authenticator struct {
	h      home.Home
	log    *slog.Logger
	sem    chan struct{}
	key    [32]byte
	verify func(user string, pw secret.Value) (bool, error)
	// sessions and throttle: session tokens and the failed-login
	// slow-down (session.go, throttle.go, docs/sessions.md).
	sessions *sessionStore
	throttle *throttle
	// audit is the host's audit log: logins, failed HTTP Basic
	// credentials and logouts are recorded there (recordLogin).
	audit *audit.Log

	mu    sync.Mutex
	stamp fileStamp
	cache map[[32]byte]time.Time // HMAC(user NUL password) → expiry
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func newAuthenticator(h home.Home, log *slog.Logger) *authenticator {
	a := &authenticator{h: h, log: log, sem: make(chan struct{}, max(1, runtime.NumCPU())), cache: map[[32]byte]time.Time{},
		sessions: newSessionStore(h, log), throttle: newThrottle(), audit: audit.Open(h)}
	rand.Read(a.key[:])
	a.verify = func(user string, pw secret.Value) (bool, error) { return rbac.Verify(h, user, pw) }
	return a
}

func (a *authenticator) usersStamp() fileStamp {
	fi, err := os.Stat(a.h.AdminUsersFile())
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

func (a *authenticator) mac(user string, pw secret.Value) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(pw.Reveal())
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// cached reports whether user and pw were verified within authCacheTTL.
func (a *authenticator) cached(user string, pw secret.Value) bool {
	k := a.mac(user, pw)
	stamp := a.usersStamp()
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.cache[k]
	return ok && stamp == a.stamp && time.Now().Before(exp)
}

// check reports whether user and pw are an admin user's credentials.
func (a *authenticator) check(ctx context.Context, user string, pw secret.Value) (bool, error) {
	k := a.mac(user, pw)
	stamp := a.usersStamp()
	now := time.Now()
	a.mu.Lock()
	if stamp != a.stamp {
		clear(a.cache)
		a.stamp = stamp
	}
	exp, ok := a.cache[k]
	a.mu.Unlock()
	if ok && now.Before(exp) {
		return true, nil
	}
	wctx, cancel := context.WithTimeout(ctx, authWait)
	defer cancel()
	select {
	case a.sem <- struct{}{}:
	case <-wctx.Done():
		return false, &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "too many credentials are being checked at once; try again", Err: wctx.Err()}
	}
	good, err := a.verify(user, pw)
	<-a.sem
	if err != nil || !good {
		return false, err
	}
	a.mu.Lock()
	if a.stamp == stamp {
		if len(a.cache) >= authCacheMax {
			for k, e := range a.cache {
				if now.After(e) {
					delete(a.cache, k)
				}
			}
			if len(a.cache) >= authCacheMax {
				clear(a.cache)
			}
		}
		a.cache[k] = now.Add(authCacheTTL)
	}
	a.mu.Unlock()
	return true, nil
}

// authResult is how authenticate ended.
type authResult int

const (
	authGood      authResult = iota // the credentials are an admin user's
	authWrong                       // 401 sent: wrong user name or password
	authThrottled                   // 429 sent: slowed down, the password was not checked
	authInvalid                     // 401 sent: not a possible user name; nothing counted or recorded
	authFailed                      // 5xx or 503 sent: the check could not be made
)

// wrongCredentials is the message of a 401 for wrong credentials (and the
// error of the audit entry of a failed login).
const wrongCredentials = "wrong user name or password"

// authenticate checks user and pw for a login or an HTTP Basic request,
// slowed down after failures (throttle): it answers 429 with Retry-After
// while user or the client's address must wait, 401 for wrong credentials,
// and says how it ended; only authGood has written nothing. Credentials
// verified within authCacheTTL pass without waiting, so a script with the
// right password is not locked out by someone guessing the same user's.
func (a *authenticator) authenticate(w http.ResponseWriter, r *http.Request, user string, pw secret.Value) authResult {
	addr := apihttp.RemoteIP(r)
	if rbac.ValidateUserName(user) != nil {
		// Not a name any user can have (too long, control characters):
		// refused before it is counted, hashed or recorded anywhere.
		apihttp.WriteError(w, r, a.log, &apihttp.Error{Code: http.StatusUnauthorized, Msg: wrongCredentials})
		return authInvalid
	}
	cached := a.cached(user, pw)
	if !cached {
		// Counted before the hash is computed: attempts in parallel are
		// slowed down as sequential ones are.
		if d := a.throttle.reserve(user, addr); d > 0 {
			w.Header().Set("Retry-After", retryAfter(d))
			apihttp.WriteError(w, r, a.log, &apihttp.Error{Code: http.StatusTooManyRequests, Msg: fmt.Sprintf("too many failed logins for this user from this address, or from this address; try again in %s s", retryAfter(d))})
			return authThrottled
		}
	}
	good, err := a.check(r.Context(), user, pw)
	if err != nil {
		if !cached {
			a.throttle.reset(user, addr) // not an attempt that failed
		}
		if _, ok := err.(*apihttp.Error); !ok {
			a.log.Error("checking credentials", "user", user, "err", err)
			err = &apihttp.Error{Code: http.StatusInternalServerError, Msg: "internal error checking credentials; the node manager log has the cause", Err: err}
		}
		apihttp.WriteError(w, r, a.log, err)
		return authFailed
	}
	if !good {
		a.log.Warn("management API login refused", "user", user, "remote", addr)
		apihttp.WriteError(w, r, a.log, &apihttp.Error{Code: http.StatusUnauthorized, Msg: wrongCredentials})
		return authWrong
	}
	if !cached {
		a.throttle.reset(user, addr)
	}
	return authGood
}

// recordLogin writes a login, a logout or a refused login to the audit log
// (docs/audit.md): user is the name given, detail says how (a session's
// first 8 id characters, or HTTP Basic and the request), errMsg is empty
// on success. Never a password. A log that cannot be written is logged.
func (a *authenticator) recordLogin(r *http.Request, action, user, detail, errMsg string) {
	e := audit.Entry{User: user, Via: "api", Remote: apihttp.RemoteIP(r), Action: action, Detail: detail, Error: errMsg}
	if _, err := a.audit.Record(r.Context(), e); err != nil {
		a.log.ErrorContext(r.Context(), "audit entry not written", "action", action, "err", err)
	}
}

// middleware lets through requests with an admin user's HTTP Basic
// credentials or, without them, a valid session cookie (session.go;
// state-changing requests must then carry the csrf-token header). The
// authenticated user name is in the context (userOf) either way; others
// get 401 with WWW-Authenticate.
func (a *authenticator) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok {
			if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
				a.sessionAuth(w, r, c.Value, next)
				return
			}
			apihttp.WriteError(w, r, a.log, &apihttp.Error{Code: http.StatusUnauthorized, Msg: "authentication required: send an admin user's name and password with HTTP Basic, or log in (POST /api/rbac/login) and send the session cookie"})
			return
		}
		switch a.authenticate(w, r, user, secret.FromString(pass)) {
		case authGood:
		case authWrong:
			// Failed HTTP Basic credentials are failed logins; good ones
			// are not recorded (every request carries them; what they
			// change is recorded by its own entry).
			a.recordLogin(r, "login", user, "HTTP Basic, "+r.Method+" "+r.URL.Path, wrongCredentials)
			return
		default:
			return
		}
		next.ServeHTTP(w, r.WithContext(apihttp.WithUser(r.Context(), user)))
	})
}
