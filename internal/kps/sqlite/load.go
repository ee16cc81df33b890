package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

var _ kps.Loader = (*Store)(nil)

// Load implements kps.Loader: one write transaction for all the tables.
// Other processes' writes wait for it (busy timeout), readers see the old
// rows until it commits.
func (s *Store) Load(ctx context.Context, replace bool, tables ...kps.TableRows) error {
	var alias, key string
	err := s.write(ctx, func(tx *wtx) error {
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
				if _, err := tx.ExecContext(ctx, "DELETE FROM kps_rows WHERE tbl = ?", t.Alias); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "DELETE FROM kps_index WHERE tbl = ?", t.Alias); err != nil {
					return err
				}
			} else {
				var n int64
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM kps_rows WHERE tbl = ?", t.Alias).Scan(&n); err != nil {
					return err
				}
				if n > 0 {
					return fmt.Errorf("%w: the table holds %d rows", kps.ErrExists, n)
				}
			}
			for _, r := range tr.Rows {
				e, err := t.Encode(t.FillGenerated(r.Values))
				if err != nil {
					return err
				}
				key = e.Key
				var one int
				err = tx.QueryRowContext(ctx, "SELECT 1 FROM kps_rows WHERE tbl = ? AND pk = ?", t.Alias, e.Key).Scan(&one)
				if err == nil {
					return fmt.Errorf("%w: the primary key is given twice", kps.ErrExists)
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				if err := checkSecondary(ctx, tx, t, e); err != nil {
					return err
				}
				version := max(r.Version, 1)
				if _, err := tx.ExecContext(ctx, "INSERT INTO kps_rows(tbl, pk, sk, version, data) VALUES (?, ?, ?, ?, ?)", t.Alias, e.Key, secondary(e), version, e.Data); err != nil {
					return err
				}
				if err := insertIndex(ctx, tx, t.Alias, e); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return opError("load", alias, key, err)
	}
	return nil
}
