package store

import "time"

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
