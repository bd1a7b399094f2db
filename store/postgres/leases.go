package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/adaptflow/adaptflow/store"
)

var (
	takeLeaseQuery    = store.Numbered(store.TakeLeaseQuery, "$")
	leaseQuery        = store.Numbered(store.LeaseQuery, "$")
	releaseLeaseQuery = store.Numbered(store.ReleaseLeaseQuery, "$")
)

// TakeLease takes or renews the lease name for holder until now+ttl,
// unless another holder's lease is still live, and returns the lease as
// it then stands: check it with Lease.HeldBy.
func (s *Store) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (store.Lease, error) {
	l := store.Lease{Name: name}
	var expires int64
	err := s.pool.QueryRow(ctx, takeLeaseQuery, name, holder, micros(now), micros(now.Add(ttl))).Scan(&l.Holder, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.pool.QueryRow(ctx, leaseQuery, name).Scan(&l.Holder, &expires)
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("postgres: take lease %s: %w", name, err)
	}
	l.Expires = fromMicros(expires)
	return l, nil
}

// ReleaseLease gives up the lease name if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, releaseLeaseQuery, name, holder); err != nil {
		return fmt.Errorf("postgres: release lease %s: %w", name, err)
	}
	return nil
}

// Clock is the database server's time: the replicas of a deployment
// share one store, but not one clock, so their leases go by this one.
func (s *Store) Clock(ctx context.Context) (time.Time, error) {
	var us int64
	if err := s.pool.QueryRow(ctx, `SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint`).Scan(&us); err != nil {
		return time.Time{}, fmt.Errorf("postgres: clock: %w", err)
	}
	return fromMicros(us), nil
}
