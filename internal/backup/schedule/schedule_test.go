package schedule

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func TestParse(t *testing.T) {
	h := home.Home{Dir: "/opt/gw/apigateway"}
	for _, tc := range []struct {
		c    Conf
		want string // "" valid
	}{
		{Conf{}, ""},
		{Conf{Schedule: "30 2 * * *", Directory: "/var/backups/gw"}, ""},
		{Conf{Schedule: "@every 6h", Directory: "../backups", Keep: 3}, ""},
		{Conf{Schedule: "@daily", Directory: "/var/backups/gw", WithLogs: true}, ""},
		{Conf{Directory: "/x"}, "need a schedule"},
		{Conf{Keep: 2}, "need a schedule"},
		{Conf{Schedule: "every day", Directory: "/x"}, `backup.schedule "every day"`},
		{Conf{Schedule: "61 * * * *", Directory: "/x"}, "backup.schedule"},
		{Conf{Schedule: "@daily"}, "where the scheduled backups go is needed"},
		{Conf{Schedule: "@daily", Directory: "/x", Keep: -1}, "backup.keep -1"},
		{Conf{Schedule: "@daily", Directory: "backups"}, "inside the install directory"},
		{Conf{Schedule: "@daily", Directory: "/opt/gw/apigateway"}, "inside the install directory"},
	} {
		s, err := tc.c.Parse(h)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.c, err)
		case tc.want == "" && (s == nil) != (tc.c.Schedule == ""):
			t.Errorf("%+v: schedule %v", tc.c, s)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: got %v, want %q", tc.c, err, tc.want)
		}
	}
	if d := (Conf{Directory: "../b"}).Dir(h); d != "/opt/gw/b" {
		t.Errorf("Dir: %s", d)
	}
	if k := (Conf{}).KeepOrDefault(); k != DefaultKeep {
		t.Errorf("KeepOrDefault: %d", k)
	}
}

func TestRunOnceAndRetention(t *testing.T) {
	h := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	dir := filepath.Join(t.TempDir(), "backups")
	clock := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	fail := errors.New("no space left on device")
	var failing atomic.Bool
	run := func(ctx context.Context, file string) error {
		if failing.Load() {
			return fail
		}
		return os.WriteFile(file, []byte("a backup"), 0o600)
	}
	s, err := New(h, Conf{Schedule: "@hourly", Directory: dir, Keep: 2}, "host-1", run, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return clock }
	// Another host's backup in the same directory is never removed.
	os.MkdirAll(dir, 0o700)
	other := filepath.Join(dir, "gatehouse-host-2-20200101T000000Z.backup")
	os.WriteFile(other, nil, 0o600)
	for range 3 {
		if err := s.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Hour)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "gatehouse-host-1-*.backup"))
	if len(files) != 2 || !strings.HasSuffix(files[0], "20261206T020000Z.backup") || !strings.HasSuffix(files[1], "20261206T030000Z.backup") {
		t.Fatalf("kept %v, want the newest 2", files)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another host's backup removed: %v", err)
	}
	st := s.State()
	if st.Succeeded != 3 || st.Failed != 0 || len(st.Removed) != 1 || !st.LastSuccess.Equal(time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)) || st.LastFile != files[1] {
		t.Errorf("state: %+v", st)
	}
	// A failure: counted, kept in the state, and nothing removed.
	failing.Store(true)
	if err := s.RunOnce(t.Context()); !errors.Is(err, fail) {
		t.Fatalf("a failing run: %v", err)
	}
	if after, _ := filepath.Glob(filepath.Join(dir, "gatehouse-host-1-*.backup")); len(after) != 2 {
		t.Errorf("a failed run removed backups: %v", after)
	}
	st, err = ReadState(h)
	if err != nil {
		t.Fatal(err)
	}
	if st.Failed != 1 || st.Succeeded != 3 || st.LastError != fail.Error() || !st.LastFailure.After(st.LastSuccess) || st.Schedule != "@hourly" {
		t.Errorf("state file after a failure: %+v", st)
	}
	// A new scheduler (the node manager restarted) goes on from the file.
	s2, err := New(h, Conf{Schedule: "@hourly", Directory: dir, Keep: 2}, "host-1", run, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.State(); st.Succeeded != 3 || st.Failed != 1 {
		t.Errorf("state after a restart: %+v", st)
	}
	// An unreadable state file: started afresh, not an error.
	os.WriteFile(StateFile(h), []byte("{"), 0o644)
	if s3, err := New(h, Conf{Schedule: "@hourly", Directory: dir}, "host-1", run, slog.New(slog.DiscardHandler)); err != nil || s3.State().Succeeded != 0 {
		t.Errorf("a damaged state file: %v", err)
	}
	if s, err := New(h, Conf{}, "host-1", run, nil); s != nil || err != nil {
		t.Errorf("no schedule: %v %v", s, err)
	}
}

