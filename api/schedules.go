package api

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/robfig/cron/v3"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// cronParser reads the cron expressions of schedules: five fields, or a
// descriptor (@daily, @every 6h).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// maxDuePerPass bounds the starts one schedule makes up for in a pass (a
// schedule @every 1m with a catch-up of 7d is due 10,080 times): the
// oldest go first, and the next pass goes on from the last.
const maxDuePerPass = 1000

// ScheduledBy is who the instances a schedule starts are created by.
const ScheduledBy = "scheduler"

// parseSchedule reads a schedule's expression in its time zone.
func parseSchedule(sc process.Schedule) (cron.Schedule, error) {
	loc, err := time.LoadLocation(sc.Timezone)
	if err != nil {
		return nil, err
	}
	sch, err := cronParser.Parse(sc.Cron)
	if err != nil {
		return nil, err
	}
	switch sch := sch.(type) {
	case *cron.SpecSchedule:
		// An expression that names its zone (CRON_TZ=Europe/Berlin 0 2 * *
		// *) keeps it; the others are read in the schedule's (default UTC).
		if strings.HasPrefix(sc.Cron, "CRON_TZ=") || strings.HasPrefix(sc.Cron, "TZ=") {
			loc = sch.Location
		}
		wall := *sch
		wall.Location = time.UTC
		return wallSchedule{spec: &wall, loc: loc}, nil
	case cron.ConstantDelaySchedule:
		return everySchedule{every: sch.Delay}, nil
	}
	return sch, nil
}

// wallSchedule reads a cron expression on the wall clock of its zone, as
// cron does: a time the clocks skip (02:30 on the night they spring
// forward) comes when they have (03:30), and one they repeat (02:30 on
// the night they fall back) comes once. cron/v3 itself passes over a
// skipped time, and a nightly schedule at 02:30 would miss a day a year.
type wallSchedule struct {
	spec *cron.SpecSchedule // over wall times, written as UTC
	loc  *time.Location
}

func (w wallSchedule) Next(t time.Time) time.Time {
	lt := t.In(w.loc)
	// The wall clock can read later at t than at a time after it (within
	// the hour the clocks repeat), by as much as a zone's shift, 2 hours
	// at most: the search starts that far back, and passes over the wall
	// times that come at t or before.
	wall := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC).Add(-maxZoneShift)
	for {
		if wall = w.spec.Next(wall); wall.IsZero() {
			return wall
		}
		if at := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, w.loc); at.After(t) {
			return at
		}
	}
}

// maxZoneShift is the largest change of a zone's offset at a transition.
const maxZoneShift = 2 * time.Hour

// everySchedule is "@every D" on a fixed grid: the multiples of D since
// the Unix epoch. cron's own counts D from the time it is asked about, so
// two passes (or replicas) would not agree on the due times, and each
// would start instances of its own.
type everySchedule struct{ every time.Duration }

func (e everySchedule) Next(t time.Time) time.Time {
	since := t.Sub(time.Unix(0, 0))
	return time.Unix(0, 0).Add((since/e.every + 1) * e.every).In(t.Location())
}

// checkSchedules checks the cron expressions of a definition's schedules
// (the rest of a schedule is checked with the definition).
func checkSchedules(def *process.Definition) error {
	var es process.Errors
	for i, sc := range def.Schedules {
		if _, err := cronParser.Parse(sc.Cron); err != nil && sc.Cron != "" {
			es.Add(fmt.Sprintf("schedules[%d].cron", i), "%v: five fields (\"0 2 * * *\" is 02:00 every day) or a descriptor (@hourly, @daily, @weekly, @monthly, @every 6h)", err)
		}
	}
	return es.Err()
}

// dueTimes are the times of sch in (from, to], oldest first, at most
// limit of them; more says later ones were left out.
func dueTimes(sch cron.Schedule, from, to time.Time, limit int) (out []time.Time, more bool) {
	for t := sch.Next(from); !t.IsZero() && !t.After(to); t = sch.Next(t) {
		if len(out) == limit {
			return out, true
		}
		out = append(out, t)
	}
	return out, false
}

// scheduleView is a schedule as the API shows it: its expression, when it
// next starts an instance (none while paused), and whether it is paused,
// by whom.
func scheduleView(sc process.Schedule, st *store.ScheduleState, now time.Time) gin.H {
	out := gin.H{"id": sc.ID, "cron": sc.Cron, "timezone": cmp.Or(sc.Timezone, "UTC"), "paused": false}
	if st != nil {
		out["paused"], out["changed_by"], out["changed_at"] = st.Paused, st.ChangedBy, st.ChangedAt
		if st.Note != "" {
			out["note"] = st.Note
		}
	}
	if st == nil || !st.Paused {
		out["next_run"] = NextRun(sc, now)
	}
	return out
}

