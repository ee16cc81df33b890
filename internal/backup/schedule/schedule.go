// Package schedule runs a host's backups on a schedule (the node manager's
// backup settings: docs/backup.md#scheduled-backups): each run writes one
// verified backup into a directory, and only after a run that succeeded
// are the oldest backups beyond the retention count removed. Failures are
// logged at error, counted, and kept in the state file that gatehouse
// backup status reads.
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Conf is the backup section of nodemanager.yaml.
type Conf struct {
	// Schedule is when: a cron expression of five fields (minute hour
	// day-of-month month day-of-week, in the host's local time), or
	// @hourly, @daily, @weekly, @every 6h. Empty: no scheduled backups.
	Schedule string `yaml:"schedule,omitempty"`
	// Directory is where the backups go: absolute, or relative to the
	// install directory, and outside it.
	Directory string `yaml:"directory,omitempty"`
	// Keep is how many backups are kept (the newest); 0 means 7.
	Keep int `yaml:"keep,omitempty"`
	// WithLogs adds the logs to each backup.
	WithLogs bool `yaml:"withLogs,omitempty"`
}

// DefaultKeep is the retention count when Keep is 0.
const DefaultKeep = 7

// Parse checks c and returns its schedule (nil when there is none).
func (c Conf) Parse(h home.Home) (cron.Schedule, error) {
	if c.Schedule == "" {
		if c.Directory != "" || c.Keep != 0 || c.WithLogs {
			return nil, errors.New("backup: directory, keep and withLogs need a schedule")
		}
		return nil, nil
	}
	s, err := cron.ParseStandard(c.Schedule)
	if err != nil {
		return nil, fmt.Errorf("backup.schedule %q: %v (want five fields, minute hour day month weekday, or @daily, @every 6h)", c.Schedule, err)
	}
	if c.Directory == "" {
		return nil, errors.New("backup.directory: where the scheduled backups go is needed")
	}
	if c.Keep < 0 {
		return nil, fmt.Errorf("backup.keep %d: want at least 1 (0: %d)", c.Keep, DefaultKeep)
	}
	dir := c.Dir(h)
	if dir == h.Dir || strings.HasPrefix(dir, h.Dir+string(filepath.Separator)) {
		return nil, fmt.Errorf("backup.directory %s is inside the install directory: a backup would hold the previous ones", dir)
	}
	return s, nil
}

// Dir is the directory of the backups, absolute.
func (c Conf) Dir(h home.Home) string {
	if filepath.IsAbs(c.Directory) {
		return filepath.Clean(c.Directory)
	}
	return filepath.Join(h.Dir, c.Directory)
}

// KeepOrDefault is the retention count.
func (c Conf) KeepOrDefault() int {
	if c.Keep == 0 {
		return DefaultKeep
	}
	return c.Keep
}

