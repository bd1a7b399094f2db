package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// RecoveredBy is the created_by of an instance brought back into the
// store from its workflow (a process step's keeps its parent's), and the
// author of a definition version brought back with it.
const RecoveredBy = "recovered"

// RecoverSweep brings back into the store the instances whose workflow
// Temporal runs (or ended recently: see LookAtClosed) and the store does
// not know: the store restored from a
// backup older than Temporal's state (a point-in-time recovery of
// PostgreSQL, say) lost the instances started since. Their workflows go
// on, but the API answered 404 for them and their reviews were not in the
// inbox, so nobody could decide them. Each is stored again from its
// workflow: the definition version, business key, input and creation time
// it started with (its history's first event), its state (the workflow's
// answer to QueryState), its open reviews, and the definition version
// when the store lost that too, and its decision records (from its
// history: see takeBackDecisions).
//
// It brings one back only where Temporal holds this store's history from
// before it (a workflow, started earlier, of an instance the store knows:
// the store is this Temporal's, restored), and logs the others: the wrong
// Temporal configured would otherwise have its workflows copied in.
//
// A pass reads at most Budget running workflows from Temporal's list
// (one store read each, and the recovery of those missing), and the next
// pass goes on from there; a round covers the workflows that started at
// least MinAge before it began.
type RecoverSweep struct {
	Budget int
	MinAge time.Duration

	query string // of this round
	token []byte // the next page of this round
	// closed asks for a round over the workflows that ended within
	// ClosedWithin (see LookAtClosed); endedSign is the workflow (id and
	// run) that ended last and was unknown to the store when it last
	// asked for one.
	closed    bool
	endedSign string
}

// ClosedWithin is how far back a round over ended workflows looks:
// Temporal's default retention of a closed workflow's history.
const ClosedWithin = 7 * 24 * time.Hour

// LookAtClosed asks for one round, after the current one, over the
// workflows that ended within ClosedWithin, bringing back those the store
// does not know: instances started and ended since the store's backup.
// Without them, their business keys would start new instances, and the
// KPIs would miss them. The sweeper asks for it when a pass found signs
// of a restore (instances brought back, or caught up): a round over every
// ended workflow at each pass would cost a store read per workflow.
func (r *RecoverSweep) LookAtClosed() { r.closed = true }

// RecoverCounts is what a pass of RecoverSweep found: the instances it
// brought back, and the running workflows the store does not know that
// it left (no sign that this Temporal holds the store's history).
type RecoverCounts struct {
	Recovered, Unconfirmed int
	// Decisions is how many decision records the instances brought back
	// took back from their workflows' histories.
	Decisions int
}

// Run makes one pass.
func (r *RecoverSweep) Run(ctx context.Context, o Options) (RecoverCounts, error) {
	var n RecoverCounts
	o.defaults()
	var h history // what this pass learns of Temporal's history
	if r.query == "" && !r.closed {
		// A cheap sign of a store restored from an older backup with
		// nothing in progress: the workflow that ended last is unknown.
		sign, err := newestEndedUnknown(ctx, o, &h, r.MinAge)
		if err != nil {
			return n, err
		}
		// The same one as last time: the round it asked for could not
		// bring it back (an input not this product's). Another would not
		// either, and rounds over ended workflows, one after another,
		// would hold up those over running ones for good.
		r.closed = sign != "" && sign != r.endedSign
		if sign != "" {
			r.endedSign = sign
		}
	}
	if r.query == "" {
		// This deployment's workflows only: its task queue.
		now := time.Now()
		r.query = fmt.Sprintf("WorkflowType = '%s' AND TaskQueue = '%s' AND ExecutionStatus = 'Running' AND StartTime < '%s'",
			workflows.ProcessWorkflow, o.TaskQueue, now.Add(-r.MinAge).UTC().Format(time.RFC3339Nano))
		if r.closed {
			// Ended by the workflow itself; terminated and timed-out ones
			// end their instances failed (SweepEnded), and so need theirs.
			r.closed = false
			r.query = endedQuery(o, now)
		}
		r.token = nil
	}
	page, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: o.Namespace, Query: r.query, PageSize: int32(r.Budget), NextPageToken: r.token})
	if err != nil {
		return n, fmt.Errorf("sweep recover: list workflows: %w", err)
	}
	for _, w := range page.GetExecutions() {
		found, err := recoverInstance(ctx, o, &h, w, &n.Decisions)
		if err != nil {
			return n, err
		}
		switch found {
		case recovered:
			n.Recovered++
		case recoverUnconfirmed:
			n.Unconfirmed++
		}
	}
	if r.token = page.GetNextPageToken(); len(r.token) == 0 {
		r.query = "" // the round is over
	}
	return n, nil
}

