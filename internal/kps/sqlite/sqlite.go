// Package sqlite is the embedded KPS backend, the default ("sqlite"): one
// SQLite database file per group, groups/<group-id>/conf/kps/kps.db under the
// install directory, opened through modernc.org/sqlite (pure Go, no cgo).
//
// Several processes of a group on one host share the file: SQLite's WAL mode
// lets readers run beside one writer, writes take the database's write lock
// at BEGIN (BEGIN IMMEDIATE) and wait for another process's write up to the
// busy timeout. Within a process a mutex serializes writes so that they queue
// instead of polling the lock. synchronous=FULL makes every commit fsync the
// WAL before it is acknowledged: an acknowledged write survives a crash of the
// process and of the machine.
//
// Storage: every KPS table lives in the same three SQL tables: kps_rows (one
// row per KPS row: alias, primary key text, secondary key text, version, JSON
// data), kps_index (alias, property, value text, primary key) and kps_tables
// (the definitions), with kps_meta holding the definitions' generation.
// PRAGMA user_version numbers the schema's migrations.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Name is the backend's registered name.
const Name = "sqlite"

// DefaultBusyTimeout is how long a write waits for another process's write.
const DefaultBusyTimeout = 5 * time.Second

func init() {
	kps.Register(Name, func(ctx context.Context, cfg kps.Config) (kps.Store, error) {
		return Open(ctx, cfg.SQLite)
	})
}

// GroupPath is where a group's store lives in an install directory.
func GroupPath(h home.Home, groupID string) string {
	return filepath.Join(h.GroupConfDir(groupID), "kps", "kps.db")
}

// Store is the embedded backend.
type Store struct {
	db   *sql.DB
	path string
	// openBusy bounds the retries of a busy first connection (init).
	openBusy time.Duration
	defs     kps.Defs

	qmu     sync.Mutex      // guards queue and leading
	queue   []*pendingWrite // writes waiting for a commit
	leading bool            // a caller is committing batches
	commits atomic.Int64    // transactions committed by write (tests)
	stmts   stmts           // the write path's prepared statements
}

var _ kps.Store = (*Store)(nil)

// migrations build the schema; migration i brings user_version from i to i+1.
var migrations = []string{
	`CREATE TABLE kps_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
	INSERT INTO kps_meta(name, value) VALUES ('defs_gen', 0);
	CREATE TABLE kps_tables(alias TEXT PRIMARY KEY, def TEXT NOT NULL) WITHOUT ROWID;
	CREATE TABLE kps_rows(
		tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT, version INTEGER NOT NULL, data TEXT NOT NULL,
		PRIMARY KEY(tbl, pk)) WITHOUT ROWID;
	CREATE UNIQUE INDEX kps_rows_sk ON kps_rows(tbl, sk) WHERE sk IS NOT NULL;
	CREATE TABLE kps_index(
		tbl TEXT NOT NULL, prop TEXT NOT NULL, val TEXT NOT NULL, pk TEXT NOT NULL,
		PRIMARY KEY(tbl, prop, val, pk)) WITHOUT ROWID;
	CREATE INDEX kps_index_pk ON kps_index(tbl, pk);`,
	// A row's index entries are deleted by their whole primary key, computed
	// from the row (deleteIndex): the second index on kps_index cost two more
	// B-tree inserts for every indexed value of every write.
	`DROP INDEX kps_index_pk;`,
}

