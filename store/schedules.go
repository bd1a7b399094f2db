package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

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

// ScheduleStates lists the states of a process's schedules (every
// process's when it is empty); a schedule with none runs.
func (r Reads) ScheduleStates(ctx context.Context, process string) ([]ScheduleState, error) {
	p := &params{ph: r.ph}
	q := `SELECT process, schedule, paused, changed_by, changed_at, note FROM schedule_states`
	if process != "" {
		q += ` WHERE process = ` + p.add(process)
	}
	var out []ScheduleState
	err := r.rows(ctx, "schedule states", q+` ORDER BY process, schedule`, p.args, func(scan func(dest ...any) error) error {
		var st ScheduleState
		var at int64
		if err := scan(&st.Process, &st.Schedule, &st.Paused, &st.ChangedBy, &at, &st.Note); err != nil {
			return err
		}
		st.ChangedAt = time.UnixMicro(at).UTC()
		out = append(out, st)
		return nil
	})
	return out, err
}

// DefinitionVersions lists the versions of a process's definition,
// oldest first.
func (r Reads) DefinitionVersions(ctx context.Context, process string) ([]int, error) {
	p := &params{ph: r.ph}
	var out []int
	err := r.rows(ctx, "definition versions", `SELECT version FROM definitions WHERE name = `+p.add(process)+` ORDER BY version`, p.args, func(scan func(dest ...any) error) error {
		var v int
		err := scan(&v)
		out = append(out, v)
		return err
	})
	return out, err
}

// ProcessState is whether a process is paused: while it is, its new
// instances are stored and held, their workflows not started, until it is
// resumed. A process with no state runs.
type ProcessState struct {
	Process   string    `json:"process"`
	Paused    bool      `json:"paused"`
	ChangedBy string    `json:"changed_by"`
	ChangedAt time.Time `json:"changed_at"`
	Note      string    `json:"note,omitempty"`
}

// SetProcessQuery writes a process's state, for SQL stores, with the
// parameters process, paused, changed_by, changed_at (micros) and note;
// see Numbered.
const SetProcessQuery = `INSERT INTO process_states (process, paused, changed_by, changed_at, note) VALUES ({1}, {2}, {3}, {4}, {5})
	ON CONFLICT (process) DO UPDATE SET paused = excluded.paused, changed_by = excluded.changed_by, changed_at = excluded.changed_at, note = excluded.note`

// NotHeld is the condition, on a query of instances, that their process
// is not paused: its pending starts are held.
const NotHeld = `process NOT IN (SELECT process FROM process_states WHERE paused)`

// Unfinished is the condition, on a query of instances, that they have
// not ended (a final status, or its time, saved): with not queued, those
// that hold a slot under their process's concurrency limit.
const Unfinished = `finished_at IS NULL AND COALESCE(status, '') NOT IN ('completed', 'rejected', 'failed', 'canceled')`

// RetryClaimStale is how long a claim on retrying a failed run of an
// instance holds when its holder neither reset the run nor released the
// claim (it died between the two).
const RetryClaimStale = time.Minute

// SlotLimit is the number of slots a concurrency limit gives Admit: limit
// 0 (none, say a new version dropped it) gives one to each.
func SlotLimit(limit int) int {
	if limit <= 0 {
		return math.MaxInt32
	}
	return limit
}

// SlotsHeld is an SQL expression counting the instances of process (an
// SQL expression: a parameter or a column) that hold a slot under its
// concurrency limit: those admitted (notQueued, the store's test of the
// column on the alias r) that have not ended, and those a claim is about
// to retry (see ClaimRetry): the claim is on the run that saved their
// state, so the retry's new run has saved none yet, and it was made after
// cut (an SQL expression, micros). Each count has an index of its own.
func SlotsHeld(process, notQueued, cut string) string {
	return `((SELECT COUNT(*) FROM instances r WHERE r.process = ` + process + ` AND ` + notQueued + ` AND r.` + Unfinished + `) +
		(SELECT COUNT(*) FROM instances t WHERE t.process = ` + process + ` AND t.retry_run <> '' AND t.retry_at >= ` + cut + ` AND t.retry_run = t.state_run))`
}

