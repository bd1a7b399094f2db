package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// EndedStore records the end of an instance its workflow could not
// record, and brings back the reviews of an instance the store lost.
type EndedStore interface {
	SaveInstanceState(ctx context.Context, id, run string, seq int64, state json.RawMessage) (*store.Finish, error)
	SaveInstanceStateAt(ctx context.Context, id, run string, seq int64, state json.RawMessage, at time.Time) (*store.Finish, error)
	CloseReview(ctx context.Context, r store.Review) (store.Review, error)
	CreateReview(ctx context.Context, r store.Review) (store.Review, error)
	ReassignReview(ctx context.Context, id, queue string, at time.Time) (store.Review, error)
	EscalateReview(ctx context.Context, id string, to store.Escalation, at time.Time) (store.Review, error)
	// AppendDecision writes a decision record the store lost (see
	// takeBackDecisions), once per (run, sequence).
	AppendDecision(ctx context.Context, d process.Decision) (process.Decision, error)
}

// SweepEnded records the end of the instances whose workflow Temporal
// ended without the workflow's say, so it could not save its end itself:
// terminated (through Temporal's CLI or UI) or timed out there, since the
// given time. Each such instance still in progress is saved as failed, with
// why; the step under way reads failed, those after it not_run, and its
// open reviews close as canceled, so they leave the inbox. It returns how
// many instances it ended.
func SweepEnded(ctx context.Context, o Options, since time.Time) (int, error) {
	o.defaults()
	if o.Ended == nil {
		return 0, errors.New("sweep ended: no EndedStore")
	}
	query := fmt.Sprintf("WorkflowType = '%s' AND (ExecutionStatus = 'Terminated' OR ExecutionStatus = 'TimedOut') AND CloseTime >= '%s'",
		workflows.ProcessWorkflow, since.UTC().Format(time.RFC3339Nano))
	ended := 0
	var token []byte
	for {
		page, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: o.Namespace, Query: query, NextPageToken: token})
		if err != nil {
			return ended, fmt.Errorf("sweep ended: list workflows: %w", err)
		}
		for _, w := range page.GetExecutions() {
			ok, err := endInstance(ctx, o, w)
			if err != nil {
				return ended, err
			}
			if ok {
				ended++
			}
		}
		if token = page.GetNextPageToken(); len(token) == 0 {
			return ended, nil
		}
	}
}

// terminateReason is ": " and the reason a run was terminated with, or
// nothing when it gave none or the history cannot be read.
func terminateReason(ctx context.Context, o Options, id, run string) string {
	it := o.Temporal.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return ""
		}
		if r := ev.GetWorkflowExecutionTerminatedEventAttributes().GetReason(); r != "" {
			return ": " + r
		}
	}
	return ""
}

// endInstance saves the instance of w, a workflow run that ended outside
// the workflow, as failed with why, unless it has ended already or a later
// run goes on (it was reset, or retried). It reports whether it did. The
// store is asked first: each pass sees again the runs it ended before.
func endInstance(ctx context.Context, o Options, w *workflowpb.WorkflowExecutionInfo) (bool, error) {
	id, run := w.GetExecution().GetWorkflowId(), w.GetExecution().GetRunId()
	inst, err := o.Instances.Instance(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // not an instance of ours
	}
	if err != nil {
		return false, fmt.Errorf("sweep ended: instance %s: %w", id, err)
	}
	if inst.StateRun != "" && inst.StateRun != run {
		return false, nil // a later run (a retry) has saved its state
	}
	var st workflows.State
	if len(inst.State) > 0 {
		if err := json.Unmarshal(inst.State, &st); err != nil {
			return false, fmt.Errorf("sweep ended: instance %s: stored state: %w", id, err)
		}
	}
	if store.Final(st.Status) {
		return false, nil
	}
	latest, err := o.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return false, nil // gone from Temporal since
	case err != nil:
		return false, fmt.Errorf("sweep ended: describe %s: %w", id, err)
	case latest.GetWorkflowExecutionInfo().GetExecution().GetRunId() != run:
		return false, nil // a later run goes on: a reset through Temporal terminates the run it replaces
	}
	why := "timed out in Temporal"
	if w.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		why = "terminated in Temporal" + terminateReason(ctx, o, id, run)
	}
	if err := endOutside(ctx, o, inst, st, run, workflows.StatusFailed, why, "temporal"); err != nil {
		return false, err
	}
	return true, nil
}

