// Package postgres is the KPS backend on PostgreSQL ("postgres"): one
// database (and schema) shared by every instance of a group, on any number of
// hosts. It uses pgx v5 and its pool.
//
// Gatehouse creates and migrates its schema itself: kps_schema_version lists
// the numbered migrations applied; at Open each missing one is applied in one
// transaction that first takes a transaction-scoped advisory lock, so that two
// instances starting at once apply it once, and a restart applies nothing.
//
// Storage is the SQLite backend's: kps_rows (alias, primary key text,
// secondary key text, version, JSON data), kps_index (alias, property, value
// text, primary key), kps_tables (definitions) and kps_meta (the definitions'
// generation). Keys are compared bytewise (COLLATE "C"), as in SQLite.
//
// Every write is one transaction, committed before the call returns. Writes
// hold a share lock on the definitions' generation row and Define an exclusive
// one, so a row is never indexed under a definition being replaced.
//
// Availability: a connection attempt is bounded by ConnectTimeout, each
// operation by the caller's deadline or StatementTimeout (also set as the
// server's statement_timeout). Any failure that is not a decision of the
// store (not found, exists, conflict, invalid) is ErrUnavailable. The pool
// drops broken connections and dials again on the next call, so the store
// recovers by itself when the server returns.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// Name is the backend's registered name.
const Name = "postgres"

// Defaults of kps.PostgresConfig.
const (
	DefaultPort             = 5432
	DefaultSchema           = "public"
	DefaultConnectTimeout   = 2 * time.Second
	DefaultStatementTimeout = 5 * time.Second
	DefaultMaxConns         = 8
)

func init() {
	kps.Register(Name, func(ctx context.Context, cfg kps.Config) (kps.Store, error) {
		return Open(ctx, cfg.Postgres, cfg.Logger)
	})
}

// Store is the PostgreSQL backend.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	defs    kps.Defs
	log     *slog.Logger
}

var _ kps.Store = (*Store)(nil)

// migrations: migration i+1 is migrations[i]. Append only.
var migrations = []string{
	`CREATE TABLE kps_meta(name text PRIMARY KEY, value bigint NOT NULL);
	INSERT INTO kps_meta(name, value) VALUES ('defs_gen', 0);
	CREATE TABLE kps_tables(alias text PRIMARY KEY, def text NOT NULL);
	CREATE TABLE kps_rows(
		tbl text COLLATE "C" NOT NULL, pk text COLLATE "C" NOT NULL, sk text COLLATE "C",
		version bigint NOT NULL, data text NOT NULL,
		PRIMARY KEY(tbl, pk));
	CREATE UNIQUE INDEX kps_rows_sk ON kps_rows(tbl, sk) WHERE sk IS NOT NULL;
	CREATE TABLE kps_index(
		tbl text COLLATE "C" NOT NULL, prop text COLLATE "C" NOT NULL, val text COLLATE "C" NOT NULL,
		pk text COLLATE "C" NOT NULL,
		PRIMARY KEY(tbl, prop, val, pk));
	CREATE INDEX kps_index_pk ON kps_index(tbl, pk);`,
	// 2: secrets every instance of the group shares (kps.SharedSecrets).
	`CREATE TABLE kps_secrets(name text PRIMARY KEY, value bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`,
}

