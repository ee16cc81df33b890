package anm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Sessions (docs/sessions.md): POST /api/rbac/login gives a signed token in
// the cookie sessionCookie, valid on every Admin Node Manager holding the
// domain's conf/sessionKey, and a CSRF token that requests which change
// something send back in the csrf-token header.
const (
	sessionCookie = "gatehouse-session"
	csrfHeader    = "csrf-token"
)

type sessionCtxKey struct{}

// sessionArea is login, logout and the current user (docs/sessions.md).
// Logins (refused ones too) and logouts are in the audit log
// (authenticator.recordLogin).
func (a *API) sessionArea() area {
	byLogin := recorded("recordLogin: the login, or the refused one")
	byLogout := recorded("recordLogin: the logout of a session")
	return area{name: "sessions", routes: []route{
		{pattern: "/api/rbac/login", ops: map[string]op{http.MethodPost: change(a.login, "login", byLogin, "session")}, open: true},
		{pattern: "/api/rbac/currentuser", ops: map[string]op{http.MethodGet: read(a.currentUser, "currentUser", "session")}},
		// POST only: a GET must never change state (a link or an image
		// could end a session).
		{pattern: "/api/rbac/logout", ops: map[string]op{
			http.MethodPost: change(a.logout, "logout", byLogout, "session"),
		}},
	}}
}

// sessionOf is the session a request was authenticated with, if any.
func sessionOf(ctx context.Context) (rbac.Session, bool) {
	s, ok := ctx.Value(sessionCtxKey{}).(rbac.Session)
	return s, ok
}

// sessionStore holds the domain session key and the revocation list, each
// read again when its file changes, and the session lifetimes (set once by
// configure, before serving). It is safe for concurrent use.
type sessionStore struct {
	h    home.Home
	log  *slog.Logger
	now  func() time.Time
	life rbac.SessionLifetimes

	mu         sync.Mutex
	keyStamp   fileStamp
	keyBytes   []byte
	revStamp   fileStamp
	revoked    rbac.Revoked
	revLoadErr error
}

func newSessionStore(h home.Home, log *slog.Logger) *sessionStore {
	return &sessionStore{h: h, log: log, now: time.Now}
}

func stampOf(path string) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{fi.ModTime(), fi.Size()}, true
}

// key is the domain session key. A domain made before sessions existed
// has none: the Admin Node Manager makes one (and says so in its log).
func (s *sessionStore) key() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := stampOf(rbac.SessionKeyFile(s.h))
	if !ok {
		if err := rbac.CreateSessionKey(s.h); err != nil {
			return nil, err
		}
		s.log.Warn("created the domain session key; copy it to every other Admin Node Manager of the domain (docs/sessions.md)", "file", rbac.SessionKeyFile(s.h))
		st, _ = stampOf(rbac.SessionKeyFile(s.h))
	}
	if s.keyBytes != nil && st == s.keyStamp {
		return s.keyBytes, nil
	}
	k, err := rbac.LoadSessionKey(s.h)
	if err != nil {
		return nil, err
	}
	s.keyBytes, s.keyStamp = k, st
	return k, nil
}

// isRevoked reports whether session id was ended by a logout.
func (s *sessionStore) isRevoked(id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, _ := stampOf(rbac.RevokedSessionsFile(s.h))
	if s.revoked == nil || st != s.revStamp {
		s.revoked, s.revLoadErr = rbac.LoadRevoked(s.h)
		s.revStamp = st
	}
	if s.revLoadErr != nil {
		return false, s.revLoadErr
	}
	_, ok := s.revoked[id]
	return ok, nil
}