// endOutside saves inst, whose workflow run ended (or vanished) without
// its say, as status (failed, or canceled by a person) with why: the step
// under way reads failed (or canceled), those after it not_run, its open
// reviews close as canceled by by (they leave the inbox), and the
// instances its process steps stored and never started end too.
func endOutside(ctx context.Context, o Options, inst store.Instance, st workflows.State, run, status, why, by string) error {
	id := inst.ID
	st.Status, st.Error = status, why
	under := workflows.StepFailed
	if status == workflows.StatusCanceled {
		under = workflows.StepCanceled
	}
	for i := range st.Plan {
		switch st.Plan[i].State {
		case workflows.StepRunning, workflows.StepWaitingReview, workflows.StepWaitingEvent:
			st.Plan[i].State = under
		case workflows.StepPending:
			st.Plan[i].State = workflows.StepNotRun
		}
	}
	now := time.Now().UTC()
	for k := range st.Reviews {
		rv := &st.Reviews[k]
		if rv.Status != store.ReviewOpen {
			continue
		}
		_, err := o.Ended.CloseReview(ctx, store.Review{ID: rv.ID, Status: store.ReviewCanceled, Reviewer: by, Comment: why, DecidedAt: &now})
		if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("sweep ended: instance %s: close review %s: %w", id, rv.ID, err)
		}
		rv.Status = store.ReviewCanceled
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	finish, err := o.Ended.SaveInstanceState(ctx, id, run, inst.StateSeq+1, raw)
	if err != nil {
		return fmt.Errorf("sweep ended: instance %s: %w", id, err)
	}
	finished(ctx, o, finish)
	o.Logger.Warn("instance ended outside its workflow", "instance", id, "run", run, "why", why)
	endUnstartedChildren(ctx, o, inst, st)
	return nil
}

// LostWorkflow is the error of an instance whose workflow Temporal no
// longer has.
const LostWorkflow = "its workflow is no longer in Temporal (its history was lost); start it again as a new instance"

// LostSweep ends the instances in progress whose workflow Temporal no
// longer has (deleted or purged there): nothing would ever move them, and
// their reviews could not be decided. Each is saved as failed with
// LostWorkflow, as SweepEnded does.
//
// It ends one only where Temporal shows it holds this store's history
// from before that instance: a workflow of another instance the store
// knows, started earlier. A Temporal with none (its database replaced, or
// the wrong cluster or namespace configured) would otherwise have every
// instance in progress ended; those are left as they are and counted as
// Unconfirmed, for a person to look at (and cancel them, if Temporal's
// history was truly lost: the cancel of an instance whose workflow is
// gone ends it).
//
// A pass asks Temporal about at most Budget instances (one Describe
// each), and the next pass goes on from there: a round covers every
// process's instances in progress, newest first, that started (their
// workflow saved a state) at least MinAge ago.
type LostSweep struct {
	Budget int
	MinAge time.Duration

	// checked remembers, of the instances found up to date with their
	// workflows this round and the last, what was seen then: a workflow
	// whose history has not grown since, beside the same save in the
	// store, is not asked again.
	checked, before map[string]checkedAt
	// stuck holds the instances whose workflow left a query unanswered,
	// until when they are not asked again.
	stuck map[string]time.Time

	processes []string // left in this round, the current one first
	after     string   // the cursor in the current process
}

