package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// MaxDocumentBytes bounds a metadata document or a key set read from an
// issuer: a larger body is refused, not truncated.
const MaxDocumentBytes = 1 << 20

// Errors of Keys.Key.
var (
	// ErrUnknownKey: the key set (fresh or still usable) has no key for
	// the token's kid and algorithm. The token is refused (401).
	ErrUnknownKey = errors.New("no key of the issuer matches the token")
	// ErrKeysUnavailable: there is no usable key set: never fetched yet,
	// or older than its lifetime and maximum staleness. The request is
	// answered 503: the gateway cannot tell a good token from a bad one.
	ErrKeysUnavailable = errors.New("the issuer's keys are not available")
)

// Keys finds the key that verifies a token. Implementations are safe for
// concurrent use.
type Keys interface {
	// Key returns the public key for kid ("" when the token has none)
	// and alg. Errors wrap ErrUnknownKey or ErrKeysUnavailable.
	Key(kid string, alg jose.SignatureAlgorithm) (*jose.JSONWebKey, error)
}

// SourceOptions are the settings of a KeySource.
type SourceOptions struct {
	Issuer    string // exact issuer; with Discovery, its metadata is looked up
	JWKSURL   string // the key set's URL; "" with Discovery
	Discovery bool
	AllowHTTP bool   // http:// URLs for loopback hosts
	CAFile    string // absolute path of a PEM bundle; "" for the system roots

	TTL          time.Duration // a key set is fresh this long
	MaxStale     time.Duration // and still used this long past TTL while fetching fails
	MinRefetch   time.Duration // on-demand fetches (unknown kid) at most once per this
	FetchTimeout time.Duration // one fetch (discovery and key set)

	Logger *slog.Logger
	// Now is the clock (time.Now when nil); tests inject one.
	Now func() time.Time
	// After is the background loop's timer (time.After when nil); tests
	// inject one to drive the loop.
	After func(time.Duration) <-chan time.Time
	// Client fetches the documents; nil: one made from the settings
	// (TLS verified against CAFile or the system roots, no redirect away
	// from https, FetchTimeout).
	Client *http.Client
}

// keySet is one fetched key set, immutable.
type keySet struct {
	keys      []jose.JSONWebKey // public signature keys only
	fetchedAt time.Time
}

// KeySource is an issuer's key set, fetched over HTTPS and cached: fresh
// for TTL (refreshed in the background before then by Run), then used
// stale with a warning up to MaxStale past it while the issuer cannot be
// reached, then unavailable (ErrKeysUnavailable, 503). A token whose kid is
// not in the set makes it fetched again on the request's goroutine (the
// requests that want it meanwhile wait for the same fetch), at most once
// per MinRefetch: random kids cannot make the gateway hammer the issuer.
//
// Lifecycle: NewKeySource → Run(ctx) in a goroutine (the first fetch at
// once, then refreshes) → cancel ctx. Key may be called at any time, also
// before the first fetch (ErrKeysUnavailable) and after Run returned (the
// cached set, on-demand fetches). Safe for concurrent use.
type KeySource struct {
	opts   SourceOptions
	log    *slog.Logger
	client *http.Client

	set atomic.Pointer[keySet]

	mu          sync.Mutex // guards the fields below
	lastAttempt time.Time  // start of the last fetch, background or on demand
	inflight    *fetchCall
	staleWarned time.Time // last "stale keys" warning

	fetches atomic.Int64 // key set fetches attempted (tests, metrics)
}

// fetchCall is one fetch that several callers wait for.
type fetchCall struct {
	done chan struct{}
	err  error
}