// State is what the scheduler has done, kept in StateFile.
type State struct {
	Schedule    string    `json:"schedule"`
	Next        time.Time `json:"next,omitzero"`
	LastRun     time.Time `json:"lastRun,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastFile    string    `json:"lastFile,omitempty"`
	LastError   string    `json:"lastError,omitempty"`
	LastFailure time.Time `json:"lastFailure,omitzero"`
	Succeeded   int64     `json:"succeeded"`
	Failed      int64     `json:"failed"`
	Removed     []string  `json:"removed,omitempty"` // by the last run's retention
}

// StateFile is where the state is kept.
func StateFile(h home.Home) string { return h.Path("var", "backup", "schedule.json") }

// ReadState reads the state file (a zero State when there is none).
func ReadState(h home.Home) (State, error) {
	var s State
	data, err := os.ReadFile(StateFile(h))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s: %w", StateFile(h), err)
	}
	return s, nil
}

// RunFunc writes one verified backup to file; the error says why not.
type RunFunc func(ctx context.Context, file string) error

// Scheduler runs the backups of one host.
type Scheduler struct {
	h     home.Home
	conf  Conf
	sched cron.Schedule
	host  string
	run   RunFunc
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	state State
}

// New makes the scheduler of conf for host (nil when conf has no
// schedule); run writes a backup.
func New(h home.Home, conf Conf, host string, run RunFunc, log *slog.Logger) (*Scheduler, error) {
	sched, err := conf.Parse(h)
	if err != nil || sched == nil {
		return nil, err
	}
	st, err := ReadState(h)
	if err != nil {
		log.Warn("the scheduled backups' state file is unreadable; starting afresh", "error", err.Error())
		st = State{}
	}
	st.Schedule = conf.Schedule
	return &Scheduler{h: h, conf: conf, sched: sched, host: host, run: run, log: log, now: time.Now, state: st}, nil
}

// State returns what the scheduler has done.
func (s *Scheduler) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Removed = slices.Clone(st.Removed)
	return st
}

// Run runs the backups at their times until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	for {
		next := s.sched.Next(s.now())
		s.update(func(st *State) { st.Next = next })
		s.log.Info("next scheduled backup", "at", next.Format(time.RFC3339), "directory", s.conf.Dir(s.h))
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.RunOnce(ctx)
	}
}

// RunOnce writes one backup now, then applies the retention.
func (s *Scheduler) RunOnce(ctx context.Context) error {
	dir := s.conf.Dir(s.h)
	start := s.now().UTC()
	file := filepath.Join(dir, fmt.Sprintf("gatehouse-%s-%s.backup", s.host, start.Format("20060102T150405Z")))
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		err = s.run(ctx, file)
	}
	if err != nil && ctx.Err() != nil {
		// Cut by the node manager's stop: not a failure of the backups,
		// and a file written but not verified is not left among them.
		os.Remove(file)
		s.log.Info("scheduled backup cut by the stop", "file", file)
		return err
	}
	if err != nil {
		// A file written but not verified stays for a look, out of the
		// retention's count (its name no longer ends in .backup).
		if _, serr := os.Stat(file); serr == nil {
			os.Rename(file, file+".failed")
		}
		s.log.Error("scheduled backup failed", "file", file, "error", err.Error())
		s.update(func(st *State) {
			st.LastRun, st.LastFailure, st.LastError = start, start, err.Error()
			st.Failed++
			st.Removed = nil
		})
		return err
	}
	removed, perr := s.prune(dir)
	s.log.Info("scheduled backup written and verified", "file", file, "seconds", s.now().Sub(start).Seconds(), "removed", len(removed))
	if perr != nil {
		s.log.Error("scheduled backups: removing the old ones failed", "error", perr.Error())
	}
	s.update(func(st *State) {
		st.LastRun, st.LastSuccess, st.LastFile, st.LastError = start, start, file, ""
		st.Succeeded++
		st.Removed = removed
	})
	return nil
}

// prune removes this host's oldest backups in dir beyond the retention
// count (the names sort by time).
func (s *Scheduler) prune(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "gatehouse-"+s.host+"-*.backup"))
	if err != nil {
		return nil, err // mutate:equivalent * host ids (host-N) hold no pattern characters
	}
	slices.Sort(files)
	keep := s.conf.KeepOrDefault()
	var removed []string
	var errs []error
	for len(files) > keep {
		if err := os.Remove(files[0]); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, files[0])
		}
		files = files[1:]
	}
	return removed, errors.Join(errs...)
}

// update changes the state and writes it (atomically).
func (s *Scheduler) update(fn func(*State)) {
	s.mu.Lock()
	fn(&s.state)
	data, _ := json.MarshalIndent(s.state, "", "  ")
	s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(StateFile(s.h)), 0o755); err == nil {
		err = home.WriteFileAtomic(StateFile(s.h), append(data, '\n'), 0o644)
		if err != nil {
			s.log.Warn("writing the scheduled backups' state", "error", err.Error())
		}
	}
}
