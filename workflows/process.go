package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// Names of the workflow, its query and its update.
const (
	ProcessWorkflow = "adaptflow.Process"
	QueryState      = "state"
	// QuerySaved answers the state with the number of the workflow's
	// latest save of it to the store (Saved), so that the store, restored
	// from a backup, can tell it is behind and catch up.
	QuerySaved           = "saved"
	UpdateReviewDecision = "review-decision"
	UpdateCancel         = "cancel"
	UpdateEvent          = "event"
	// UpdateReassign moves an open review to another queue.
	UpdateReassign = "review-reassign"
	// SignalSubProcessReleased wakes an instance whose process step waits
	// for its instance's turn: the process was resumed, or a slot under
	// its concurrency limit freed (the instance then looks).
	SignalSubProcessReleased = "sub-process-released"
)

// Instance statuses.
const (
	// StatusStarting: the instance is stored, its workflow has not run yet.
	StatusStarting      = "starting"
	StatusRunning       = "running"
	StatusWaitingReview = "waiting_review"
	// StatusWaitingEvent: an event step waits for another system's event.
	StatusWaitingEvent = "waiting_event"
	StatusCompleted    = store.InstanceCompleted
	StatusRejected     = store.InstanceRejected
	StatusFailed       = store.InstanceFailed
	StatusCanceled     = store.InstanceCanceled
)

// StatusHeld is the status a process step's result gives the instance it
// stored while that one waits its turn: its process is paused, or runs
// its concurrency limit (the step waits).
const StatusHeld = "held"

// Step states.
const (
	StepPending       = "pending"
	StepRunning       = "running"
	StepDone          = "done"
	StepSkipped       = "skipped"
	StepWaitingReview = "waiting_review"
	// StepWaitingEvent: an event step waits for its event.
	StepWaitingEvent = "waiting_event"
	StepFailed       = "failed"
	StepNotRun       = "not_run"
	// StepCanceled: the step was under way when the instance was canceled.
	StepCanceled = "canceled"
)

// Input starts one instance.
type Input struct {
	Definition  process.Definition `json:"definition"`
	InstanceID  string             `json:"instance_id"`
	BusinessKey string             `json:"business_key"`
	Input       map[string]any     `json:"input"`
	// Depth is how deep a process step nested the instance (0: started
	// from outside).
	Depth int `json:"depth,omitempty"`
	// CreatedAt is when the instance was stored: its SLA and elapsed time
	// count from it, as the API's do (zero, from runs started before it
	// was passed: from the workflow's start). A start held by a pause, or
	// delayed while Temporal was down, has had that time already.
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Result is what a finished instance returns.
type Result struct {
	Status  string         `json:"status"`
	Results map[string]any `json:"results"`
	Vars    map[string]any `json:"vars"`
}

// PlanStep is one step of an instance's plan and where it stands.
type PlanStep struct {
	ID      string           `json:"id"`
	Kind    process.StepKind `json:"kind"`
	Origin  string           `json:"origin"` // main, added or compensation
	AddedBy string           `json:"added_by,omitempty"`
	// Compensates names the step a compensation undoes.
	Compensates string     `json:"compensates,omitempty"`
	Mandatory   bool       `json:"mandatory,omitempty"`
	State       string     `json:"state"`
	SkippedBy   string     `json:"skipped_by,omitempty"`
	DecisionID  string     `json:"decision_id,omitempty"`
	Error       string     `json:"error,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Decided     bool       `json:"decided"`
}

// ReviewState is a review of the instance as the workflow sees it.
type ReviewState struct {
	ID         string `json:"id"`
	Step       string `json:"step"`
	Queue      string `json:"queue"`
	Reason     string `json:"reason,omitempty"`
	PolicyID   string `json:"policy_id,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
	Status     string `json:"status"` // open, decided, expired
	// Escalated is set when the SLA ran out and the review moved to its
	// escalation queue (Queue).
	Escalated bool   `json:"escalated,omitempty"`
	Verdict   string `json:"verdict,omitempty"`
	Reviewer  string `json:"reviewer,omitempty"`
	Comment   string `json:"comment,omitempty"`
	// Moves are the review's moves to other queues, oldest first: by a
	// reviewer (reassigned) or by its SLA running out (escalated).
	Moves []ReviewMove `json:"moves,omitempty"`
	// OpenedAt is when it opened, DueAt when its SLA (or its latest
	// escalation's) runs out, and Priority the one its escalations gave
	// it: as the inbox has them, so that a store that lost the review can
	// take it back as it was. Zero in states saved before they were kept.
	OpenedAt time.Time  `json:"opened_at,omitzero"`
	DueAt    *time.Time `json:"due_at,omitempty"`
	Priority int        `json:"priority,omitempty"`
}

// ReviewMove is a review's move from one queue to another.
type ReviewMove struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	By   string    `json:"by"` // the reviewer, or "sla" for an escalation
	At   time.Time `json:"at"`
	Note string    `json:"note,omitempty"`
}

// Saved is the answer to [QuerySaved]: the workflow's run, the number of
// its latest save of its state to the store (0: it saves none), and its
// state now (the one saved, or newer).
type Saved struct {
	Run   string `json:"run"`
	Seq   int64  `json:"seq"`
	State State  `json:"state"`
}

// State is the whole state of an instance, answered by [QueryState].
type State struct {
	Status    string         `json:"status"`
	Process   string         `json:"process"`
	Version   int            `json:"version"`
	Plan      []PlanStep     `json:"plan"`
	Results   map[string]any `json:"results"`
	Vars      map[string]any `json:"vars"`
	Reviews   []ReviewState  `json:"reviews"`
	Decisions []string       `json:"decisions"`
	Error     string         `json:"error,omitempty"`
	// Classification is the classification of the instance's text.
	Classification map[string]any `json:"classification,omitempty"`
	// Events are the events the instance received, by name: the first of
	// each.
	Events map[string]EventReceived `json:"events,omitempty"`
	// EventLog are all the distinct events received, by name, oldest
	// first.
	EventLog map[string][]EventReceived `json:"event_log,omitempty"`
}

// ReviewDecision is the argument of [UpdateReviewDecision].
type ReviewDecision struct {
	ReviewID string `json:"review_id"`
	Verdict  string `json:"verdict"` // approve or reject
	Reviewer string `json:"reviewer"`
	Comment  string `json:"comment,omitempty"`
	// Lesson is what the verdict teaches the classifier (a correction, or
	// an unsure classification confirmed): the review's close keeps it
	// (activities.CloseReview), retried as the workflow's activities are.
	Lesson *activities.Lesson `json:"lesson,omitempty"`
}

// Error types of refused review decisions; the API maps them to 404, 409
// and 400.
const (
	ErrTypeUnknownReview = "UnknownReview"
	ErrTypeReviewClosed  = "ReviewClosed"
	ErrTypeBadDecision   = "BadReviewDecision"
	// ErrTypeFinished refuses to cancel an instance that has ended or is
	// being canceled (409), or to send it an event.
	ErrTypeFinished = "InstanceFinished"
	// ErrTypeUnknownEvent refuses an event no event step of the
	// instance's definition waits for (400).
	ErrTypeUnknownEvent = "UnknownEvent"
)