// LostCounts is what a pass of LostSweep found: the instances it ended,
// those whose workflow Temporal does not have, left as they are, and
// those whose state in the store it brought up to their workflow's.
type LostCounts struct {
	Ended, Unconfirmed, CaughtUp int
	// Decisions is how many decision records the instances caught up
	// took back from their workflows' histories.
	Decisions int
}

// Run makes one pass.
func (l *LostSweep) Run(ctx context.Context, o Options) (LostCounts, error) {
	var n LostCounts
	o.defaults()
	if o.Ended == nil {
		return n, errors.New("sweep lost: no EndedStore")
	}
	if len(l.processes) == 0 { // a new round
		l.before, l.checked = l.checked, map[string]checkedAt{}
		for id, until := range l.stuck {
			if time.Now().After(until) {
				delete(l.stuck, id)
			}
		}
		defs, err := o.Definitions.Definitions(ctx)
		if err != nil {
			return n, fmt.Errorf("sweep lost: definitions: %w", err)
		}
		for _, d := range defs {
			if !slices.Contains(l.processes, d.Name) {
				l.processes = append(l.processes, d.Name)
			}
		}
		l.after = ""
	}
	asked := 0
	before := time.Now().Add(-l.MinAge)
	var h history
	c := catchUp{o: o, sweep: l}
	for len(l.processes) > 0 && asked < l.Budget {
		limit := min(200, l.Budget-asked)
		page, err := o.Instances.Instances(ctx, store.InstanceFilter{Process: l.processes[0], Status: store.InstanceInProgress, After: l.after, Limit: limit})
		if err != nil {
			return n, fmt.Errorf("sweep lost: instances of %s: %w", l.processes[0], err)
		}
		for _, sum := range page {
			l.after = store.InstanceCursor(sum)
			if sum.Status == workflows.StatusStarting || sum.CreatedAt.After(before) {
				continue // not started yet (the start sweep's), or just started
			}
			asked++
			found, err := endLost(ctx, o, &h, &c, sum.ID)
			if err != nil {
				return n, err
			}
			switch found {
			case lostEnded:
				n.Ended++
			case lostUnconfirmed:
				n.Unconfirmed++
			}
		}
		if len(page) < limit { // the process's last page
			l.processes, l.after = l.processes[1:], ""
		}
	}
	caught, err := c.finish(ctx)
	n.CaughtUp += caught
	n.Decisions += c.decisions
	return n, err
}

// What endLost found of an instance.
const (
	lostNot = iota
	lostEnded
	lostUnconfirmed
)

// endLost ends the instance id as lost if Temporal has no workflow of it,
// it ran (a workflow saved its state), and Temporal holds this store's
// history from before it (see LostSweep); if Temporal has its workflow,
// it checks the instance's state against the workflow's (see catchUp).
func endLost(ctx context.Context, o Options, h *history, c *catchUp, id string) (int, error) {
	desc, err := o.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	if !errors.As(err, &nf) {
		if err != nil {
			return lostNot, fmt.Errorf("sweep lost: describe %s: %w", id, err)
		}
		return lostNot, c.run(ctx, id, desc.GetWorkflowExecutionInfo())
	}
	inst, err := o.Instances.Instance(ctx, id)
	if err != nil {
		return lostNot, fmt.Errorf("sweep lost: instance %s: %w", id, err)
	}
	if inst.PendingStart || inst.StateSeq == 0 || inst.StateRun == "" {
		return lostNot, nil // its workflow has not started (held, queued, or starting)
	}
	var st workflows.State
	if err := json.Unmarshal(inst.State, &st); err != nil {
		return lostNot, fmt.Errorf("sweep lost: instance %s: stored state: %w", id, err)
	}
	if store.Final(st.Status) {
		return lostNot, nil
	}
	known, err := h.before(ctx, o, inst.CreatedAt)
	if err != nil {
		return lostNot, err
	}
	if !known {
		o.Logger.Error("Temporal has no workflow of an instance in progress, nor of any instance this store knows from before it: a new Temporal database, or the wrong Temporal (--temporal-address, --namespace). It is left as it is; if Temporal's history was lost, cancel it (adaptflow instances cancel)",
			"instance", id, "namespace", o.Namespace)
		return lostUnconfirmed, nil
	}
	if err := endOutside(ctx, o, inst, st, inst.StateRun, workflows.StatusFailed, LostWorkflow, "temporal"); err != nil {
		return lostNot, err
	}
	return lostEnded, nil
}

