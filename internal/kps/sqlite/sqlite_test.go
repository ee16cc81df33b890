package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
)

func TestConformance(t *testing.T) {
	kpstest.Run(t, harness)
}

var harness = kpstest.Harness{
	New: func(t testing.TB) kps.Config {
		return kps.Config{SQLite: kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps", "kps.db")}}
	},
	Exec: func(t testing.TB, cfg kps.Config, stmt string) {
		db, err := sql.Open("sqlite", cfg.SQLite.Path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	},
}

func BenchmarkSQLite(b *testing.B) { kpstest.Bench(b, harness) }

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), kps.SQLiteConfig{Path: path})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCorrupt: a damaged file fails Open, naming the file; the damage is not
// repaired by overwriting it.
func TestCorrupt(t *testing.T) {
	want := map[string]string{"garbage": "not a database", "header": "not a database", "pages": "damaged: "}
	for name, damage := range map[string]func(path string) error{
		"garbage": func(path string) error {
			return os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o600)
		},
		"header": func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("SQLite format 2\x00"), 0)
			return err
		},
		"pages": func(path string) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			st, _ := f.Stat()
			junk := bytes.Repeat([]byte{0xa5}, int(st.Size())-4096)
			_, err = f.WriteAt(junk, 4096) // every page after the first
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kps.db")
			s := openAt(t, path)
			if err := s.Define(t.Context(), kpstest.Things); err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				if _, err := s.Insert(t.Context(), "things", map[string]any{"name": strings.Repeat("x", i)}); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			os.Remove(path + "-wal")
			os.Remove(path + "-shm")
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			_, err := Open(t.Context(), kps.SQLiteConfig{Path: path})
			if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, kps.ErrUnavailable) {
				t.Errorf("open a damaged file: got %v, want ErrUnavailable naming %s", err, path)
			}
			if !strings.Contains(fmt.Sprint(err), want[name]) {
				t.Errorf("open a damaged file: got %v, want %q", err, want[name])
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Errorf("open changed the damaged file")
			}
			// A failed Open leaves no file open.
			fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
			n := fds()
			for range 5 {
				Open(t.Context(), kps.SQLiteConfig{Path: path})
			}
			if got := fds(); got > n {
				t.Errorf("5 failed opens left %d more files open", got-n)
			}
		})
	}
}

// TestSettings: every connection is in WAL mode, synchronous FULL, with the
// busy timeout and a page cache of 512 KiB (the instance's memory bound
// counts it: docs/kps.md#memory); the file and its directory are private.
func TestSettings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "kps")
	s, err := Open(t.Context(), kps.SQLiteConfig{Path: filepath.Join(dir, "kps.db"), BusyTimeout: 1234 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []*sql.Conn
	for range 3 { // distinct connections of the pool
		c, err := s.db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var mode string
		var sync, busy, cacheSize, checkpoint int
		if err := c.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		c.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&sync)
		c.QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&busy)
		c.QueryRowContext(t.Context(), "PRAGMA cache_size").Scan(&cacheSize)
		c.QueryRowContext(t.Context(), "PRAGMA wal_autocheckpoint").Scan(&checkpoint)
		if mode != "wal" || sync != 2 || busy != 1234 || cacheSize != -512 || checkpoint != 8000 {
			t.Errorf("connection: journal_mode %s synchronous %d busy_timeout %d cache_size %d wal_autocheckpoint %d, want wal 2 (FULL) 1234 -512 (KiB) 8000 (pages)", mode, sync, busy, cacheSize, checkpoint)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v %v, want 0700", st.Mode(), err)
	}
	if s.Path() != filepath.Join(dir, "kps.db") {
		t.Errorf("Path: got %s", s.Path())
	}
	var v int
	s.db.QueryRow("PRAGMA user_version").Scan(&v)
	if v != len(migrations) {
		t.Errorf("user_version: got %d, want %d", v, len(migrations))
	}
	d, _ := Open(t.Context(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "d.db")})
	defer d.Close()
	d.db.QueryRow("PRAGMA busy_timeout").Scan(&v)
	if v != 5000 {
		t.Errorf("default busy_timeout: got %d, want 5000 (5 s, as documented)", v)
	}
	z, _ := Open(t.Context(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "z.db"), BusyTimeout: time.Nanosecond})
	defer z.Close()
	z.db.QueryRow("PRAGMA busy_timeout").Scan(&v)
	if v != 0 {
		t.Errorf("busy_timeout of 1ns: got %d, want 0 (not the default)", v)
	}
}