// ReviewReassign is the argument of [UpdateReassign]: the review, the
// queue it moves to, who moves it and why.
type ReviewReassign struct {
	ReviewID string `json:"review_id"`
	Queue    string `json:"queue"`
	By       string `json:"by"`
	Note     string `json:"note,omitempty"`
}

// CancelRequest is the argument of [UpdateCancel]: who cancels the
// instance, and why.
type CancelRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// errRejected ends the plan when a reviewer rejects the instance.
var errRejected = errors.New("rejected by review")

var a *activities.Activities

type runner struct {
	in             Input
	classification map[string]any
	signals        map[string]policies.Signal
	def            *process.Definition
	st             State
	runID          string
	started        time.Time
	seq            int
	lastHash       string
	added          []string
	fired          []string
	opened         int
	done           []string
	callbacks      []pendingCallback
	// projection is the version of the state projection this run keeps
	// (none before versionProjection); saves numbers the saves of this run,
	// savedAt is the workflow time of the last one.
	projection Version
	saves      int64
	savedAt    time.Time
	// localSteps: built-in task and validate steps run as local
	// activities (from version versionLocalSteps on).
	localSteps bool
	// stop cancels the context the steps run in; canceled is the request
	// that did, when an API client canceled the instance.
	stop     workflow.CancelFunc
	canceled *CancelRequest
	// stopSLA stops the watch for the SLA (see watchSLA), when one runs.
	stopSLA workflow.CancelFunc
	// lessons are the lessons of the verdicts given, by review, until
	// their reviews close.
	lessons map[string]*activities.Lesson
}

// Run interprets one instance of a process definition.
func Run(ctx workflow.Context, in Input) (Result, error) {
	info := workflow.GetInfo(ctx)
	r := &runner{
		in:      in,
		def:     &in.Definition,
		runID:   info.WorkflowExecution.RunID,
		started: info.WorkflowStartTime,
		st:      NewState(&in.Definition, StatusRunning),
	}
	if !in.CreatedAt.IsZero() && in.CreatedAt.Before(r.started) {
		r.started = in.CreatedAt
	}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) { return r.st, nil }); err != nil {
		return Result{}, err
	}
	// A query handler adds nothing to the history: workflows started
	// before it answer it too.
	if err := workflow.SetQueryHandler(ctx, QuerySaved, func() (Saved, error) { return Saved{Run: r.runID, Seq: r.saves, State: r.st}, nil }); err != nil {
		return Result{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReviewDecision, r.onReviewDecision,
		workflow.UpdateHandlerOptions{Validator: r.validateReviewDecision}); err != nil {
		return Result{}, err
	}
	// The steps run in a context of their own: canceling the workflow
	// (Temporal's cancel) or the cancel update stops them.
	steps, stop := workflow.WithCancel(ctx)
	r.stop = stop
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCancel, r.onCancel,
		workflow.UpdateHandlerOptions{Validator: r.validateCancel}); err != nil {
		return Result{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateEvent, r.onEvent,
		workflow.UpdateHandlerOptions{Validator: r.validateEvent}); err != nil {
		return Result{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReassign, r.onReassign,
		workflow.UpdateHandlerOptions{Validator: r.validateReassign}); err != nil {
		return Result{}, err
	}

	r.projection = workflow.GetVersion(ctx, changeProjection, workflow.DefaultVersion, versionSparseSaves)
	r.localSteps = workflow.GetVersion(ctx, changeLocalSteps, workflow.DefaultVersion, versionLocalSteps) >= versionLocalSteps
	r.watchSLA(ctx)
	err := r.classify(steps)
	if err == nil {
		err = r.run(steps)
	}
	if err != nil && steps.Err() != nil {
		// Canceled: what follows runs in a disconnected context, as the
		// workflow's own is canceled too when Temporal canceled it.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if workflow.GetVersion(dctx, changeCancel, workflow.DefaultVersion, versionCancel) >= versionCancel {
			ctx, err = dctx, nil
			r.cancel(ctx)
		}
	}
	if r.stopSLA != nil {
		r.stopSLA() // ended: it can no longer run late
	}
	switch {
	case r.st.Status == StatusCanceled:
	case errors.Is(err, errRejected):
		r.st.Status = StatusRejected
		err = nil
	case err != nil:
		r.st.Status = StatusFailed
		r.st.Error = err.Error()
	default:
		r.st.Status = StatusCompleted
	}
	r.compensate(ctx)
	r.save(ctx)
	r.freeSlot(ctx)
	// The final statuses are named as the callback events are.
	r.callback(ctx, r.st.Status, ReviewState{})
	r.awaitCallbacks(ctx)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return Result{}, err
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Status: r.st.Status, Results: r.st.Results, Vars: r.st.Vars}, nil
}

// Workflow code versions, for workflow.GetVersion.
const (
	changeClassify          = "classify-input"
	versionClassify Version = 1
	// changeClassifySave: an instance whose input is classified saves its
	// state (running) before the classification. Only such definitions
	// reach the marker.
	changeClassifySave          = "classify-save"
	versionClassifySave Version = 1
	// changeReviewRecord: a review's outcome is appended to the decision
	// chain.
	changeReviewRecord          = "review-record"
	versionReviewRecord Version = 1
	// changeCallback: instances call their definition's webhook.
	changeCallback          = "instance-callback"
	versionCallback Version = 1
	// changeEscalation: reviews whose SLA runs out may escalate.
	changeEscalation          = "review-escalation"
	versionEscalation Version = 1
	// changeProjection: the instance saves its state to the store, and
	// reads are served from there: at each decision, review and end
	// (versionProjection); from versionSparseSaves on, once per workflow
	// task at most with a decision, and before each step that waits
	// (http, wait), instead of at every decision.
	changeProjection           = "state-projection"
	versionProjection  Version = 1
	versionSparseSaves Version = 2
	// changeLocalSteps: built-in task and validate steps, which run in the
	// worker's process in microseconds, run as local activities: no round
	// trip through the Temporal server per step (http steps, which call
	// out, stay activities).
	changeLocalSteps          = "local-steps"
	versionLocalSteps Version = 1
	// changeCancel: a canceled instance ends as canceled, with its open
	// reviews closed and its state saved, instead of failing with its
	// state left as it was. Only canceled runs reach the marker.
	changeCancel          = "instance-cancel"
	versionCancel Version = 1
	// changeOverdue: an instance whose definition has an SLA and a
	// callback that wants "overdue" reports running past the SLA. Only
	// such definitions reach the marker.
	changeOverdue          = "sla-overdue"
	versionOverdue Version = 1
	// changeCompensate: an instance that ends without completing runs the
	// compensations of the steps it finished. Only instances with such
	// steps reach the marker.
	changeCompensate          = "compensate"
	versionCompensate Version = 1
	// changeSubProcessCancel: an instance canceled while a process step
	// stores the other instance, or before that one's workflow starts,
	// ends that one canceled instead of leaving it starting. Every
	// process step reaches the marker.
	changeSubProcessCancel          = "sub-process-cancel"
	versionSubProcessCancel Version = 1
	// changeSubProcessHold: a process step whose instance must wait its
	// turn (its process paused, or at its concurrency limit) waits before
	// it starts it. Only such steps reach the marker.
	changeSubProcessHold          = "sub-process-hold"
	versionSubProcessHold Version = 1
	// changeConcurrency: an instance of a process with a concurrency limit
	// starts the instances queued for its slot when it ends
	// (versionConcurrency). From versionSlotOnSave on, the workflow leaves
	// that to its final save (the activity's freedSlot, which covers the
	// versions without a limit too): both started the queue, the second
	// for nothing. Only such definitions reach the marker.
	changeConcurrency          = "concurrency-slot"
	versionConcurrency Version = 1
	versionSlotOnSave  Version = 2
)

