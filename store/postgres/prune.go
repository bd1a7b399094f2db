package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

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
		Lock:  " FOR UPDATE SKIP LOCKED",
		Tx: func(ctx context.Context, fn func(store.PruneTx) error) error {
			return s.tx(ctx, func(tx pgx.Tx) error { return fn(pruneTx{tx}) })
		},
	}
}

type pruneTx struct{ tx pgx.Tx }

func (t pruneTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t pruneTx) IDs(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
