package store

import (
	"context"
	"errors"
	"time"
)

// Lease says which replica runs a background job (the sweeps, the canary
// guards, pruning) until when. A replica takes it before each run and
// keeps it while it runs; another may take it once it has expired, so a
// replica that dies hands its jobs on within the lease's time.
type Lease struct {
	Name    string    `json:"name"`
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// HeldBy reports whether holder holds l at now.
func (l Lease) HeldBy(holder string, now time.Time) bool {
	return l.Holder == holder && now.Before(l.Expires)
}

// TakeLeaseQuery takes or renews a lease, for SQL stores, with the
// parameters name, holder, now and the new expiry (micros); see Numbered.
// It writes the row when nobody holds the lease, holder does, or it has
// expired, and returns the lease as it then stands (no row: another
// replica holds it).
const TakeLeaseQuery = `INSERT INTO leases (name, holder, expires_at) VALUES ({1}, {2}, {4})
	ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
	WHERE leases.holder = excluded.holder OR leases.expires_at <= {3}
	RETURNING holder, expires_at`

// LeaseQuery reads a lease, with the parameter name; see Numbered.
const LeaseQuery = `SELECT holder, expires_at FROM leases WHERE name = {1}`

// ReleaseLeaseQuery gives up a lease that holder holds, with the
// parameters name and holder; see Numbered.
const ReleaseLeaseQuery = `DELETE FROM leases WHERE name = {1} AND holder = {2}`

// LiveLeases lists the holders of the leases whose names start with
// prefix and have not expired at now: the API replicas that have said
// they are alive (leases "replica/NAME"), for instance.
func (r Reads) LiveLeases(ctx context.Context, prefix string, now time.Time) ([]Lease, error) {
	if prefix == "" {
		return nil, errors.New("live leases: a prefix is required")
	}
	p := &params{ph: r.ph}
	// A range on the primary key, not LIKE, whose escaping the two
	// dialects do not share: every name with the prefix is >= it and <
	// it with its last byte raised (prefixes end in '/': below 0xff).
	hi := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	q := `SELECT name, holder, expires_at FROM leases WHERE name >= ` + p.add(prefix) + ` AND name < ` + p.add(hi) +
		` AND expires_at > ` + p.add(now.UnixMicro()) + ` ORDER BY name`
	var out []Lease
	err := r.rows(ctx, "live leases", q, p.args, func(scan func(dest ...any) error) error {
		var l Lease
		var at int64
		if err := scan(&l.Name, &l.Holder, &at); err != nil {
			return err
		}
		l.Expires = time.UnixMicro(at).UTC()
		out = append(out, l)
		return nil
	})
	return out, err
}