func TestRunOnSchedule(t *testing.T) {
	h := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	dir := filepath.Join(t.TempDir(), "backups")
	var runs atomic.Int32
	run := func(ctx context.Context, file string) error {
		runs.Add(1)
		return os.WriteFile(file, nil, 0o600)
	}
	s, err := New(h, Conf{Schedule: "@every 1s", Directory: dir}, "host-1", run, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
	if runs.Load() < 2 {
		t.Fatalf("%d runs in 10 s of @every 1s", runs.Load())
	}
	if st := s.State(); st.Next.IsZero() {
		t.Error("no next run in the state")
	}
}

// levels counts log records by level.
type levels struct{ errors, warns atomic.Int32 }

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	switch r.Level {
	case slog.LevelError:
		l.errors.Add(1)
	case slog.LevelWarn:
		l.warns.Add(1)
	}
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

func TestSchedulerDetails(t *testing.T) {
	if DefaultKeep != 7 {
		t.Errorf("DefaultKeep = %d; docs/backup.md says 7", DefaultKeep)
	}
	h := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	dir := filepath.Join(t.TempDir(), "backups")
	lv := &levels{}
	log := slog.New(lv)
	var fail atomic.Bool
	run := func(ctx context.Context, file string) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		return os.WriteFile(file, nil, 0o600)
	}
	// A bad configuration: New says so.
	if _, err := New(h, Conf{Schedule: "nonsense", Directory: dir}, "host-1", run, log); err == nil {
		t.Error("New with a bad schedule: no error")
	}
	// A state file whose fields half decode: started afresh, with a warning.
	os.MkdirAll(filepath.Dir(StateFile(h)), 0o755)
	os.WriteFile(StateFile(h), []byte(`{"succeeded": 5, "failed": "x"}`), 0o644)
	s, err := New(h, Conf{Schedule: "@hourly", Directory: dir, Keep: 1}, "host-1", run, log)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.State(); st.Succeeded != 0 || lv.warns.Load() != 1 {
		t.Errorf("a half-decoded state: %+v, %d warnings", st, lv.warns.Load())
	}
	if _, err := ReadState(h); err == nil {
		t.Error("ReadState of a damaged file: no error")
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	// Four runs, keep 1: the three oldest removed, by name.
	var names []string
	for range 4 {
		if err := s.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Join(dir, "gatehouse-host-1-"+clock.Format("20060102T150405Z")+".backup"))
		clock = clock.Add(time.Hour)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.backup"))
	if len(left) != 1 || left[0] != names[3] {
		t.Errorf("left %v, want only %s", left, names[3])
	}
	if st := s.State(); len(st.Removed) != 1 || st.Removed[0] != names[2] {
		t.Errorf("the last run removed %v, want %s", st.Removed, names[2])
	}
	// The directory is the operator's, private: 0700.
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the backups' directory: %v %v", fi, err)
	}
	if fi, err := os.Stat(StateFile(h)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("the state file: %v %v", fi, err)
	}
	// A failure is logged at error; a file that cannot be removed (a
	// directory in the way) too, and the run still counts as a success.
	fail.Store(true)
	s.RunOnce(t.Context())
	if lv.errors.Load() != 1 {
		t.Errorf("%d errors logged for a failed run, want 1", lv.errors.Load())
	}
	fail.Store(false)
	stuck := filepath.Join(dir, "gatehouse-host-1-20000101T000000Z.backup")
	os.MkdirAll(filepath.Join(stuck, "x"), 0o700)
	if err := s.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if lv.errors.Load() != 2 {
		t.Errorf("%d errors logged after a removal failed, want 2", lv.errors.Load())
	}
	if st := s.State(); st.LastError != "" || st.Succeeded != 5 {
		t.Errorf("a run whose pruning failed: %+v", st)
	}
	// ReadState of a path that cannot be read (a directory).
	h2 := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	os.MkdirAll(StateFile(h2), 0o755)
	if _, err := ReadState(h2); err == nil {
		t.Error("ReadState of a directory: no error")
	}
}

func TestCutAndFailedFiles(t *testing.T) {
	h := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	dir := filepath.Join(t.TempDir(), "backups")
	ctx, cancel := context.WithCancel(t.Context())
	var mode atomic.Int32 // 0 ok, 1 written then cut, 2 written then failed
	run := func(c context.Context, file string) error {
		if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
			return err
		}
		switch mode.Load() {
		case 1:
			cancel()
			return c.Err()
		case 2:
			return errors.New("did not verify")
		}
		return nil
	}
	s, err := New(h, Conf{Schedule: "@hourly", Directory: dir, Keep: 1}, "host-1", run, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	if err := s.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	mode.Store(2)
	s.RunOnce(ctx)
	failed, _ := filepath.Glob(filepath.Join(dir, "*.backup.failed"))
	if len(failed) != 1 {
		t.Errorf("a failed run's file: %v, want it kept as .failed", failed)
	}
	mode.Store(1)
	s.RunOnce(ctx)
	good, _ := filepath.Glob(filepath.Join(dir, "*.backup"))
	st := s.State()
	if len(good) != 1 || st.Succeeded != 1 || st.Failed != 1 {
		t.Errorf("after a cut run: %v, state %+v; want the one verified backup, the cut not counted", good, st)
	}
}