// switchSchedule pauses (or resumes) a schedule of a process's latest
// definition: an operator's switch, recorded with who and why, that
// leaves the definition as it was registered.
func (s *server) switchSchedule(pause bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req struct {
			Note string `json:"note,omitempty"`
		}
		if c.Request.ContentLength != 0 {
			if err := bindJSON(c, &req); err != nil {
				fail(c, err)
				return
			}
		}
		ctx := c.Request.Context()
		def, _, err := s.definition(ctx, c.Param("name"), 0)
		if err != nil {
			fail(c, err)
			return
		}
		i := slices.IndexFunc(def.Schedules, func(sc process.Schedule) bool { return sc.ID == c.Param("schedule") })
		if i < 0 {
			fail(c, &httpError{status: http.StatusNotFound, code: "not_found", field: "schedule", msg: fmt.Sprintf("%s v%d has no schedule %q", def.Name, def.Version, c.Param("schedule"))})
			return
		}
		st := store.ScheduleState{Process: def.Name, Schedule: def.Schedules[i].ID, Paused: pause, ChangedBy: caller(c).Name, ChangedAt: time.Now().UTC(), Note: req.Note}
		if err := s.Schedules.SetScheduleState(ctx, st); err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusOK, scheduleView(def.Schedules[i], &st, time.Now()))
	}
}

// scheduleViews are a definition's schedules as the API shows them.
func (s *server) scheduleViews(ctx context.Context, def *process.Definition) ([]gin.H, error) {
	states, err := s.Schedules.ScheduleStates(ctx, def.Name)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]gin.H, len(def.Schedules))
	for i, sc := range def.Schedules {
		var st *store.ScheduleState
		for j := range states {
			if states[j].Schedule == sc.ID {
				st = &states[j]
			}
		}
		out[i] = scheduleView(sc, st, now)
	}
	return out, nil
}

// lookBack is where a pass at now looks back to for a schedule: the pass
// before (last), else its catch-up, but not before its definition version
// was registered (a new schedule makes up for no time before it was).
func lookBack(now time.Time, catchUp time.Duration, registered, last time.Time) time.Time {
	from := now.Add(-catchUp)
	if registered.After(from) {
		from = registered
	}
	if last.After(from) {
		from = last
	}
	return from
}

// NextRun is when sc next starts an instance after now (zero when its
// expression cannot be read).
func NextRun(sc process.Schedule, now time.Time) time.Time {
	sch, err := parseSchedule(sc)
	if err != nil {
		return time.Time{}
	}
	return sch.Next(now)
}

// ScheduleInput is the input of the instance s starts for due: its
// input, with ${schedule.time} (the due time, RFC 3339), ${schedule.date}
// (its day, 2026-11-27) and ${schedule.id} written out in its string
// values, at any depth; times in the schedule's zone.
func ScheduleInput(s process.Schedule, due time.Time) map[string]any {
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		loc = time.UTC
	}
	at := due.In(loc)
	r := strings.NewReplacer("${schedule.time}", at.Format(time.RFC3339), "${schedule.date}", at.Format(time.DateOnly), "${schedule.id}", s.ID)
	var expand func(v any) any
	expand = func(v any) any {
		switch v := v.(type) {
		case string:
			return r.Replace(v)
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, x := range v {
				out[k] = expand(x)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				out[i] = expand(x)
			}
			return out
		}
		return v
	}
	out, _ := expand(s.Input).(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	return out
}

// ScheduleKey is the business key of the instance a schedule starts for a
// due time.
func ScheduleKey(scheduleID string, due time.Time) string {
	return "schedule:" + scheduleID + ":" + due.UTC().Format(time.RFC3339)
}

// Scheduler starts the instances the schedules of the latest definitions
// are due for, as a start through the API would (stored first, then
// started). One pass looks back to the pass before, or, at first, as far
// as each schedule's catch-up; each due time is one instance, by its
// business key, so passes that overlap, or two schedulers, start it once.
type Scheduler struct {
	opts Options
	// since is where the next pass looks back to, by process/schedule.
	since map[string]time.Time
	defs  map[string]*process.Definition // parsed, by name@version
	// crons are the schedules' expressions read in their zones, by
	// name@version/id: read once, not at each pass.
	crons map[string]cron.Schedule
}

// NewScheduler is a Scheduler with the API's options.
func NewScheduler(o Options) *Scheduler {
	o.defaults()
	return &Scheduler{opts: o, since: map[string]time.Time{}, defs: map[string]*process.Definition{}, crons: map[string]cron.Schedule{}}
}