// endedQuery lists this deployment's workflows that ended by themselves
// (terminated and timed-out ones end their instances failed: SweepEnded)
// within ClosedWithin of now, the one that ended last first.
func endedQuery(o Options, now time.Time) string {
	return fmt.Sprintf("WorkflowType = '%s' AND TaskQueue = '%s' AND ExecutionStatus IN ('Completed', 'Failed', 'Canceled') AND CloseTime > '%s'",
		workflows.ProcessWorkflow, o.TaskQueue, now.Add(-ClosedWithin).UTC().Format(time.RFC3339Nano))
}

// newestEndedUnknown names the workflow that ended last (and started at
// least minAge ago), its id and run, when it is one of an instance the
// store does not know and Temporal holds this store's history from before
// it: the store has not seen the latest ends. "" otherwise.
func newestEndedUnknown(ctx context.Context, o Options, h *history, minAge time.Duration) (string, error) {
	now := time.Now()
	q := endedQuery(o, now) + fmt.Sprintf(" AND StartTime < '%s'", now.Add(-minAge).UTC().Format(time.RFC3339Nano))
	page, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: o.Namespace, Query: q, PageSize: 1})
	if err != nil {
		return "", fmt.Errorf("sweep recover: list ended workflows: %w", err)
	}
	ended := page.GetExecutions()
	if len(ended) == 0 {
		return "", nil
	}
	w := ended[0]
	_, err = o.Instances.Instance(ctx, w.GetExecution().GetWorkflowId())
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		if err != nil {
			err = fmt.Errorf("sweep recover: %w", err)
		}
		return "", err
	}
	// Only where Temporal holds this store's history from before it, as
	// for a running one: the wrong Temporal would otherwise have a round
	// over its ended workflows at every pass.
	if known, err := h.before(ctx, o, w.GetStartTime().AsTime()); !known || err != nil {
		return "", err
	}
	return w.GetExecution().GetWorkflowId() + "/" + w.GetExecution().GetRunId(), nil
}

// What recoverInstance did with a running workflow.
const (
	recoverNot = iota
	recovered
	recoverUnconfirmed
)

// recoverInstance stores again the instance of w, a running workflow,
// unless the store has it; it says what it did, and adds the decision
// records it took back to decisions.
func recoverInstance(ctx context.Context, o Options, h *history, w *workflowpb.WorkflowExecutionInfo, decisions *int) (int, error) {
	id, run := w.GetExecution().GetWorkflowId(), w.GetExecution().GetRunId()
	if _, err := o.Instances.Instance(ctx, id); !errors.Is(err, store.ErrNotFound) {
		if err != nil {
			return recoverNot, fmt.Errorf("sweep recover: instance %s: %w", id, err)
		}
		return recoverNot, nil
	}
	// Brought back only where Temporal holds this store's history from
	// before it: the wrong Temporal configured would otherwise have its
	// workflows copied into this store.
	known, err := h.before(ctx, o, w.GetStartTime().AsTime())
	if err != nil {
		return recoverNot, err
	}
	if !known {
		o.Logger.Error("Temporal runs a workflow of an instance this store does not know, and none of this store's from before it: the wrong Temporal (--temporal-address, --namespace), or a store that was never this one's. It is not brought back",
			"instance", id, "namespace", o.Namespace)
		return recoverUnconfirmed, nil
	}
	in, err := workflowInput(ctx, o, id, run)
	if err != nil {
		if ctx.Err() != nil {
			return recoverNot, ctx.Err()
		}
		// Not one of this product's inputs (a workflow started by hand,
		// say): the workflows after it are not held up.
		o.Logger.Warn("sweep recover: a workflow the store does not know has no input it can read; it is left alone", "instance", id, "err", err)
		return recoverNot, nil
	}
	saved, err := querySaved(ctx, o, id, run)
	if err != nil {
		if ctx.Err() != nil {
			return recoverNot, ctx.Err()
		}
		// Its tasks fail, or no worker answers: the next round asks
		// again, and the workflows after it are not held up.
		o.Logger.Warn("sweep recover: a workflow the store does not know did not tell its state; the next round asks again", "instance", id, "err", err)
		return recoverNot, nil
	}
	st := saved.State
	def := in.Definition
	if _, err := o.Definitions.Definition(ctx, def.Name, def.Version); errors.Is(err, store.ErrNotFound) {
		doc := process.JSON(def)
		if _, err := o.Definitions.PutDefinition(ctx, store.DefinitionRecord{Name: def.Name, Version: def.Version, Doc: doc, Digest: digest(doc), Author: RecoveredBy, CreatedAt: time.Now().UTC()}); err != nil {
			return recoverNot, fmt.Errorf("sweep recover: %s: definition %s: %w", id, def.Ref(), err)
		}
	} else if err != nil {
		return recoverNot, fmt.Errorf("sweep recover: %s: definition %s: %w", id, def.Ref(), err)
	}
	created := in.CreatedAt
	if created.IsZero() {
		created = w.GetStartTime().AsTime()
	}
	by := RecoveredBy
	if rest, ok := strings.CutPrefix(in.BusinessKey, "sub:"); ok && in.Depth > 0 {
		// A process step's instance: its parent, as the step stored it.
		if i := strings.LastIndexByte(rest, ':'); i > 0 {
			by = process.SubProcessCreator(rest[:i], rest[i+1:])
		}
	}
	// Its decision records first: once the instance reads again, they do
	// too, and a failure here leaves it for the next round whole.
	decided, err := takeBackDecisions(ctx, o, id, run)
	*decisions += decided
	if err != nil {
		return recoverNot, fmt.Errorf("sweep recover: %w", err)
	}
	if _, _, err := o.Instances.CreateInstance(ctx, store.Instance{ID: id, Process: def.Name, ProcessVersion: def.Version, BusinessKey: in.BusinessKey,
		Input: process.JSON(in.Input), CreatedBy: by, CreatedAt: created.UTC(), State: process.JSON(st)}); err != nil {
		return recoverNot, fmt.Errorf("sweep recover: %s: %w", id, err)
	}
	now := time.Now().UTC()
	if saved.Seq > 0 {
		// As its workflow's latest save: its status, and for one that
		// ended, when it did; the workflow's next save follows on.
		at := now
		if ct := w.GetCloseTime(); ct != nil {
			at = ct.AsTime()
		}
		if _, err := o.Ended.SaveInstanceStateAt(ctx, id, saved.Run, saved.Seq, process.JSON(st), at); err != nil {
			return recoverNot, fmt.Errorf("sweep recover: %s: %w", id, err)
		}
	}
	for _, rv := range st.Reviews {
		if rv.Status != store.ReviewOpen {
			continue
		}
		if err := reopenReview(ctx, o.Ended, id, run, def.Name, rv, now); err != nil {
			return recoverNot, fmt.Errorf("sweep recover: %s: review %s: %w", id, rv.ID, err)
		}
	}
	o.Logger.Warn("instance brought back into the store from its workflow (the store lost it)", "instance", id, "run", run, "status", st.Status, "decisions", decided)
	return recovered, nil
}

// workflowInput is the input a workflow run started with: its history's
// first event, read alone.
func workflowInput(ctx context.Context, o Options, id, run string) (workflows.Input, error) {
	var in workflows.Input
	res, err := o.Temporal.WorkflowService().GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
		Namespace: o.Namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: run}, MaximumPageSize: 1,
	})
	if err != nil {
		return in, fmt.Errorf("its history: %w", err)
	}
	events := res.GetHistory().GetEvents()
	if len(events) == 0 {
		return in, errors.New("no history")
	}
	attrs := events[0].GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return in, errors.New("its history does not start with its start")
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return in, fmt.Errorf("its input: %w", err)
	}
	return in, nil
}