// TestBusy: while another process holds the write lock past the busy timeout
// a write is ErrUnavailable; reads go on (WAL).
func TestBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	s, err := Open(t.Context(), kps.SQLiteConfig{Path: path, BusyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Define(t.Context(), kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(t.Context(), "counters", map[string]any{"name": "a"}); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Insert(t.Context(), "counters", map[string]any{"name": "b"})
	if !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("insert while locked: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("insert while locked gave up after %v, want the busy timeout (200ms)", d)
	}
	if _, err := s.Get(t.Context(), "counters", "a"); err != nil {
		t.Errorf("get while another process writes: %v", err)
	}
	c.ExecContext(t.Context(), "ROLLBACK")
	if _, err := s.Insert(t.Context(), "counters", map[string]any{"name": "b"}); err != nil {
		t.Errorf("insert after the lock: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"", filepath.Join(dir, "a?b.db"), filepath.Join(dir, "a#b.db")} {
		if _, err := Open(t.Context(), kps.SQLiteConfig{Path: p}); !errors.Is(err, kps.ErrInvalid) {
			t.Errorf("open %q: got %v, want ErrInvalid", p, err)
		}
	}
	// A newer schema than this program knows is refused.
	path := filepath.Join(dir, "new.db")
	s := openAt(t, path)
	s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1))
	s.Close()
	_, err := Open(t.Context(), kps.SQLiteConfig{Path: path})
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), path) {
		t.Errorf("open a newer schema: got %v", err)
	}
	// A directory that cannot be made.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	_, err = Open(t.Context(), kps.SQLiteConfig{Path: filepath.Join(file, "kps.db")})
	var pe *fs.PathError
	if !errors.Is(err, kps.ErrUnavailable) || !errors.As(err, &pe) || pe.Op != "mkdir" {
		t.Errorf("open under a file: got %v, want ErrUnavailable from mkdir", err)
	}
	// Through the registry, as the default backend.
	st, err := kps.Open(t.Context(), kps.Config{SQLite: kps.SQLiteConfig{Path: filepath.Join(dir, "reg.db")}})
	if err != nil {
		t.Fatalf("kps.Open with the default backend: %v", err)
	}
	if _, ok := st.(*Store); !ok {
		t.Errorf("kps.Open: got %T, want *sqlite.Store", st)
	}
	st.Close()
}

func TestGroupPath(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(h.Dir, "groups", "group-2", "conf", "kps", "kps.db")
	if got := GroupPath(h, "group-2"); got != want {
		t.Errorf("GroupPath: got %s, want %s", got, want)
	}
}