// Open opens (creating if needed) the database file at cfg.Path, checks it
// (a damaged file or one that is not a KPS database fails, naming the file)
// and brings its schema up to date.
func Open(ctx context.Context, cfg kps.SQLiteConfig) (*Store, error) {
	if cfg.Path == "" {
		return nil, kps.Invalid("sqlite: no path given")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, kps.Invalid("sqlite: path %q: %v", cfg.Path, err)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, kps.Invalid("sqlite: path %q: '?' and '#' are not allowed", path)
	}
	busy := cfg.BusyTimeout
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("kps store %s: %w", path, kps.Unavailable(err))
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "cache_size(-512)") // KiB per connection: the instance's memory bound counts 8 of them (docs/kps.md#memory)
	// Checkpoint when the WAL holds 8,000 pages (32 MiB) rather than
	// SQLite's 1,000: a page written again before the checkpoint is copied
	// into the database once. A token grant over HTTP cost 16 % less CPU.
	q.Add("_pragma", "wal_autocheckpoint(8000)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("kps store %s: %w", path, kps.Unavailable(err))
	}
	db.SetMaxOpenConns(8) // mutate:equivalent const the pool's size: reads and writes behave the same with any size
	db.SetMaxIdleConns(8) // mutate:equivalent const the pool's size: reads and writes behave the same with any size
	s := &Store{db: db, path: path, openBusy: busy}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("kps store %s: %w", path, err)
	}
	return s, nil
}

// init checks the file, applies missing migrations and loads the definitions.
func (s *Store) init(ctx context.Context) error {
	var check string
	// A connection's first statement runs its pragmas; journal_mode(WAL)
	// on a file that another process is creating or switching can be
	// refused busy at once, without the busy timeout: that is not damage,
	// so it is tried again within the busy timeout.
	for deadline := time.Now().Add(s.openBusy); ; {
		err := s.db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&check)
		if err == nil {
			break
		}
		if !isBusy(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("damaged or not a database: %w", classify(err))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if check != "ok" {
		return fmt.Errorf("damaged: %w", kps.Unavailable(errors.New(check)))
	}
	err := s.write(ctx, func(tx *wtx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this program's %d", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			// mutate:equivalent negate-if,negate-cmp with the one migration there is, returning after it skips only the loading of a new database's definitions, which are none
			if _, err := tx.Tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return err
			}
		}
		return s.loadDefs(ctx, tx, true)
	})
	return err
}