// compensate, for an instance that ended without completing (failed,
// rejected or canceled; from version versionCompensate on), runs the
// compensation of each step it finished that names one, the latest
// first: the saga's way back (release the stock reserved, refund the
// charge). Each is added to the plan (origin compensation) and runs as
// its step kind, with its retries; one that fails is reported in the
// instance's error, and the others still run. They run in a
// disconnected context, so a canceled instance compensates too.
func (r *runner) compensate(ctx workflow.Context) {
	if r.st.Status == StatusCompleted {
		return
	}
	var todo []process.Step // the steps to undo, latest first
	for i := len(r.st.Plan) - 1; i >= 0; i-- {
		p := r.st.Plan[i]
		if p.State != StepDone || p.Origin == "compensation" {
			continue
		}
		if s, ok := r.def.Step(p.ID); ok && s.Compensate != "" {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return
	}
	if workflow.GetVersion(ctx, changeCompensate, workflow.DefaultVersion, versionCompensate) < versionCompensate {
		return
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	// Running until they are done: the instance has not ended while it
	// undoes its steps (a save before an http compensation shows it so).
	final := r.st.Status
	r.st.Status = StatusRunning
	defer func() { r.st.Status = final }()
	var failed []string
	for _, s := range todo {
		c, ok := r.def.CatalogStep(s.Compensate)
		if !ok {
			failed = append(failed, fmt.Sprintf("%s (undoing %s): not in the catalog", s.Compensate, s.ID))
			continue
		}
		r.st.Plan = append(r.st.Plan, PlanStep{ID: c.ID, Kind: c.Kind, Origin: "compensation", Compensates: s.ID, State: StepPending})
		if err := r.runStep(dctx, len(r.st.Plan)-1); err != nil {
			failed = append(failed, fmt.Sprintf("%s (undoing %s): %s", c.ID, s.ID, errorMessage(err)))
		}
	}
	if len(failed) > 0 {
		msg := "compensation failed: " + strings.Join(failed, "; ")
		if r.st.Error != "" {
			msg = r.st.Error + "; " + msg
		}
		r.st.Error = msg
	}
}

// watchSLA, for a definition with an SLA whose callback wants "overdue"
// (from version versionOverdue on), tells the webhook once when the
// instance runs past its SLA, counted from the workflow's start: a timer
// in a coroutine of its own, stopped when the instance ends.
func (r *runner) watchSLA(ctx workflow.Context) {
	sla := r.def.SLADuration()
	if sla <= 0 || !r.def.Callback.Wants(process.EventOverdue) {
		return
	}
	if workflow.GetVersion(ctx, changeOverdue, workflow.DefaultVersion, versionOverdue) < versionOverdue {
		return
	}
	wctx, stop := workflow.WithCancel(ctx)
	r.stopSLA = stop
	wait := r.started.Add(sla).Sub(workflow.Now(ctx))
	workflow.Go(wctx, func(ctx workflow.Context) {
		if wait > 0 {
			if err := workflow.NewTimer(ctx, wait).Get(ctx, nil); err != nil {
				return // the instance ended first
			}
		}
		r.callback(ctx, process.EventOverdue, ReviewState{})
	})
}

// NewState is the state of an instance of def before its first step, with
// status (StatusStarting as the API stores it at the start, StatusRunning
// once the workflow runs).
func NewState(def *process.Definition, status string) State {
	st := State{
		Status:    status,
		Process:   def.Name,
		Version:   def.Version,
		Plan:      make([]PlanStep, 0, len(def.Steps)),
		Results:   map[string]any{},
		Vars:      map[string]any{},
		Reviews:   []ReviewState{},
		Decisions: []string{},
	}
	for _, s := range def.Steps {
		st.Plan = append(st.Plan, PlanStep{ID: s.ID, Kind: s.Kind, Origin: "main", Mandatory: s.Mandatory, State: StepPending})
	}
	return st
}

// UnstartedState is the state of an instance of def that ended canceled
// before its workflow ran (held, queued, or its parent gone): every step
// not run, and why.
func UnstartedState(def *process.Definition, why string) State {
	st := NewState(def, StatusCanceled)
	for i := range st.Plan {
		st.Plan[i].State = StepNotRun
	}
	st.Error = why
	return st
}

// saveOptions bound a save of the state projection; one that fails for
// good is logged and the next save catches up.
var saveOptions = workflow.LocalActivityOptions{
	StartToCloseTimeout:    10 * time.Second,
	ScheduleToCloseTimeout: 2 * time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    200 * time.Millisecond,
		BackoffCoefficient: 2,
		MaximumInterval:    10 * time.Second,
	},
}

// nextSave numbers a save of the state and renders the state for it. It
// is a snapshot taken now (a local activity gets its input as Go values,
// and the maps would go on changing). encoding/json is deterministic here:
// map keys are sorted, and its reflection cache only caches.
func (r *runner) nextSave(ctx workflow.Context) (int64, json.RawMessage, bool) {
	if r.projection < versionProjection {
		return 0, nil, false
	}
	r.savedAt = workflow.Now(ctx)
	b, err := json.Marshal(r.st) //workflowcheck:ignore
	if err != nil {
		return 0, nil, false
	}
	r.saves++
	return r.saves, b, true
}

// saveBeforeWait saves the state (the step running) before a step that
// waits on the world, so readers see it while it waits.
func (r *runner) saveBeforeWait(ctx workflow.Context) {
	if r.projection >= versionSparseSaves {
		r.save(ctx)
	}
}

// save saves the state to the projection, at the points a reader should
// see at once: a review opened, escalated or decided, and the end.
// Decisions carry the state to save with them (see decide).
func (r *runner) save(ctx workflow.Context) {
	seq, state, ok := r.nextSave(ctx)
	if !ok {
		return
	}
	in := activities.SaveStateInput{InstanceID: r.in.InstanceID, RunID: r.runID, Seq: seq, State: state, SLA: r.def.SLADuration()}
	if err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, saveOptions), a.SaveState, in).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("state projection not saved; the next save catches up", "seq", seq, "err", err)
	}
}

// Version is a workflow code version.
type Version = workflow.Version

// classifyOptions are the Classify activity's: the LLM's 429s and 5xx are
// retried, and its last attempt falls back to the embedded classifier. An
// attempt heartbeats while it works, so a worker that died is told by the
// heartbeats' stop, and an attempt may take long (a first training on many
// examples, a slow LLM with its repair attempt). Activity options are not
// part of what a replay compares: histories recorded with others replay.
var classifyOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 10 * time.Minute,
	HeartbeatTimeout:    30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: activities.ClassifyAttempts,
		NonRetryableErrorTypes: activities.NonRetryable,
	},
}

