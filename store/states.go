package store

import (
	"context"
	"encoding/json"
	"time"
)

// StateRow is an instance's state projection as its workflow last saved
// it, with when the instance started: for reports over many instances.
type StateRow struct {
	ID        string
	Version   int
	CreatedAt time.Time
	// State is empty before the workflow's first save.
	State json.RawMessage
}

// InstanceStates calls fn with the state of each instance of a process
// started in [from, to), of one definition version unless 0, in no
// particular order, without holding them all.
func (r Reads) InstanceStates(ctx context.Context, process string, version int, from, to time.Time, fn func(StateRow) error) error {
	p := &params{ph: r.ph}
	q := `SELECT id, process_version, created_at, COALESCE(state, '') FROM instances WHERE process = ` + p.add(process) +
		` AND created_at >= ` + p.add(from.UnixMicro()) + ` AND created_at < ` + p.add(to.UnixMicro())
	if version != 0 {
		q += ` AND process_version = ` + p.add(version)
	}
	return r.rows(ctx, "instance states", q, p.args, func(scan func(dest ...any) error) error {
		var row StateRow
		var at int64
		var state string
		if err := scan(&row.ID, &row.Version, &at, &state); err != nil {
			return err
		}
		row.CreatedAt, row.State = time.UnixMicro(at).UTC(), json.RawMessage(state)
		return fn(row)
	})
}

// GuardedCanaries are the ids of the policies whose live canary has a
// guard (see CanaryGuard), by id: what a guard's pass reads.
func (r Reads) GuardedCanaries(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.rows(ctx, "guarded canaries", `SELECT id FROM policy_state WHERE canary_guard <> '' AND shadow_percent > 0 ORDER BY id`, nil,
		func(scan func(dest ...any) error) error {
			var id string
			if err := scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		})
	return ids, err
}