func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, kps.ErrNotFound) || errors.Is(err, kps.ErrExists) || errors.Is(err, kps.ErrConflict) ||
		errors.Is(err, kps.ErrInvalid) || errors.Is(err, kps.ErrUnavailable) {
		return err
	}
	return kps.Unavailable(err)
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (5) or SQLITE_LOCKED (6).
func isBusy(err error) bool {
	var se interface{ Code() int }
	if errors.As(err, &se) {
		return se.Code()&0xff == 5 || se.Code()&0xff == 6
	}
	return false
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error {
	s.stmts.close()
	return s.db.Close()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// loadDefs reads the definitions if their generation changed (or always).
func (s *Store) loadDefs(ctx context.Context, q querier, always bool) error {
	var gen int64
	if err := q.QueryRowContext(ctx, "SELECT value FROM kps_meta WHERE name = 'defs_gen'").Scan(&gen); err != nil {
		return err
	}
	if !always && gen == s.defs.Gen() {
		return nil // mutate:equivalent delete-stmt a shortcut: reading them again finds the same definitions
	}
	rows, err := q.QueryContext(ctx, "SELECT def FROM kps_tables")
	if err != nil {
		return err
	}
	defer rows.Close()
	tables := map[string]*kps.Table{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return err
		}
		t, err := kps.UnmarshalTable(b)
		if err != nil {
			return err
		}
		tables[t.Alias] = t
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.defs.Replace(gen, tables)
	return nil
}

// write runs fn in a write transaction (BEGIN IMMEDIATE) and commits.
func (s *Store) write(ctx context.Context, fn func(tx *wtx) error) error {
	w := &pendingWrite{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.qmu.Lock()
	s.queue = append(s.queue, w)
	if s.leading {
		s.qmu.Unlock()
		return <-w.done
	}
	s.leading = true
	s.qmu.Unlock()
	// This caller leads: it commits batches until no write is waiting.
	// Before taking each batch it yields, so that the writers woken by the
	// last commit, and requests waiting for a CPU, reach the queue first:
	// with one CPU (GOMAXPROCS=1) a leader going straight on committed
	// batches of 1.9 writes on average under 64 concurrent token grants,
	// 27 with the yield, and a grant's CPU fell by a third (fewer fsyncs,
	// WAL frames and checkpoints per write).
	for {
		runtime.Gosched()
		s.qmu.Lock()
		n := min(len(s.queue), maxBatch)
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		if n == 0 {
			s.leading = false
			s.queue = nil
			s.qmu.Unlock()
			break
		}
		s.qmu.Unlock()
		s.commit(batch)
	}
	return <-w.done
}

// pendingWrite is one write waiting for its batch's commit.
type pendingWrite struct {
	ctx  context.Context
	fn   func(tx *wtx) error
	done chan error
}

// maxBatch bounds the writes committed together.
const maxBatch = 256

// commit runs a batch of writes in one transaction, each inside a savepoint
// of its own: a write that fails is rolled back alone and gets its error;
// the others are committed together (one fsync for all) and get nil, or the
// commit's error. Concurrent writers thus share the cost of a durable
// commit (group commit), and each single write stays atomic and durable.
func (s *Store) commit(batch []*pendingWrite) {
	results := make([]error, len(batch))
	live := 0
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			results[i] = kps.Unavailable(err)
			continue
		}
		live++
	}
	if live == 0 {
		deliver(batch, results)
		return
	}
	sqlTx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		for i := range batch {
			if results[i] == nil {
				results[i] = classify(err)
			}
		}
		deliver(batch, results)
		return
	}
	tx := &wtx{Tx: sqlTx, s: s}
	ok := 0
	for i, w := range batch {
		if results[i] != nil {
			continue
		}
		if _, err := tx.ExecContext(context.Background(), "SAVEPOINT w"); err != nil {
			results[i] = classify(err)
			continue
		}
		if err := w.fn(tx); err != nil {
			results[i] = classify(err)
			if _, rerr := tx.ExecContext(context.Background(), "ROLLBACK TO w"); rerr != nil {
				// The transaction cannot go on: nothing of it is committed.
				tx.Rollback()
				for j := range batch {
					if results[j] == nil {
						results[j] = classify(rerr)
					}
				}
				deliver(batch, results)
				return
			}
		}
		if _, err := tx.ExecContext(context.Background(), "RELEASE w"); err != nil && results[i] == nil {
			results[i] = classify(err)
		}
		if results[i] == nil {
			ok++
		}
	}
	if ok == 0 {
		tx.Rollback()
		deliver(batch, results)
		return
	}
	s.commits.Add(1)
	if err := tx.Commit(); err != nil {
		for i := range batch {
			if results[i] == nil {
				results[i] = classify(err)
			}
		}
	}
	deliver(batch, results)
}

func deliver(batch []*pendingWrite, results []error) {
	for i, w := range batch {
		w.done <- results[i]
	}
}

// writeTable is write with the table's current definition.
func (s *Store) writeTable(ctx context.Context, op, alias string, fn func(tx *wtx, t *kps.Table) error) error {
	return s.write(ctx, func(tx *wtx) error {
		// Once per transaction: it holds the write lock, so no other
		// process changes the definitions before it ends (after a Define
		// in the same transaction the next write reads them again).
		if !tx.defsRead {
			if err := s.loadDefs(ctx, tx, false); err != nil {
				return err
			}
			tx.defsRead = true
		}
		t, ok := s.defs.Lookup(alias)
		if !ok {
			return kps.NoTable(op, alias)
		}
		return fn(tx, t)
	})
}

// table returns the definition for a read, reloading once if unknown.
func (s *Store) table(ctx context.Context, op, alias string) (*kps.Table, error) {
	if t, ok := s.defs.Lookup(alias); ok {
		return t, nil
	}
	if err := s.loadDefs(ctx, s.db, false); err != nil {
		return nil, &kps.Error{Op: op, Table: alias, Err: classify(err)}
	}
	if t, ok := s.defs.Lookup(alias); ok {
		return t, nil
	}
	return nil, kps.NoTable(op, alias)
}