// classify classifies the input text the definition names (from version
// versionClassify on) and, when the classifier is unsure, opens a review
// before the first step.
func (r *runner) classify(ctx workflow.Context) error {
	if workflow.GetVersion(ctx, changeClassify, workflow.DefaultVersion, versionClassify) < versionClassify {
		return nil
	}
	spec := r.def.Classify
	if spec == nil || len(r.st.Plan) == 0 {
		return nil
	}
	// Readers see the instance running while it is classified (a second
	// normally, minutes while the LLM does not answer), not starting: the
	// first save otherwise comes with the first decision, after it.
	if workflow.GetVersion(ctx, changeClassifySave, workflow.DefaultVersion, versionClassifySave) >= versionClassifySave {
		r.save(ctx)
	}
	text := spec.Text(r.in.Input)
	what := strings.Join(spec.TextFields(), " and ")
	actx := workflow.WithActivityOptions(ctx, classifyOptions)
	var res activities.ClassifyResult
	if err := workflow.ExecuteActivity(actx, a.Classify, activities.ClassifyInput{Spec: *spec, Text: text}).Get(ctx, &res); err != nil {
		return fmt.Errorf("classify %s: %w", what, err)
	}
	r.classification = res.Facts()
	r.st.Classification = r.classification
	if !res.Review {
		return nil
	}
	queue := spec.ReviewQueue
	if queue == "" {
		queue = "classification"
	}
	review := process.ReviewSpec{Queue: queue, Reason: fmt.Sprintf("low-confidence classification of %s: %s (%.2f, under %.2f)", what, res.Label, res.Confidence, spec.ReviewBelow)}
	return r.gate(ctx, 0, activities.ReviewID(r.runID, 0, 0), review, "", "")
}

func (r *runner) run(ctx workflow.Context) error {
	for i := 0; i < len(r.st.Plan); i++ {
		if !r.st.Plan[i].Decided {
			insertedBefore, err := r.decide(ctx, i)
			if err != nil {
				r.finishRemaining(i)
				return err
			}
			if insertedBefore > 0 {
				i-- // run the inserted steps first; this step is decided
				continue
			}
		}
		if r.st.Plan[i].State == StepSkipped {
			continue
		}
		if err := r.runStep(ctx, i); err != nil {
			r.finishRemaining(i + 1)
			return err
		}
	}
	return nil
}

// finishRemaining marks the steps from i on that never ran.
func (r *runner) finishRemaining(i int) {
	for ; i < len(r.st.Plan); i++ {
		switch r.st.Plan[i].State {
		case StepPending, StepWaitingReview:
			r.st.Plan[i].State = StepNotRun
		}
	}
}

func (r *runner) reviewFacts() []policies.ReviewFact {
	out := make([]policies.ReviewFact, 0, len(r.st.Reviews))
	for _, rv := range r.st.Reviews {
		out = append(out, policies.ReviewFact{ID: rv.ID, Queue: rv.Queue, Step: rv.Step, Verdict: rv.Verdict})
	}
	return out
}