// quote makes a libpq key=value connection string value.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// poolConfig turns the plain configuration into pgxpool's (the password is
// set on the parsed configuration, never written into a string).
func poolConfig(c kps.PostgresConfig) (*pgxpool.Config, error) {
	if c.Host == "" || c.Database == "" || c.User == "" {
		return nil, kps.Invalid("postgres: host, database and user are required")
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.SSLMode == "" {
		c.SSLMode = "prefer"
		if strings.HasPrefix(c.Host, "/") {
			c.SSLMode = "disable"
		}
	}
	switch c.SSLMode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return nil, kps.Invalid("postgres: sslMode %q: want disable, allow, prefer, require, verify-ca or verify-full", c.SSLMode)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = DefaultStatementTimeout
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	parts := []string{
		"host=" + quote(c.Host), "port=" + strconv.Itoa(c.Port), "dbname=" + quote(c.Database),
		"user=" + quote(c.User), "sslmode=" + c.SSLMode,
		"application_name=gatehouse-kps",
	}
	if c.SSLRootCert != "" {
		parts = append(parts, "sslrootcert="+quote(c.SSLRootCert))
	}
	pc, err := pgxpool.ParseConfig(strings.Join(parts, " "))
	if err != nil {
		return nil, kps.Invalid("postgres: %v", err)
	}
	pc.ConnConfig.Password = c.Password.RevealString()
	pc.ConnConfig.ConnectTimeout = c.ConnectTimeout
	pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{c.Schema}.Sanitize()
	pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(c.StatementTimeout.Milliseconds(), 10)
	pc.MaxConns = int32(c.MaxConns)
	pc.HealthCheckPeriod = 5 * time.Second
	return pc, nil
}

// Open connects, applies missing migrations and loads the definitions. A
// server that cannot be reached fails with ErrUnavailable within the connect
// timeout.
func Open(ctx context.Context, c kps.PostgresConfig, log *slog.Logger) (*Store, error) {
	pc, err := poolConfig(c)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, kps.Invalid("postgres: %v", err)
	}
	s := &Store{pool: pool, timeout: pc.ConnConfig.ConnectTimeout, log: log.With("component", "kps", "backend", Name)}
	if st, _ := strconv.Atoi(pc.ConnConfig.RuntimeParams["statement_timeout"]); st > 0 {
		s.timeout = time.Duration(st) * time.Millisecond
	}
	schema := c.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if err := s.migrate(ctx, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s:%d/%s: %w", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database, err)
	}
	return s, nil
}

// lockKey is the advisory lock of a schema's migrations.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("gatehouse-kps-migrate\x00" + schema))
	return int64(h.Sum64())
}

func (s *Store) migrate(ctx context.Context, schema string) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS kps_schema_version(
			version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM kps_schema_version").Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("%w: schema version %d is newer than this program's %d", kps.ErrInvalid, v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO kps_schema_version(version) VALUES ($1)", v+1); err != nil {
				return err
			}
			s.log.Info("kps schema migrated", "schema", schema, "version", v+1)
		}
		return s.loadDefs(ctx, tx, true)
	}))
}

// opContext bounds an operation whose context has no deadline.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx) // mutate:equivalent delete-stmt the server's statement_timeout bounds each statement by the same duration
	}
	return context.WithTimeout(ctx, s.timeout)
}

// classify maps an error to the store's sentinels: a unique violation is
// ErrExists; the store's own decisions stay; everything else (connection
// refused or lost, timeouts, server errors) is ErrUnavailable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{kps.ErrNotFound, kps.ErrExists, kps.ErrConflict, kps.ErrInvalid, kps.ErrUnavailable} {
		if errors.Is(err, s) {
			return err
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %s", kps.ErrExists, pe.ConstraintName)
	}
	return kps.Unavailable(err)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) loadDefs(ctx context.Context, q querier, always bool) error {
	var gen int64
	lock := ""
	if _, ok := q.(pgx.Tx); ok {
		lock = " FOR SHARE"
	}
	if err := q.QueryRow(ctx, "SELECT value FROM kps_meta WHERE name = 'defs_gen'"+lock).Scan(&gen); err != nil {
		return err
	}
	if !always && gen == s.defs.Gen() {
		return nil
	}
	rows, err := q.Query(ctx, "SELECT def FROM kps_tables")
	if err != nil {
		return err
	}
	tables := map[string]*kps.Table{}
	var b []byte
	_, err = pgx.ForEachRow(rows, []any{&b}, func() error {
		t, err := kps.UnmarshalTable(b)
		if err == nil {
			tables[t.Alias] = t
		}
		return err
	})
	if err != nil {
		return err
	}
	s.defs.Replace(gen, tables)
	return nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// write runs fn in a transaction and commits.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(ctx, tx) }))
}