// configure sets the session lifetimes from system/conf/nodemanager.yaml
// (sessions.idleTimeout, sessions.absoluteTimeout; absent: the defaults),
// refusing values out of bounds. Called before the listener serves.
func (s *sessionStore) configure(c domain.SessionsConf) error {
	l := rbac.SessionLifetimes{Idle: c.IdleTimeout, Absolute: c.AbsoluteTimeout}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%s: %w", s.h.NodeManagerConf(), err)
	}
	s.life = l
	if l != (rbac.SessionLifetimes{}) {
		s.log.Info("session lifetimes", "idleTimeout", l.IdleTimeout().String(), "absoluteTimeout", l.AbsoluteTimeout().String())
	}
	return nil
}

func (s *sessionStore) revoke(sess rbac.Session) error {
	return rbac.RevokeSession(s.h, sess, s.now())
}

// setSessionCookie sends sess as the session cookie: HttpOnly, Secure,
// SameSite=Strict, Path=/api, living until the session's idle end.
func setSessionCookie(w http.ResponseWriter, key []byte, sess rbac.Session, now time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: rbac.SignSession(key, sess), Path: "/api",
		MaxAge: max(1, int(sess.End().Sub(now).Seconds())), Expires: sess.End(),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/api", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// safeMethod: requests that change nothing need no CSRF token.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sessionAuth authenticates a request by its session cookie token and
// calls next with the user and the session in the context.
func (a *authenticator) sessionAuth(w http.ResponseWriter, r *http.Request, token string, next http.Handler) {
	key, err := a.sessions.key()
	if err != nil {
		apihttp.WriteError(w, r, a.log, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "internal error reading the session key; the node manager log has the cause", Err: err})
		return
	}
	now := a.sessions.now()
	life := a.sessions.life
	sess, err := life.Verify(key, token, now)
	if err == nil {
		var revoked bool
		if revoked, err = a.sessions.isRevoked(sess.ID); err == nil && revoked {
			err = errors.New("session ended by logout")
		}
	}
	if err == nil {
		// Bound to the user record: a password or role change, or a
		// delete (and a user made again with the name), ends it.
		var f *rbac.File
		if f, err = rbac.Load(a.h); err == nil {
			if u, ok := f.Lookup(sess.User); !ok {
				err = fmt.Errorf("user %q no longer exists", sess.User)
			} else if u.Gen != sess.Gen {
				err = fmt.Errorf("user %q was changed since the login (generation %d, the session's %d)", sess.User, u.Gen, sess.Gen)
			}
		}
	}
	if err != nil {
		clearSessionCookie(w)
		apihttp.WriteError(w, r, a.log, &apihttp.Error{Code: http.StatusUnauthorized, Msg: "session not valid (expired, logged out, its user changed or deleted, or not of this domain); log in again (POST /api/rbac/login) or use HTTP Basic", Err: err})
		return
	}
	if !safeMethod(r.Method) && !rbac.CheckCSRF(key, sess, r.Header.Get(csrfHeader)) {
		ctx := apihttp.WithUser(r.Context(), sess.User)
		apihttp.WriteError(w, r.WithContext(ctx), a.log, &apihttp.Error{Code: http.StatusForbidden, Msg: "a " + r.Method + " request with a session cookie must send the session's CSRF token in the csrf-token header (the login answer gives it)"})
		return
	}
	if renewed := life.Touch(sess, now); renewed.IdleUntil-sess.IdleUntil >= int64(life.RenewAfter()/time.Second) {
		sess = renewed
		setSessionCookie(w, key, sess, now)
	}
	ctx := context.WithValue(apihttp.WithUser(r.Context(), sess.User), sessionCtxKey{}, sess)
	next.ServeHTTP(w, r.WithContext(ctx))
}

func hasUser(f *rbac.File, name string) bool {
	for _, u := range f.Users {
		if u.Name == name {
			return true
		}
	}
	return false
}

// loginResult is the answer of POST /api/rbac/login.
type loginResult struct {
	User        string    `json:"user"`
	CSRFToken   string    `json:"csrfToken"`
	Expires     time.Time `json:"expires"`
	IdleTimeout int       `json:"idleTimeout"`
}

