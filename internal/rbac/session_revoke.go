package rbac

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// RevokedSessionsFile is conf/revokedSessions.json: the ids of sessions
// ended by logout, each with its absolute end, after which it is dropped
// (the token is expired then anyway). It is small: one entry per logout of
// the last SessionMax.
func RevokedSessionsFile(h home.Home) string { return h.Path("conf", "revokedSessions.json") }

// Revoked maps a revoked session id to its absolute end (Unix seconds).
type Revoked map[string]int64

// LoadRevoked reads conf/revokedSessions.json; a missing file is empty.
func LoadRevoked(h home.Home) (Revoked, error) {
	data, err := os.ReadFile(RevokedSessionsFile(h))
	if errors.Is(err, os.ErrNotExist) {
		return Revoked{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading revoked sessions: %w", err)
	}
	var f struct {
		Revoked Revoked `json:"revoked"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", RevokedSessionsFile(h), err)
	}
	if f.Revoked == nil {
		f.Revoked = Revoked{}
	}
	return f.Revoked, nil
}

// RevokeSession adds s to conf/revokedSessions.json (atomically, under
// var/run/revokedSessions.lock), dropping entries past their end at now.
func RevokeSession(h home.Home, s Session, now time.Time) error {
	if err := os.MkdirAll(h.RunDir(), 0o755); err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	l, err := home.LockWait(ctx, filepath.Join(h.RunDir(), "revokedSessions.lock"))
	if err != nil {
		return fmt.Errorf("another request is revoking a session: %w", err)
	}
	defer l.Unlock()
	r, err := LoadRevoked(h)
	if err != nil {
		return err
	}
	for id, end := range r {
		if now.Unix() >= end {
			delete(r, id)
		}
	}
	r[s.ID] = s.Expires
	data, _ := json.MarshalIndent(struct {
		Revoked Revoked `json:"revoked"`
	}{r}, "", "  ") // a map of strings to integers: cannot fail
	return home.WriteFileAtomic(RevokedSessionsFile(h), append(data, '\n'), 0o600)
}
