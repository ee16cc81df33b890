package jwt

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
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

// sourceFor is a key source of is's key set URL with a test clock.
func sourceFor(t *testing.T, is *issuer, clk *clock, log *syncBuffer) *KeySource {
	t.Helper()
	lg := slog.New(slog.DiscardHandler)
	if log != nil {
		lg = slog.New(slog.NewJSONHandler(log, nil))
	}
	ks, err := NewKeySource(SourceOptions{Issuer: is.srv.URL, JWKSURL: is.srv.URL + "/keys", AllowHTTP: true,
		TTL: 10 * time.Minute, MaxStale: time.Hour, MinRefetch: 10 * time.Second, FetchTimeout: 5 * time.Second, Now: clk.Now, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestKeySourceRotation: a new kid of the issuer is fetched once when a
// token names it; random kids make at most one fetch per interval.
func TestKeySourceRotation(t *testing.T) {
	rs1, rs2, _ := testKeys(t)
	k1, k2 := signer{"k1", jose.RS256, rs1}, signer{"k2", jose.RS256, rs2}
	is := newIssuer(t, false, k1)
	clk := newClock()
	ks := sourceFor(t, is, clk, nil)
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Key("k1", jose.RS256); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Key("k1", jose.ES256); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("k1 for ES256: got %v, want ErrUnknownKey", err)
	}
	is.setKeys(k1, k2) // the issuer rotates
	clk.Add(10 * time.Second)
	for i := 0; i < 3; i++ {
		if k, err := ks.Key("k2", jose.RS256); err != nil || k.KeyID != "k2" {
			t.Fatalf("the new kid: %v", err)
		}
	}
	if n := is.jwksHits.Load(); n != 2 {
		t.Errorf("fetches after the new kid: got %d, want 2", n)
	}
	// Random kids: at most one fetch per interval, each a 401.
	for i := 0; i < 100; i++ {
		if _, err := ks.Key(fmt.Sprintf("random-%d", i), jose.RS256); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("random kid: got %v, want ErrUnknownKey", err)
		}
		clk.Add(time.Second / 2)
	}
	// 50 s passed: at most one fetch per 10 s (the first at 10 s after the
	// last one).
	if n := is.jwksHits.Load(); n > 2+5 || n < 2+4 {
		t.Errorf("fetches for 100 random kids over 50 s with a 10 s interval: got %d, want 6 or 7", n)
	}
	if n := ks.Fetches(); n != is.jwksHits.Load() {
		t.Errorf("Fetches: got %d, the issuer saw %d", n, is.jwksHits.Load())
	}
	// A removed key is gone after the next fetch.
	is.setKeys(k2)
	clk.Add(10 * time.Second)
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Key("k1", jose.RS256); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("a removed key: %v", err)
	}
}

// TestKeySourceDown: an issuer that is down: the cached keys keep
// working for their lifetime and beyond it, stale with a warning, up to
// the maximum staleness; an unknown kid is ErrUnknownKey (401), not
// unavailable; past the staleness the keys are unavailable (503).
func TestKeySourceDown(t *testing.T) {
	rs1, _, _ := testKeys(t)
	k1 := signer{"k1", jose.RS256, rs1}
	is := newIssuer(t, false, k1)
	clk := newClock()
	var log syncBuffer
	ks := sourceFor(t, is, clk, &log)
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	is.down.Store(true)
	clk.Add(9 * time.Minute)
	if err := ks.Refresh(t.Context()); err == nil {
		t.Fatal("a refresh from an issuer that is down succeeded")
	}
	if _, err := ks.Key("k1", jose.RS256); err != nil {
		t.Errorf("within the lifetime: %v", err)
	}
	if _, err := ks.Key("other", jose.RS256); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown kid, issuer down: got %v, want ErrUnknownKey", err)
	}
	clk.Add(30 * time.Minute) // stale
	if _, err := ks.Key("k1", jose.RS256); err != nil {
		t.Errorf("stale: %v", err)
	}
	if !strings.Contains(log.String(), "past its lifetime") {
		t.Errorf("no warning for stale keys:\n%s", log.String())
	}
	clk.Add(time.Hour) // past the staleness
	if _, err := ks.Key("k1", jose.RS256); !errors.Is(err, ErrKeysUnavailable) {
		t.Errorf("past the staleness: got %v, want ErrKeysUnavailable", err)
	}
	// Back up: the next allowed fetch brings the keys back.
	is.down.Store(false)
	clk.Add(10 * time.Second)
	if _, err := ks.Key("k1", jose.RS256); err != nil {
		t.Errorf("issuer back: %v", err)
	}
}

