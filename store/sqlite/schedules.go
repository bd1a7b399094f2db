package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/adaptflow/adaptflow/store"
)

var (
	setScheduleQuery = store.Numbered(store.SetScheduleQuery, "?")
	setProcessQuery  = store.Numbered(store.SetProcessQuery, "?")
)

// SetScheduleState pauses or resumes a process's schedule.
func (s *Store) SetScheduleState(ctx context.Context, st store.ScheduleState) error {
	if _, err := s.w.ExecContext(ctx, setScheduleQuery, st.Process, st.Schedule, st.Paused, st.ChangedBy, micros(st.ChangedAt), st.Note); err != nil {
		return fmt.Errorf("sqlite: set schedule state: %w", err)
	}
	return nil
}

// SetProcessState pauses or resumes a process: while paused, its new
// instances are held.
func (s *Store) SetProcessState(ctx context.Context, st store.ProcessState) error {
	if _, err := s.w.ExecContext(ctx, setProcessQuery, st.Process, st.Paused, st.ChangedBy, micros(st.ChangedAt), st.Note); err != nil {
		return fmt.Errorf("sqlite: set process state: %w", err)
	}
	return nil
}

// KeepScheduleStates drops the states (pauses) of a process's schedules
// other than keep: a new version of its definition left them out, and a
// later version that brings back a schedule of the same id starts it
// afresh, not paused.
func (s *Store) KeepScheduleStates(ctx context.Context, process string, keep []string) error {
	if keep == nil {
		keep = []string{} // an array, not null
	}
	list, err := json.Marshal(keep)
	if err != nil {
		return fmt.Errorf("sqlite: keep schedule states: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM schedule_states WHERE process = ? AND schedule NOT IN (SELECT value FROM json_each(?))`, process, string(list)); err != nil {
		return fmt.Errorf("sqlite: keep schedule states: %w", err)
	}
	return nil
}