// history remembers, within a sweep's pass, what holdsHistoryBefore
// answered, so that a Temporal missing many instances is asked once or
// twice rather than once per instance: history before knownFrom means
// history before any later time; none before noneTo, none before any
// earlier time (among the latest workflows listed).
type history struct {
	knownFrom, noneTo time.Time
}

// before is holdsHistoryBefore(t), from what the pass has learned when
// it can be.
func (h *history) before(ctx context.Context, o Options, t time.Time) (bool, error) {
	if !h.knownFrom.IsZero() && !t.Before(h.knownFrom) {
		return true, nil
	}
	if !h.noneTo.IsZero() && !t.After(h.noneTo) {
		return false, nil
	}
	known, err := holdsHistoryBefore(ctx, o, t)
	if err != nil {
		return false, err
	}
	if known {
		h.knownFrom = t
	} else if t.After(h.noneTo) {
		h.noneTo = t
	}
	return known, nil
}

// holdsHistoryBefore says whether Temporal holds a workflow, started
// before t, of an instance the store knows: history of this deployment
// from before then.
func holdsHistoryBefore(ctx context.Context, o Options, t time.Time) (bool, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND TaskQueue = '%s' AND StartTime < '%s'",
		workflows.ProcessWorkflow, o.TaskQueue, t.UTC().Format(time.RFC3339Nano))
	page, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: o.Namespace, Query: query, PageSize: 20})
	if err != nil {
		return false, fmt.Errorf("sweep lost: list workflows: %w", err)
	}
	for _, w := range page.GetExecutions() {
		_, err := o.Instances.Instance(ctx, w.GetExecution().GetWorkflowId())
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("sweep lost: instance %s: %w", w.GetExecution().GetWorkflowId(), err)
		}
	}
	return false, nil
}

// endUnstartedChildren ends the instances the process steps of an
// instance ended outside its workflow stored and never started (held by
// a pause, or holding or awaiting a slot under a concurrency limit):
// nothing starts them now, so they are saved canceled, every step not run,
// and free their slot. A retry of the parent starts them again at its
// step. One that cannot be ended is logged; the parent's end stands.
func endUnstartedChildren(ctx context.Context, o Options, parent store.Instance, st workflows.State) {
	pdef, _, err := definition(ctx, o.Definitions, parent.Process, parent.ProcessVersion)
	if err != nil {
		return
	}
	for _, p := range st.Plan {
		step, ok := pdef.Step(p.ID)
		if p.Kind != process.KindProcess || !ok || step.Process == nil {
			continue
		}
		id := process.InstanceID(step.Process.Name, process.SubProcessKey(parent.ID, p.ID))
		child, err := o.Instances.Instance(ctx, id)
		if err != nil || child.StateSeq > 0 {
			continue // never stored, or its workflow ran (and ends with its parent)
		}
		def, _, err := definition(ctx, o.Definitions, child.Process, child.ProcessVersion)
		if err != nil {
			o.Logger.Warn("an instance of a process step, never started, not ended with its parent", "instance", id, "err", err)
			continue
		}
		cst := workflows.UnstartedState(def, "canceled: "+parent.ID+" ended in Temporal before it started")
		fin, err := o.Ended.SaveInstanceState(ctx, id, store.ParentEndedRun, 1, process.JSON(cst))
		if err != nil {
			o.Logger.Warn("an instance of a process step, never started, not ended with its parent", "instance", id, "err", err)
			continue
		}
		if o.Finished != nil {
			o.Finished(fin) // it never started: it frees no slot
		}
	}
}