// writeTable is write with the table's current definition, locked against
// a concurrent Define.
func (s *Store) writeTable(ctx context.Context, op, alias string, fn func(ctx context.Context, tx pgx.Tx, t *kps.Table) error) error {
	return s.write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := s.loadDefs(ctx, tx, false); err != nil {
			return err
		}
		t, ok := s.defs.Lookup(alias)
		if !ok {
			return kps.NoTable(op, alias)
		}
		return fn(ctx, tx, t)
	})
}

func (s *Store) table(ctx context.Context, op, alias string) (*kps.Table, error) {
	if t, ok := s.defs.Lookup(alias); ok {
		return t, nil
	}
	if err := s.loadDefs(ctx, s.pool, false); err != nil {
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
	err := s.write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// The exclusive lock on the generation waits for writes in flight
		// and holds new ones until this commits.
		var gen int64
		if err := tx.QueryRow(ctx, "SELECT value FROM kps_meta WHERE name = 'defs_gen' FOR UPDATE").Scan(&gen); err != nil {
			return err
		}
		changed := false
		for i := range tables {
			t := tables[i].Clone()
			var b []byte
			err := tx.QueryRow(ctx, "SELECT def FROM kps_tables WHERE alias = $1", t.Alias).Scan(&b)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				if _, err := tx.Exec(ctx, "INSERT INTO kps_tables(alias, def) VALUES ($1, $2)", t.Alias, string(kps.MarshalTable(&t))); err != nil {
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
			if _, err := tx.Exec(ctx, "UPDATE kps_tables SET def = $1 WHERE alias = $2", string(kps.MarshalTable(&t)), t.Alias); err != nil {
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
			if _, err := tx.Exec(ctx, "UPDATE kps_meta SET value = value + 1 WHERE name = 'defs_gen'"); err != nil {
				return err
			}
		}
		return s.loadDefs(ctx, tx, changed)
	})
	if err != nil {
		return &kps.Error{Op: "define", Err: err}
	}
	return nil
}

func rebuild(ctx context.Context, tx pgx.Tx, t *kps.Table) error {
	rows, err := tx.Query(ctx, "SELECT data FROM kps_rows WHERE tbl = $1", t.Alias)
	if err != nil {
		return err
	}
	datas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM kps_index WHERE tbl = $1", t.Alias); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "UPDATE kps_rows SET sk = NULL WHERE tbl = $1", t.Alias); err != nil {
		return err
	}
	for _, d := range datas {
		vals, err := t.Decode([]byte(d))
		if err != nil {
			return err
		}
		e, err := t.Encode(vals)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE kps_rows SET sk = $1, data = $2 WHERE tbl = $3 AND pk = $4", secondary(e), string(e.Data), t.Alias, e.Key); err != nil {
			return err
		}
		if err := insertIndex(ctx, tx, t.Alias, e); err != nil {
			return err
		}
	}
	return nil
}

func secondary(e kps.Encoded) *string {
	if e.HasSecondary {
		return &e.Secondary
	}
	return nil
}

func insertIndex(ctx context.Context, tx pgx.Tx, alias string, e kps.Encoded) error {
	if len(e.Index) == 0 {
		return nil
	}
	props := make([]string, len(e.Index))
	vals := make([]string, len(e.Index))
	for i, ix := range e.Index {
		props[i], vals[i] = ix.Property, ix.Value
	}
	_, err := tx.Exec(ctx, "INSERT INTO kps_index(tbl, prop, val, pk) SELECT $1, p, v, $4 FROM unnest($2::text[], $3::text[]) AS u(p, v)",
		alias, props, vals, e.Key)
	return err
}

// Tables implements kps.Store.
func (s *Store) Tables(ctx context.Context) ([]kps.Table, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if err := s.loadDefs(ctx, s.pool, false); err != nil {
		return nil, &kps.Error{Op: "tables", Err: classify(err)}
	}
	return s.defs.All(), nil
}