// Define implements kps.Store.
func (s *Store) Define(ctx context.Context, tables ...kps.Table) error {
	if err := kps.CheckTables(tables); err != nil {
		return &kps.Error{Op: "define", Err: err}
	}
	err := s.write(ctx, func(tx *wtx) error {
		tx.defsRead = false
		changed := false
		for i := range tables {
			t := tables[i].Clone()
			var b []byte
			err := tx.QueryRowContext(ctx, "SELECT def FROM kps_tables WHERE alias = ?", t.Alias).Scan(&b)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if _, err := tx.ExecContext(ctx, "INSERT INTO kps_tables(alias, def) VALUES (?, ?)", t.Alias, kps.MarshalTable(&t)); err != nil {
					return err
				}
				changed = true
				continue
			case err != nil:
				return err
			}
			old, err := kps.UnmarshalTable(b)
			if err != nil {
				return err
			}
			if t.Equal(old) {
				continue
			}
			if err := t.Compatible(old); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE kps_tables SET def = ? WHERE alias = ?", kps.MarshalTable(&t), t.Alias); err != nil {
				return err
			}
			if t.Rebuild(old) {
				if err := rebuild(ctx, tx, &t); err != nil {
					return err
				}
			}
			changed = true
		}
		if changed {
			if _, err := tx.ExecContext(ctx, "UPDATE kps_meta SET value = value + 1 WHERE name = 'defs_gen'"); err != nil {
				return err
			}
		}
		return s.loadDefs(ctx, tx, false)
	})
	if err != nil {
		return &kps.Error{Op: "define", Err: err}
	}
	return nil
}

// rebuild re-encodes every row of t under its new definition.
func rebuild(ctx context.Context, tx *wtx, t *kps.Table) error {
	rows, err := tx.QueryContext(ctx, "SELECT data FROM kps_rows WHERE tbl = ?", t.Alias)
	if err != nil {
		return err
	}
	var datas [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return err
		}
		datas = append(datas, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM kps_index WHERE tbl = ?", t.Alias); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE kps_rows SET sk = NULL WHERE tbl = ?", t.Alias); err != nil {
		return err
	}
	for _, b := range datas {
		vals, err := t.Decode(b)
		if err != nil {
			return err
		}
		e, err := t.Encode(vals)
		if err != nil {
			return err
		}
		if e.HasSecondary {
			var other string
			err := tx.QueryRowContext(ctx, "SELECT pk FROM kps_rows WHERE tbl = ? AND sk = ?", t.Alias, e.Secondary).Scan(&other)
			if err == nil {
				return fmt.Errorf("%w: table %q: rows %q and %q have the same secondary key %q", kps.ErrExists, t.Alias, other, e.Key, e.Secondary)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE kps_rows SET sk = ?, data = ? WHERE tbl = ? AND pk = ?", secondary(e), e.Data, t.Alias, e.Key); err != nil {
			return err
		}
		if err := insertIndex(ctx, tx, t.Alias, e); err != nil {
			return err
		}
	}
	return nil
}

func secondary(e kps.Encoded) any {
	if e.HasSecondary {
		return e.Secondary
	}
	return nil
}

func insertIndex(ctx context.Context, tx *wtx, alias string, e kps.Encoded) error {
	for _, ix := range e.Index {
		if _, err := tx.ExecContext(ctx, "INSERT INTO kps_index(tbl, prop, val, pk) VALUES (?, ?, ?, ?)", alias, ix.Property, ix.Value, e.Key); err != nil {
			return err
		}
	}
	return nil
}

// deleteIndex deletes the index entries of the row stored under key with
// data, each by its whole primary key (what the row's encoding under the
// table's definition gives: rebuild keeps the entries equal to it). A row
// that does not encode (which rebuild does not leave) has its entries found
// by a scan of the table's entries instead.
func deleteIndex(ctx context.Context, tx *wtx, t *kps.Table, alias, key string, data []byte) error {
	vals, err := t.Decode(data)
	var e kps.Encoded
	if err == nil {
		e, err = t.Encode(vals)
	}
	if err != nil || e.Key != key {
		_, err := tx.ExecContext(ctx, "DELETE FROM kps_index WHERE tbl = ? AND pk = ?", alias, key)
		return err
	}
	for _, ix := range e.Index {
		if _, err := tx.ExecContext(ctx, "DELETE FROM kps_index WHERE tbl = ? AND prop = ? AND val = ? AND pk = ?", alias, ix.Property, ix.Value, key); err != nil {
			return err
		}
	}
	return nil
}

// Tables implements kps.Store.
func (s *Store) Tables(ctx context.Context) ([]kps.Table, error) {
	if err := s.loadDefs(ctx, s.db, false); err != nil {
		return nil, &kps.Error{Op: "tables", Err: classify(err)}
	}
	return s.defs.All(), nil
}

func (s *Store) getBy(ctx context.Context, op, alias, column string, key any, pick func(*kps.Table) string) (kps.Row, error) {
	t, err := s.table(ctx, op, alias)
	if err != nil {
		return kps.Row{}, err
	}
	prop := pick(t)
	if prop == "" {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Err: kps.Invalid("the table has no secondary key")}
	}
	k, err := t.KeyString(prop, key)
	if err != nil {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Err: err}
	}
	var (
		version int64
		data    []byte
	)
	err = s.db.QueryRowContext(ctx, "SELECT version, data FROM kps_rows WHERE tbl = ? AND "+column+" = ?", alias, k).Scan(&version, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Key: k, Err: kps.ErrNotFound}
	}
	if err != nil {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Key: k, Err: classify(err)}
	}
	vals, err := t.Decode(data)
	if err != nil {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Key: k, Err: kps.Unavailable(err)}
	}
	return kps.Row{Values: vals, Version: version}, nil
}

