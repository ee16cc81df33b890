package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// secretsTable holds the secrets LocalSecrets keeps. It is created on first
// use rather than by a migration, so that an older binary (an upgrade rolled
// back) still opens the file: it ignores a table it does not know.
const secretsTable = `CREATE TABLE IF NOT EXISTS kps_secrets(name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID`

// LocalSecrets returns the secrets that the processes sharing this file
// (the instances of a group on one host) keep alike, with the semantics of
// kps.SharedSecrets. The Store itself does not implement kps.SharedSecrets:
// the group's API-key hashing key stays a file for the embedded backend
// (apps.GroupHashKey); only the TLS session-ticket keys (tlsticket) are
// kept here. They are not rows of any table: the KPS API and kpsadmin do
// not show them.
func (s *Store) LocalSecrets() kps.SharedSecrets { return localSecrets{s} }

type localSecrets struct{ s *Store }

func (l localSecrets) SharedSecret(ctx context.Context, name string, offer []byte) ([]byte, error) {
	if len(offer) == 0 {
		return nil, kps.Invalid("shared secret %q: an empty offer", name)
	}
	var v []byte
	err := l.s.write(ctx, func(tx *wtx) error {
		if _, err := tx.Tx.ExecContext(ctx, secretsTable); err != nil {
			return err
		}
		if _, err := tx.Tx.ExecContext(ctx, "INSERT INTO kps_secrets(name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", name, offer); err != nil {
			return err
		}
		return tx.Tx.QueryRowContext(ctx, "SELECT value FROM kps_secrets WHERE name = ?", name).Scan(&v)
	})
	if err != nil {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	return v, nil
}

func (l localSecrets) LookupSharedSecret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := l.s.db.QueryRowContext(ctx, "SELECT value FROM kps_secrets WHERE name = ?", name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) || err != nil && missingTable(err) {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: kps.ErrNotFound}
	}
	if err != nil {
		return nil, &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	return v, nil
}

func (l localSecrets) ReplaceSharedSecret(ctx context.Context, name string, old, value []byte) error {
	if len(value) == 0 {
		return kps.Invalid("shared secret %q: an empty value", name)
	}
	var n int64
	err := l.s.write(ctx, func(tx *wtx) error {
		if _, err := tx.Tx.ExecContext(ctx, secretsTable); err != nil {
			return err
		}
		r, err := tx.Tx.ExecContext(ctx, "UPDATE kps_secrets SET value = ? WHERE name = ? AND value = ?", value, name, old)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return &kps.Error{Op: "shared secret", Key: name, Err: classify(err)}
	}
	if n == 1 {
		return nil
	}
	if _, err := l.LookupSharedSecret(ctx, name); err != nil {
		return err
	}
	return &kps.Error{Op: "shared secret", Key: name, Err: kps.ErrConflict}
}

// missingTable reports whether err is SQLite's "no such table" (nothing
// was ever kept: the table is made by the first write).
func missingTable(err error) bool {
	return strings.Contains(err.Error(), "no such table")
}