// finished counts an instance a sweep ended (o.Finished) and starts the
// instances queued under its process's concurrency limit, now that its
// slot is free, as a workflow's own end does (the SaveState activity):
// they would otherwise wait for the next start sweep. A failure is left
// to that sweep.
func finished(ctx context.Context, o Options, fin *store.Finish) {
	if o.Finished != nil {
		o.Finished(fin)
	}
	if fin == nil {
		return
	}
	if _, err := StartQueued(ctx, SweepOptions{Options: o}, fin.Process); err != nil && ctx.Err() == nil {
		o.Logger.Warn("starting the instances queued for a freed slot; the start sweep will", "process", fin.Process, "err", err)
	}
}

// catchUp brings the state the store holds of an instance in progress up
// to its workflow's, where the store is behind it: a store restored from
// a backup older than Temporal's state holds instances as they were then
// (running, where their workflows have since gone on, opened reviews the
// inbox never showed, or ended). The workflow answers QuerySaved with its
// latest save's number; where the store holds an earlier one (or another
// run's), the workflow's state is saved, its open reviews the store lacks
// are opened, those moved to another queue since are moved, those it
// closed are closed, and the decision records its history holds and the
// store lacks are written (takeBackDecisions). A workflow terminated or
// timed out is SweepEnded's.
//
// The instances a pass finds behind are given catchUpSettle to catch up
// by themselves (a save under way), once for them all, at the pass's end
// (finish). A query that goes unanswered skips its instance for
// catchUpStuckFor; a pass stops asking after the second (no worker
// answers, say), and the next pass tries again. A workflow that answers
// with an error is asked again once it moves.
type catchUp struct {
	o          Options
	sweep      *LostSweep // its memo of the instances checked (nil: none)
	failed     bool       // no more queries this pass
	unanswered int        // queries that went unanswered this pass
	told       bool       // a query answered with an error was logged
	pending    []behindAt
	decisions  int // records taken back this pass (takeBackDecisions)
}

// behindAt is an instance found behind its workflow, as it was found.
type behindAt struct {
	id   string
	info *workflowpb.WorkflowExecutionInfo
}

// checkedAt is what a check of an instance found up to date saw: its
// workflow run's history length, and the save the store held.
type checkedAt struct {
	history int64
	run     string
	seq     int64
}

// catchUpQueryTimeout bounds a query: a workflow no worker answers for
// must not hold the sweep up.
const catchUpQueryTimeout = 5 * time.Second

// catchUpSettle is how long the instances found behind are given to
// catch up by themselves (a save under way) before their states are
// written for them.
var catchUpSettle = 2 * time.Second

// run checks the instance id against its workflow, info, and keeps it for
// finish if the store is behind.
func (c *catchUp) run(ctx context.Context, id string, info *workflowpb.WorkflowExecutionInfo) error {
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED,
		enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
	default:
		return nil // terminated or timed out: SweepEnded's
	}
	if c.failed {
		return nil
	}
	inst, err := c.o.Instances.Instance(ctx, id)
	if err != nil {
		return fmt.Errorf("sweep catch-up: instance %s: %w", id, err)
	}
	seen := checkedAt{history: info.GetHistoryLength(), run: inst.StateRun, seq: inst.StateSeq}
	if c.remembers(id, seen) {
		return nil // neither has moved since it was found up to date
	}
	if c.sweep != nil && time.Now().Before(c.sweep.stuck[id]) {
		return nil // its workflow left the last query unanswered
	}
	saved, ok := c.ask(ctx, id, info.GetExecution().GetRunId(), seen)
	if !ok {
		return nil
	}
	if !behind(inst, saved) {
		c.remember(id, seen)
		return nil
	}
	c.pending = append(c.pending, behindAt{id: id, info: info})
	return nil
}