// Get implements kps.Store.
func (s *Store) Get(ctx context.Context, alias string, key any) (kps.Row, error) {
	return s.getBy(ctx, "get", alias, "pk", key, func(t *kps.Table) string { return t.PrimaryKey })
}

// GetBySecondary implements kps.Store.
func (s *Store) GetBySecondary(ctx context.Context, alias string, key any) (kps.Row, error) {
	return s.getBy(ctx, "get by secondary key", alias, "sk", key, func(t *kps.Table) string { return t.SecondaryKey })
}

// page runs a paged query whose last two parameters are the cursor and the limit.
func (s *Store) page(ctx context.Context, op string, t *kps.Table, p kps.Page, query string, args ...any) (kps.Result, error) {
	after, err := kps.DecodeCursor(p.Cursor)
	if err != nil {
		return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: err}
	}
	limit := p.PageLimit()
	// mutate:equivalent const one row more than the page tells whether there is a next; more rows change nothing
	rows, err := s.db.QueryContext(ctx, query, append(args, after, limit+1)...)
	if err != nil {
		return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: classify(err)}
	}
	defer rows.Close()
	var res kps.Result
	var last string
	for rows.Next() {
		if len(res.Rows) == limit {
			res.Next = kps.EncodeCursor(last)
			break
		}
		var data []byte
		var r kps.Row
		if err := rows.Scan(&last, &r.Version, &data); err != nil {
			return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: classify(err)}
		}
		if r.Values, err = t.Decode(data); err != nil {
			return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Key: last, Err: kps.Unavailable(err)}
		}
		res.Rows = append(res.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: classify(err)}
	}
	return res, nil
}