// ScheduledStart is one instance a scheduler pass started.
type ScheduledStart struct {
	Process, Schedule, InstanceID string
	Due                           time.Time
}

// Run starts what is due up to now and returns what it started; an error
// leaves the schedules it concerns to be looked at again by the next
// pass.
func (sc *Scheduler) Run(ctx context.Context, now time.Time) ([]ScheduledStart, error) {
	recs, err := sc.opts.Definitions.Definitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	switches, err := sc.opts.Schedules.ScheduleStates(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	states := make(map[string]store.ScheduleState, len(switches))
	for _, s := range switches {
		states[s.Process+"/"+s.Schedule] = s
	}
	st := &starter{opts: &sc.opts}
	defer st.flushMarks()
	var started []ScheduledStart
	for _, rec := range recs {
		def, err := sc.definition(rec)
		if err != nil {
			return started, err
		}
		for _, s := range def.Schedules {
			key := def.Name + "/" + s.ID
			sch, err := sc.cron(def, s)
			if err != nil {
				continue // refused when the definition was registered
			}
			// A paused schedule starts nothing, and makes up for nothing of
			// its pause once resumed.
			since, registered := sc.since[key], rec.CreatedAt
			if state, ok := states[key]; ok {
				if state.Paused {
					sc.since[key] = now
					continue
				}
				registered = maxTime(registered, state.ChangedAt)
			}
			due, more := dueTimes(sch, lookBack(now, s.CatchUpWindow(), registered, since), now, maxDuePerPass)
			for _, at := range due {
				id, created, err := sc.start(ctx, st, def, s, at)
				if err != nil {
					return started, fmt.Errorf("schedule %s of %s, due %s: %w", s.ID, def.Name, at.Format(time.RFC3339), err)
				}
				if created {
					started = append(started, ScheduledStart{Process: def.Name, Schedule: s.ID, InstanceID: id, Due: at})
				}
			}
			sc.since[key] = now
			if more { // a long outage: the next pass makes up for the rest
				sc.since[key] = due[len(due)-1]
			}
		}
	}
	return started, nil
}

// cron is s's expression (of def) read in its zone, kept across passes.
func (sc *Scheduler) cron(def *process.Definition, s process.Schedule) (cron.Schedule, error) {
	key := fmt.Sprintf("%s@%d/%s", def.Name, def.Version, s.ID)
	if sch, ok := sc.crons[key]; ok {
		return sch, nil
	}
	sch, err := parseSchedule(s)
	if err == nil {
		sc.crons[key] = sch
	}
	return sch, err
}

// definition is the parsed definition of rec, kept across passes.
func (sc *Scheduler) definition(rec store.DefinitionRecord) (*process.Definition, error) {
	key := fmt.Sprintf("%s@%d", rec.Name, rec.Version)
	if def, ok := sc.defs[key]; ok {
		return def, nil
	}
	var def process.Definition
	if err := json.Unmarshal(rec.Doc, &def); err != nil {
		return nil, fmt.Errorf("schedules: definition %s: %w", key, err)
	}
	sc.defs[key] = &def
	return &def, nil
}

// start stores and starts the instance of s due at due, unless it was
// (then only finishing its start, should that be pending).
func (sc *Scheduler) start(ctx context.Context, st *starter, def *process.Definition, s process.Schedule, due time.Time) (string, bool, error) {
	input := ScheduleInput(s, due)
	key := ScheduleKey(s.ID, due)
	inst, created, err := sc.opts.Instances.CreateInstance(ctx, store.Instance{
		ID: InstanceID(def.Name, key), Process: def.Name, ProcessVersion: def.Version, BusinessKey: key,
		Input: process.JSON(input), CreatedBy: ScheduledBy, CreatedAt: time.Now().UTC(),
		State:        process.JSON(workflows.NewState(def, workflows.StatusStarting)),
		PendingStart: true,
		Queued:       def.Concurrency > 0,
	})
	if err != nil || !inst.PendingStart {
		return inst.ID, created, err
	}
	// Stored before (by a pass that stopped midway) at another version:
	// started as stored.
	if inst.ProcessVersion != def.Version {
		rec, err := sc.opts.Definitions.Definition(ctx, def.Name, inst.ProcessVersion)
		if err != nil {
			return inst.ID, created, err
		}
		if def, err = sc.definition(rec); err != nil {
			return inst.ID, created, err
		}
	}
	var stored map[string]any
	if err := json.Unmarshal(inst.Input, &stored); err != nil {
		return inst.ID, created, err
	}
	if err := st.startNow(ctx, def, inst, stored); err != nil && !isHeld(err) {
		return inst.ID, created, err
	}
	return inst.ID, created, nil // started, or held while its process is paused or at its concurrency limit
}
