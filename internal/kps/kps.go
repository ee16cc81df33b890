// Package kps is the Key Property Store: the runtime data of a group (API
// keys, OAuth tokens, client applications, custom collections) kept in typed
// tables, shared by every instance of the group.
//
// The model is the vendor's: collections hold tables; a table, known by its
// alias, declares typed properties (string, boolean, integer, long, double,
// list of strings, map of string to string), one primary key, an optional
// unique secondary key, indexed properties that can be queried by equality,
// and generated properties that are filled with a UUID on insert when absent.
//
// A Store is one backend's implementation of the operations. Backends register
// themselves by name (Register) and are opened from plain data (Open(ctx,
// Config)); every backend passes the conformance suite of package kpstest.
// The embedded SQLite backend (package kps/sqlite, name "sqlite") is the
// default; package kps/postgres ("postgres") shares one store between hosts.
//
// Errors: every error a Store returns wraps exactly one of the sentinels
// below, so callers decide with errors.Is. ErrUnavailable means the backend
// could not answer (down, timed out, busy): a caller on the request path fails
// closed with 503; it never means "not found". ErrNotFound is returned only
// when the backend answered and the row is not there.
//
// Cache is a local read cache for the request path in front of a Store.
package kps

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The sentinel errors. A Store's errors wrap one of them (and the cause).
var (
	// ErrNotFound: the backend answered and there is no such row (or table).
	ErrNotFound = errors.New("kps: not found")
	// ErrExists: an insert whose primary key, or a write whose secondary
	// key, is already used by another row.
	ErrExists = errors.New("kps: key exists")
	// ErrConflict: a versioned write carried a version that is not the
	// stored one: another writer changed the row since it was read.
	ErrConflict = errors.New("kps: version conflict")
	// ErrUnavailable: the backend did not answer (down, unreachable, timed
	// out, busy, failing). Fail closed; retry later.
	ErrUnavailable = errors.New("kps: store unavailable")
	// ErrInvalid: the request itself is wrong (bad definition, a value of
	// the wrong type, an unknown property, a malformed cursor).
	ErrInvalid = errors.New("kps: invalid")
)

// AnyVersion, given to Delete, deletes whatever version is stored.
const AnyVersion int64 = 0

// DefaultLimit is the page size when Page.Limit is 0 or less; MaxLimit caps it.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Row is one row of a table: its values, by property name, and its version.
//
// Values hold the declared Go types: string, bool, int32 (integer), int64
// (long), float64 (double), []string (list) and map[string]string (map). An
// absent property is simply not in the map (a nil value on write means absent
// too). Writes also accept int for integer and long properties. Reads always
// return the declared types; a list or map is never nil when present.
//
// Version starts at 1 on insert and grows by one on every update. Update and
// Delete compare it with the stored version (optimistic concurrency).
type Row struct {
	Values  map[string]any
	Version int64
}

// Page asks for one page of a listing or a query. Cursor is "" for the first
// page and the Next of the previous page afterwards; it is opaque.
type Page struct {
	Limit  int
	Cursor string
}

// Result is one page of rows, in the order of their primary keys' canonical
// text (bytewise; see Table.KeyString). Next is "" on the last page.
type Result struct {
	Rows []Row
	Next string
}