// decide asks for the decision of plan step i and applies it. It returns how
// many steps it inserted before step i.
func (r *runner) decide(ctx workflow.Context, i int) (int, error) {
	step := r.st.Plan[i].ID
	r.seq++
	in := activities.DecideInput{
		Definition:     r.def,
		InstanceID:     r.in.InstanceID,
		BusinessKey:    r.in.BusinessKey,
		RunID:          r.runID,
		Seq:            r.seq,
		Step:           step,
		Now:            workflow.Now(ctx),
		Started:        r.started,
		Input:          r.in.Input,
		StepsDone:      slices.Clone(r.done),
		Results:        r.st.Results,
		Vars:           r.st.Vars,
		Reviews:        r.reviewFacts(),
		Classification: r.classification,
		Signals:        r.signals,
		Durations:      r.durations(),
		Events:         r.eventFacts(),
		Point:          policies.Point{Added: slices.Clone(r.added), Reviews: r.opened, Fired: slices.Clone(r.fired)},
		PrevHash:       r.lastHash,
		HistorySize:    workflow.GetInfo(ctx).GetCurrentHistorySize(),
	}
	// Steps that run in the worker follow each other within one workflow
	// task in milliseconds: saving before each would only write states
	// nobody reads. One save per task, and one before a step that waits.
	if r.projection < versionSparseSaves || !workflow.Now(ctx).Equal(r.savedAt) {
		if seq, state, ok := r.nextSave(ctx); ok {
			in.State, in.StateSeq = state, seq
		}
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        200 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
	var res activities.DecideResult
	if err := workflow.ExecuteLocalActivity(lctx, a.Decide, in).Get(ctx, &res); err != nil {
		r.st.Plan[i].State = StepFailed
		r.st.Plan[i].Error = "decision failed: " + err.Error()
		return 0, fmt.Errorf("decision before step %s: %w", step, err)
	}
	r.lastHash = res.Hash
	for _, name := range workflow.DeterministicKeys(res.Signals) {
		if r.signals == nil {
			r.signals = map[string]policies.Signal{}
		}
		r.signals[name] = res.Signals[name]
	}
	r.st.Decisions = append(r.st.Decisions, res.DecisionID)
	r.st.Plan[i].Decided = true
	r.st.Plan[i].DecisionID = res.DecisionID

	var before, after []PlanStep
	skipBy := ""
	for _, ap := range res.Applied {
		act := ap.Action
		if act.Kind() == process.ActionSet {
			r.st.Vars[act.Set.Name] = act.Set.Value
		}
	}
	for k, ap := range res.Applied {
		act := ap.Action
		switch act.Kind() {
		case process.ActionReview:
			r.opened++
			if act.Before == "" {
				r.fired = append(r.fired, ap.PolicyID)
			}
			id := activities.ReviewID(r.runID, r.seq, k)
			if err := r.gate(ctx, i, id, *act.Review, ap.PolicyID, res.DecisionID); err != nil {
				return 0, err
			}
		case process.ActionAdd:
			cs, ok := r.def.CatalogStep(act.Add)
			if !ok {
				continue // guarded in Decide; a definition without it cannot run it
			}
			r.added = append(r.added, act.Add)
			ps := PlanStep{ID: cs.ID, Kind: cs.Kind, Origin: "added", AddedBy: ap.PolicyID, State: StepPending}
			if act.Before != "" {
				before = append(before, ps)
			} else {
				after = append(after, ps)
			}
		case process.ActionSkip:
			skipBy = ap.PolicyID
		}
	}
	r.st.Plan = slices.Insert(r.st.Plan, i+1, after...)
	if skipBy != "" {
		r.st.Plan[i].State = StepSkipped
		r.st.Plan[i].SkippedBy = skipBy
	}
	r.st.Plan = slices.Insert(r.st.Plan, i, before...)
	return len(before), nil
}

// gate opens a review before plan step i and waits for its verdict or SLA.
func (r *runner) gate(ctx workflow.Context, i int, id string, spec process.ReviewSpec, policyID, decisionID string) error {
	step := r.st.Plan[i].ID
	actx := workflow.WithActivityOptions(ctx, bookkeepingOptions)
	open := activities.OpenReviewInput{
		ReviewID: id, InstanceID: r.in.InstanceID, RunID: r.runID, Process: r.def.Name, Step: step,
		Spec: spec, PolicyID: policyID, DecisionID: decisionID, Now: workflow.Now(ctx),
	}
	var opened store.Review // as the inbox has it
	if err := workflow.ExecuteActivity(actx, a.OpenReview, open).Get(ctx, &opened); err != nil {
		return fmt.Errorf("open review before %s: %w", step, err)
	}
	// The instance shows the review only once the inbox has it, so a
	// client that reads it from the instance finds it there.
	r.st.Reviews = append(r.st.Reviews, ReviewState{ID: id, Step: step, Queue: spec.Queue, Reason: spec.Reason, PolicyID: policyID, DecisionID: decisionID,
		Status: store.ReviewOpen, OpenedAt: opened.CreatedAt, DueAt: opened.DueAt})
	k := len(r.st.Reviews) - 1
	prevState := r.st.Plan[i].State
	r.st.Plan[i].State = StepWaitingReview
	r.st.Status = StatusWaitingReview
	r.callback(ctx, process.EventWaitingReview, r.st.Reviews[k])
	r.save(ctx)

	decided := func() bool { return r.st.Reviews[k].Status != store.ReviewOpen }
	if spec.SLA == "" {
		if err := workflow.Await(ctx, decided); err != nil {
			return err
		}
	} else {
		sla, err := process.ParseDuration(spec.SLA)
		if err != nil {
			return fmt.Errorf("review before %s: %w", step, err)
		}
		ok, err := workflow.AwaitWithTimeout(ctx, sla, decided)
		if err != nil {
			return err
		}
		// Escalate, level after level, while SLAs run out.
		onTimeout, next := spec.OnTimeout, spec.Escalate
		for level := 1; !ok && onTimeout == process.TimeoutEscalate && next != nil; level++ {
			if ok, err = r.escalate(ctx, k, step, *next, level, decided); err != nil {
				return err
			}
			onTimeout, next = next.OnTimeout, next.Escalate
		}
		if !ok {
			rv := &r.st.Reviews[k]
			rv.Status = store.ReviewExpired
			rv.Reviewer = "sla"
			switch onTimeout {
			case process.TimeoutApprove:
				rv.Verdict = store.VerdictApprove
			case process.TimeoutReject:
				rv.Verdict = store.VerdictReject
			default:
				rv.Verdict = ""
			}
		}
	}
	rv := r.st.Reviews[k]
	closeIn := activities.CloseReviewInput{ReviewID: id, Status: rv.Status, Verdict: rv.Verdict, Reviewer: rv.Reviewer, Comment: rv.Comment, At: workflow.Now(ctx), Lesson: r.lessons[id]}
	if err := workflow.ExecuteActivity(actx, a.CloseReview, closeIn).Get(ctx, nil); err != nil {
		return fmt.Errorf("close review %s: %w", id, err)
	}
	delete(r.lessons, id)
	if err := r.recordReview(ctx, step, rv); err != nil {
		return err
	}
	r.st.Status = StatusRunning
	r.st.Plan[i].State = prevState
	switch rv.Verdict {
	case store.VerdictApprove:
		return nil
	case store.VerdictReject:
		r.st.Plan[i].State = StepNotRun
		r.st.Error = fmt.Sprintf("review %s before %s rejected by %s", id, step, rv.Reviewer)
		if rv.Comment != "" {
			r.st.Error += ": " + rv.Comment
		}
		return errRejected
	}
	r.st.Plan[i].State = StepFailed
	return fmt.Errorf("review %s before %s expired after %s", id, step, spec.SLA)
}

// callback tells the definition's webhook about an event of the instance
// (from version versionCallback on). It runs in a disconnected context, so
// a cancelled instance still reports, and a webhook that never answers
// costs retries, never the instance.
func (r *runner) callback(ctx workflow.Context, event string, rv ReviewState) {
	r.callbackFor(ctx, event, rv, "")
}

// callbackFor is callback with, for instance.waiting_event, the event the
// instance waits for.
func (r *runner) callbackFor(ctx workflow.Context, event string, rv ReviewState, waitsFor string) {
	cb := r.def.Callback
	if !cb.Wants(event) {
		return
	}
	if workflow.GetVersion(ctx, changeCallback, workflow.DefaultVersion, versionCallback) < versionCallback {
		return
	}
	ev := activities.InstanceEvent{
		Event: "instance." + event, InstanceID: r.in.InstanceID, BusinessKey: r.in.BusinessKey, Process: r.def.Name, Version: r.def.Version,
		Status: r.st.Status, Error: r.st.Error, ReviewID: rv.ID, Queue: rv.Queue, WaitsFor: waitsFor, At: workflow.Now(ctx).UTC(),
	}
	if event != process.EventWaitingReview && event != process.EventWaitingEvent {
		ev.Results = r.st.Results
	}
	key := r.in.InstanceID + "/" + event
	if rv.ID != "" {
		key += "/" + rv.ID
	}
	if waitsFor != "" {
		key += "/" + waitsFor
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	cctx := workflow.WithActivityOptions(dctx, notifyOptions)
	// The instance does not wait for delivery (an SLA starts at once); it
	// waits for every callback only before it ends.
	r.callbacks = append(r.callbacks, pendingCallback{event: event, url: cb.URL,
		f: workflow.ExecuteActivity(cctx, a.Callback, activities.CallbackInput{URL: cb.URL, Key: key, Event: ev})})
}

type pendingCallback struct {
	event, url string
	f          workflow.Future
}

// awaitCallbacks waits for the callbacks sent, in order, logging those
// that were not delivered.
func (r *runner) awaitCallbacks(ctx workflow.Context) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	for _, p := range r.callbacks {
		if err := p.f.Get(dctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("webhook not delivered", "event", p.event, "url", p.url, "error", err)
		}
	}
}

// recordReview appends the review's outcome to the decision chain (from
// version versionReviewRecord on): the verdict, who gave it and why.
func (r *runner) recordReview(ctx workflow.Context, step string, rv ReviewState) error {
	if workflow.GetVersion(ctx, changeReviewRecord, workflow.DefaultVersion, versionReviewRecord) < versionReviewRecord {
		return nil
	}
	r.seq++
	in := activities.RecordReviewInput{
		InstanceID: r.in.InstanceID, RunID: r.runID, Seq: r.seq, PrevHash: r.lastHash,
		Process: r.def.Name, ProcessVersion: r.def.Version, Step: step, Now: workflow.Now(ctx),
		Outcome: process.ReviewOutcome{ReviewID: rv.ID, Queue: rv.Queue, Status: rv.Status, Verdict: rv.Verdict, Reviewer: rv.Reviewer,
			Comment: rv.Comment, Escalated: rv.Escalated, PolicyID: rv.PolicyID, DecisionID: rv.DecisionID},
	}
	var res activities.DecideResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions), a.RecordReview, in).Get(ctx, &res); err != nil {
		return fmt.Errorf("record review %s: %w", rv.ID, err)
	}
	r.lastHash = res.Hash
	r.st.Decisions = append(r.st.Decisions, res.DecisionID)
	return nil
}