// TestKeySourceBeforeFirstFetch: without a key set, requests get 503
// through the policy (never 401), and the Run loop logs it clearly.
func TestKeySourceBeforeFirstFetch(t *testing.T) {
	rs1, _, _ := testKeys(t)
	k1 := signer{"k1", jose.RS256, rs1}
	is := newIssuer(t, false, k1)
	is.down.Store(true)
	clk := newClock()
	var log syncBuffer
	ks := sourceFor(t, is, clk, &log)
	p, _ := New(groupconf.JWTPolicy{Issuer: testIssuer, Audience: "orders", JWKSURL: is.srv.URL + "/keys"}, ks, Options{Now: clk.Now})
	tok := mint(t, k1, claimsAt(clk.Now(), nil))
	for i := 0; i < 3; i++ {
		wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 503)
	}
	if n := is.jwksHits.Load(); n != 1 {
		t.Errorf("fetches by three requests at once: got %d, want 1", n)
	}
	// The Run loop: its first fetch fails and is logged.
	after := make(chan time.Duration, 1)
	ks.opts.After = func(d time.Duration) <-chan time.Time {
		after <- d
		return make(chan time.Time) // never fires: the test cancels
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { ks.Run(ctx); close(done) }()
	clk.Add(10 * time.Second)
	if d := <-after; d != time.Second {
		t.Errorf("retry after a failed first fetch: got %v, want 1s", d)
	}
	cancel()
	<-done
	if !strings.Contains(log.String(), "answered 503 until") {
		t.Errorf("no clear log line:\n%s", log.String())
	}
	is.down.Store(false)
	clk.Add(10 * time.Second)
	wantStatus(t, p.Apply(request("GET", "Authorization", "Bearer "+tok)), 0)
}

// TestKeySourceRun: the loop fetches at once, refreshes at four fifths
// of the lifetime, backs off 1 s, 2 s … on failures, and returns when its
// context is done.
func TestKeySourceRun(t *testing.T) {
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
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { ks.Run(ctx); close(done) }()
	tk := <-ticks // after the first fetch
	if tk.d != 8*time.Minute || is.jwksHits.Load() != 1 {
		t.Errorf("after the first fetch: wait %v, fetches %d; want 8m, 1", tk.d, is.jwksHits.Load())
	}
	is.down.Store(true)
	clk.Add(8 * time.Minute)
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		tk.ch <- clk.Now()
		tk = <-ticks
		if tk.d != want {
			t.Errorf("backoff: got %v, want %v", tk.d, want)
		}
	}
	is.down.Store(false)
	tk.ch <- clk.Now()
	tk = <-ticks
	if tk.d != 8*time.Minute {
		t.Errorf("after a good fetch again: got %v, want 8m", tk.d)
	}
	// A fetch on demand meanwhile (a new kid, 5 minutes later): the loop
	// waits from that fetch, it does not fetch again when its timer fires.
	clk.Add(5 * time.Minute)
	if _, err := ks.Key("new-kid", jose.RS256); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
	hits := is.jwksHits.Load()
	clk.Add(3 * time.Minute)
	tk.ch <- clk.Now()
	tk = <-ticks
	if tk.d != 5*time.Minute || is.jwksHits.Load() != hits {
		t.Errorf("after a fetch on demand: wait %v, fetches %d; want 5m, %d", tk.d, is.jwksHits.Load(), hits)
	}
	cancel()
	<-done
}

