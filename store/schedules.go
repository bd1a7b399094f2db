package store

import "time"

// ScanScheduleStates reads the rows of ScheduleStatesQuery.
func ScanScheduleStates(rows Rows) ([]ScheduleState, error) {
	var out []ScheduleState
	err := EachRow(rows, func(scan func(dest ...any) error) (ScheduleState, error) {
		var st ScheduleState
		var at int64
		err := scan(&st.Process, &st.Schedule, &st.Paused, &st.ChangedBy, &at, &st.Note)
		st.ChangedAt = time.UnixMicro(at).UTC()
		return st, err
	}, func(st ScheduleState) error { out = append(out, st); return nil })
	return out, err
}

// ScheduleState is whether a process's schedule is paused: an
// operator's switch, kept apart from the definition, which stays as it
// was registered. A schedule with no state runs.
type ScheduleState struct {
	Process  string `json:"process"`
	Schedule string `json:"schedule"`
	Paused   bool   `json:"paused"`
	// ChangedBy and ChangedAt say who paused or resumed it, and when; Note
	// why.
	ChangedBy string    `json:"changed_by"`
	ChangedAt time.Time `json:"changed_at"`
	Note      string    `json:"note,omitempty"`
}

// SetScheduleQuery writes a schedule's state, for SQL stores, with the
// parameters process, schedule, paused, changed_by, changed_at (micros)
// and note; see Numbered.
const SetScheduleQuery = `INSERT INTO schedule_states (process, schedule, paused, changed_by, changed_at, note) VALUES ({1}, {2}, {3}, {4}, {5}, {6})
	ON CONFLICT (process, schedule) DO UPDATE SET paused = excluded.paused, changed_by = excluded.changed_by, changed_at = excluded.changed_at, note = excluded.note`

// ScheduleStatesQuery reads the schedule states of a process, or of every
// process when it is empty, with the parameter process; see Numbered.
const ScheduleStatesQuery = `SELECT process, schedule, paused, changed_by, changed_at, note FROM schedule_states
	WHERE {1} = '' OR process = {1} ORDER BY process, schedule`