// NewKeySource makes the key source of opts; it fetches nothing yet.
func NewKeySource(opts SourceOptions) (*KeySource, error) {
	if opts.JWKSURL == "" && !opts.Discovery {
		return nil, errors.New("key source: no key set URL and no discovery")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinRefetch <= 0 {
		opts.MinRefetch = groupconf.DefaultJWTRefetchInterval
	}
	if opts.TTL <= 0 {
		opts.TTL = groupconf.DefaultJWTKeysTTL
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = groupconf.DefaultJWTFetchTimeout
	}
	s := &KeySource{opts: opts, client: opts.Client}
	s.log = opts.Logger.With("issuer", opts.Issuer)
	if s.client == nil {
		c, err := newClient(opts)
		if err != nil {
			return nil, err
		}
		s.client = c
	}
	return s, nil
}

func newClient(opts SourceOptions) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("key source: reading caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("key source: caFile %s: no PEM certificate found", opts.CAFile)
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   opts.FetchTimeout,
		ResponseHeaderTimeout: opts.FetchTimeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   opts.FetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 5 { // via: the first request and each redirect followed
				return errors.New("more than 5 redirects")
			}
			if err := groupconf.CheckIssuerURL(req.URL.String(), opts.AllowHTTP); err != nil {
				return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
			}
			return nil
		},
	}, nil
}

// Fetches is the number of key set fetches attempted so far.
func (s *KeySource) Fetches() int64 { return s.fetches.Load() }

// FetchedAt is when the current key set was fetched (zero: never).
func (s *KeySource) FetchedAt() time.Time {
	if ks := s.set.Load(); ks != nil {
		return ks.fetchedAt
	}
	return time.Time{}
}

// seed takes over another source's key set (the same settings in the
// previous configuration), so that a hot swap does not start without keys.
func (s *KeySource) seed(from *KeySource) {
	if ks := from.set.Load(); ks != nil {
		s.set.Store(ks)
		from.mu.Lock()
		last := from.lastAttempt
		from.mu.Unlock()
		s.mu.Lock()
		s.lastAttempt = last
		s.mu.Unlock()
	}
}

// Key implements Keys.
func (s *KeySource) Key(kid string, alg jose.SignatureAlgorithm) (*jose.JSONWebKey, error) {
	now := s.opts.Now()
	ks := s.usable(now)
	if ks != nil {
		if k, err := ks.find(kid, alg); err == nil || !errors.Is(err, errNoKid) {
			return k, err
		}
	}
	// An unknown kid, or no usable set: fetch again if allowed.
	call := s.startFetch(now, true)
	if call == nil {
		if ks == nil {
			return nil, fmt.Errorf("%w (no key set fetched yet, or too old; next fetch within %s)", ErrKeysUnavailable, s.opts.MinRefetch)
		}
		return nil, fmt.Errorf("%w: kid %q is not in the key set (fetched again at most every %s)", ErrUnknownKey, trunc(kid), s.opts.MinRefetch)
	}
	<-call.done
	if ks = s.usable(s.opts.Now()); ks == nil {
		return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, call.err)
	}
	k, err := ks.find(kid, alg)
	if err != nil {
		return nil, fmt.Errorf("%w: kid %q is not in the key set fetched again", ErrUnknownKey, trunc(kid))
	}
	return k, nil
}

// usable returns the key set if it is fresh or within its staleness.
func (s *KeySource) usable(now time.Time) *keySet {
	ks := s.set.Load()
	if ks == nil {
		return nil
	}
	age := now.Sub(ks.fetchedAt)
	if age <= s.opts.TTL {
		return ks
	}
	if age > s.opts.TTL+s.opts.MaxStale {
		return nil
	}
	s.mu.Lock()
	warn := now.Sub(s.staleWarned) >= time.Minute
	if warn {
		s.staleWarned = now
	}
	s.mu.Unlock()
	if warn {
		s.log.Warn("jwt: using the issuer's key set past its lifetime: the issuer cannot be reached",
			"age", age.Round(time.Second).String(), "keysTtl", s.opts.TTL.String(), "unusableIn", (s.opts.TTL + s.opts.MaxStale - age).Round(time.Second).String())
	}
	return ks
}

