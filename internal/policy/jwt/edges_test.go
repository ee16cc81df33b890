package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// soon fails the test if done is not closed within 5 s (a mutant that makes
// a loop or a wait never end must fail, not hang).
func soon(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still waiting after 5 s", what)
	}
}

// docServer serves body at /doc (plain HTTP, for a source with AllowHTTP).
func docServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func plainSource(t *testing.T, url string, clk *clock, lg *syncBuffer) *KeySource {
	t.Helper()
	l := slog.New(slog.DiscardHandler)
	if lg != nil {
		l = slog.New(slog.NewJSONHandler(lg, nil))
	}
	ks, err := NewKeySource(SourceOptions{Issuer: "https://id.example.com", JWKSURL: url, AllowHTTP: true,
		TTL: 10 * time.Minute, MaxStale: time.Hour, MinRefetch: 10 * time.Second, FetchTimeout: 5 * time.Second, Now: clk.Now, Logger: l})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestKeySourceDocumentLimit: a key set of exactly 1 MiB is read; one byte
// more is refused, not truncated.
func TestKeySourceDocumentLimit(t *testing.T) {
	const mib = 1 << 20
	var size int
	srv := docServer(t, func(w http.ResponseWriter, r *http.Request) {
		body := `{"keys":[]}`
		w.Write([]byte(body + strings.Repeat(" ", size-len(body))))
	})
	clk := newClock()
	for _, c := range []struct {
		size int
		ok   bool
	}{{mib, true}, {mib + 1, false}} {
		size = c.size
		err := plainSource(t, srv.URL+"/keys", clk, nil).Refresh(t.Context())
		if (err == nil) != c.ok || !c.ok && !strings.Contains(err.Error(), "larger than 1048576 bytes") {
			t.Errorf("a key set of %d bytes: %v", c.size, err)
		}
	}
}

// TestKeySourceSettings: the settings' defaults, the client made from them,
// a source without a key set URL or discovery refused.
func TestKeySourceSettings(t *testing.T) {
	if _, err := NewKeySource(SourceOptions{Issuer: "https://id.example.com"}); err == nil || !strings.Contains(err.Error(), "no key set URL and no discovery") {
		t.Errorf("no URL, no discovery: %v", err)
	}
	ks, err := NewKeySource(SourceOptions{Issuer: "https://id.example.com", JWKSURL: "https://id.example.com/keys"})
	if err != nil {
		t.Fatal(err)
	}
	if ks.opts.MinRefetch != 10*time.Second || ks.opts.TTL != 10*time.Minute || ks.opts.FetchTimeout != 5*time.Second || ks.opts.Now == nil || ks.opts.After == nil {
		t.Errorf("defaults: %+v", ks.opts)
	}
	if !ks.FetchedAt().IsZero() {
		t.Errorf("FetchedAt before any fetch: %v", ks.FetchedAt())
	}
	tr, ok := ks.client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", ks.client.Transport)
	}
	if ks.client.Timeout != 5*time.Second || tr.TLSHandshakeTimeout != 5*time.Second || tr.ResponseHeaderTimeout != 5*time.Second ||
		tr.MaxIdleConns != 2 || tr.IdleConnTimeout != 90*time.Second || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.RootCAs != nil {
		t.Errorf("client: timeout %v, transport %+v", ks.client.Timeout, tr)
	}
	// Settings are kept as given down to 1 ns (only 0 or less is the default).
	if ks, err := NewKeySource(SourceOptions{JWKSURL: "https://id.example.com/keys", MinRefetch: 1, TTL: 1, FetchTimeout: 1}); err != nil ||
		ks.opts.MinRefetch != 1 || ks.opts.TTL != 1 || ks.opts.FetchTimeout != 1 || ks.client.Timeout != 1 {
		t.Errorf("settings of 1 ns: %v %+v", err, ks.opts)
	}
	// A client given is used as given.
	given := &http.Client{}
	if ks, err := NewKeySource(SourceOptions{JWKSURL: "https://id.example.com/keys", Client: given}); err != nil || ks.client != given {
		t.Errorf("a given client: %v", err)
	}
	// A CA file that cannot be read; one without a certificate.
	if _, err := NewKeySource(SourceOptions{JWKSURL: "https://id.example.com/keys", CAFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil || !strings.Contains(err.Error(), "reading caFile") {
		t.Errorf("a missing CA file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("not a certificate\n"), 0o600)
	if _, err := NewKeySource(SourceOptions{JWKSURL: "https://id.example.com/keys", CAFile: empty}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}

// TestKeySourceRedirects: the key set may be behind up to 5 redirects, each
// to a URL a key set URL could be (https; not http without allowHttp).
func TestKeySourceRedirects(t *testing.T) {
	rs1, _, _ := testKeys(t)
	set := jwksOf(signer{"k1", jose.RS256, rs1})
	plain := docServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(set) })
	var tlsSrv *httptest.Server
	tlsSrv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		switch {
		case r.URL.Path == "/keys":
			w.Write(set)
		case r.URL.Path == "/to-http":
			http.Redirect(w, r, plain.URL+"/keys", http.StatusFound)
		default:
			if _, err := fmt.Sscanf(r.URL.Path, "/hop/%d", &n); err != nil {
				http.NotFound(w, r)
				return
			}
			next := "/keys"
			if n > 1 {
				next = fmt.Sprintf("/hop/%d", n-1)
			}
			http.Redirect(w, r, next, http.StatusFound)
		}
	}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600)
	fetch := func(path string) error {
		ks, err := NewKeySource(SourceOptions{Issuer: tlsSrv.URL, JWKSURL: tlsSrv.URL + path, CAFile: ca, FetchTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return ks.Refresh(t.Context())
	}
	if err := fetch("/hop/5"); err != nil {
		t.Errorf("5 redirects: %v", err)
	}
	if err := fetch("/hop/6"); err == nil || !strings.Contains(err.Error(), "more than 5 redirects") {
		t.Errorf("6 redirects: %v", err)
	}
	if err := fetch("/to-http"); err == nil || !strings.Contains(err.Error(), "http:// is refused") {
		t.Errorf("a redirect to http: %v", err)
	}
}

// TestKeySourceFetchErrors: what a failed fetch says, and that the key set
// in use stays.
func TestKeySourceFetchErrors(t *testing.T) {
	var body string
	var status = 200
	srv := docServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short":
			w.Header().Set("Content-Length", "100")
			w.Write([]byte(`{"keys":[`))
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	})
	clk := newClock()
	for _, c := range []struct {
		url, body string
		status    int
		want      string
	}{
		{srv.URL + "/keys", `{"kees":[]}`, 200, "key set " + srv.URL + "/keys: not a JWK set"},
		{srv.URL + "/keys", `{}`, 404, "fetching the key set: GET " + srv.URL + "/keys: status 404"},
		{srv.URL + "/short", ``, 200, "fetching the key set: GET " + srv.URL + "/short: unexpected EOF"},
		{"http://127.0.0.1:0:0/keys", ``, 200, "fetching the key set: parse"},
	} {
		body, status = c.body, c.status
		err := plainSource(t, c.url, clk, nil).Refresh(t.Context())
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s with %q: got %v, want %q…", c.url, c.body, err, c.want)
		}
	}
}

