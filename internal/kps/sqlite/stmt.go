package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// wtx is a write transaction whose statements are prepared once per
// connection and kept (database/sql keeps a prepared statement per
// connection it ran on): parsing the same few statements again for every
// write cost about a tenth of an OAuth grant. Only constant statements go
// through it; the migrations run on the embedded *sql.Tx itself. A
// statement that cannot be prepared outside the transaction (a table its
// own uncommitted migration made) runs on the transaction unprepared.
type wtx struct {
	*sql.Tx
	s        *Store
	defsRead bool // the definitions' generation was checked in this transaction
}

// stmts caches the write path's prepared statements by their text.
type stmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (c *stmts) get(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st, nil
}

func (c *stmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// ExecContext runs a cached statement in the transaction.
func (tx *wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := tx.s.stmts.get(ctx, tx.s.db, query)
	if err != nil {
		return tx.Tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// QueryContext runs a cached query in the transaction.
func (tx *wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := tx.s.stmts.get(ctx, tx.s.db, query)
	if err != nil {
		return tx.Tx.QueryContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// QueryRowContext runs a cached one-row query in the transaction.
func (tx *wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := tx.s.stmts.get(ctx, tx.s.db, query)
	if err != nil {
		return tx.Tx.QueryRowContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}
