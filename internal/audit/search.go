package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Filter selects entries for Search. Zero fields select everything.
type Filter struct {
	User   string    // exact user name
	Action string    // case-insensitive substring of the action ("instance", "start")
	Since  time.Time // entries at or after
	Until  time.Time // entries before
	Limit  int       // at most this many (DefaultLimit when 0)
}

// DefaultLimit and MaxLimit bound the entries Search returns.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Search returns the entries matching f, newest first. Lines that do not
// parse are skipped (Verify reports them).
func (l *Log) Search(f Filter) ([]Entry, error) {
	data, err := os.ReadFile(File(l.h))
	if errors.Is(err, os.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	action := strings.ToLower(f.Action)
	lines := bytes.Split(data, []byte("\n"))
	out := []Entry{}
	for _, line := range slices.Backward(lines) {
		if len(out) == limit {
			break
		}
		var e Entry
		if json.Unmarshal(line, &e) != nil { // empty and damaged lines
			continue
		}
		if f.User != "" && e.User != f.User ||
			action != "" && !strings.Contains(strings.ToLower(e.Action), action) ||
			!f.Since.IsZero() && e.Time.Before(f.Since) ||
			!f.Until.IsZero() && !e.Time.Before(f.Until) {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}