// finish waits catchUpSettle, then brings up the instances run found
// behind that still are, and says how many.
func (c *catchUp) finish(ctx context.Context) (int, error) {
	if len(c.pending) == 0 {
		return 0, nil
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(catchUpSettle):
	}
	n := 0
	for _, b := range c.pending {
		saved, ok := c.ask(ctx, b.id, b.info.GetExecution().GetRunId(), checkedAt{})
		if !ok {
			if c.failed {
				break
			}
			continue
		}
		inst, err := c.o.Instances.Instance(ctx, b.id)
		if err != nil {
			return n, fmt.Errorf("sweep catch-up: instance %s: %w", b.id, err)
		}
		if !behind(inst, saved) {
			continue // it caught up by itself
		}
		if err := c.bringUp(ctx, b.id, saved, b.info); err != nil {
			return n, err
		}
		n++
	}
	c.pending = nil
	return n, nil
}

// behind reports whether the store holds an earlier save of the instance
// than its workflow's latest, or another run's.
func behind(inst store.Instance, saved workflows.Saved) bool {
	return saved.Seq > 0 && (inst.StateRun != saved.Run || inst.StateSeq < saved.Seq)
}

// ask queries a workflow run for its latest save; false when it could not
// tell (see catchUp).
func (c *catchUp) ask(ctx context.Context, id, run string, seen checkedAt) (workflows.Saved, bool) {
	saved, err := querySaved(ctx, c.o, id, run)
	var qf *serviceerror.QueryFailed
	switch {
	case errors.As(err, &qf):
		// This workflow could not answer (its history does not replay, or
		// its worker is older than the query): it is asked again once it
		// moves, and the others now. Logged once a pass: workers older
		// than the query (an upgrade under way) fail it for every one.
		if seen != (checkedAt{}) {
			c.remember(id, seen)
		}
		if !c.told {
			c.told = true
			c.o.Logger.Warn("sweep: a workflow could not tell its latest save (an older worker, or a history that does not replay); it is asked again once it moves", "instance", id, "err", err)
		}
		return saved, false
	case err != nil:
		// Unanswered: a workflow whose tasks fail (a type no worker
		// knows, a history that no longer replays) is skipped this pass;
		// a second one stops the pass's queries (no worker answers).
		c.unanswered++
		c.failed = c.unanswered >= catchUpUnanswered
		if c.sweep != nil && !c.failed {
			if c.sweep.stuck == nil {
				c.sweep.stuck = map[string]time.Time{}
			}
			c.sweep.stuck[id] = time.Now().Add(catchUpStuckFor)
		}
		if c.failed {
			c.o.Logger.Warn("sweep: workflows do not answer queries (no worker?); catching up with workflows waits for the next pass", "instance", id, "err", err)
		}
		return saved, false
	}
	return saved, true
}

// catchUpUnanswered is how many unanswered queries stop a pass's, and
// catchUpStuckFor how long an instance whose query went unanswered (alone
// in its pass) is not asked again.
const (
	catchUpUnanswered = 2
	catchUpStuckFor   = 10 * time.Minute
)

