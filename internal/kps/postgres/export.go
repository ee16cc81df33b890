package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

var (
	_ kps.Loader   = (*Store)(nil)
	_ kps.Exporter = (*Store)(nil)
)

// Export implements kps.Exporter: one REPEATABLE READ, READ ONLY
// transaction reads the definitions, every table's rows in key order and
// the shared secrets, so the export is one instant of the database however
// long it takes and whatever the instances write meanwhile. It is not
// bounded by the store's operation timeout (a large store takes longer
// than one request): ctx bounds it.
func (s *Store) Export(ctx context.Context, sink kps.ExportSink) (time.Time, error) {
	var at time.Time
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// The snapshot is taken by the transaction's first statement:
		// this one.
		if err := tx.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at); err != nil {
			return err
		}
		var tables []*kps.Table
		rows, err := tx.Query(ctx, "SELECT def FROM kps_tables ORDER BY alias")
		if err != nil {
			return err
		}
		var def []byte
		if _, err := pgx.ForEachRow(rows, []any{&def}, func() error {
			t, err := kps.UnmarshalTable(def)
			if err != nil {
				return kps.Unavailable(fmt.Errorf("a stored table definition: %w", err))
			}
			tables = append(tables, t)
			return nil
		}); err != nil {
			return err
		}
		for _, t := range tables {
			if err := sink.Table(*t); err != nil {
				return fmt.Errorf("table %q: %w", t.Alias, err)
			}
			rows, err := tx.Query(ctx, "SELECT pk, version, data FROM kps_rows WHERE tbl = $1 ORDER BY pk", t.Alias)
			if err != nil {
				return err
			}
			var pk, data string
			var version int64
			if _, err := pgx.ForEachRow(rows, []any{&pk, &version, &data}, func() error {
				vals, err := t.Decode([]byte(data))
				if err != nil {
					return &kps.Error{Op: "export", Table: t.Alias, Key: pk, Err: kps.Unavailable(err)}
				}
				return sink.Row(kps.Row{Values: vals, Version: version})
			}); err != nil {
				return err
			}
		}
		rows, err = tx.Query(ctx, "SELECT name, value FROM kps_secrets ORDER BY name")
		if err != nil {
			return err
		}
		var name string
		var value []byte
		_, err = pgx.ForEachRow(rows, []any{&name, &value}, func() error { return sink.Secret(name, value) })
		return err
	})
	if err != nil {
		return time.Time{}, opError("export", "", "", classify(err))
	}
	return at.UTC(), nil
}

// Load implements kps.Loader: one transaction for all the tables, the rows
// and their index entries written with COPY (a restore of 100,000 rows is
// one round trip per table, not one per row). A primary or secondary key
// given twice, or already stored, fails the whole load with ErrExists.
func (s *Store) Load(ctx context.Context, replace bool, tables ...kps.TableRows) error {
	var alias, key string
	err := s.write(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if err := s.loadDefs(ctx, tx, false); err != nil {
			return err
		}
		for _, tr := range tables {
			alias, key = tr.Table, ""
			t, ok := s.defs.Lookup(tr.Table)
			if !ok {
				return kps.NoTable("load", tr.Table)
			}
			if replace {
				if _, err := tx.Exec(ctx, "DELETE FROM kps_rows WHERE tbl = $1", t.Alias); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "DELETE FROM kps_index WHERE tbl = $1", t.Alias); err != nil {
					return err
				}
			} else {
				var n int64
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM kps_rows WHERE tbl = $1", t.Alias).Scan(&n); err != nil {
					return err
				}
				if n > 0 {
					return fmt.Errorf("%w: the table holds %d rows", kps.ErrExists, n)
				}
			}
			rowData := make([][]any, 0, len(tr.Rows))
			var index [][]any
			pks := make(map[string]bool, len(tr.Rows))
			sks := map[string]bool{}
			for _, r := range tr.Rows {
				e, err := t.Encode(t.FillGenerated(r.Values))
				if err != nil {
					return err
				}
				key = e.Key
				// COPY's unique violation would name no row: find the
				// repeated key first.
				if pks[e.Key] {
					return fmt.Errorf("%w: the primary key is given twice", kps.ErrExists)
				}
				pks[e.Key] = true
				if e.HasSecondary {
					if sks[e.Secondary] {
						return fmt.Errorf("%w: secondary key %q is given twice", kps.ErrExists, e.Secondary)
					}
					sks[e.Secondary] = true
				}
				rowData = append(rowData, []any{t.Alias, e.Key, secondary(e), max(r.Version, 1), string(e.Data)})
				for _, ix := range e.Index {
					index = append(index, []any{t.Alias, ix.Property, ix.Value, e.Key})
				}
			}
			key = ""
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"kps_rows"}, []string{"tbl", "pk", "sk", "version", "data"}, pgx.CopyFromRows(rowData)); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"kps_index"}, []string{"tbl", "prop", "val", "pk"}, pgx.CopyFromRows(index)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return opError("load", alias, key, err)
	}
	return nil
}

// PutSharedSecret stores value under name whatever is stored (a restore:
// the backup's secrets replace the database's).
func (s *Store) PutSharedSecret(ctx context.Context, name string, value []byte) error {
	if len(value) == 0 {
		return kps.Invalid("shared secret %q: an empty value", name)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "INSERT INTO kps_secrets(name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", name, value); err != nil {
		return &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	return nil
}
