// Package tlsticket shares the TLS session-ticket keys of a group's
// instances, so that a client resumes its session on whichever instance the
// load balancer sends it to, and rotates them.
//
// Time is cut into periods (Options.Period, one hour by default). The key of
// period p is made once, by whichever instance needs it first, from
// crypto/rand, and kept in the group's Key Property Store (kps.SharedSecrets,
// which every instance of the group reads: PostgreSQL across hosts, the
// embedded store among the instances of one host) in one of three slots,
// p mod 3, as the period number followed by the key, sealed with the group's
// passphrase when it has one. A slot is overwritten by the key of period
// p+3: a key is erased from the store three periods after it was made, which
// bounds how long a stolen store opens recorded TLS 1.2 sessions.
//
// An instance issues tickets with the key of the current period and accepts
// the keys of the previous and the next (instances whose clocks differ by
// less than a period agree): a ticket resumes for one to two periods. When
// the store cannot be read, the instance goes on with the keys it has until
// they expire, then with a key of its own (resumption then works on that
// instance only), and retries.
package tlsticket

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// Slots is how many keys the store keeps: previous, current and next.
const Slots = 3

// DefaultPeriod is the rotation period when Options.Period is zero.
const DefaultPeriod = time.Hour

// retryAfter is the wait before reading the store again after a failure.
const retryAfter = 30 * time.Second

// Sealer seals a value kept in the store under name, and opens it (the
// group's passphrase: kps/fieldcrypt). Nil stores the keys as they are.
type Sealer interface {
	SealShared(name string, plain []byte) []byte
	OpenShared(name string, stored []byte) ([]byte, error)
}

// Options configure a Rotator.
type Options struct {
	Store  kps.SharedSecrets
	Sealer Sealer // nil: no passphrase
	// Open, when Store is nil, opens the store at the start of Run (retried
	// every 30 s while it fails; the tls.Configs keep Go's keys of their
	// own meanwhile). The closer, when not nil, is closed as Run returns.
	Open   func(context.Context) (kps.SharedSecrets, Sealer, io.Closer, error)
	Period time.Duration // 0: DefaultPeriod
	Now    func() time.Time
	Log    *slog.Logger
	// Retry is the wait before trying the store again after a failure; 0
	// means 30 s.
	Retry time.Duration
}

// Rotator keeps the session-ticket keys of the tls.Configs attached to it.
type Rotator struct {
	o       Options
	mu      sync.Mutex
	configs map[*tls.Config]struct{}
	keys    [][32]byte
	until   time.Time // when keys stop being valid
	failing bool      // the last refresh failed (logged once)
}

