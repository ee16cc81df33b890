package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Actor is who makes a change: the user, the tool or API, and where from.
type Actor struct {
	User   string `json:"user"`
	Via    string `json:"via"`    // "managedomain", "quickstart", "api", ...
	Remote string `json:"remote"` // client address for API changes; "local" for tools
}

// Change describes one topology change as the Recorder sees it.
type Change struct {
	Actor         Actor
	Action        string // e.g. "create instance"
	Detail        string
	BeforeVersion int64
	AfterVersion  int64 // 0 when the change failed
	Err           error
	Time          time.Time
}

// Recorder receives every change attempt, successful or not. The audit log
// implements it; until then LogRecorder writes to a slog.Logger.
type Recorder interface {
	Record(ctx context.Context, c Change)
}

// LogRecorder writes changes to a logger.
type LogRecorder struct{ Log *slog.Logger }

// Record implements Recorder.
func (r LogRecorder) Record(ctx context.Context, c Change) {
	if r.Log == nil {
		return
	}
	attrs := []any{"user", c.Actor.User, "via", c.Actor.Via, "remote", c.Actor.Remote, "action", c.Action, "detail", c.Detail, "before", c.BeforeVersion}
	if c.Err != nil {
		r.Log.WarnContext(ctx, "topology change failed", append(attrs, "err", c.Err)...)
		return
	}
	r.Log.InfoContext(ctx, "topology changed", append(attrs, "after", c.AfterVersion)...)
}

// Store reads and writes groups/topology.json of one install directory.
// It is safe for concurrent use by several processes: writers serialise on
// var/run/topology.lock.
type Store struct {
	home     home.Home
	recorder Recorder
	// LockTimeout bounds the wait for another writer; 10 s by default.
	LockTimeout time.Duration
}

// NewStore returns the store of h. rec may be nil.
func NewStore(h home.Home, rec Recorder) *Store {
	if rec == nil {
		rec = LogRecorder{}
	}
	return &Store{home: h, recorder: rec, LockTimeout: 10 * time.Second}
}

// Load reads and validates the topology.
func (s *Store) Load() (*Topology, error) {
	if err := s.home.CheckDomain(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.home.TopologyFile())
	if err != nil {
		return nil, fmt.Errorf("reading topology: %w", err)
	}
	return Parse(data)
}

// Parse decodes and validates a topology document.
func Parse(data []byte) (*Topology, error) {
	var t Topology
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("parsing topology: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return &t, nil
}

// Exists reports whether the install directory holds a topology.
func (s *Store) Exists() bool {
	_, err := os.Stat(s.home.TopologyFile())
	return err == nil
}

func (s *Store) lock(ctx context.Context) (*home.Lock, error) {
	if err := os.MkdirAll(s.home.RunDir(), 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.LockTimeout)
	defer cancel()
	l, err := home.LockWait(ctx, filepath.Join(s.home.RunDir(), "topology.lock"))
	if err != nil {
		return nil, fmt.Errorf("another tool is changing the topology: %w", err)
	}
	return l, nil
}

// Create writes t as the first topology of the install directory. It fails
// with ErrExists if one is there already.
func (s *Store) Create(ctx context.Context, actor Actor, t *Topology) error {
	l, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer l.Unlock()
	c := Change{Actor: actor, Action: "create domain", Detail: t.DomainName, Time: time.Now()}
	if s.Exists() {
		c.Err = fmt.Errorf("a domain %w in %s", ErrExists, s.home.Dir)
		s.recorder.Record(ctx, c)
		return c.Err
	}
	t.SchemaVersion = SchemaVersion
	if t.Version < 1 {
		t.Version = 1
	}
	t.Timestamp = time.Now().UnixMilli()
	if err := t.Validate(); err != nil {
		c.Err = err
		s.recorder.Record(ctx, c)
		return err
	}
	if err := s.write(t); err != nil {
		c.Err = err
		s.recorder.Record(ctx, c)
		return err
	}
	c.AfterVersion = t.Version
	s.recorder.Record(ctx, c)
	return nil
}

// Update is the one way to change a topology. Under the topology lock it
// loads the current topology, refuses the change with ErrConflict when
// expectVersion is not zero and differs from the current version, applies fn
// to a copy, validates the copy, increments the version, writes it
// atomically and records the change. When fn fails nothing is written.
// It returns the new topology.
func (s *Store) Update(ctx context.Context, actor Actor, action string, expectVersion int64, fn func(t *Topology) (detail string, err error)) (*Topology, error) {
	c := Change{Actor: actor, Action: action, Time: time.Now()}
	fail := func(err error) (*Topology, error) {
		c.Err = err
		s.recorder.Record(ctx, c)
		return nil, err
	}
	l, err := s.lock(ctx)
	if err != nil {
		return fail(err)
	}
	defer l.Unlock()
	cur, err := s.Load()
	if err != nil {
		return fail(err)
	}
	c.BeforeVersion = cur.Version
	if expectVersion != 0 && expectVersion != cur.Version {
		return fail(fmt.Errorf("%w: expected version %d, current version is %d", ErrConflict, expectVersion, cur.Version))
	}
	next := cur.Clone()
	detail, err := fn(next)
	c.Detail = detail
	if err != nil {
		return fail(err)
	}
	next.Version = cur.Version + 1
	next.Timestamp = time.Now().UnixMilli()
	if err := next.Validate(); err != nil {
		return fail(err)
	}
	if err := s.write(next); err != nil {
		return fail(err)
	}
	c.AfterVersion = next.Version
	s.recorder.Record(ctx, c)
	return next, nil
}

func (s *Store) write(t *Topology) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding topology: %w", err)
	}
	if err := os.MkdirAll(s.home.GroupsDir(), 0o755); err != nil {
		return fmt.Errorf("creating groups directory: %w", err)
	}
	return home.WriteFileAtomic(s.home.TopologyFile(), append(data, '\n'), 0o644)
}

// IsConflict reports whether err is a stale-version refusal.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }
