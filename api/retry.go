package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// notRetried are the activities whose failure never fails an instance: an
// instance's callbacks and review notifications are sent on the side.
var notRetried = map[string]bool{"Callback": true, "Notify": true}

// errNothingToRetry: the failed run has no failed step or decision to run
// again; its failure is in the process itself and would come back.
var errNothingToRetry = errors.New("no step or decision of it failed: its failure is in the process itself, and a retry would fail the same way")

// errNothingUnderWay: the run was stopped in Temporal (terminated, or timed
// out) while no step or decision was under way: it waited for a review, an
// event or a timer, and there is nothing to run again.
var errNothingUnderWay = errors.New("no step or decision of it was under way when it was stopped in Temporal (it was waiting for a review, an event or a timer), so there is nothing to run again: start a new instance")

// retryPoint finds, in the history of the run of a workflow, the workflow
// task that scheduled the last activity to fail (a step, a decision, a
// classification; not a callback): resetting the run to it runs that task
// again, and with it the failed activity, on top of everything before it.
// A run stopped in Temporal (stopped: terminated by an operator, say, as
// its step hung) goes back instead to the task that scheduled the last
// activity still under way when it was stopped, or, with none, to the
// task that stored the instance a process step waited to start.
func retryPoint(history client.HistoryEventIterator, stopped bool) (int64, error) {
	scheduled := map[int64]string{}  // activity scheduled event -> its type
	scheduledBy := map[int64]int64{} // -> the workflow task completed event that scheduled it
	open := map[int64]bool{}         // activities scheduled and not ended
	var point int64
	// held is the task that scheduled a process step's StartSubProcess
	// that completed with no child workflow after it (yet): the step
	// waits for its instance's turn (held by a pause, or queued under a
	// concurrency limit).
	var held int64
	for history.HasNext() {
		ev, err := history.Next()
		if err != nil {
			return 0, err
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			a := ev.GetActivityTaskScheduledEventAttributes()
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
			scheduledBy[ev.GetEventId()] = a.GetWorkflowTaskCompletedEventId()
			open[ev.GetEventId()] = true
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			id := ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
			delete(open, id)
			if scheduled[id] == "StartSubProcess" {
				held = scheduledBy[id]
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			delete(open, ev.GetActivityTaskCanceledEventAttributes().GetScheduledEventId())
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED, enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			id := ev.GetActivityTaskFailedEventAttributes().GetScheduledEventId()
			if ev.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT {
				id = ev.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()
			}
			delete(open, id)
			if name, ok := scheduled[id]; ok && !notRetried[name] && !stopped {
				point = scheduledBy[id]
			}
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			// A process step's instance of another process: a child
			// workflow, under way until it ends.
			a := ev.GetStartChildWorkflowExecutionInitiatedEventAttributes()
			held = 0
			scheduled[ev.GetEventId()] = "child " + a.GetWorkflowType().GetName()
			scheduledBy[ev.GetEventId()] = a.GetWorkflowTaskCompletedEventId()
			open[ev.GetEventId()] = true
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
			delete(open, ev.GetChildWorkflowExecutionCompletedEventAttributes().GetInitiatedEventId())
		case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
			enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
			enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
			id := childInitiated(ev)
			delete(open, id)
			if _, ok := scheduled[id]; ok && !stopped {
				point = scheduledBy[id]
			}
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			m := ev.GetMarkerRecordedEventAttributes()
			if m.GetMarkerName() != "LocalActivity" || m.GetFailure() == nil {
				continue
			}
			var data struct{ ActivityType string }
			if p := m.GetDetails()["data"]; p != nil {
				_ = converter.GetDefaultDataConverter().FromPayloads(p, &data)
			}
			if !notRetried[data.ActivityType] && !stopped {
				point = m.GetWorkflowTaskCompletedEventId()
			}
		}
	}
	if stopped {
		// The latest activity under way; a step and its callback can be
		// under way at once, and only the step counts.
		var last int64
		for id := range open {
			if !notRetried[scheduled[id]] && id > last {
				last = id
			}
		}
		switch {
		case last != 0:
			return scheduledBy[last], nil
		case held != 0: // its process step waited for its instance's turn
			return held, nil
		}
		return 0, errNothingUnderWay
	}
	if point == 0 {
		return 0, errNothingToRetry
	}
	return point, nil
}

// compensated lists, from an instance's saved state, the compensations it
// ran ("release undid reserve").
func compensated(state []byte) []string {
	var st struct {
		Plan []workflows.PlanStep `json:"plan"`
	}
	if json.Unmarshal(state, &st) != nil {
		return nil
	}
	var out []string
	for _, p := range st.Plan {
		if p.Origin == "compensation" {
			out = append(out, p.ID+" undid "+p.Compensates)
		}
	}
	return out
}

// childInitiated is the initiated event of the child workflow an event
// ends.
func childInitiated(ev *historypb.HistoryEvent) int64 {
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
		return ev.GetChildWorkflowExecutionFailedEventAttributes().GetInitiatedEventId()
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
		return ev.GetChildWorkflowExecutionTimedOutEventAttributes().GetInitiatedEventId()
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED:
		return ev.GetChildWorkflowExecutionTerminatedEventAttributes().GetInitiatedEventId()
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED:
		return ev.GetChildWorkflowExecutionCanceledEventAttributes().GetInitiatedEventId()
	case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
		return ev.GetStartChildWorkflowExecutionFailedEventAttributes().GetInitiatedEventId()
	}
	return 0
}

// retryInstance runs a failed instance again from what failed: its
// workflow is reset (Temporal's reset, into a new run) to just before the
// failed step or decision was scheduled. What ran before it stands (steps
// done, decisions recorded, reviews decided) and is not run again; the
// failed step runs afresh, then the rest. The answer is the instance once
// it runs again (200), or as it is when that takes longer (202).
func (s *server) retryInstance(c *gin.Context) {
	inst, why, ok := s.actionTarget(c)
	if !ok {
		return
	}
	refuse := func(msg string) { fail(c, conflict("instance %s %s", inst.ID, msg)) }
	if st, _ := store.StatusOf(inst.State); st != store.InstanceFailed {
		refuse("is " + orStarting(st) + ": only a failed instance can be retried")
		return
	}
	if undone := compensated(inst.State); len(undone) > 0 {
		// Running the failed step again on top of steps already undone
		// would leave the world half done: the instance is over.
		refuse("has been compensated (" + strings.Join(undone, ", ") + "): its steps were undone, so it cannot go on from where it failed; start a new instance")
		return
	}
	ctx := c.Request.Context()
	if inst.RetryQueued != "" {
		refuse("has a retry queued already (" + inst.RetryQueued + "): it runs once process " + inst.Process + " has a slot free, and is not paused")
		return
	}
	desc, err := s.describeEnded(ctx, inst)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		refuse("is no longer in Temporal (its namespace's retention has passed)")
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	run, stopped, err := retryableRun(desc, inst)
	if err != nil {
		refuse(err.Error())
		return
	}
	reason := "retried by " + caller(c).Name
	if why != "" {
		reason += ": " + why
	}
	// A pause holds retries as it holds new instances (the partner every
	// instance calls is down): the retry is queued, and runs once the
	// process is resumed.
	paused, err := s.starts.held(ctx, inst.Process)
	if err != nil {
		fail(c, err)
		return
	}
	if paused != nil {
		s.queueRetry(c, inst, run, stopped, reason)
		return
	}
	// Retries of the run that race (two clicks, two operators, two
	// replicas) go ahead once: a second reset of the run would end the
	// first's new run midway. Under a concurrency limit the retry takes
	// a free slot, as a start would, or waits in the queue for one.
	limit, err := s.starts.limit(ctx, inst.Process)
	if err != nil {
		fail(c, err)
		return
	}
	claimed, err := s.Retries.ClaimRetry(ctx, inst.ID, run, s.Clock(), store.RetryClaimStale, limit)
	if errors.Is(err, store.ErrNoSlot) {
		s.queueRetry(c, inst, run, stopped, reason)
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	if !claimed {
		refuse("is being retried already")
		return
	}
	if err := resetForRetry(ctx, &s.Options, inst.ID, run, stopped, reason); err != nil {
		if err := s.Retries.ReleaseRetry(context.WithoutCancel(ctx), inst.ID, run); err != nil {
			loggerFrom(c).ErrorContext(ctx, "retry claim not released", "instance", inst.ID, "run", run, "err", err)
		}
		if errors.Is(err, errNothingToRetry) || errors.Is(err, errNothingUnderWay) {
			refuse("cannot be retried: " + err.Error())
			return
		}
		fail(c, err)
		return
	}
	s.Retried(inst.Process)
	s.answerWhen(c, inst.ID, func(status string) bool { return status != store.InstanceFailed })
}

// queueRetry queues the retry of a failed instance whose process runs its
// concurrency limit, or is paused: it runs as a slot frees, in turn (first
// come, first served), as a start would, and not while the process is
// paused. One that could not run (nothing to retry) is
// refused now rather than queued. The answer is 202 with the instance,
// its held saying it waits.
func (s *server) queueRetry(c *gin.Context, inst store.Instance, run string, stopped bool, reason string) {
	ctx := c.Request.Context()
	if _, err := retryPoint(s.Temporal.GetWorkflowHistory(ctx, inst.ID, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT), stopped); err != nil {
		if errors.Is(err, errNothingToRetry) || errors.Is(err, errNothingUnderWay) {
			fail(c, conflict("instance %s cannot be retried: %s", inst.ID, err))
			return
		}
		fail(c, err)
		return
	}
	queued, err := s.Retries.QueueRetry(ctx, inst.ID, reason)
	if err != nil {
		fail(c, err)
		return
	}
	if !queued {
		fail(c, conflict("instance %s has a retry queued already, or is being retried", inst.ID))
		return
	}
	// A slot that freed since the claim found none (its instance's end
	// looked at the queue before this retry was in it) goes to the queue
	// now, not at the next end or sweep.
	s.startQueuedNow(inst.Process)
	s.answerWhen(c, inst.ID, nil)
}

// retryableRun is the run of an instance's workflow a retry resets, from
// its description, and whether it was stopped in Temporal (terminated,
// timed out) rather than failed; an error says why it cannot be retried.
func retryableRun(desc *workflowservice.DescribeWorkflowExecutionResponse, inst store.Instance) (string, bool, error) {
	run := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	switch st := desc.GetWorkflowExecutionInfo().GetStatus(); st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return run, false, nil
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return run, true, nil
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		if run == inst.StateRun {
			return "", false, errors.New("has failed, but its workflow has not ended in Temporal yet: try again in a moment")
		}
		return "", false, errors.New("is being retried already")
	default: // a retry's new run canceled through Temporal before it ran, say
		return "", false, errors.New("cannot be retried: its workflow is " + strings.ToLower(st.String()) + " in Temporal, not failed")
	}
}