func (s *Store) getBy(ctx context.Context, op, alias, column string, key any, pick func(*kps.Table) string) (kps.Row, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
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
		data    string
	)
	err = s.pool.QueryRow(ctx, "SELECT version, data FROM kps_rows WHERE tbl = $1 AND "+column+" = $2", alias, k).Scan(&version, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Key: k, Err: kps.ErrNotFound}
	}
	if err != nil {
		return kps.Row{}, &kps.Error{Op: op, Table: alias, Key: k, Err: classify(err)}
	}
	vals, err := t.Decode([]byte(data))
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

func (s *Store) page(ctx context.Context, op string, t *kps.Table, p kps.Page, query string, args ...any) (kps.Result, error) {
	after, err := kps.DecodeCursor(p.Cursor)
	if err != nil {
		return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: err}
	}
	limit := p.PageLimit()
	rows, err := s.pool.Query(ctx, query, append(args, after, limit+1)...)
	if err != nil {
		return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: classify(err)}
	}
	defer rows.Close()
	var res kps.Result
	var last, data string
	for rows.Next() {
		if len(res.Rows) == limit {
			res.Next = kps.EncodeCursor(last)
			break
		}
		var r kps.Row
		if err := rows.Scan(&last, &r.Version, &data); err != nil {
			return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: classify(err)}
		}
		if r.Values, err = t.Decode([]byte(data)); err != nil {
			return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Key: last, Err: kps.Unavailable(err)}
		}
		res.Rows = append(res.Rows, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return kps.Result{}, &kps.Error{Op: op, Table: t.Alias, Err: classify(err)}
	}
	return res, nil
}

