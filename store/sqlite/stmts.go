package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// maxCachedStatements bounds the statements one database keeps prepared.
// The store's statements are constants or built from a few fixed parts;
// the bound only guards against a caller that builds unbounded variants
// (an IN list per length), whose surplus runs unprepared.
const maxCachedStatements = 256

// cachedDB runs queries through statements prepared once. SQLite parses a
// statement every time it runs an unprepared one, and on a busy server the
// parser was the store's largest cost after the writes themselves.
// Transactions (BeginTx) run unprepared.
type cachedDB struct {
	*sql.DB
	stmts sync.Map // query -> *sql.Stmt
	n     atomic.Int32
	// gate, on the writer, orders the statements run by ExecContext and
	// the transactions run by Store.tx. Reads through the writer (a read
	// of one's own write) take the connection without it.
	gate *writeGate
}

func newCachedDB(db *sql.DB) *cachedDB { return &cachedDB{DB: db} }

// stmt is the prepared statement for q, or nil when it cannot be prepared
// (the unprepared run then reports why) or the cache is full.
func (d *cachedDB) stmt(ctx context.Context, q string) *sql.Stmt {
	if st, ok := d.stmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	if d.n.Load() >= maxCachedStatements {
		return nil
	}
	st, err := d.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	if prev, loaded := d.stmts.LoadOrStore(q, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt)
	}
	d.n.Add(1)
	return st
}

func (d *cachedDB) ExecContext(ctx context.Context, q string, args ...any) (res sql.Result, err error) {
	err = d.gated(ctx, func() error {
		if st := d.stmt(ctx, q); st != nil {
			res, err = st.ExecContext(ctx, args...)
		} else {
			res, err = d.DB.ExecContext(ctx, q, args...)
		}
		return err
	})
	return res, err
}

// gated runs fn holding the write gate, when d has one (the writer). A
// write that returns its rows (RETURNING) runs through QueryContext and
// must take its turn there as ExecContext's writes do: fn reads its rows
// to the end before it returns.
func (d *cachedDB) gated(ctx context.Context, fn func() error) error {
	if d.gate != nil {
		if err := d.gate.lock(ctx); err != nil {
			return err
		}
		defer d.gate.unlock()
	}
	return fn()
}

// writeRow runs a write that returns one row (RETURNING) in the gate's
// order and scans it into dest.
func (d *cachedDB) writeRow(ctx context.Context, q string, args []any, dest ...any) error {
	return d.gated(ctx, func() error { return d.QueryRowContext(ctx, q, args...).Scan(dest...) })
}

func (d *cachedDB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, q, args...)
}

func (d *cachedDB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := d.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, q, args...)
}

// txExec runs q in tx through the statement prepared for it, once one has
// been. It prepares none itself: preparing on the database needs a
// connection, and the writer's only one is the transaction's.
func (d *cachedDB) txExec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st, ok := d.stmts.Load(q); ok {
		return tx.StmtContext(ctx, st.(*sql.Stmt)).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// Close closes the statements, then the database.
func (d *cachedDB) Close() error {
	d.stmts.Range(func(_, v any) bool {
		_ = v.(*sql.Stmt).Close()
		return true
	})
	return d.DB.Close()
}