// escalate moves review k to the queue of its level-th escalation,
// notifies the webhook when there is one, and waits out the escalation's
// SLA; it reports whether a verdict came in time. Only definitions written
// with on_timeout: escalate reach it, so histories from before it replay
// unchanged; the version marker records the change all the same. Levels
// after the first came later, with escalations that name a next one: the
// histories of one-level escalations run the same commands.
func (r *runner) escalate(ctx workflow.Context, k int, step string, esc process.Escalation, level int, decided func() bool) (bool, error) {
	workflow.GetVersion(ctx, changeEscalation, workflow.DefaultVersion, versionEscalation)
	sla, err := process.ParseDuration(esc.SLA)
	if err != nil {
		return false, fmt.Errorf("escalation of the review before %s: %w", step, err)
	}
	rv := &r.st.Reviews[k]
	now := workflow.Now(ctx)
	in := activities.EscalateReviewInput{ReviewID: rv.ID, InstanceID: r.in.InstanceID, Process: r.def.Name, Step: step, Escalate: esc, Now: now}
	var moved store.Review // as the inbox has it
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions), a.EscalateReview, in).Get(ctx, &moved); err != nil {
		return false, fmt.Errorf("escalate review %s: %w", rv.ID, err)
	}
	from := rv.Queue
	rv.Queue, rv.Escalated, rv.DueAt, rv.Priority = esc.Queue, true, moved.DueAt, moved.Priority
	rv.Moves = append(rv.Moves, ReviewMove{From: from, To: esc.Queue, By: "sla", At: now, Note: fmt.Sprintf("escalated (level %d): its SLA ran out", level)})
	if esc.Notify != "" {
		event := activities.ReviewEvent{
			Event: "review.escalated", ReviewID: rv.ID, InstanceID: r.in.InstanceID, BusinessKey: r.in.BusinessKey,
			Process: r.def.Name, Step: step, FromQueue: from, Queue: esc.Queue, Priority: esc.Priority, Reason: rv.Reason,
			EscalatedAt: now.UTC(), DueAt: now.Add(sla).UTC(), Level: level,
		}
		key := rv.ID + "/escalated"
		if level > 1 {
			key += "/" + strconv.Itoa(level)
		}
		// The escalation's SLA starts at once; the instance waits for the
		// webhook's delivery only before it ends (see awaitCallbacks).
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		nctx := workflow.WithActivityOptions(dctx, notifyOptions)
		r.callbacks = append(r.callbacks, pendingCallback{event: "review.escalated", url: esc.Notify,
			f: workflow.ExecuteActivity(nctx, a.Notify, activities.NotifyInput{URL: esc.Notify, Key: key, Event: event})})
	}
	r.save(ctx)
	return workflow.AwaitWithTimeout(ctx, sla, decided)
}

// notifyOptions retry a webhook for about an hour before giving up.
var notifyOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        10 * time.Minute,
		MaximumAttempts:        activities.WebhookAttempts,
		NonRetryableErrorTypes: activities.NonRetryable,
	},
}

func (r *runner) findReview(id string) int {
	for k, rv := range r.st.Reviews {
		if rv.ID == id {
			return k
		}
	}
	return -1
}

// openReview is the index of the review id, open in this instance, or
// the error that says it is unknown or closed.
func (r *runner) openReview(id string) (int, error) {
	k := r.findReview(id)
	switch {
	case k < 0:
		return k, temporal.NewApplicationError("review "+id+" is not open in this instance", ErrTypeUnknownReview)
	case r.st.Reviews[k].Status != store.ReviewOpen:
		rv := r.st.Reviews[k]
		return k, temporal.NewApplicationError(fmt.Sprintf("review %s is already %s (%s by %s)", rv.ID, rv.Status, rv.Verdict, rv.Reviewer), ErrTypeReviewClosed)
	}
	return k, nil
}

func (r *runner) validateReviewDecision(_ workflow.Context, d ReviewDecision) error {
	if _, err := r.openReview(d.ReviewID); err != nil {
		return err
	}
	switch {
	case d.Verdict != store.VerdictApprove && d.Verdict != store.VerdictReject:
		return temporal.NewApplicationError("verdict must be approve or reject", ErrTypeBadDecision)
	case d.Reviewer == "":
		return temporal.NewApplicationError("reviewer is required", ErrTypeBadDecision)
	case d.Lesson != nil && (d.Lesson.Example.ID == "" || d.Lesson.Example.Classifier == "" || d.Lesson.Example.Label == ""):
		return temporal.NewApplicationError("a lesson needs its example's id, classifier and label", ErrTypeBadDecision)
	}
	return nil
}

func (r *runner) onReviewDecision(ctx workflow.Context, d ReviewDecision) (ReviewState, error) {
	if err := r.validateReviewDecision(ctx, d); err != nil {
		return ReviewState{}, err
	}
	k := r.findReview(d.ReviewID)
	rv := &r.st.Reviews[k]
	rv.Status = store.ReviewDecided
	rv.Verdict = d.Verdict
	rv.Reviewer = d.Reviewer
	rv.Comment = d.Comment
	if d.Lesson != nil {
		if r.lessons == nil {
			r.lessons = map[string]*activities.Lesson{}
		}
		r.lessons[d.ReviewID] = d.Lesson
	}
	out := *rv
	// Saved before the update answers, so the reviewer's next read of the
	// instance shows the verdict.
	r.save(ctx)
	return out, nil
}

func (r *runner) validateReassign(_ workflow.Context, m ReviewReassign) error {
	k, err := r.openReview(m.ReviewID)
	if err != nil {
		return err
	}
	switch {
	case !process.ValidName(m.Queue):
		return temporal.NewApplicationError(fmt.Sprintf("queue must be lower-case letters, digits, '-' or '_' (got %q)", m.Queue), ErrTypeBadDecision)
	case m.Queue == r.st.Reviews[k].Queue:
		return temporal.NewApplicationError("review "+m.ReviewID+" is in queue "+m.Queue+" already", ErrTypeBadDecision)
	case m.By == "":
		return temporal.NewApplicationError("who reassigns it is required", ErrTypeBadDecision)
	}
	return nil
}

// onReassign moves an open review to another queue: in the store (the
// inbox; its claim released), then in the instance's state, saved before
// the update answers. Its SLA, escalation and priority stay as they were.
func (r *runner) onReassign(ctx workflow.Context, m ReviewReassign) (ReviewState, error) {
	if err := r.validateReassign(ctx, m); err != nil {
		return ReviewState{}, err
	}
	in := activities.ReassignReviewInput{ReviewID: m.ReviewID, Queue: m.Queue, Now: workflow.Now(ctx)}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeepingOptions), a.ReassignReview, in).Get(ctx, nil); err != nil {
		return ReviewState{}, err
	}
	k := r.findReview(m.ReviewID)
	if k < 0 || r.st.Reviews[k].Status != store.ReviewOpen { // decided while the store was written
		return ReviewState{}, temporal.NewApplicationError("review "+m.ReviewID+" was closed meanwhile", ErrTypeReviewClosed)
	}
	rv := &r.st.Reviews[k]
	rv.Moves = append(rv.Moves, ReviewMove{From: rv.Queue, To: m.Queue, By: m.By, At: in.Now, Note: m.Note})
	rv.Queue = m.Queue
	out := *rv
	r.save(ctx)
	return out, nil
}