// Query implements kps.Store.
func (s *Store) Query(ctx context.Context, alias, property string, value any, p kps.Page) (kps.Result, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
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
		WHERE i.tbl = $1 AND i.prop = $2 AND i.val = $3 AND i.pk > $4 ORDER BY i.pk LIMIT $5`, alias, property, v)
}

// List implements kps.Store.
func (s *Store) List(ctx context.Context, alias string, p kps.Page) (kps.Result, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	t, err := s.table(ctx, "list", alias)
	if err != nil {
		return kps.Result{}, err
	}
	return s.page(ctx, "list", t, p, "SELECT pk, version, data FROM kps_rows WHERE tbl = $1 AND pk > $2 ORDER BY pk LIMIT $3", alias)
}

// Count implements kps.Store.
func (s *Store) Count(ctx context.Context, alias string) (int64, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.table(ctx, "count", alias); err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM kps_rows WHERE tbl = $1", alias).Scan(&n); err != nil {
		return 0, &kps.Error{Op: "count", Table: alias, Err: classify(err)}
	}
	return n, nil
}

var _ kps.SharedSecrets = (*Store)(nil)

// SharedSecret returns the secret stored under name, storing offer first
// when there is none (the first offer wins; concurrent callers all get it).
func (s *Store) SharedSecret(ctx context.Context, name string, offer []byte) ([]byte, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if len(offer) == 0 {
		return nil, kps.Invalid("shared secret %q: an empty offer", name)
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO kps_secrets(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, offer); err != nil {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	var v []byte
	if err := s.pool.QueryRow(ctx, "SELECT value FROM kps_secrets WHERE name = $1", name).Scan(&v); err != nil {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	return v, nil
}

// LookupSharedSecret implements kps.SharedSecrets.
func (s *Store) LookupSharedSecret(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM kps_secrets WHERE name = $1", name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: kps.ErrNotFound}
	}
	if err != nil {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	return v, nil
}

// ReplaceSharedSecret implements kps.SharedSecrets.
func (s *Store) ReplaceSharedSecret(ctx context.Context, name string, old, value []byte) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if len(value) == 0 {
		return kps.Invalid("shared secret %q: an empty value", name)
	}
	tag, err := s.pool.Exec(ctx, "UPDATE kps_secrets SET value = $3 WHERE name = $1 AND value = $2", name, old, value)
	if err != nil {
		return &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	if _, err := s.LookupSharedSecret(ctx, name); err != nil {
		return err
	}
	return &kps.Error{Op: "shared secret", Key: name, Err: kps.ErrConflict}
}

func opError(op, alias, key string, err error) error {
	var ke *kps.Error
	if errors.As(err, &ke) {
		return err
	}
	return &kps.Error{Op: op, Table: alias, Key: key, Err: err}
}

// Insert implements kps.Store.
func (s *Store) Insert(ctx context.Context, alias string, values map[string]any) (kps.Row, error) {
	var row kps.Row
	var key string
	err := s.writeTable(ctx, "insert", alias, func(ctx context.Context, tx pgx.Tx, t *kps.Table) error {
		e, err := t.Encode(t.FillGenerated(values))
		if err != nil {
			return err
		}
		key = e.Key
		if _, err := tx.Exec(ctx, "INSERT INTO kps_rows(tbl, pk, sk, version, data) VALUES ($1, $2, $3, 1, $4)", alias, e.Key, secondary(e), string(e.Data)); err != nil {
			return err
		}
		if err := insertIndex(ctx, tx, alias, e); err != nil {
			return err
		}
		row = kps.Row{Values: e.Values, Version: 1}
		return nil
	})
	if err != nil {
		return kps.Row{}, opError("insert", alias, key, err)
	}
	return row, nil
}

// stored reads and locks a row in a write transaction.
func stored(ctx context.Context, tx pgx.Tx, alias, key string) (int64, string, error) {
	var version int64
	var data string
	err := tx.QueryRow(ctx, "SELECT version, data FROM kps_rows WHERE tbl = $1 AND pk = $2 FOR UPDATE", alias, key).Scan(&version, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", kps.ErrNotFound
	}
	return version, data, err
}

// Update implements kps.Store.
func (s *Store) Update(ctx context.Context, alias string, row kps.Row) (kps.Row, error) {
	var out kps.Row
	var key string
	err := s.writeTable(ctx, "update", alias, func(ctx context.Context, tx pgx.Tx, t *kps.Table) error {
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
		old, err := t.Decode([]byte(data))
		if err != nil {
			return kps.Unavailable(err)
		}
		e, err := t.Encode(t.KeepGenerated(row.Values, old))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE kps_rows SET sk = $1, version = $2, data = $3 WHERE tbl = $4 AND pk = $5", secondary(e), version+1, string(e.Data), alias, k); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM kps_index WHERE tbl = $1 AND pk = $2", alias, k); err != nil {
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
	err := s.writeTable(ctx, "delete", alias, func(ctx context.Context, tx pgx.Tx, t *kps.Table) error {
		var err error
		if k, err = t.KeyString(t.PrimaryKey, key); err != nil {
			return err
		}
		v, _, err := stored(ctx, tx, alias, k)
		if err != nil {
			return err
		}
		if version != kps.AnyVersion && v != version {
			return fmt.Errorf("%w: stored version %d, given %d", kps.ErrConflict, v, version)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM kps_rows WHERE tbl = $1 AND pk = $2", alias, k); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM kps_index WHERE tbl = $1 AND pk = $2", alias, k)
		return err
	})
	if err != nil {
		return opError("delete", alias, k, err)
	}
	return nil
}

// Clear implements kps.Store.
func (s *Store) Clear(ctx context.Context, alias string) error {
	err := s.writeTable(ctx, "clear", alias, func(ctx context.Context, tx pgx.Tx, t *kps.Table) error {
		if _, err := tx.Exec(ctx, "DELETE FROM kps_rows WHERE tbl = $1", alias); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM kps_index WHERE tbl = $1", alias)
		return err
	})
	if err != nil {
		return opError("clear", alias, "", err)
	}
	return nil
}