// startFetch returns the fetch in flight, or starts one (on demand: when
// MinRefetch has passed since the last attempt), or returns nil.
func (s *KeySource) startFetch(now time.Time, onDemand bool) *fetchCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight
	}
	if onDemand && !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.opts.MinRefetch {
		return nil
	}
	s.lastAttempt = now
	call := &fetchCall{done: make(chan struct{})}
	s.inflight = call
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.FetchTimeout)
		defer cancel()
		call.err = s.fetch(ctx)
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		close(call.done)
	}()
	return call
}

// Refresh fetches the key set now (or waits for the fetch in flight) and
// returns its error. The set in use changes only on success.
func (s *KeySource) Refresh(ctx context.Context) error {
	call := s.startFetch(s.opts.Now(), false)
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run fetches the key set at once and then refreshes it before it expires
// (at four fifths of TTL), retrying a failed fetch after 1 s, 2 s, 4 s …
// up to a minute, until ctx is done. Failures are logged: the first one
// loudly when no key set was ever fetched (requests get 503 meanwhile).
func (s *KeySource) Run(ctx context.Context) {
	defer s.closeIdle()
	backoff := time.Duration(0)
	for {
		var wait time.Duration
		if ks := s.set.Load(); ks != nil && backoff == 0 {
			wait = ks.fetchedAt.Add(s.opts.TTL - s.opts.TTL/5).Sub(s.opts.Now())
		} else {
			wait = backoff
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.opts.After(wait):
			}
		}
		if ctx.Err() != nil {
			return
		}
		if ks := s.set.Load(); ks != nil && backoff == 0 && s.opts.Now().Before(ks.fetchedAt.Add(s.opts.TTL-s.opts.TTL/5)) {
			continue // fetched meanwhile (a new kid): wait from that fetch
		}
		err := s.Refresh(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			backoff = 0
		default:
			backoff = min(max(2*backoff, time.Second), time.Minute)
			if s.set.Load() == nil {
				s.log.Error("jwt: the issuer's keys cannot be fetched: requests to APIs with this jwt policy are answered 503 until they are",
					"error", err.Error(), "retryIn", backoff.String())
			} else {
				s.log.Warn("jwt: refreshing the issuer's keys failed: the cached keys are used meanwhile", "error", err.Error(), "retryIn", backoff.String(),
					"fetchedAt", s.FetchedAt().UTC().Format(time.RFC3339))
			}
		}
	}
}

func (s *KeySource) closeIdle() {
	if s.opts.Client == nil {
		s.client.CloseIdleConnections()
	}
}

// fetch gets the key set (after discovery) and stores it.
func (s *KeySource) fetch(ctx context.Context) error {
	s.fetches.Add(1)
	u := s.opts.JWKSURL
	if s.opts.Discovery {
		var err error
		if u, err = s.discover(ctx); err != nil {
			return err
		}
	}
	body, err := s.get(ctx, u)
	if err != nil {
		return fmt.Errorf("fetching the key set: %w", err)
	}
	keys, skipped, err := parseKeySet(body)
	if err != nil {
		return fmt.Errorf("key set %s: %w", u, err)
	}
	for _, sk := range skipped {
		s.log.Warn("jwt: a key of the issuer's key set is not used", "reason", sk)
	}
	old := s.set.Swap(&keySet{keys: keys, fetchedAt: s.opts.Now()})
	switch {
	case old == nil:
		s.log.Info("jwt: the issuer's keys fetched", "url", u, "kids", kidsOf(keys))
	case !slices.Equal(kidsOf(old.keys), kidsOf(keys)):
		s.log.Info("jwt: the issuer's key set changed", "url", u, "kids", kidsOf(keys), "before", kidsOf(old.keys))
	}
	return nil
}