// resetForRetry resets the failed (or stopped) run of an instance's
// workflow to its retry point, into a new run that keeps the reason.
func resetForRetry(ctx context.Context, o *Options, id, run string, stopped bool, reason string) error {
	point, err := retryPoint(o.Temporal.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT), stopped)
	if err != nil {
		return err
	}
	_, err = o.Temporal.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 o.Namespace,
		WorkflowExecution:         &commonpb.WorkflowExecution{WorkflowId: id, RunId: run},
		Reason:                    reason,
		WorkflowTaskFinishEventId: point,
	})
	return err
}

// retryQueued runs a queued retry that holds its slot (admitted, see
// starter.hold): it
// takes it (once, whichever starter comes first) and resets the run. One
// that can no longer run (its workflow gone, or no longer failed) is
// logged and dropped; one Temporal did not take (an outage) is queued
// again.
func (st *starter) retryQueued(ctx context.Context, inst store.Instance) error {
	o := st.opts
	if o.Retries == nil {
		return nil // a starter that cannot retry leaves it to the API's sweep
	}
	taken, err := o.Retries.TakeQueuedRetry(ctx, inst.ID, o.Clock())
	if err != nil || !taken {
		return err
	}
	drop := func(why string) error {
		o.Logger.Warn("a queued retry could not run; retry the instance again", "instance", inst.ID, "why", why)
		return nil
	}
	desc, err := o.Temporal.DescribeWorkflowExecution(ctx, inst.ID, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return drop("it is no longer in Temporal")
	case err != nil:
		return st.requeueRetry(ctx, inst, err)
	}
	run, stopped, err := retryableRun(desc, inst)
	if err != nil {
		return drop("it " + err.Error())
	}
	err = resetForRetry(ctx, o, inst.ID, run, stopped, inst.RetryQueued+" (queued until process "+inst.Process+" could run it)")
	switch {
	case errors.Is(err, errNothingToRetry) || errors.Is(err, errNothingUnderWay):
		return drop(err.Error())
	case err != nil:
		return st.requeueRetry(ctx, inst, err)
	}
	if o.Retried != nil {
		o.Retried(inst.Process)
	}
	o.Logger.Info("ran a queued retry", "instance", inst.ID)
	return nil
}

// requeueRetry puts a queued retry that Temporal did not take back in
// the queue, and returns why it did not run.
func (st *starter) requeueRetry(ctx context.Context, inst store.Instance, cause error) error {
	if _, err := st.opts.Retries.QueueRetry(context.WithoutCancel(ctx), inst.ID, inst.RetryQueued); err != nil {
		st.opts.Logger.Error("a queued retry that did not run is lost; retry the instance again", "instance", inst.ID, "err", err)
	}
	return fmt.Errorf("queued retry of %s: %w", inst.ID, cause)
}

// runEndWait bounds how long a retry waits for the run that saved an
// instance's failure to end in Temporal.
const runEndWait = 5 * time.Second

// describeEnded describes the instance's workflow. A run saves its failure
// just before it ends, so a retry right after the failure may find it
// still running in Temporal: then it waits a little for it to end.
func (s *server) describeEnded(ctx context.Context, inst store.Instance) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	deadline := time.Now().Add(runEndWait)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		desc, err := s.Temporal.DescribeWorkflowExecution(ctx, inst.ID, "")
		if err != nil {
			return nil, err
		}
		info := desc.GetWorkflowExecutionInfo()
		if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetExecution().GetRunId() != inst.StateRun || time.Now().After(deadline) {
			return desc, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func orStarting(status string) string {
	if status == "" {
		return store.InstanceStarting
	}
	return status
}
