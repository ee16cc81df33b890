package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// parse are skipped (Verify reports them). It reads the log from its end,
// a chunk at a time, and stops once it has the entries asked for: its
// memory does not grow with the log.
func (l *Log) Search(f Filter) ([]Entry, error) {
	files, err := openFiles(l.h)
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	defer closeAll(files)
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	action := strings.ToLower(f.Action)
	out := []Entry{}
	match := func(line []byte) bool {
		var e Entry
		if json.Unmarshal(line, &e) != nil { // damaged lines
			return true
		}
		if f.User != "" && e.User != f.User ||
			action != "" && !strings.Contains(strings.ToLower(e.Action), action) ||
			!f.Since.IsZero() && e.Time.Before(f.Since) ||
			!f.Until.IsZero() && !e.Time.Before(f.Until) {
			return true
		}
		out = append(out, e)
		return len(out) < limit
	}
	// Newest first: audit.log, then the rotated files from the newest.
	for i := len(files) - 1; i >= 0 && len(out) < limit; i-- {
		if err := searchFile(files[i], match); err != nil {
			return nil, fmt.Errorf("reading audit log: %w", err)
		}
	}
	return out, nil
}

// searchFile calls fn with the lines of f, the last first, until fn
// returns false.
func searchFile(f *os.File, fn func([]byte) bool) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return eachLineBackward(f, st.Size(), fn)
}

// Reading backwards: the chunk size, and the longest line kept (a longer
// one is skipped as damaged; Record writes far shorter ones).
const (
	searchChunk   = 64 << 10 // mutate:equivalent const a read size: a smaller one reads more often (a larger one fails TestEachLineBackward's bound)
	maxSearchLine = 1 << 20
)

// eachLineBackward calls fn with each non-empty line of r (size bytes),
// the last first, until fn returns false.
func eachLineBackward(r io.ReaderAt, size int64, fn func([]byte) bool) error {
	var carry []byte // the end of a line whose start is not read yet
	skipping := false
	buf := make([]byte, searchChunk)
	for pos := size; pos > 0; {
		n := min(int64(searchChunk), pos)
		pos -= n
		if _, err := r.ReadAt(buf[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		data := append(slices.Clone(buf[:n]), carry...)
		for {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				break
			}
			line := data[i+1:]
			data = data[:i]
			if skipping {
				skipping = false // the head of the long line: dropped too
				continue
			}
			if len(line) > 0 && len(line) <= maxSearchLine && !fn(line) {
				return nil
			}
		}
		carry = data
		if len(carry) > maxSearchLine {
			carry, skipping = nil, true
		}
	}
	if len(carry) > 0 && len(carry) <= maxSearchLine && !skipping {
		fn(carry)
	}
	return nil
}
