package sqlite

import (
	"context"
	"fmt"

	"github.com/adaptflow/adaptflow/store"
)

var setScheduleQuery = store.Numbered(store.SetScheduleQuery, "?")

// SetScheduleState pauses or resumes a process's schedule.
func (s *Store) SetScheduleState(ctx context.Context, st store.ScheduleState) error {
	if _, err := s.w.ExecContext(ctx, setScheduleQuery, st.Process, st.Schedule, st.Paused, st.ChangedBy, micros(st.ChangedAt), st.Note); err != nil {
		return fmt.Errorf("sqlite: set schedule state: %w", err)
	}
	return nil
}