// TestKeySourceDiscoveryErrors: metadata that is not JSON, a jwks_uri that
// is not acceptable, no metadata at all.
func TestKeySourceDiscoveryErrors(t *testing.T) {
	var meta string
	var srv *httptest.Server
	srv = docServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" || meta == "" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(strings.ReplaceAll(meta, "ISS", srv.URL)))
	})
	for _, c := range []struct{ meta, want string }{
		{`not json`, "issuer metadata " + srv.URL + "/.well-known/openid-configuration: invalid character"},
		{`{"issuer":"ISS","jwks_uri":"http://keys.example.com/jwks"}`, "issuer metadata " + srv.URL + "/.well-known/openid-configuration: jwks_uri"},
		{``, "discovering the issuer's key set: GET " + srv.URL + "/.well-known/openid-configuration: status 404\nGET " + srv.URL + "/.well-known/oauth-authorization-server: status 404"},
	} {
		meta = c.meta
		ks, err := NewKeySource(SourceOptions{Issuer: srv.URL, Discovery: true, AllowHTTP: true, FetchTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.Refresh(t.Context()); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("metadata %q: got %v, want %q…", c.meta, err, c.want)
		}
	}
}

// TestKeySourceLog: the first fetch, a changed set and keys left out are
// logged; a set fetched again unchanged is not.
func TestKeySourceLog(t *testing.T) {
	rs1, rs2, _ := testKeys(t)
	k1, k2 := signer{"k1", jose.RS256, rs1}, signer{"k2", jose.RS256, rs2}
	is := newIssuer(t, false, k1)
	var lg syncBuffer
	clk := newClock()
	ks := sourceFor(t, is, clk, &lg)
	count := func(s string) int { return strings.Count(lg.String(), s) }
	refresh := func() {
		t.Helper()
		if err := ks.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	refresh()
	refresh()
	if count("the issuer's keys fetched") != 1 || count("key set changed") != 0 {
		t.Errorf("after two fetches of the same set:\n%s", lg.String())
	}
	is.mu.Lock()
	is.jwks = []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}]}`)
	is.mu.Unlock()
	refresh()
	if count("is not used") != 1 || count("key set changed") != 1 {
		t.Errorf("a set with a symmetric key only:\n%s", lg.String())
	}
	is.setKeys(k1, k2)
	refresh()
	if count("key set changed") != 2 || count("the issuer's keys fetched") != 1 {
		t.Errorf("a new key:\n%s", lg.String())
	}
}

// TestKeySourceEdges: the key set is fresh up to TTL exactly and usable up
// to TTL + MaxStale exactly, with one warning a minute meanwhile; an
// unknown kid makes a fetch exactly MinRefetch after the last one, not
// before; a fetch in flight is shared.
func TestKeySourceEdges(t *testing.T) {
	rs1, _, _ := testKeys(t)
	k1 := signer{"k1", jose.RS256, rs1}
	is := newIssuer(t, false, k1)
	clk := newClock()
	var lg syncBuffer
	ks := sourceFor(t, is, clk, &lg)
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	warnings := func() int { return strings.Count(lg.String(), "past its lifetime") }
	hits := func() int64 { return is.jwksHits.Load() }
	// An unknown kid: the next fetch 10 s after the last, not a nanosecond before.
	clk.Add(10*time.Second - 1)
	ks.Key("nope", jose.RS256)
	if hits() != 1 {
		t.Errorf("an unknown kid 1 ns before MinRefetch: %d fetches", hits())
	}
	clk.Add(1)
	ks.Key("nope", jose.RS256)
	if hits() != 2 {
		t.Errorf("an unknown kid at MinRefetch: %d fetches", hits())
	}
	// A known kid for another algorithm: refused without a fetch.
	clk.Add(time.Minute)
	if _, err := ks.Key("k1", jose.ES256); !errors.Is(err, ErrUnknownKey) || hits() != 2 {
		t.Errorf("a known kid for another algorithm: %v, %d fetches (want no new one)", err, hits())
	}
	is.down.Store(true)
	fetched := ks.FetchedAt()
	at := func(d time.Duration) error {
		clk.mu.Lock()
		clk.t = fetched.Add(d)
		clk.mu.Unlock()
		_, err := ks.Key("k1", jose.RS256)
		return err
	}
	if err := at(10 * time.Minute); err != nil || warnings() != 0 {
		t.Errorf("at TTL: %v, %d warnings", err, warnings())
	}
	if err := at(10*time.Minute + 1); err != nil || warnings() != 1 {
		t.Errorf("just past TTL: %v, %d warnings", err, warnings())
	}
	if err := at(10*time.Minute + time.Minute); err != nil || warnings() != 1 {
		t.Errorf("59.999 s after the warning: %v, %d warnings", err, warnings())
	}
	if err := at(10*time.Minute + time.Minute + 1); err != nil || warnings() != 2 {
		t.Errorf("a minute after the warning: %v, %d warnings", err, warnings())
	}
	if err := at(time.Hour + 10*time.Minute); err != nil {
		t.Errorf("at TTL + MaxStale: %v", err)
	}
	if err := at(time.Hour + 10*time.Minute + 1); !errors.Is(err, ErrKeysUnavailable) {
		t.Errorf("past TTL + MaxStale: %v", err)
	}
}

// TestKeySourceSharedFetch: callers during a fetch wait for it; a Refresh
// whose context ends returns at once.
func TestKeySourceSharedFetch(t *testing.T) {
	rs1, _, _ := testKeys(t)
	set := jwksOf(signer{"k1", jose.RS256, rs1})
	entered, release := make(chan struct{}, 4), make(chan struct{})
	srv := docServer(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.Write(set)
	})
	clk := newClock()
	ks := plainSource(t, srv.URL+"/keys", clk, nil)
	first := make(chan error, 1)
	go func() { _, err := ks.Key("k1", jose.RS256); first <- err }()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no fetch")
	}
	call := ks.startFetch(clk.Now(), true)
	ks.mu.Lock()
	shared := call != nil && call == ks.inflight
	ks.mu.Unlock()
	if !shared {
		t.Error("a fetch on demand during a fetch is not the one in flight")
	}
	call = ks.startFetch(clk.Now(), false)
	ks.mu.Lock()
	shared = call != nil && call == ks.inflight
	ks.mu.Unlock()
	if !shared {
		t.Error("a refresh during a fetch is not the one in flight")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ks.Refresh(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("a refresh whose context is done: %v", err)
	}
	close(release)
	select {
	case err := <-first:
		if err != nil {
			t.Errorf("the first caller: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first caller still waits")
	}
	if n := ks.Fetches(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

// TestKeySourceRunStops: Run returns at once, without fetching, when its
// context is done before it starts; it closes its own client's idle
// connections when it returns.
func TestKeySourceRunStops(t *testing.T) {
	rs1, _, _ := testKeys(t)
	set := jwksOf(signer{"k1", jose.RS256, rs1})
	closed := make(chan struct{})
	var once sync.Once
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(set) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			once.Do(func() { close(closed) })
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	clk := newClock()
	ks := plainSource(t, srv.URL+"/keys", clk, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan struct{})
	go func() { ks.Run(ctx); close(done) }()
	soon(t, "Run with a context done", done)
	ks.mu.Lock()
	tried := !ks.lastAttempt.IsZero()
	ks.mu.Unlock()
	if tried {
		t.Error("Run with a context done started a fetch")
	}
	// A run that fetched once: its connection is closed when it returns.
	ticks := make(chan struct{}, 1)
	ks.opts.After = func(time.Duration) <-chan time.Time {
		ticks <- struct{}{}
		return make(chan time.Time)
	}
	ctx, cancel = context.WithCancel(t.Context())
	done = make(chan struct{})
	go func() { ks.Run(ctx); close(done) }()
	select {
	case <-ticks:
	case <-time.After(5 * time.Second):
		t.Fatal("no wait after the first fetch")
	}
	if ks.FetchedAt().IsZero() {
		t.Fatal("not fetched")
	}
	cancel()
	soon(t, "Run after cancel", done)
	soon(t, "the idle connection's close", closed)
}

// TestKeySourceSeed: a source seeded from the previous configuration's
// takes its key set and its last fetch time (no fetch on demand at once),
// and both stay usable.
func TestKeySourceSeed(t *testing.T) {
	rs1, _, _ := testKeys(t)
	is := newIssuer(t, false, signer{"k1", jose.RS256, rs1})
	clk := newClock()
	old := sourceFor(t, is, clk, nil)
	if err := old.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	ks := sourceFor(t, is, clk, nil)
	ks.seed(old)
	key := func(s *KeySource, kid string) (err error) {
		done := make(chan struct{})
		go func() { _, err = s.Key(kid, jose.RS256); close(done) }()
		soon(t, "Key", done)
		return err
	}
	if err := key(ks, "other"); !errors.Is(err, ErrUnknownKey) || is.jwksHits.Load() != 1 {
		t.Errorf("an unknown kid just after the seed: %v, %d fetches (want 1: the previous source's)", err, is.jwksHits.Load())
	}
	if err := key(old, "other"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("the previous source after the seed: %v", err)
	}
	if err := key(ks, "k1"); err != nil {
		t.Errorf("the seeded key: %v", err)
	}
	empty := sourceFor(t, is, clk, nil)
	ks2 := sourceFor(t, is, clk, nil)
	ks2.seed(empty)
	if ks2.set.Load() != nil || !ks2.FetchedAt().IsZero() {
		t.Error("seeded from a source without a key set")
	}
}

// TestFits: each key type with the algorithms it can verify, RSA from
// 2048 bits.
func TestFits(t *testing.T) {
	rs1, _, p256 := testKeys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	small, err := rsa.GenerateKey(rand.Reader, 2047)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  any
		kalg string
		alg  jose.SignatureAlgorithm
		want bool
	}{
		{&rs1.PublicKey, "", jose.RS256, true},
		{&rs1.PublicKey, "", jose.PS512, true},
		{&rs1.PublicKey, "RS256", jose.PS256, false},
		{&small.PublicKey, "", jose.RS256, false},
		{&rs1.PublicKey, "", jose.ES256, false},
		{&p256.PublicKey, "", jose.ES256, true},
		{&p256.PublicKey, "", jose.ES384, false},
		{&p384.PublicKey, "", jose.ES384, true},
		{&p384.PublicKey, "", jose.ES512, false},
		{&p521.PublicKey, "", jose.ES512, true},
		{&p521.PublicKey, "", jose.ES256, false},
		{&p256.PublicKey, "", jose.RS256, false},
		{edPub, "", jose.EdDSA, true},
		{edPub, "", jose.ES256, false},
		{[]byte("0123456789abcdef0123456789abcdef"), "", jose.HS256, false},
	} {
		if got := fits(&jose.JSONWebKey{Key: c.key, Algorithm: c.kalg}, c.alg); got != c.want {
			t.Errorf("a %T (alg %q) for %s: %v, want %v", c.key, c.kalg, c.alg, got, c.want)
		}
	}
}

func TestTrunc(t *testing.T) {
	s64 := strings.Repeat("a", 64)
	if trunc(s64) != s64 || trunc(s64+"b") != s64+"…" {
		t.Errorf("trunc: %q %q", trunc(s64), trunc(s64+"b"))
	}
}

// TestSourcesEdges: a relative caFile is taken from the install
// directory; a source that cannot be made is an error; Wait returns once
// the loops have stopped.
func TestSourcesEdges(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys":[]}`)) }))
	t.Cleanup(srv.Close)
	os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	var lg syncBuffer
	s := NewSources(SourcesOptions{Dir: dir, Logger: slog.New(slog.NewJSONHandler(&lg, nil))})
	spec := groupconf.JWTPolicy{Issuer: testIssuer, JWKSURL: srv.URL + "/keys", CAFile: "ca.pem"}
	ks, err := s.For(spec)
	if err != nil {
		t.Fatal(err)
	}
	// The CA file was read: the fetch gets past TLS.
	if err := ks.Refresh(t.Context()); err != nil {
		t.Errorf("with a relative caFile: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s.Start(ctx)
	cancel()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	soon(t, "Wait", done)
	if !strings.Contains(lg.String(), "the issuer's keys fetched") {
		t.Errorf("the sources' logger is not the key sources':\n%s", lg.String())
	}
	// No caFile, or an absolute one: not taken from the directory.
	for _, ca := range []string{"", filepath.Join(dir, "ca.pem")} {
		sp := spec
		sp.CAFile, sp.KeysTTL = ca, groupconf.Duration(time.Hour)
		if _, err := s.For(sp); err != nil {
			t.Errorf("caFile %q: %v", ca, err)
		}
	}
	spec.CAFile = "missing.pem"
	if _, err := s.For(spec); err == nil {
		t.Error("a missing caFile: no error")
	}
	// The next configuration's sources look at this one's, again and again.
	next := NewSources(SourcesOptions{Dir: dir, Previous: s})
	done = make(chan struct{})
	go func() {
		defer close(done)
		for _, ttl := range []time.Duration{time.Hour, 2 * time.Hour} {
			sp := spec
			sp.CAFile, sp.KeysTTL = "ca.pem", groupconf.Duration(ttl)
			if _, err := next.For(sp); err != nil {
				t.Error(err)
			}
		}
	}()
	soon(t, "two sources of the next configuration", done)
}

// TestKeySourceRunRefreshPoint: a timer that fires before four fifths of
// the lifetime of a set fetched meanwhile only waits again; one that fires
// after fetches.
func TestKeySourceRunRefreshPoint(t *testing.T) {
	rs1, _, _ := testKeys(t)
	is := newIssuer(t, false, signer{"k1", jose.RS256, rs1})
	clk := newClock()
	ks := sourceFor(t, is, clk, nil)
	type tick struct {
		d  time.Duration
		ch chan time.Time
	}
	ticks := make(chan tick)
	ks.opts.After = func(d time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		ticks <- tick{d, ch}
		return ch
	}
	next := func() tick {
		t.Helper()
		select {
		case tk := <-ticks:
			return tk
		case <-time.After(5 * time.Second):
			t.Fatal("the loop does not wait again")
		}
		return tick{}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { ks.Run(ctx); close(done) }()
	defer func() { cancel(); soon(t, "Run after cancel", done) }()
	tk := next()
	start := ks.FetchedAt()
	clk.Add(8*time.Minute - 1) // 1 ns before the refresh point: a wait of 1 ns
	tk.ch <- clk.Now()
	tk = next()
	if n := is.jwksHits.Load(); n != 1 || tk.d != 1 {
		t.Errorf("a timer 1 ns before the refresh point: %d fetches, wait %v; want 1, 1ns", n, tk.d)
	}
	clk.Add(-6*time.Second + 1) // 7m54s: before 8m (and after 7m30s)
	tk.ch <- clk.Now()
	tk = next()
	if n := is.jwksHits.Load(); n != 1 || tk.d != 6*time.Second {
		t.Errorf("a timer at 7m54s: %d fetches, wait %v; want 1, 6s", n, tk.d)
	}
	clk.Add(12 * time.Second) // 8m06s: after 8m (and before 8m20s)
	tk.ch <- clk.Now()
	tk = next()
	if n := is.jwksHits.Load(); n != 2 || tk.d != 8*time.Minute || !ks.FetchedAt().After(start) {
		t.Errorf("a timer at 8m06s: %d fetches, wait %v; want 2, 8m", n, tk.d)
	}
}

// TestKeySourceErrorBodyDrained: an error answer's body of up to 4 KiB is
// read to its end, so that its connection serves the next fetch.
func TestKeySourceErrorBodyDrained(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4096")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(strings.Repeat("x", 4096)))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	ks := plainSource(t, srv.URL+"/keys", newClock(), nil)
	for range 3 {
		if err := ks.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "status 503") {
			t.Fatalf("a 503: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("%d connections for three fetches answered 503 with 4 KiB, want 1", conns)
	}
}

func TestParseKeySetErrors(t *testing.T) {
	for in, want := range map[string]string{
		`[]`:          "not a JWK set: json: cannot unmarshal array",
		`{}`:          "not a JWK set: no keys member",
		`{"keys":{}}`: "not a JWK set: json: cannot unmarshal object",
	} {
		if _, _, err := parseKeySet([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("parseKeySet(%s): %v, want %q…", in, err, want)
		}
	}
}

// TestFindWithoutKid: a token without kid is refused when more than one
// key fits its algorithm, and takes the only one that does.
func TestFindWithoutKid(t *testing.T) {
	rs1, rs2, ec := testKeys(t)
	keys, _, _ := parseKeySet(jwksOf(signer{"a", jose.RS256, rs1}, signer{"b", jose.RS256, rs2}, signer{"c", jose.ES256, ec}))
	ks := &keySet{keys: keys}
	if k, err := ks.find("", jose.RS256); k != nil || !errors.Is(err, ErrUnknownKey) {
		t.Errorf("no kid, two RS256 keys: %v %v", k, err)
	}
	if k, err := ks.find("", jose.ES256); err != nil || k.KeyID != "c" {
		t.Errorf("no kid, one ES256 key: %v %v", k, err)
	}
}
