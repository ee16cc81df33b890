package topology

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Replace writes t, a topology made by the Admin Node Manager, as this
// install directory's topology, keeping its version and timestamp so that
// every host holds the same document. It is how a host that is not the
// Admin Node Manager's follows the domain (the ANM itself changes its
// topology with Update only). Under the topology lock it refuses, with an
// error wrapping ErrConflict, a t whose version is not higher than the
// current one, and with ErrInvalid a t of another domain (another id). When
// there is no topology yet, t is written as the first.
func (s *Store) Replace(ctx context.Context, actor Actor, action string, t *Topology) error {
	return s.replace(ctx, actor, action, t, false)
}

// Reset is Replace that also takes a t whose version is not higher than
// this host's: a host that is ahead of, or diverged from, the Admin Node
// Manager takes its topology back (managedomain --reset_topology, menu 17).
// A topology of another domain is still refused.
func (s *Store) Reset(ctx context.Context, actor Actor, action string, t *Topology) error {
	return s.replace(ctx, actor, action, t, true)
}

func (s *Store) replace(ctx context.Context, actor Actor, action string, t *Topology, reset bool) error {
	c := Change{Actor: actor, Action: action, Time: time.Now(), AfterVersion: t.Version}
	fail := func(err error) error {
		c.Err = err
		s.recorder.Record(ctx, c)
		return err
	}
	if err := t.Validate(); err != nil {
		return fail(err)
	}
	l, err := s.lock(ctx)
	if err != nil {
		return fail(err)
	}
	defer l.Unlock()
	if s.Exists() {
		cur, err := s.Load()
		if err != nil {
			return fail(err)
		}
		c.BeforeVersion = cur.Version
		if cur.ID != t.ID {
			return fail(fmt.Errorf("topology of domain %s refused: this host belongs to domain %s: %w", t.ID, cur.ID, ErrInvalid))
		}
		if t.Version <= cur.Version && !reset {
			return fail(fmt.Errorf("%w: version %d is not newer than this host's version %d", ErrConflict, t.Version, cur.Version))
		}
	}
	c.Detail = fmt.Sprintf("topology version %d of domain %q", t.Version, t.DomainName)
	if err := s.write(t); err != nil {
		return fail(err)
	}
	s.recorder.Record(ctx, c)
	return nil
}

// Checksum is the SHA-256 (hex) of t's JSON encoding: two hosts holding the
// same topology document have the same checksum.
func (t *Topology) Checksum() string {
	b, err := json.Marshal(t)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
