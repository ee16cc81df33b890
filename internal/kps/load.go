package kps

import (
	"context"
	"fmt"
)

// TableRows are rows to load into one table (by alias).
type TableRows struct {
	Table string
	Rows  []Row
}

// Loader is implemented by backends that can fill tables in one
// transaction (kpsadmin restore). Load writes every row of every table, or
// nothing: each table must be defined (ErrNotFound otherwise) and, unless
// replace, hold no row (ErrExists otherwise); with replace its rows are
// removed first. Rows keep their Version (a version below 1 is stored as 1)
// and are checked as Insert checks them (ErrInvalid; ErrExists for a primary
// or secondary key used twice). Concurrent writers wait for the transaction
// as for any write.
type Loader interface {
	Load(ctx context.Context, replace bool, tables ...TableRows) error
}

// LoadError is the error of Load through a backend without Loader: the
// rows already written stay (Written counts them, per table alias).
type LoadError struct {
	Written map[string]int
	Err     error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("%v (not atomic on this backend: %v rows already written stay)", e.Err, e.Written)
}

func (e *LoadError) Unwrap() error { return e.Err }

// Load loads tables into s: in one transaction when s is a Loader (atomic
// reports true), else table by table with the operations of Store (atomic
// false): the emptiness of every table is checked first (unless replace),
// then each table is cleared (with replace) and its rows inserted one by
// one, with versions starting again at 1. Without a Loader, a writer that
// changes a table meanwhile interleaves with the load, and a failure leaves
// what was written (the error is a *LoadError saying how much).
func Load(ctx context.Context, s Store, replace bool, tables ...TableRows) (atomic bool, err error) {
	if l, ok := s.(Loader); ok {
		return true, l.Load(ctx, replace, tables...)
	}
	if !replace {
		for _, t := range tables {
			n, err := s.Count(ctx, t.Table)
			if err != nil {
				return false, err
			}
			if n > 0 {
				return false, &Error{Op: "load", Table: t.Table, Err: fmt.Errorf("%w: the table holds %d rows", ErrExists, n)}
			}
		}
	}
	written := map[string]int{}
	for _, t := range tables {
		if replace {
			if err := s.Clear(ctx, t.Table); err != nil {
				return false, &LoadError{Written: written, Err: err}
			}
		}
		for _, r := range t.Rows {
			if _, err := s.Insert(ctx, t.Table, r.Values); err != nil {
				return false, &LoadError{Written: written, Err: err}
			}
			written[t.Table]++
		}
	}
	return false, nil
}