// Query implements kps.Store.
func (s *Store) Query(ctx context.Context, alias, property string, value any, p kps.Page) (kps.Result, error) {
	t, err := s.table(ctx, "query", alias)
	if err != nil {
		return kps.Result{}, err
	}
	if !t.Indexed(property) {
		return kps.Result{}, &kps.Error{Op: "query", Table: alias, Err: kps.Invalid("property %q is not indexed (indexes: %v)", property, t.Indexes)}
	}
	v, err := t.KeyString(property, value)
	if err != nil {
		return kps.Result{}, &kps.Error{Op: "query", Table: alias, Err: err}
	}
	return s.page(ctx, "query", t, p,
		`SELECT r.pk, r.version, r.data FROM kps_index i JOIN kps_rows r ON r.tbl = i.tbl AND r.pk = i.pk
		WHERE i.tbl = ? AND i.prop = ? AND i.val = ? AND i.pk > ? ORDER BY i.pk LIMIT ?`, alias, property, v)
}

// List implements kps.Store.
func (s *Store) List(ctx context.Context, alias string, p kps.Page) (kps.Result, error) {
	t, err := s.table(ctx, "list", alias)
	if err != nil {
		return kps.Result{}, err
	}
	return s.page(ctx, "list", t, p, "SELECT pk, version, data FROM kps_rows WHERE tbl = ? AND pk > ? ORDER BY pk LIMIT ?", alias)
}

// Count implements kps.Store.
func (s *Store) Count(ctx context.Context, alias string) (int64, error) {
	if _, err := s.table(ctx, "count", alias); err != nil {
		return 0, err
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM kps_rows WHERE tbl = ?", alias).Scan(&n); err != nil {
		return 0, &kps.Error{Op: "count", Table: alias, Err: classify(err)}
	}
	return n, nil
}