// PausedWhy says why a paused process's new instances wait: who paused
// it, when, and their note.
func PausedWhy(st ProcessState) string {
	msg := fmt.Sprintf("process %s is paused (by %s, %s)", st.Process, st.ChangedBy, st.ChangedAt.Format(time.RFC3339))
	if st.Note != "" {
		msg += ": " + st.Note
	}
	return msg + "; its new instances are held, and start when it is resumed"
}

// QueuedWhy says why an instance waits under its process's concurrency
// limit.
func QueuedWhy(process string, limit int) string {
	return RunsAtOnce(process, limit) + ": this one is queued, and starts as others end, oldest first"
}

// RunsAtOnce states a process's concurrency limit.
func RunsAtOnce(process string, limit int) string {
	n := fmt.Sprintf("%d instances", limit)
	if limit == 1 {
		n = "1 instance"
	}
	return fmt.Sprintf("process %s runs %s at once, its concurrency limit", process, n)
}

// HeldRun is the run that saves the state of an instance a pause held
// and that ended without starting (canceled): it has no workflow run.
const HeldRun = "held"

// ParentEndedRun is the run that saves the state of an instance a process
// step stored and never started, ended because its parent's workflow
// ended in Temporal (terminated); one ended with its parent's cancel is
// saved by the run "parent:" and the parent's run.
const ParentEndedRun = "parent-ended"

// NeverRanQuery is the condition, on a query of instances, that no
// workflow of theirs saved a state: none did, or the state saved says
// they ended before their workflow started (HeldRun, ParentEndedRun,
// "parent:").
const NeverRanQuery = `(state_seq = 0 OR state_run IN ('` + HeldRun + `', '` + ParentEndedRun + `') OR state_run LIKE 'parent:%')`

// NeverRan says whether no workflow of the instance saved a state
// (NeverRanQuery).
func NeverRan(in Instance) bool {
	return in.StateSeq == 0 || in.StateRun == HeldRun || in.StateRun == ParentEndedRun || strings.HasPrefix(in.StateRun, "parent:")
}

// RestoreQuery stores again an instance a process step stored before
// and that never ran (NeverRanQuery), for the step run again (a retry of
// its parent): its state goes, so it reads as starting, and it is pending
// and queued as a new one would be. It has the parameters id, pending
// start and queued; see Numbered.
const RestoreQuery = `UPDATE instances SET state = NULL, status = '', finished_at = NULL, state_run = '', state_seq = 0, pending_start = {2}, queued = {3}
	WHERE id = {1} AND ` + NeverRanQuery

// NotAChild is the condition, on a query of instances, that a process
// step did not store them: a child's workflow is started by its parent's
// (held by a pause, it waits there), never by the start sweep.
const NotAChild = `created_by NOT LIKE 'parent:%'`

// ProcessStates lists the processes' states (one process's when process
// is not empty); a process with none runs.
func (r Reads) ProcessStates(ctx context.Context, process string) ([]ProcessState, error) {
	p := &params{ph: r.ph}
	q := `SELECT process, paused, changed_by, changed_at, note FROM process_states`
	if process != "" {
		q += ` WHERE process = ` + p.add(process)
	}
	var out []ProcessState
	err := r.rows(ctx, "process states", q+` ORDER BY process`, p.args, func(scan func(dest ...any) error) error {
		var st ProcessState
		var at int64
		if err := scan(&st.Process, &st.Paused, &st.ChangedBy, &at, &st.Note); err != nil {
			return err
		}
		st.ChangedAt = time.UnixMicro(at).UTC()
		out = append(out, st)
		return nil
	})
	return out, err
}