// BenchmarkOpen100k: opening (with its quick_check) a store of 100,000 rows
// of about 300 bytes.
func BenchmarkOpen100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "kps.db")
	s, err := Open(b.Context(), kps.SQLiteConfig{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Define(b.Context(), kpstest.Things); err != nil {
		b.Fatal(err)
	}
	t := kpstest.Things
	err = s.write(b.Context(), func(tx *wtx) error {
		for i := range 100_000 {
			e, err := t.Encode(map[string]any{"id": fmt.Sprintf("key-%07d", i), "email": fmt.Sprintf("%d@example.com", i),
				"name": strings.Repeat("n", 200), "color": "red", "token": kps.NewUUID()})
			if err != nil {
				return err
			}
			if _, err := tx.Exec("INSERT INTO kps_rows(tbl, pk, sk, version, data) VALUES ('things', ?, ?, 1, ?)", e.Key, e.Secondary, e.Data); err != nil {
				return err
			}
			if err := insertIndex(b.Context(), tx, "things", e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	st, _ := os.Stat(path)
	for b.Loop() {
		s, err := Open(b.Context(), kps.SQLiteConfig{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
}

// TestDefineSame: defining the tables already defined changes nothing, not
// even the generation (other processes do not reload for nothing).
func TestDefineSame(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "kps.db"))
	if err := s.Define(t.Context(), kpstest.Things, kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	gen := s.defs.Gen()
	if gen != 1 {
		t.Errorf("generation after a first Define: got %d, want 1", gen)
	}
	if err := s.Define(t.Context(), kpstest.Counters, kpstest.Things); err != nil {
		t.Fatal(err)
	}
	var stored int64
	s.db.QueryRow("SELECT value FROM kps_meta WHERE name = 'defs_gen'").Scan(&stored)
	if s.defs.Gen() != gen || stored != gen {
		t.Errorf("generation after the same Define: got %d (stored %d), want %d", s.defs.Gen(), stored, gen)
	}
}

// TestInsertMany: a bulk insert stores every row, in one transaction: a
// refused row (a taken key) leaves none of the batch, and the error names
// the row; the rows are found by primary, secondary key and index.
func TestInsertMany(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "kps.db"))
	ctx := t.Context()
	if err := s.Define(ctx, kpstest.Things); err != nil {
		t.Fatal(err)
	}
	rows := func(from, n int) []map[string]any {
		var r []map[string]any
		for i := from; i < from+n; i++ {
			r = append(r, map[string]any{"id": fmt.Sprintf("k%03d", i), "email": fmt.Sprintf("%d@example.com", i), "color": "red"})
		}
		return r
	}
	if err := s.InsertMany(ctx, "things", rows(0, 50)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, "things"); n != 50 {
		t.Errorf("%d rows, want 50", n)
	}
	if r, err := s.GetBySecondary(ctx, "things", "49@example.com"); err != nil || r.Values["id"] != "k049" || r.Version != 1 {
		t.Errorf("by secondary key: %+v %v", r, err)
	}
	if res, err := s.Query(ctx, "things", "color", "red", kps.Page{Limit: 100}); err != nil || len(res.Rows) != 50 {
		t.Errorf("by index: %d rows, %v", len(res.Rows), err)
	}
	// k050..k059 are new, k049 is taken: nothing of the batch is stored.
	err := s.InsertMany(ctx, "things", append(rows(50, 10), rows(49, 1)...))
	if !errors.Is(err, kps.ErrExists) || !strings.Contains(err.Error(), "k049") {
		t.Errorf("a taken key: %v, want ErrExists naming k049", err)
	}
	if n, _ := s.Count(ctx, "things"); n != 50 {
		t.Errorf("after a refused batch: %d rows, want 50", n)
	}
	if _, err := s.Get(ctx, "things", "k050"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("a row of the refused batch: %v", err)
	}
	if err := s.InsertMany(ctx, "nothing", rows(0, 1)); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("an unknown table: %v", err)
	}
	if err := s.InsertMany(ctx, "things", []map[string]any{{"id": "x", "small": "not a number"}}); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("a bad value: %v", err)
	}
}

// TestGroupCommit: writes waiting together are committed in one
// transaction, each in a savepoint of its own: one that fails is rolled
// back alone (what it did before failing too) and gets its error; one whose
// context has ended is not run; the others are committed.
func TestGroupCommit(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "kps.db"))
	ctx := t.Context()
	if err := s.Define(ctx, kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	insert := func(name string) func(tx *wtx) error {
		return func(tx *wtx) error {
			t, _ := s.defs.Lookup("counters")
			_, _, err := insertTx(ctx, tx, t, "counters", map[string]any{"name": name, "n": int64(1)})
			return err
		}
	}
	if err := s.write(ctx, insert("taken")); err != nil {
		t.Fatal(err)
	}
	half := func(tx *wtx) error { // inserts, then fails
		if err := insert("half")(tx); err != nil {
			return err
		}
		return errors.New("failed after a write")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	batch := []*pendingWrite{
		{ctx: ctx, fn: insert("a"), done: make(chan error, 1)},
		{ctx: ctx, fn: insert("taken"), done: make(chan error, 1)},
		{ctx: ctx, fn: half, done: make(chan error, 1)},
		{ctx: cancelled, fn: func(*wtx) error { ran = true; return nil }, done: make(chan error, 1)},
		{ctx: ctx, fn: insert("b"), done: make(chan error, 1)},
	}
	before := s.commits.Load()
	s.commit(batch)
	errs := make([]error, len(batch))
	for i, w := range batch {
		errs[i] = <-w.done
	}
	if errs[0] != nil || !errors.Is(errs[1], kps.ErrExists) || errs[2] == nil || !errors.Is(errs[3], kps.ErrUnavailable) || errs[4] != nil {
		t.Errorf("results: %v", errs)
	}
	if ran {
		t.Error("a write whose context had ended was run")
	}
	if got := s.commits.Load() - before; got != 1 {
		t.Errorf("%d commits for the batch, want 1", got)
	}
	for name, want := range map[string]bool{"a": true, "b": true, "half": false, "taken": true} {
		_, err := s.Get(ctx, "counters", name)
		if (err == nil) != want {
			t.Errorf("row %s: %v, want present %v", name, err, want)
		}
	}
	// A batch in which every write fails commits nothing.
	before = s.commits.Load()
	w := &pendingWrite{ctx: ctx, fn: insert("taken"), done: make(chan error, 1)}
	s.commit([]*pendingWrite{w})
	if err := <-w.done; !errors.Is(err, kps.ErrExists) || s.commits.Load() != before {
		t.Errorf("a failed batch: %v, %d commits", err, s.commits.Load()-before)
	}

	// Concurrent writers share commits.
	before = s.commits.Load()
	var wg sync.WaitGroup
	const n = 200
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Insert(ctx, "counters", map[string]any{"name": fmt.Sprintf("c%03d", i), "n": int64(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if c, _ := s.Count(ctx, "counters"); c != n+3 {
		t.Errorf("%d rows, want %d", c, n+3)
	}
	commits := s.commits.Load() - before
	t.Logf("%d concurrent inserts in %d commits", n, commits)
	if commits < 1 || commits >= n {
		t.Errorf("%d commits for %d inserts", commits, n)
	}
}

// isBusy knows SQLite's busy refusal (retried when a store opens) from
// other errors (which are damage).
func TestIsBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	a, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetMaxOpenConns(1)
	if _, err := a.Exec("CREATE TABLE x(y)"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec("BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	b, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Exec("INSERT INTO x VALUES (1)")
	if err == nil || !isBusy(err) {
		t.Errorf("a write while another connection holds an exclusive lock: %v; want a busy error", err)
	}
	a.Exec("COMMIT")
	_, err = b.Exec("SELECT * FROM nowhere")
	if err == nil || isBusy(err) {
		t.Errorf("a missing table: %v; want an error that is not busy", err)
	}
	if isBusy(errors.New("database is locked")) {
		t.Error("a plain error with the words is not SQLite's code")
	}
}