// TestKeySourceDiscovery: OpenID discovery, RFC 8414 for an issuer with
// a path, metadata naming another issuer refused, TLS verified against a
// CA file, a body too large refused.
func TestKeySourceDiscovery(t *testing.T) {
	rs1, _, _ := testKeys(t)
	k1 := signer{"k1", jose.RS256, rs1}
	is := newIssuer(t, true, k1)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	src := func(issuer, jwks, ca string) *KeySource {
		ks, err := NewKeySource(SourceOptions{Issuer: issuer, JWKSURL: jwks, Discovery: jwks == "", CAFile: ca, FetchTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	for _, iss := range []string{is.srv.URL, is.srv.URL + "/tenant"} {
		ks := src(iss, "", caFile)
		if err := ks.Refresh(t.Context()); err != nil {
			t.Fatalf("discovery of %s: %v", iss, err)
		}
		if _, err := ks.Key("k1", jose.RS256); err != nil {
			t.Errorf("discovery of %s: %v", iss, err)
		}
	}
	if err := src(is.srv.URL, "", "").Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA file: got %v, want a certificate error", err)
	}
	is.metaIss = "https://evil.example"
	if err := src(is.srv.URL, "", caFile).Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "evil.example") {
		t.Errorf("metadata of another issuer: got %v", err)
	}
	if err := src(is.srv.URL, is.srv.URL+"/big", caFile).Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a body too large: got %v", err)
	}
	if _, err := NewKeySource(SourceOptions{Issuer: is.srv.URL, JWKSURL: is.srv.URL + "/keys", CAFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Error("a missing CA file: no error")
	}
}

// TestParseKeySet: only public signature keys are kept.
func TestParseKeySet(t *testing.T) {
	rs1, _, ec := testKeys(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: rs1.Public(), KeyID: "rsa", Use: "sig"},
		{Key: ec.Public(), KeyID: "ec"},
		{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct", Algorithm: "HS256"},
		{Key: rs1, KeyID: "private"},
		{Key: rs1.Public(), KeyID: "enc", Use: "enc"},
	}}
	b, _ := json.Marshal(set)
	b = bytes.Replace(b, []byte(`{"keys":[`), []byte(`{"keys":[{"kty":"unknown","kid":"x"},`), 1)
	keys, skipped, err := parseKeySet(b)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KeyID)
	}
	if strings.Join(kids, ",") != "rsa,ec" || len(skipped) != 4 {
		t.Errorf("kept %v, skipped %q", kids, skipped)
	}
	for _, bad := range []string{`[]`, `{}`, `{"keys":{}}`, ``} {
		if _, _, err := parseKeySet([]byte(bad)); err == nil {
			t.Errorf("parseKeySet(%q): no error", bad)
		}
	}
}

// TestSources: one key source per distinct setting; a new configuration's
// sources take over the previous one's key sets; Start and cancel.
func TestSources(t *testing.T) {
	rs1, _, _ := testKeys(t)
	is := newIssuer(t, false, signer{"k1", jose.RS256, rs1})
	spec := groupconf.JWTPolicy{Issuer: testIssuer, Audience: "a", JWKSURL: is.srv.URL + "/keys", AllowHTTP: true}
	s1 := NewSources(SourcesOptions{})
	a, _ := s1.For(spec)
	spec2 := spec
	spec2.Audience = "b" // not a key source setting
	b, _ := s1.For(spec2)
	spec3 := spec
	spec3.KeysTTL = groupconf.Duration(time.Hour)
	c, _ := s1.For(spec3)
	if a != b || a == c || s1.Len() != 2 {
		t.Errorf("sources: same %v, distinct %v, %d", a == b, a != c, s1.Len())
	}
	if err := a.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	s2 := NewSources(SourcesOptions{Previous: s1})
	a2, _ := s2.For(spec)
	if _, err := a2.Key("k1", jose.RS256); err != nil || a2.FetchedAt() != a.FetchedAt() {
		t.Errorf("the next configuration's source: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s2.Start(ctx)
	cancel()
	s2.Wait() // returns: the loops stopped
}
