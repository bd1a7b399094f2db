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