// login: POST /api/rbac/login with form fields username and password
// (application/x-www-form-urlencoded or multipart/form-data), or the same
// as a JSON object.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var user, pass string
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		r.Body = http.MaxBytesReader(w, r.Body, apihttp.MaxBodyBytes)
		if err := r.ParseMultipartForm(apihttp.MaxBodyBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: "malformed form: " + err.Error(), Err: err})
			return
		}
		user, pass = r.PostForm.Get("username"), r.PostForm.Get("password")
	case "application/json":
		var body struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		if err := apihttp.ReadBody(w, r, &body, "username, password"); err != nil {
			a.fail(w, r, err)
			return
		}
		user, pass = body.Username, body.Password
	default:
		a.fail(w, r, &apihttp.Error{Code: http.StatusUnsupportedMediaType, Msg: fmt.Sprintf("Content-Type %q: want application/x-www-form-urlencoded (fields username and password) or application/json", r.Header.Get("Content-Type"))})
		return
	}
	if user == "" || pass == "" {
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: "want the form fields username and password"})
		return
	}
	switch a.auth.authenticate(w, r, user, secret.FromString(pass)) {
	case authGood:
	case authWrong:
		a.auth.recordLogin(r, "login", user, "session login", wrongCredentials)
		return
	default: // slowed down (429: the password was not checked) or not checked at all
		return
	}
	key, err := a.auth.sessions.key()
	if err != nil {
		a.fail(w, r, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "internal error reading the session key; the node manager log has the cause", Err: err})
		return
	}
	now := a.auth.sessions.now()
	sess := a.auth.sessions.life.NewSession(user, now)
	if f, err := rbac.Load(a.h); err == nil {
		if u, ok := f.Lookup(user); ok {
			sess.Gen = u.Gen
		}
	}
	setSessionCookie(w, key, sess, now)
	csrf := rbac.CSRFToken(key, sess)
	w.Header().Set(csrfHeader, csrf)
	a.log.Info("management API login", "user", user, "remote", apihttp.RemoteIP(r), "session", sess.ID[:8])
	a.auth.recordLogin(r, "login", user, "session "+sess.ID[:8], "")
	apihttp.WriteResult(w, http.StatusOK, loginResult{User: user, CSRFToken: csrf, Expires: time.Unix(sess.Expires, 0).UTC(), IdleTimeout: int(a.auth.sessions.life.IdleTimeout() / time.Second)})
}

// currentUserResult is the answer of GET /api/rbac/currentuser.
type currentUserResult struct {
	User    string     `json:"user"`
	Auth    string     `json:"auth"` // "basic" or "session"
	Expires *time.Time `json:"expires,omitempty"`
}

func (a *API) currentUser(w http.ResponseWriter, r *http.Request) {
	res := currentUserResult{User: apihttp.UserOf(r.Context()), Auth: "basic"}
	if s, ok := sessionOf(r.Context()); ok {
		end := s.End().UTC()
		res.Auth, res.Expires = "session", &end
	}
	apihttp.WriteResult(w, http.StatusOK, res)
}

// logout ends the request's session (revoked on this ANM, cookie cleared);
// with HTTP Basic there is nothing to end.
func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if s, ok := sessionOf(r.Context()); ok {
		if err := a.auth.sessions.revoke(s); err != nil {
			a.auth.recordLogin(r, "logout", s.User, "session "+s.ID[:8], "the session could not be revoked")
			a.fail(w, r, fmt.Errorf("revoking session: %w", err))
			return
		}
		a.log.Info("management API logout", "user", s.User, "remote", apihttp.RemoteIP(r), "session", s.ID[:8])
		a.auth.recordLogin(r, "logout", s.User, "session "+s.ID[:8], "")
	}
	clearSessionCookie(w)
	apihttp.WriteResult(w, http.StatusOK, map[string]bool{"loggedOut": true})
}

// retryAfter is the Retry-After value for d: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