// checkSecondary fails with ErrExists if another row holds e's secondary key.
func checkSecondary(ctx context.Context, tx *wtx, t *kps.Table, e kps.Encoded) error {
	if !e.HasSecondary {
		return nil
	}
	var other string
	err := tx.QueryRowContext(ctx, "SELECT pk FROM kps_rows WHERE tbl = ? AND sk = ? AND pk <> ?", t.Alias, e.Secondary, e.Key).Scan(&other)
	if err == nil {
		return fmt.Errorf("%w: secondary key %q %q is the row %q's", kps.ErrExists, t.SecondaryKey, e.Secondary, other)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}

// Insert implements kps.Store.
func (s *Store) Insert(ctx context.Context, alias string, values map[string]any) (kps.Row, error) {
	var row kps.Row
	var key string
	err := s.writeTable(ctx, "insert", alias, func(tx *wtx, t *kps.Table) error {
		var err error
		row, key, err = insertTx(ctx, tx, t, alias, values)
		return err
	})
	if err != nil {
		return kps.Row{}, opError("insert", alias, key, err)
	}
	return row, nil
}

// InsertMany inserts rows into one table in one transaction (kps.Bulk): all
// of them, or none when one is refused (the error names it).
func (s *Store) InsertMany(ctx context.Context, alias string, rows []map[string]any) error {
	var key string
	err := s.writeTable(ctx, "insert", alias, func(tx *wtx, t *kps.Table) error {
		for _, values := range rows {
			var err error
			if _, key, err = insertTx(ctx, tx, t, alias, values); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return opError("insert", alias, key, err)
	}
	return nil
}

var _ kps.Bulk = (*Store)(nil)

// insertTx inserts one row in tx and returns it as stored with its key.
func insertTx(ctx context.Context, tx *wtx, t *kps.Table, alias string, values map[string]any) (kps.Row, string, error) {
	e, err := t.Encode(t.FillGenerated(values))
	if err != nil {
		return kps.Row{}, "", err
	}
	var one int
	err = tx.QueryRowContext(ctx, "SELECT 1 FROM kps_rows WHERE tbl = ? AND pk = ?", alias, e.Key).Scan(&one)
	if err == nil {
		return kps.Row{}, e.Key, kps.ErrExists
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return kps.Row{}, e.Key, err
	}
	if err := checkSecondary(ctx, tx, t, e); err != nil {
		return kps.Row{}, e.Key, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kps_rows(tbl, pk, sk, version, data) VALUES (?, ?, ?, 1, ?)", alias, e.Key, secondary(e), e.Data); err != nil {
		return kps.Row{}, e.Key, err
	}
	if err := insertIndex(ctx, tx, alias, e); err != nil {
		return kps.Row{}, e.Key, err
	}
	return kps.Row{Values: e.Values, Version: 1}, e.Key, nil
}

func opError(op, alias, key string, err error) error {
	var ke *kps.Error
	if errors.As(err, &ke) {
		return err
	}
	return &kps.Error{Op: op, Table: alias, Key: key, Err: err}
}

// stored reads a row's version and data in a write transaction.
func stored(ctx context.Context, tx *wtx, alias, key string) (int64, []byte, error) {
	var version int64
	var data []byte
	err := tx.QueryRowContext(ctx, "SELECT version, data FROM kps_rows WHERE tbl = ? AND pk = ?", alias, key).Scan(&version, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, kps.ErrNotFound // mutate:equivalent const callers do not read the version with an error
	}
	return version, data, err
}

// Update implements kps.Store.
func (s *Store) Update(ctx context.Context, alias string, row kps.Row) (kps.Row, error) {
	var out kps.Row
	var key string
	err := s.writeTable(ctx, "update", alias, func(tx *wtx, t *kps.Table) error {
		k, err := t.KeyString(t.PrimaryKey, row.Values[t.PrimaryKey])
		if err != nil {
			return err
		}
		key = k
		version, data, err := stored(ctx, tx, alias, k)
		if err != nil {
			return err
		}
		if version != row.Version {
			return fmt.Errorf("%w: stored version %d, given %d", kps.ErrConflict, version, row.Version)
		}
		old, err := t.Decode(data)
		if err != nil {
			return kps.Unavailable(err)
		}
		e, err := t.Encode(t.KeepGenerated(row.Values, old))
		if err != nil {
			return err
		}
		if err := checkSecondary(ctx, tx, t, e); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE kps_rows SET sk = ?, version = ?, data = ? WHERE tbl = ? AND pk = ?", secondary(e), version+1, e.Data, alias, k); err != nil {
			return err
		}
		if err := deleteIndex(ctx, tx, t, alias, k, data); err != nil {
			return err
		}
		if err := insertIndex(ctx, tx, alias, e); err != nil {
			return err
		}
		out = kps.Row{Values: e.Values, Version: version + 1}
		return nil
	})
	if err != nil {
		return kps.Row{}, opError("update", alias, key, err)
	}
	return out, nil
}

// Delete implements kps.Store.
func (s *Store) Delete(ctx context.Context, alias string, key any, version int64) error {
	var k string
	err := s.writeTable(ctx, "delete", alias, func(tx *wtx, t *kps.Table) error {
		var err error
		if k, err = t.KeyString(t.PrimaryKey, key); err != nil {
			return err
		}
		v, data, err := stored(ctx, tx, alias, k)
		if err != nil {
			return err
		}
		if version != kps.AnyVersion && v != version {
			return fmt.Errorf("%w: stored version %d, given %d", kps.ErrConflict, v, version)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM kps_rows WHERE tbl = ? AND pk = ?", alias, k); err != nil {
			return err
		}
		return deleteIndex(ctx, tx, t, alias, k, data)
	})
	if err != nil {
		return opError("delete", alias, k, err)
	}
	return nil
}

// Clear implements kps.Store.
func (s *Store) Clear(ctx context.Context, alias string) error {
	err := s.writeTable(ctx, "clear", alias, func(tx *wtx, t *kps.Table) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM kps_rows WHERE tbl = ?", alias); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM kps_index WHERE tbl = ?", alias)
		return err
	})
	if err != nil {
		return opError("clear", alias, "", err)
	}
	return nil
}
