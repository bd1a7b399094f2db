package sqlite

import (
	"context"
	"fmt"

	"github.com/adaptflow/adaptflow/store"
)

var (
	setScheduleQuery    = store.Numbered(store.SetScheduleQuery, "?")
	scheduleStatesQuery = store.Numbered(store.ScheduleStatesQuery, "?")
)

// SetScheduleState pauses or resumes a process's schedule.
func (s *Store) SetScheduleState(ctx context.Context, st store.ScheduleState) error {
	if _, err := s.w.ExecContext(ctx, setScheduleQuery, st.Process, st.Schedule, st.Paused, st.ChangedBy, micros(st.ChangedAt), st.Note); err != nil {
		return fmt.Errorf("sqlite: set schedule state: %w", err)
	}
	return nil
}

// ScheduleStates lists the states of a process's schedules (every
// process's when it is empty); a schedule with none runs.
func (s *Store) ScheduleStates(ctx context.Context, process string) ([]store.ScheduleState, error) {
	rows, err := s.r.QueryContext(ctx, scheduleStatesQuery, process)
	if err != nil {
		return nil, fmt.Errorf("sqlite: schedule states: %w", err)
	}
	defer rows.Close()
	out, err := store.ScanScheduleStates(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: schedule states: %w", err)
	}
	return out, nil
}
