package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

// Prune removes what is older than before: see store.Prune.
func (s *Store) Prune(ctx context.Context, before time.Time) (store.Pruned, error) {
	return store.Prune(ctx, s.pruner(), before)
}

// PruneProcess removes a process's data older than before: see
// store.PruneProcess.
func (s *Store) PruneProcess(ctx context.Context, process string, before time.Time) (store.Pruned, error) {
	return store.PruneProcess(ctx, s.pruner(), process, before)
}

func (s *Store) pruner() store.Pruner {
	return store.Pruner{
		Reads: s.Reads,
		Tx: func(ctx context.Context, fn func(store.PruneTx) error) error {
			return s.tx(ctx, func(tx *sql.Tx) error { return fn(pruneTx{tx}) })
		},
	}
}

type pruneTx struct{ tx *sql.Tx }

func (t pruneTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t pruneTx) IDs(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
