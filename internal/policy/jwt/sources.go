package jwt

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// Sources are the key sources of one configuration: one per distinct
// issuer setting (two APIs with the same issuer share one), made while
// the configuration's chains are built and started with it.
//
// Lifecycle: NewSources (with the previous configuration's Sources, whose
// key sets are taken over so that a hot swap does not begin without keys)
// → For, for each jwt policy → Start(ctx) once the configuration is in
// use → cancel ctx when it is replaced or the instance stops → Wait. Safe
// for concurrent use. Lock order: a Sources' mu, then its Previous's mu,
// then a KeySource's mu (one at a time).
type Sources struct {
	dir   string // the install directory: a relative caFile is taken from it
	log   *slog.Logger
	now   func() time.Time
	prev  *Sources
	mu    sync.Mutex
	byKey map[string]*KeySource
	wg    sync.WaitGroup
}

// SourcesOptions are what Sources need besides the policies' settings.
type SourcesOptions struct {
	Dir    string       // the install directory
	Logger *slog.Logger // component=jwt
	Now    func() time.Time
	// Previous is the key sources of the configuration being replaced
	// (nil at start).
	Previous *Sources
}

// NewSources makes an empty set.
func NewSources(opts SourcesOptions) *Sources {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler) // mutate:equivalent delete-stmt the logger only goes to NewKeySource, which makes the same discarding logger of a nil one
	}
	return &Sources{dir: opts.Dir, log: opts.Logger, now: opts.Now, prev: opts.Previous, byKey: map[string]*KeySource{}}
}

// sourceKey is what makes two policies' key sources the same.
func sourceKey(p groupconf.JWTPolicy) string {
	return fmt.Sprintf("%q|%q|%v|%v|%q|%s|%s|%s|%s", p.Issuer, p.JWKSURL, p.Discovery, p.AllowHTTP, p.CAFile,
		p.KeysTTL.D(), p.KeysMaxStale.D(), p.RefetchInterval.D(), p.FetchTimeout.D())
}

// For returns the key source of spec (defaults filled in), made once per
// distinct setting.
func (s *Sources) For(spec groupconf.JWTPolicy) (*KeySource, error) {
	spec = spec.WithDefaults()
	key := sourceKey(spec)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ks, ok := s.byKey[key]; ok {
		return ks, nil
	}
	ca := spec.CAFile
	if ca != "" && !filepath.IsAbs(ca) {
		ca = filepath.Join(s.dir, ca)
	}
	ks, err := NewKeySource(SourceOptions{
		Issuer: spec.Issuer, JWKSURL: spec.JWKSURL, Discovery: spec.Discovery, AllowHTTP: spec.AllowHTTP, CAFile: ca,
		TTL: spec.KeysTTL.D(), MaxStale: spec.KeysMaxStale.D(), MinRefetch: spec.RefetchInterval.D(), FetchTimeout: spec.FetchTimeout.D(),
		Logger: s.log, Now: s.now,
	})
	if err != nil {
		return nil, err
	}
	if s.prev != nil {
		s.prev.mu.Lock()
		old := s.prev.byKey[key]
		s.prev.mu.Unlock()
		if old != nil {
			ks.seed(old)
		}
	}
	s.byKey[key] = ks
	return ks, nil
}

// Start runs every key source's background fetch until ctx is done.
func (s *Sources) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prev = nil // taken over: let the old configuration go
	for _, ks := range s.byKey {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ks.Run(ctx)
		}()
	}
}

// Wait returns when the background fetches started by Start have ended
// (after their ctx is done).
func (s *Sources) Wait() { s.wg.Wait() }

// Len is the number of distinct key sources.
func (s *Sources) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}