// New returns a Rotator; Run keeps its keys current.
func New(o Options) *Rotator {
	if o.Period <= 0 { // mutate:equivalent const a period of 1 ns is no rotation anyone configures (1m to 24h)
		o.Period = DefaultPeriod
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Retry <= 0 { // mutate:equivalent const a retry after 1 ns is no setting anyone makes
		o.Retry = retryAfter
	}
	return &Rotator{o: o, configs: map[*tls.Config]struct{}{}}
}

// Attach makes c issue and accept the rotator's keys (from now on, and at
// each rotation) until the returned function is called.
func (r *Rotator) Attach(c *tls.Config) (detach func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configs[c] = struct{}{}
	if len(r.keys) > 0 {
		c.SetSessionTicketKeys(r.keys)
	}
	return func() {
		r.mu.Lock()
		delete(r.configs, c)
		r.mu.Unlock()
	}
}

// Run refreshes the keys at each period's start until ctx ends: from the
// store, or, when it fails and the keys held have expired, with a key of
// this process. It returns when ctx is done.
func (r *Rotator) Run(ctx context.Context) {
	if r.o.Store == nil {
		closer, ok := r.open(ctx)
		if !ok {
			return
		}
		if closer != nil {
			defer closer.Close()
		}
	}
	for {
		wait := r.Refresh(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// open opens the store with Options.Open, retrying until it answers or ctx
// ends (ok false).
func (r *Rotator) open(ctx context.Context) (closer io.Closer, ok bool) {
	logged := false
	for {
		store, sealer, closer, err := r.o.Open(ctx)
		if err == nil {
			if logged {
				r.o.Log.Info("TLS session-ticket keys: the group's store is open; keys shared with the group")
			}
			r.o.Store, r.o.Sealer = store, sealer
			return closer, true
		}
		if !logged {
			r.o.Log.Error("TLS session-ticket keys: cannot open the group's store; resumption works on this instance only until it opens", "err", err)
			logged = true
		}
		t := time.NewTimer(r.o.Retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
	}
}

// Refresh reads (or makes) the keys of the current period and its
// neighbours, sets them on the attached configurations, and returns how long
// to wait before the next refresh.
func (r *Rotator) Refresh(ctx context.Context) time.Duration {
	now := r.o.Now()
	p := period(now, r.o.Period)
	keys, err := r.Keys(ctx, p)
	end := periodStart(p+1, r.o.Period)
	if err != nil && ctx.Err() != nil {
		return 0 // stopping: nothing to log or change
	}
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.failing {
			r.o.Log.Error("TLS session-ticket keys: the group's store failed; resumption works on this instance only until it answers again", "err", err)
			r.failing = true
		}
		if len(r.keys) == 0 || !now.Before(r.until) {
			var k [32]byte
			rand.Read(k[:]) // never fails (crypto/rand, since Go 1.24)
			r.setLocked([][32]byte{k}, now.Add(r.o.Period))
		}
		return min(r.o.Retry, r.o.Period)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		r.o.Log.Info("TLS session-ticket keys: the group's store answers again; keys shared with the group")
		r.failing = false
	}
	// keys[0] (the current period's) seals new tickets; the keys held stay
	// usable through the next period (they include its key) if the store
	// fails then.
	r.setLocked(keys, end.Add(r.o.Period))
	return end.Sub(now)
}

func (r *Rotator) setLocked(keys [][32]byte, until time.Time) {
	r.keys, r.until = keys, until
	for c := range r.configs {
		c.SetSessionTicketKeys(keys)
	}
}

// Keys returns the keys for period p: p's first (it seals new tickets), then
// p-1's when the store still has it, then p+1's. Those of p and p+1 are made
// when missing.
func (r *Rotator) Keys(ctx context.Context, p int64) ([][32]byte, error) {
	cur, err := r.ensure(ctx, p)
	if err != nil {
		return nil, err
	}
	next, err := r.ensure(ctx, p+1)
	if err != nil {
		return nil, err
	}
	keys := [][32]byte{cur}
	prev, ok, err := r.lookup(ctx, p-1)
	if err != nil {
		return nil, err
	}
	if ok {
		keys = append(keys, prev)
	}
	return append(keys, next), nil
}

// SlotName is the store's name of the slot that holds period p's key.
func SlotName(p int64) string {
	return fmt.Sprintf("tls.sessionTicketKey.%d", ((p%Slots)+Slots)%Slots)
}

// lookup returns period p's key if its slot holds it.
func (r *Rotator) lookup(ctx context.Context, p int64) (key [32]byte, ok bool, err error) {
	name := SlotName(p)
	stored, err := r.o.Store.LookupSharedSecret(ctx, name)
	if errors.Is(err, kps.ErrNotFound) {
		return key, false, nil
	}
	if err != nil {
		return key, false, fmt.Errorf("reading %s: %w", name, err)
	}
	sp, key, usable := r.decode(name, stored)
	return key, usable && sp == p, nil
}

// ensure returns period p's key, making it when its slot is empty or holds
// an older period's; of two instances that make it at once, the store keeps
// the first and both use it.
func (r *Rotator) ensure(ctx context.Context, p int64) ([32]byte, error) {
	name := SlotName(p)
	var k [32]byte
	rand.Read(k[:])
	offer := r.encode(name, p, k)
	for range 4 { // mutate:equivalent const how many races in a row it tries; any few do
		stored, err := r.o.Store.LookupSharedSecret(ctx, name)
		if errors.Is(err, kps.ErrNotFound) {
			stored, err = r.o.Store.SharedSecret(ctx, name, offer)
		}
		if err != nil {
			return k, fmt.Errorf("reading %s: %w", name, err)
		}
		// A slot that does not open (sealed before the group's passphrase
		// changed, or damaged) is replaced like an old one.
		sp, key, usable := r.decode(name, stored)
		switch {
		case !usable:
		case sp == p:
			return key, nil
		case sp > p: // mutate:equivalent boundary sp == p returned above
			// Another instance is a period or more ahead (its clock):
			// this one is behind and keeps the newer key rather than
			// erase it.
			return k, fmt.Errorf("%s holds the key of period %d, after %d: is this host's clock behind the group's?", name, sp, p)
		}
		err = r.o.Store.ReplaceSharedSecret(ctx, name, stored, offer)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, kps.ErrConflict) && !errors.Is(err, kps.ErrNotFound) {
			return k, fmt.Errorf("replacing %s: %w", name, err)
		}
		// Another instance replaced it first: read what it wrote.
	}
	return k, fmt.Errorf("%s: the store kept changing under the rotation", name)
}

const valueLen = 8 + 32

func (r *Rotator) encode(name string, p int64, k [32]byte) []byte {
	b := make([]byte, valueLen)
	binary.BigEndian.PutUint64(b, uint64(p))
	copy(b[8:], k[:])
	if r.o.Sealer != nil {
		return r.o.Sealer.SealShared(name, b)
	}
	return b
}

// decode returns the period and key a slot holds; usable is false when it
// does not open or is not the size of one.
func (r *Rotator) decode(name string, stored []byte) (p int64, k [32]byte, usable bool) {
	b := stored
	if r.o.Sealer != nil {
		var err error
		if b, err = r.o.Sealer.OpenShared(name, stored); err != nil {
			return 0, k, false // mutate:equivalent const the period of an unusable slot is not read
		}
	}
	if len(b) != valueLen {
		return 0, k, false // mutate:equivalent const the period of an unusable slot is not read
	}
	copy(k[:], b[8:])
	return int64(binary.BigEndian.Uint64(b)), k, true
}

func period(t time.Time, d time.Duration) int64 {
	return t.UnixNano() / int64(d)
}

func periodStart(p int64, d time.Duration) time.Time {
	return time.Unix(0, p*int64(d))
}