func (r *runner) validateCancel(_ workflow.Context, c CancelRequest) error {
	switch {
	case r.canceled != nil:
		return temporal.NewApplicationError(fmt.Sprintf("instance is already being canceled by %s", r.canceled.By), ErrTypeFinished)
	case store.Final(r.st.Status):
		return temporal.NewApplicationError("instance has already ended: "+r.st.Status, ErrTypeFinished)
	case c.By == "":
		return temporal.NewApplicationError("by is required", ErrTypeBadDecision)
	}
	return nil
}

// onCancel stops the instance's steps; the workflow then ends as canceled
// (see cancel). The update answers at once.
func (r *runner) onCancel(ctx workflow.Context, c CancelRequest) error {
	if err := r.validateCancel(ctx, c); err != nil {
		return err
	}
	r.canceled = &c
	r.stop()
	return nil
}

// cancel ends a canceled instance: the step under way and those after it
// do not run, its open reviews close as canceled (the inbox drops them),
// and the reason is its error.
func (r *runner) cancel(ctx workflow.Context) {
	r.st.Status = StatusCanceled
	r.st.Error = "canceled"
	by := "temporal"
	if c := r.canceled; c != nil {
		by = c.By
		r.st.Error = "canceled by " + c.By
		if c.Reason != "" {
			r.st.Error += ": " + c.Reason
		}
	}
	for i := range r.st.Plan {
		switch r.st.Plan[i].State {
		case StepRunning, StepWaitingReview, StepWaitingEvent:
			r.st.Plan[i].State = StepCanceled
		case StepPending:
			r.st.Plan[i].State = StepNotRun
		}
	}
	actx := workflow.WithActivityOptions(ctx, bookkeepingOptions)
	for k := range r.st.Reviews {
		rv := &r.st.Reviews[k]
		if rv.Status != store.ReviewOpen {
			continue
		}
		rv.Status, rv.Reviewer = store.ReviewCanceled, by
		in := activities.CloseReviewInput{ReviewID: rv.ID, Status: rv.Status, Reviewer: by, Comment: r.st.Error, At: workflow.Now(ctx)}
		if err := workflow.ExecuteActivity(actx, a.CloseReview, in).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("review of a canceled instance not closed", "review", rv.ID, "err", err)
		}
	}
}

var bookkeepingOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: activities.NonRetryable,
	},
}

// stepOptions are the activity options of a step: its timeout (by kind
// unless given) and retries (3 unless given) with exponential backoff.
func stepOptions(s process.Step) workflow.ActivityOptions {
	timeout := 30 * time.Second
	if s.Kind == process.KindValidate {
		timeout = 10 * time.Second
	}
	if s.Timeout != "" {
		if d, err := process.ParseDuration(s.Timeout); err == nil {
			timeout = d
		}
	}
	retries := 3
	if s.Retries != nil {
		retries = *s.Retries
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        int32(retries + 1),
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	}
}

// durations are the seconds each finished step took, for the duration
// signals the definition declares (nil when it declares none).
func (r *runner) durations() map[string]float64 {
	var out map[string]float64
	for _, sig := range r.def.Signals {
		if sig.Kind != "duration" {
			continue
		}
		for _, ps := range r.st.Plan {
			if ps.ID == sig.Step && ps.State == StepDone && ps.StartedAt != nil && ps.FinishedAt != nil {
				if out == nil {
					out = map[string]float64{}
				}
				out[ps.ID] = ps.FinishedAt.Sub(*ps.StartedAt).Seconds()
			}
		}
	}
	return out
}

// runStep runs plan step i and records its result.
func (r *runner) runStep(ctx workflow.Context, i int) error {
	ps := &r.st.Plan[i]
	step, ok := r.def.Step(ps.ID)
	if !ok {
		ps.State = StepFailed
		return fmt.Errorf("step %s is not in %s", ps.ID, r.def.Ref())
	}
	now := workflow.Now(ctx)
	ps.StartedAt = &now
	ps.State = StepRunning
	in := activities.StepInput{Step: step, InstanceID: r.in.InstanceID, BusinessKey: r.in.BusinessKey, Input: r.in.Input, Results: r.st.Results, Vars: r.st.Vars, Events: r.eventFacts()}
	opts := stepOptions(step)
	actx := workflow.WithActivityOptions(ctx, opts)
	var res activities.StepResult
	// inWorker runs a built-in step: as a local activity from
	// versionLocalSteps on.
	inWorker := func(fn any) error {
		if r.localSteps {
			lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: opts.StartToCloseTimeout, RetryPolicy: opts.RetryPolicy})
			return workflow.ExecuteLocalActivity(lctx, fn, in).Get(ctx, &res)
		}
		return workflow.ExecuteActivity(actx, fn, in).Get(ctx, &res)
	}
	var err error
	switch step.Kind {
	case process.KindTask:
		err = inWorker(a.RunTask)
	case process.KindHTTP:
		r.saveBeforeWait(ctx)
		err = workflow.ExecuteActivity(actx, a.CallHTTP, in).Get(ctx, &res)
	case process.KindValidate:
		err = inWorker(a.Validate)
	case process.KindWait:
		d, perr := process.ParseDuration(step.Duration)
		if perr != nil {
			err = perr
			break
		}
		r.saveBeforeWait(ctx)
		err = workflow.Sleep(ctx, d)
		res.Output = map[string]any{"waited": step.Duration}
	case process.KindEvent:
		res.Output, err = r.awaitEvent(ctx, i, *step.Event)
		ps = &r.st.Plan[i]
	case process.KindProcess:
		r.saveBeforeWait(ctx)
		res.Output, err = r.runSubProcess(ctx, i, in)
		ps = &r.st.Plan[i]
	case process.KindReview:
		ps.State = StepPending
		id := activities.ReviewID(ps.DecisionID, 0, -1)
		err = r.gate(ctx, i, id, *step.Review, "", ps.DecisionID)
		ps = &r.st.Plan[i]
		if err == nil {
			rv := r.st.Reviews[len(r.st.Reviews)-1]
			res.Output = map[string]any{"review_id": rv.ID, "verdict": rv.Verdict, "reviewer": rv.Reviewer, "comment": rv.Comment}
		}
	default:
		err = fmt.Errorf("step %s: unknown kind %q", step.ID, step.Kind)
	}
	end := workflow.Now(ctx)
	ps.FinishedAt = &end
	if err != nil {
		switch {
		case ctx.Err() != nil:
			ps.State = StepCanceled
		case !errors.Is(err, errRejected):
			ps.State = StepFailed
			ps.Error = errorMessage(err)
		}
		return err
	}
	ps.State = StepDone
	r.st.Results[step.ID] = res.Output
	r.done = append(r.done, step.ID)
	return nil
}

// subProcessOptions store the instance a process step runs: a store
// write, retried while the store is down.
var subProcessOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
		NonRetryableErrorTypes: activities.NonRetryable,
	},
}

