package oauth

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogs: the security events are logged (a code replayed, a refresh
// token reused, a purge that failed), with the component and the client,
// and no token, code or secret ever reaches the log.
func TestLogs(t *testing.T) {
	var buf syncBuffer
	var f *failing
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		f = &failing{Store: o.Store}
		o.Store = f
	})
	code, verifier := e.code("web", redirectURI, "read")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}
	_, m := e.post("/oauth/token", form, "web", webSecret)
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	_, m = e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web", webSecret)
	e.post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "web", webSecret)
	e.post("/oauth/token", form, "web", webSecret)
	e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "svc", webSecret)

	// A purge that fails, through the loop.
	f.down.Store(true)
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.srv.runPurges(ctx, tick) }()
	tick <- time.Time{}
	tick <- time.Time{}
	cancel()
	<-done
	f.down.Store(false)

	out := buf.String()
	for _, want := range []string{"refresh token reused", "authorization code replayed", "purging expired tokens failed", "component=oauth", "client=web"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	for name, s := range map[string]string{"code": code, "verifier": verifier, "access token": at, "refresh token": rt,
		"new refresh token": m["refresh_token"].(string), "secret": webSecret, "hash key": testHashKey.RevealString()} {
		if strings.Contains(out, s) {
			t.Errorf("the log holds the %s", name)
		}
	}
	// 503s are logged with their cause.
	buf.mu.Lock()
	buf.b.Reset()
	buf.mu.Unlock()
	f.down.Store(true)
	e.post("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "svc", svcSecret)
	f.down.Store(false)
	if !strings.Contains(buf.String(), "connection refused") {
		t.Errorf("a 503 without its cause in the log: %s", buf.String())
	}
}