// bringUp saves the workflow's latest state as the instance's, after its
// reviews: once the state reads waiting_review, its review is in the
// inbox.
func (c *catchUp) bringUp(ctx context.Context, id string, saved workflows.Saved, info *workflowpb.WorkflowExecutionInfo) error {
	o := c.o
	now := time.Now().UTC()
	for _, rv := range saved.State.Reviews {
		if rv.Status == store.ReviewOpen {
			if err := reopenReview(ctx, o.Ended, id, saved.Run, saved.State.Process, rv, now); err != nil {
				return fmt.Errorf("sweep catch-up: %s: review %s: %w", id, rv.ID, err)
			}
			continue
		}
		_, err := o.Ended.CloseReview(ctx, store.Review{ID: rv.ID, Status: rv.Status, Verdict: rv.Verdict, Reviewer: rv.Reviewer, Comment: rv.Comment, DecidedAt: &now})
		if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("sweep catch-up: %s: close review %s: %w", id, rv.ID, err)
		}
	}
	decided, err := takeBackDecisions(ctx, o, id, info.GetExecution().GetRunId())
	c.decisions += decided
	if err != nil {
		return fmt.Errorf("sweep catch-up: %w", err)
	}
	// A workflow that ended: its end is when the instance finished (its
	// cycle time), not now.
	at := now
	if ct := info.GetCloseTime(); ct != nil && info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		at = ct.AsTime()
	}
	finish, err := o.Ended.SaveInstanceStateAt(ctx, id, saved.Run, saved.Seq, process.JSON(saved.State), at)
	if err != nil {
		return fmt.Errorf("sweep catch-up: %s: %w", id, err)
	}
	finished(ctx, o, finish)
	o.Logger.Warn("instance's state caught up with its workflow's: the store was behind it (restored from an older backup, or its writes were lost)",
		"instance", id, "run", saved.Run, "save", saved.Seq, "status", saved.State.Status, "decisions", decided)
	return nil
}

// reopenReview puts an open review of a workflow's state in the inbox (a
// store that lost it, or has it as it was before it moved) as the
// workflow has it: opened when it opened, due when it is due, in the queue
// it moved to since, escalated by its SLA or reassigned by a reviewer.
// States saved before they kept the review's times read as opened now.
func reopenReview(ctx context.Context, ended EndedStore, instance, run, processName string, rv workflows.ReviewState, now time.Time) error {
	opened := rv.OpenedAt
	if opened.IsZero() {
		opened = now
	}
	had, err := ended.CreateReview(ctx, store.Review{ID: rv.ID, InstanceID: instance, RunID: run, Process: processName, Step: rv.Step, Queue: rv.Queue,
		Reason: rv.Reason, PolicyID: rv.PolicyID, DecisionID: rv.DecisionID, CreatedAt: opened, DueAt: rv.DueAt})
	if err != nil || had.Status != store.ReviewOpen {
		return err
	}
	var escalated *workflows.ReviewMove // the first, when the inbox's review was escalated
	for i, m := range rv.Moves {
		if m.By == "sla" {
			escalated = &rv.Moves[i]
			break
		}
	}
	switch {
	case escalated != nil && rv.DueAt != nil && (had.EscalatedAt == nil || had.Queue != rv.Queue):
		_, err = ended.EscalateReview(ctx, rv.ID, store.Escalation{Queue: rv.Queue, Due: *rv.DueAt, Priority: rv.Priority}, escalated.At)
	case had.Queue != rv.Queue: // reassigned since
		_, err = ended.ReassignReview(ctx, rv.ID, rv.Queue, now)
	}
	return err
}

// remembers reports whether the instance id was found up to date, this
// round or the last, as it is seen now (and carries that on).
func (c *catchUp) remembers(id string, seen checkedAt) bool {
	if c.sweep == nil {
		return false
	}
	was, ok := c.sweep.checked[id]
	if !ok {
		was, ok = c.sweep.before[id]
	}
	if ok && was == seen {
		c.remember(id, seen)
		return true
	}
	return false
}

func (c *catchUp) remember(id string, seen checkedAt) {
	if c.sweep != nil && c.sweep.checked != nil {
		c.sweep.checked[id] = seen
	}
}

// querySaved asks a workflow run for its latest save (QuerySaved),
// within catchUpQueryTimeout: the catch-up's and the recover sweep's.
func querySaved(ctx context.Context, o Options, id, run string) (workflows.Saved, error) {
	var saved workflows.Saved
	qctx, cancel := context.WithTimeout(ctx, catchUpQueryTimeout)
	defer cancel()
	v, err := o.Temporal.QueryWorkflow(qctx, id, run, workflows.QuerySaved)
	if err == nil {
		err = v.Get(&saved)
	}
	return saved, err
}