func kidsOf(keys []jose.JSONWebKey) []string {
	kids := make([]string, 0, len(keys))
	for _, k := range keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

// discover reads the issuer's metadata: OpenID Connect Discovery first,
// then RFC 8414. Its issuer must be the configured one, exactly.
func (s *KeySource) discover(ctx context.Context) (string, error) {
	iss := strings.TrimSuffix(s.opts.Issuer, "/")
	urls := []string{iss + "/.well-known/openid-configuration"}
	if pu, err := url.Parse(s.opts.Issuer); err == nil {
		// RFC 8414 §3: the well-known segment goes between host and path.
		p := strings.TrimSuffix(pu.EscapedPath(), "/")
		pu.Path, pu.RawPath = "", ""
		urls = append(urls, pu.String()+"/.well-known/oauth-authorization-server"+p)
	}
	var errs []error
	for _, mu := range urls {
		body, err := s.get(ctx, mu)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &md); err != nil {
			return "", fmt.Errorf("issuer metadata %s: %w", mu, err)
		}
		if md.Issuer != s.opts.Issuer {
			return "", fmt.Errorf("issuer metadata %s: its issuer is %q, not %q", mu, trunc(md.Issuer), s.opts.Issuer)
		}
		if err := groupconf.CheckIssuerURL(md.JWKSURI, s.opts.AllowHTTP); err != nil {
			return "", fmt.Errorf("issuer metadata %s: jwks_uri %q: %w", mu, trunc(md.JWKSURI), err)
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("discovering the issuer's key set: %w", errors.Join(errs...))
}

// get reads url's body: status 200, at most MaxDocumentBytes.
func (s *KeySource) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > MaxDocumentBytes {
		return nil, fmt.Errorf("GET %s: the document is larger than %d bytes", u, MaxDocumentBytes)
	}
	return body, nil
}

// parseKeySet reads a JWK set and keeps its public signature keys;
// skipped says why others were left out. A key that does not parse is
// skipped, not fatal (RFC 7517 §5: ignore keys you do not understand).
func parseKeySet(body []byte) (keys []jose.JSONWebKey, skipped []string, err error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, fmt.Errorf("not a JWK set: %w", err)
	}
	if raw.Keys == nil {
		return nil, nil, errors.New("not a JWK set: no keys member")
	}
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		switch {
		case !k.IsPublic():
			// A symmetric (oct) key, or a private key published by
			// mistake: never used (no HMAC with a key set).
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): not a public key", i, trunc(k.KeyID)))
		case k.Use != "" && k.Use != "sig":
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): use %q", i, trunc(k.KeyID), k.Use))
		default:
			keys = append(keys, k)
		}
	}
	return keys, skipped, nil
}

var errNoKid = errors.New("kid not in the set")

// find returns the key for kid and alg: a key with that kid whose type
// fits alg (and whose own alg, when it says one, is alg). A token without
// kid is accepted only when exactly one key fits alg.
func (ks *keySet) find(kid string, alg jose.SignatureAlgorithm) (*jose.JSONWebKey, error) {
	var found *jose.JSONWebKey
	n, kidSeen := 0, false
	for i := range ks.keys {
		k := &ks.keys[i]
		if kid != "" && k.KeyID != kid {
			continue
		}
		kidSeen = true
		if fits(k, alg) {
			if found == nil {
				found = k
			}
			n++
		}
	}
	switch {
	case kid != "" && !kidSeen:
		return nil, errNoKid
	case found == nil:
		return nil, fmt.Errorf("%w: no key of kid %q is for %s", ErrUnknownKey, trunc(kid), alg)
	case kid == "" && n > 1:
		return nil, fmt.Errorf("%w: the token has no kid and %d keys are for %s", ErrUnknownKey, n, alg)
	}
	return found, nil
}

// fits reports whether k can verify alg.
func fits(k *jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	switch pk := k.Key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return pk.N.BitLen() >= 2048
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pk.Curve == elliptic.P256()
		case jose.ES384:
			return pk.Curve == elliptic.P384()
		case jose.ES512:
			return pk.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// trunc shortens a value from outside for an error or a log line.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