// Store is a KPS backend. Every method is safe for concurrent use, and each
// single operation is atomic and durable: when it returns nil, the change is
// committed (on disk for the embedded backend, committed by the server for
// PostgreSQL). table is a table's alias.
type Store interface {
	// Define creates or migrates the storage of the given tables. A table
	// already defined with the same definition is left alone; compatible
	// changes (new properties, indexes, secondary key, generated flags) are
	// applied to the stored rows; changing a property's type or the primary
	// key is refused with ErrInvalid.
	Define(ctx context.Context, tables ...Table) error
	// Tables returns every defined table, sorted by alias.
	Tables(ctx context.Context) ([]Table, error)

	// Get returns the row whose primary key is key.
	Get(ctx context.Context, table string, key any) (Row, error)
	// GetBySecondary returns the row whose secondary key is key.
	GetBySecondary(ctx context.Context, table string, key any) (Row, error)
	// Query returns the rows whose indexed property equals value.
	Query(ctx context.Context, table, property string, value any, page Page) (Result, error)
	// List returns the table's rows, a page at a time.
	List(ctx context.Context, table string, page Page) (Result, error)
	// Count returns the number of rows of the table.
	Count(ctx context.Context, table string) (int64, error)

	// Insert adds a row (its Version is ignored) and returns it as stored:
	// generated properties filled, Version 1. ErrExists when the primary or
	// secondary key is taken.
	Insert(ctx context.Context, table string, values map[string]any) (Row, error)
	// Update replaces the row with row.Values' primary key by row.Values if
	// the stored version is row.Version (ErrConflict otherwise, ErrNotFound
	// if there is no such row) and returns it with its new version.
	// Generated properties absent from row.Values keep their stored value.
	Update(ctx context.Context, table string, row Row) (Row, error)
	// Delete removes the row with that primary key if its version is
	// version, or whatever its version when version is AnyVersion.
	Delete(ctx context.Context, table string, key any, version int64) error
	// Clear removes every row of the table (the definition stays).
	Clear(ctx context.Context, table string) error

	// Close releases the store. Operations after Close fail.
	Close() error
}

// Bulk is implemented by stores that can insert many rows of a table in
// one transaction (a bulk load: a restore, a migration, a benchmark's
// million keys). InsertMany inserts all of rows or none; the error of a
// refused row names it, as Insert's would.
type Bulk interface {
	InsertMany(ctx context.Context, table string, rows []map[string]any) error
}

// Exporter is implemented by stores that are not a file a backup can copy
// (the PostgreSQL backend): Export reads the whole store as of one instant
// (every write committed before it, none after, while others go on
// writing) and gives it to sink: each table's definition followed by its
// rows in key order, then the shared secrets as stored (sealed when the
// group has a passphrase). It returns when its snapshot was taken.
type Exporter interface {
	Export(ctx context.Context, sink ExportSink) (time.Time, error)
}

// ExportSink receives an export (kpsbackup.Writer is one). Row belongs to
// the table given last.
type ExportSink interface {
	Table(t Table) error
	Row(r Row) error
	Secret(name string, value []byte) error
}

// SharedSecrets is implemented by stores that several hosts share (the
// PostgreSQL backend): they keep the group's secrets that every instance
// must hold alike, such as the API-key hashing key, so that no file has to
// be copied between hosts. SharedSecret returns the secret stored under
// name, storing offer first when there is none; the first offer wins.
// The secrets are not rows of any table: the KPS API and kpsadmin do not
// show them.
type SharedSecrets interface {
	SharedSecret(ctx context.Context, name string, offer []byte) ([]byte, error)
	// LookupSharedSecret returns the secret stored under name, or an error
	// wrapping ErrNotFound (nothing is stored).
	LookupSharedSecret(ctx context.Context, name string) ([]byte, error)
	// ReplaceSharedSecret stores value under name if what is stored is old
	// (an error wrapping ErrConflict otherwise, ErrNotFound when nothing is):
	// a passphrase change seals it anew (kps/fieldcrypt).
	ReplaceSharedSecret(ctx context.Context, name string, old, value []byte) error
}

// Error is the error of one operation: what was done, on which table and key,
// and why. Err wraps one of the sentinels.
type Error struct {
	Op    string // "get", "insert", …
	Table string // alias, when there is one
	Key   string // canonical key, when there is one
	Err   error
}

func (e *Error) Error() string {
	s := "kps " + e.Op
	if e.Table != "" {
		s += " " + e.Table
	}
	if e.Key != "" {
		s += fmt.Sprintf(" %q", e.Key)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Unavailable wraps cause as ErrUnavailable (cause stays reachable with
// errors.Is/As). Backends use it for every failure that is not a decision.
func Unavailable(cause error) error {
	if cause == nil {
		return ErrUnavailable
	}
	if errors.Is(cause, ErrUnavailable) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, cause)
}

// Invalid formats an ErrInvalid.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
