package kpsbackup

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// RestoreOptions of Restore.
type RestoreOptions struct {
	// Tables to restore, by alias; nil: every table of the backup.
	Tables []string
	// Force replaces the rows of tables that have some.
	Force bool
	// Note, when not nil, is told what Restore decides on the way.
	Note func(format string, args ...any)
}

// Restored is what Restore did.
type Restored struct {
	Tables  []TableCount     // restored, in backup order
	Before  map[string]int64 // rows each restored table held before
	Defined []string         // tables defined from the backup
	Atomic  bool             // in one transaction (kps.Loader)
	Secrets []string         // shared secrets stored
}

// NotEmptyError refuses a restore without Force into tables that hold rows.
type NotEmptyError struct {
	Tables []string // "%q holds %d rows" each
}

func (e *NotEmptyError) Error() string {
	return "restore fills only empty tables, and " + strings.Join(e.Tables, ", ")
}

// MisfitError refuses a restore whose rows do not fit the store's changed
// definition of their table.
type MisfitError struct {
	Table string
	Row   int // 1-based
	Err   error
}

func (e *MisfitError) Error() string {
	return fmt.Sprintf("row %d of table %q does not fit the store's definition of the table, which differs from the backup's: %v", e.Row, e.Table, e.Err)
}

func (e *MisfitError) Unwrap() error { return e.Err }

// secretPutter is a shared store a restore can write secrets into
// (kps/postgres).
type secretPutter interface {
	PutSharedSecret(ctx context.Context, name string, value []byte) error
}

// Restore loads b into st: every table the store lacks is defined from the
// backup, one whose definition changed since is kept if every row fits it;
// each table must be empty unless o.Force. Nothing is written before every
// check passed. The backup's shared secrets (an export of a shared store)
// replace the store's when every table is restored: the API keys it holds
// verify only with the hashing key they were made with. A backend without
// a Loader fills table by table (Restored.Atomic false; a failure leaves
// what was written, a *kps.LoadError).
func Restore(ctx context.Context, st kps.Store, b *Backup, o RestoreOptions) (*Restored, error) {
	note := o.Note
	if note == nil {
		note = func(string, ...any) {}
	}
	chosen := b.Tables
	if o.Tables != nil {
		chosen = nil
		for _, alias := range o.Tables {
			t, ok := b.Table(alias)
			if !ok {
				return nil, fmt.Errorf("the backup holds no table %q", alias)
			}
			chosen = append(chosen, *t)
		}
	}
	var put secretPutter
	if len(b.Secrets) > 0 && o.Tables == nil {
		var ok bool
		if put, ok = st.(secretPutter); !ok {
			return nil, fmt.Errorf("the backup holds shared secrets (%d) and this store keeps none: restore it into a store of the backend it was taken from (%s)", len(b.Secrets), b.Manifest.Backend)
		}
	}
	defined, err := st.Tables(ctx)
	if err != nil {
		return nil, err
	}
	res := &Restored{Before: map[string]int64{}}
	var define []kps.Table
	var nonEmpty []string
	for _, bt := range chosen {
		i := slices.IndexFunc(defined, func(t kps.Table) bool { return t.Alias == bt.Def.Alias })
		if i < 0 {
			define = append(define, bt.Def)
			continue
		}
		cur := defined[i]
		if !cur.Equal(&bt.Def) {
			for j, r := range bt.Rows {
				if _, err := cur.Encode(r.Values); err != nil {
					return nil, &MisfitError{Table: bt.Def.Alias, Row: j + 1, Err: err}
				}
			}
			note("table %q: the store's definition differs from the backup's; every row fits it", bt.Def.Alias)
		}
		n, err := st.Count(ctx, bt.Def.Alias)
		if err != nil {
			return nil, err
		}
		res.Before[bt.Def.Alias] = n
		if n > 0 && !o.Force {
			nonEmpty = append(nonEmpty, fmt.Sprintf("%q holds %d rows", bt.Def.Alias, n))
		}
	}
	if len(nonEmpty) > 0 {
		return nil, &NotEmptyError{Tables: nonEmpty}
	}
	if len(define) > 0 {
		if err := st.Define(ctx, define...); err != nil {
			return nil, fmt.Errorf("defining the backup's tables: %w", err)
		}
		for _, t := range define {
			res.Defined = append(res.Defined, t.Alias)
			note("table %q defined from the backup", t.Alias)
		}
	}
	var load []kps.TableRows
	for _, bt := range chosen {
		load = append(load, kps.TableRows{Table: bt.Def.Alias, Rows: bt.Rows})
		res.Tables = append(res.Tables, TableCount{Alias: bt.Def.Alias, Rows: int64(len(bt.Rows))})
	}
	if res.Atomic, err = kps.Load(ctx, st, o.Force, load...); err != nil {
		return res, err
	}
	if put != nil {
		for _, s := range b.Secrets {
			if err := put.PutSharedSecret(ctx, s.Name, s.Value); err != nil {
				return res, fmt.Errorf("the rows are restored, the shared secrets not: %w", err)
			}
			res.Secrets = append(res.Secrets, s.Name)
		}
	}
	return res, nil
}
