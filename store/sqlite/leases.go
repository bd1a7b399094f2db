package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

var (
	takeLeaseQuery    = store.Numbered(store.TakeLeaseQuery, "?")
	leaseQuery        = store.Numbered(store.LeaseQuery, "?")
	releaseLeaseQuery = store.Numbered(store.ReleaseLeaseQuery, "?")
)

// TakeLease takes or renews the lease name for holder until now+ttl,
// unless another holder's lease is still live, and returns the lease as
// it then stands: check it with Lease.HeldBy.
func (s *Store) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (store.Lease, error) {
	l := store.Lease{Name: name}
	var expires int64
	err := s.w.writeRow(ctx, takeLeaseQuery, []any{name, holder, micros(now), micros(now.Add(ttl))}, &l.Holder, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		err = s.w.QueryRowContext(ctx, leaseQuery, name).Scan(&l.Holder, &expires)
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("sqlite: take lease %s: %w", name, err)
	}
	l.Expires = fromMicros(expires)
	return l, nil
}

// ReleaseLease gives up the lease name if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.w.ExecContext(ctx, releaseLeaseQuery, name, holder); err != nil {
		return fmt.Errorf("sqlite: release lease %s: %w", name, err)
	}
	return nil
}

// Clock is the store's time. An SQLite store is a file on this machine,
// which every process using it shares the clock of.
func (s *Store) Clock(context.Context) (time.Time, error) { return time.Now(), nil }

// ClearLeases removes every lease, and says how many there were. It is
// for a store no other process uses: adaptflow dev's own, whose data
// directory it holds locked, so the leases in it were held by an earlier
// run (a crash, or a backup restored), and nobody holds them now.
func (s *Store) ClearLeases(ctx context.Context) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM leases`)
	if err != nil {
		return 0, fmt.Errorf("sqlite: clear leases: %w", err)
	}
	return res.RowsAffected()
}