// runSubProcess runs a process step: it stores the instance of the other
// process (StartSubProcess), runs it as a child workflow of this one and
// waits for its end. Its result is the instance's id, process, version,
// status and results; the step fails when the instance fails or is
// canceled, and this instance is rejected when that one is. Canceling
// this instance cancels that one; it is canceled too if this one's
// workflow ends first (terminated, say).
func (r *runner) runSubProcess(ctx workflow.Context, i int, in activities.StepInput) (map[string]any, error) {
	var start activities.SubProcessStart
	sin := activities.SubProcessInput{StepInput: in, Process: r.def.Name, Depth: r.in.Depth}
	// From versionSubProcessCancel on, a cancel waits for the store's
	// write to end, so that an instance stored for a child that never
	// starts is ended (endUnstarted) rather than left starting.
	ending := workflow.GetVersion(ctx, changeSubProcessCancel, workflow.DefaultVersion, versionSubProcessCancel) >= versionSubProcessCancel
	opts := subProcessOptions
	opts.WaitForCancellation = ending
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), a.StartSubProcess, sin).Get(ctx, &start); err != nil {
		return nil, err
	}
	if ending && ctx.Err() != nil { // canceled while it was stored
		r.endUnstarted(ctx, start)
		return nil, ctx.Err()
	}
	out := map[string]any{"instance_id": start.InstanceID, "process": start.Definition.Name, "version": start.Definition.Version}
	if start.Held != "" && workflow.GetVersion(ctx, changeSubProcessHold, workflow.DefaultVersion, versionSubProcessHold) >= versionSubProcessHold {
		// Its process is paused, or runs its concurrency limit: the step
		// waits for its turn.
		out["status"], out["held"] = StatusHeld, start.Held
		r.st.Results[in.Step.ID] = out
		r.saveBeforeWait(ctx)
		ended, err := r.awaitRelease(ctx, start)
		delete(out, "held")
		switch {
		case err != nil && ctx.Err() != nil:
			out["status"] = StatusCanceled
			r.endUnstarted(ctx, start)
			return out, err
		case err != nil:
			return out, err
		case ended != "": // canceled while held, by an API client
			out["status"] = ended
			return out, fmt.Errorf("%s %s was %s before it started", start.Definition.Name, start.InstanceID, ended)
		}
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        start.InstanceID,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		// A retry of this instance that goes back before the step runs
		// the other instance again, however its last run ended (canceled
		// with this one's run, say): a run that ended well is never
		// behind a retry point.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	var res Result
	child := workflow.ExecuteChildWorkflow(cctx, ProcessWorkflow, Input{
		Definition: start.Definition, InstanceID: start.InstanceID, BusinessKey: start.BusinessKey, Input: start.Input, Depth: start.Depth, CreatedAt: start.CreatedAt,
	})
	err := child.Get(ctx, &res)
	if err != nil {
		out["status"] = StatusFailed
		if ctx.Err() != nil { // this instance was canceled, and so that one
			out["status"] = StatusCanceled
			if exec := child.GetChildWorkflowExecution(); ending && exec.IsReady() && exec.Get(ctx, nil) != nil {
				r.endUnstarted(ctx, start) // canceled before it started
			}
		}
		r.st.Results[in.Step.ID] = out // kept though the step failed
		return out, fmt.Errorf("%s %s failed: %s", start.Definition.Name, start.InstanceID, errorMessage(err))
	}
	out["status"], out["results"] = res.Status, res.Results
	if res.Status == StatusCompleted {
		return out, nil // the step's result (runStep keeps it)
	}
	r.st.Results[in.Step.ID] = out // kept though the step did not complete
	if res.Status == StatusRejected {
		// This instance is rejected in turn; the step says why.
		msg := fmt.Sprintf("%s %s was rejected", start.Definition.Name, start.InstanceID)
		r.st.Plan[i].State, r.st.Plan[i].Error = StepFailed, msg
		return out, fmt.Errorf("%w: %s", errRejected, msg)
	}
	return out, fmt.Errorf("%s %s ended %s", start.Definition.Name, start.InstanceID, res.Status)
}

// freeSlot, for an instance whose definition limits how many run at once
// (from versionConcurrency to versionSlotOnSave), starts the instances of
// the process queued for the slot it leaves, now rather than at the start
// sweep's next pass. One that fails is logged: the sweep starts them all
// the same. From versionSlotOnSave on, the final save starts them.
func (r *runner) freeSlot(ctx workflow.Context) {
	if r.def.Concurrency <= 0 {
		return
	}
	if v := workflow.GetVersion(ctx, changeConcurrency, workflow.DefaultVersion, versionSlotOnSave); v < versionConcurrency || v >= versionSlotOnSave {
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 3},
	})
	if err := workflow.ExecuteActivity(actx, a.StartQueued, r.def.Name).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("the instances queued for this one's slot wait for the start sweep", "err", err)
	}
}

// holdPoll is how often a process step whose instance waits its turn
// looks again, besides being woken (by the resume, or a freed slot).
const holdPoll = 10 * time.Minute

// awaitRelease waits while the instance a process step stored waits its
// turn (its process paused, or at its concurrency limit): when woken
// (SignalSubProcessReleased), or every holdPoll, it asks the store
// (SubProcessHeld, which gives it a free slot). It returns the instance's
// status when it ended while held (canceled through the API), else ""
// once it may start.
func (r *runner) awaitRelease(ctx workflow.Context, start activities.SubProcessStart) (string, error) {
	released := workflow.GetSignalChannel(ctx, SignalSubProcessReleased)
	actx := workflow.WithActivityOptions(ctx, bookkeepingOptions)
	for {
		tctx, stop := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(released, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddFuture(workflow.NewTimer(tctx, holdPoll), func(workflow.Future) {})
		sel.Select(ctx)
		stop()
		if err := ctx.Err(); err != nil {
			return "", err
		}
		var h activities.HeldSubProcess
		if err := workflow.ExecuteActivity(actx, a.SubProcessHeld, start).Get(ctx, &h); err != nil {
			return "", err
		}
		if h.Held == "" {
			return h.Status, nil
		}
	}
}

// endUnstarted ends the instance a process step stored, when this
// instance was canceled before that one's workflow started: it is saved
// canceled, every step not run, unless a workflow of it has saved a state
// since (which then ends it itself). It runs in a disconnected context,
// as this instance's is canceled.
func (r *runner) endUnstarted(ctx workflow.Context, start activities.SubProcessStart) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	st := UnstartedState(&start.Definition, "canceled with "+r.in.InstanceID+" before it started")
	state, err := json.Marshal(st) //workflowcheck:ignore (map keys are sorted)
	if err != nil {
		return
	}
	in := activities.SaveStateInput{InstanceID: start.InstanceID, RunID: "parent:" + r.runID, Seq: 1, State: state, SLA: start.Definition.SLADuration()}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, bookkeepingOptions), a.EndUnstarted, in).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("the instance of a process step, never started, not ended", "instance", start.InstanceID, "err", err)
	}
}

// errorMessage unwraps Temporal's activity error to the cause's message.
func errorMessage(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Error()
	}
	return err.Error()
}
