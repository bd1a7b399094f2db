package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// Starting an instance's workflow.
//
// The API stores an instance, marked pending_start, before it asks Temporal
// for the workflow, so the store is an outbox of starts: Temporal's answer
// clears the mark (in batches; the workflow's first state save clears it
// too), and SweepStarts finishes any start that a crash or an outage left
// pending. Both the store row and the Temporal start are idempotent by
// business key.
//
// A start request waits for Temporal's answer up to StartWait. When
// Temporal is slower than that — a burst of starts on a busy machine — the
// request answers 201 with the instance stored and its status "starting",
// and the start finishes in the background. While Temporal's last answer
// was a failure (or none came yet), requests wait for the answer, so an
// outage still gives 503 and no start is accepted that Temporal cannot
// take.

// DefaultStartWait is how long a start request waits for Temporal before it
// leaves the start to finish in the background.
const DefaultStartWait = 10 * time.Millisecond

// maxBackgroundStarts bounds the starts left to finish in the background;
// past it, requests wait for Temporal again.
const maxBackgroundStarts = 1024

// starter starts instances' workflows for the API.
type starter struct {
	opts    *Options
	metrics *metrics
	// up is whether Temporal's last answer to a start was a success.
	up atomic.Bool
	// inflight counts the start goroutines (Handler.Drain waits for none).
	inflight atomic.Int64

	// started are the instances whose workflow a request started, to be
	// marked in the store in one write per markEvery.
	mu        sync.Mutex
	started   []string
	scheduled bool

	// holds are the paused processes, whose new instances are held.
	holds holds
}

// markEvery is how long the ids of started instances gather before one
// store write clears their pending marks.
const markEvery = 100 * time.Millisecond

// markStarted queues the instance's mark for the next batch.
func (st *starter) markStarted(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.started = append(st.started, id)
	if !st.scheduled {
		st.scheduled = true
		time.AfterFunc(markEvery, st.flushMarks)
	}
}

// flushMarks writes the queued marks. A batch that cannot be written is
// dropped: the instances stay pending, and the sweep (whose start is
// idempotent) or their workflows' first state saves clear them.
func (st *starter) flushMarks() {
	st.mu.Lock()
	ids := st.started
	st.started, st.scheduled = nil, false
	st.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), st.opts.Timeout)
	defer cancel()
	if err := st.opts.Instances.MarkStarted(ctx, ids); err != nil {
		st.opts.Logger.Warn("could not clear the pending starts of started instances; the sweep will", "instances", len(ids), "err", err)
	}
}

// handoff is one start's outcome as the request and the start goroutine see
// it: whichever comes second learns what the first did.
type handoff struct {
	mu     sync.Mutex
	handed bool
	err    error
	done   chan struct{} // closed, under mu, once err is set
}

// start starts the workflow of a stored instance, waiting for Temporal up
// to StartWait (or fully, while Temporal is down). A nil error means the
// workflow exists or its start is under way and recorded.
func (st *starter) start(ctx context.Context, def *process.Definition, inst store.Instance, input map[string]any) error {
	if err := st.hold(ctx, &inst, true); err != nil {
		return err
	}
	h := &handoff{done: make(chan struct{})}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.opts.Timeout)
	st.inflight.Add(1)
	go func() {
		defer cancel()
		defer st.inflight.Add(-1)
		err := st.startWorkflow(bg, def, inst, input)
		h.mu.Lock()
		h.err = err
		close(h.done)
		handed := h.handed
		h.mu.Unlock()
		if handed {
			st.metrics.backgroundStarts.WithLabelValues(outcome(err)).Inc()
			if err != nil {
				st.opts.Logger.Warn("a background workflow start failed; the start sweeper retries it", "instance", inst.ID, "err", err)
			}
		}
	}()
	if st.opts.StartWait < 0 || !st.up.Load() || st.inflight.Load() > maxBackgroundStarts {
		<-h.done
		return h.err
	}
	t := time.NewTimer(st.opts.StartWait)
	defer t.Stop()
	select {
	case <-h.done:
		return h.err
	case <-t.C:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done: // finished as the wait ran out
		return h.err
	default:
	}
	h.handed = true
	return nil
}

func outcome(err error) string {
	if err != nil {
		return "failed"
	}
	return "started"
}

// startNow asks Temporal for the instance's workflow and, once it exists,
// queues the instance's mark (markStarted): one store write per batch, not
// one per start, off the request's path.
func (st *starter) startNow(ctx context.Context, def *process.Definition, inst store.Instance, input map[string]any) error {
	if err := st.hold(ctx, &inst, true); err != nil {
		return err
	}
	return st.startWorkflow(ctx, def, inst, input)
}

// startWorkflow is startNow once the start is known not to be held.
func (st *starter) startWorkflow(ctx context.Context, def *process.Definition, inst store.Instance, input map[string]any) error {
	_, err := st.opts.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       inst.ID,
		TaskQueue:                st.opts.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, workflows.ProcessWorkflow, workflows.Input{Definition: *def, InstanceID: inst.ID, BusinessKey: inst.BusinessKey, Input: input, CreatedAt: inst.CreatedAt})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &already) {
		st.up.Store(false)
		return err
	}
	st.up.Store(true)
	if inst.PendingStart {
		st.markStarted(inst.ID)
	}
	return nil
}

// SweepOptions are what SweepStarts needs: the API's options and how old a
// pending start must be before the sweep takes it over.
type SweepOptions struct {
	Options
	// MinAge leaves alone the starts younger than this, which a request
	// may still be finishing (default twice Options.Timeout, at least a
	// minute).
	MinAge time.Duration
	// Batch is how many pending starts are read at a time (default 100).
	Batch int
}

// SweepStarts finishes the starts of instances the API stored whose
// workflow start did not finish — the process stopped before Temporal
// answered, or Temporal was down — and returns how many it started. It
// stops at the first failure to reach Temporal, leaving the rest for the
// next sweep.
func SweepStarts(ctx context.Context, o SweepOptions) (int, error) {
	o.defaults()
	if o.MinAge <= 0 {
		o.MinAge = max(time.Minute, 2*o.Timeout)
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	st := &starter{opts: &o.Options}
	defer st.flushMarks()
	defs := map[string]*process.Definition{}
	// seen ends the sweep when a batch holds only rows it already took
	// (whose marks could not be written).
	seen := map[string]bool{}
	started := 0
	before := time.Now().Add(-o.MinAge)
	for {
		pending, err := o.Instances.PendingStarts(ctx, before, o.Batch)
		if err != nil {
			return started, err
		}
		progress := 0
		for _, inst := range pending {
			if seen[inst.ID] {
				continue
			}
			seen[inst.ID] = true
			progress++
			if inst.RetryQueued != "" { // a queued retry admitted, not yet run (its starter stopped)
				if err := st.retryQueued(ctx, inst); err != nil {
					return started, fmt.Errorf("sweep starts: %w", err)
				}
				started++
				continue
			}
			def, input, err := pendingStart(ctx, o.Definitions, defs, inst)
			switch {
			case st.unstartable(inst, err):
				continue
			case err != nil:
				return started, fmt.Errorf("sweep starts: instance %s: %w", inst.ID, err)
			}
			sctx, cancel := context.WithTimeout(ctx, o.Timeout)
			err = st.startNow(sctx, def, inst, input)
			cancel()
			if isHeld(err) {
				continue // paused since it was read: started once resumed
			}
			if err != nil {
				return started, fmt.Errorf("sweep starts: instance %s: %w", inst.ID, err)
			}
			o.Logger.Info("finished a pending workflow start", "instance", inst.ID)
			started++
		}
		// The batch's marks are written before the next batch is read.
		st.flushMarks()
		if len(pending) < o.Batch || progress == 0 {
			break
		}
	}
	// Then the instances queued under concurrency limits, as slots free.
	processes, err := o.Instances.QueuedStarts(ctx, "", 1000)
	if err != nil {
		return started, err
	}
	for _, p := range processes {
		n, err := startQueued(ctx, st, o, defs, p.Process)
		started += n
		if err != nil {
			return started, err
		}
	}
	return started, nil
}

// StartQueued starts the instances of a process queued under its
// concurrency limit, oldest first, while slots are free (an instance of it
// just ended, say), and says how many it started.
func StartQueued(ctx context.Context, o SweepOptions, name string) (int, error) {
	o.defaults()
	if o.Batch <= 0 {
		o.Batch = 100
	}
	st := &starter{opts: &o.Options}
	defer st.flushMarks()
	return startQueued(ctx, st, o, map[string]*process.Definition{}, name)
}

// startQueued is StartQueued with the sweep's starter and definitions.
func startQueued(ctx context.Context, st *starter, o SweepOptions, defs map[string]*process.Definition, name string) (int, error) {
	started := 0
	for {
		queued, err := o.Instances.QueuedStarts(ctx, name, o.Batch)
		if err != nil || len(queued) == 0 {
			return started, err
		}
		for _, inst := range queued {
			if parent, ok := process.SubProcessParent(inst.CreatedBy); ok {
				// A process step's: its step takes the slot (woken now,
				// or at its own look); those behind it wait their turn.
				if st.wakeParent(ctx, parent) {
					return started, nil
				}
				// Its parent's workflow ended (terminated): nothing will
				// take its slot. It leaves the queue; a retry of the
				// parent queues it again at its step.
				o.Logger.Warn("an instance queued for a process step whose instance has ended leaves the queue", "instance", inst.ID, "parent", parent)
				st.markStarted(inst.ID)
				st.flushMarks()
				continue
			}
			if inst.RetryQueued != "" {
				// A retry waiting its turn takes its slot as a start
				// would, then runs; while it cannot (no slot free, or
				// its process paused), the rest wait.
				if err := st.hold(ctx, &inst, true); err != nil {
					if isHeld(err) {
						return started, nil
					}
					return started, err
				}
				if err := st.retryQueued(ctx, inst); err != nil {
					return started, err
				}
				started++
				continue
			}
			def, input, err := pendingStart(ctx, o.Definitions, defs, inst)
			switch {
			case st.unstartable(inst, err):
				st.flushMarks() // out of the queue before it is read again
				continue
			case err != nil:
				return started, fmt.Errorf("start queued instance %s: %w", inst.ID, err)
			}
			sctx, cancel := context.WithTimeout(ctx, o.Timeout)
			err = st.startNow(sctx, def, inst, input)
			cancel()
			if isHeld(err) {
				return started, nil // no slot free (or paused): the rest wait
			}
			if err != nil {
				return started, fmt.Errorf("start queued instance %s: %w", inst.ID, err)
			}
			o.Logger.Info("started an instance queued under its process's concurrency limit", "instance", inst.ID)
			started++
		}
		st.flushMarks()
	}
}

// unstartable reports whether reading what a pending instance starts
// with failed for good (err: its definition version is gone, or its
// stored input is not JSON): then it is said loudly and marked started,
// out of the sweep and of its process's queue, so that it holds up none
// behind it.
func (st *starter) unstartable(inst store.Instance, err error) bool {
	var syntax *json.SyntaxError
	if !errors.Is(err, store.ErrNotFound) && !errors.As(err, &syntax) {
		return false
	}
	st.opts.Logger.Error("a pending workflow start can never finish; it is no longer swept", "instance", inst.ID, "err", err)
	st.markStarted(inst.ID)
	return true
}

// pendingStart reads what a pending instance's workflow starts with.
func pendingStart(ctx context.Context, ds DefinitionStore, cache map[string]*process.Definition, inst store.Instance) (*process.Definition, map[string]any, error) {
	key := fmt.Sprintf("%s@%d", inst.Process, inst.ProcessVersion)
	def, ok := cache[key]
	if !ok {
		var err error
		if def, _, err = definition(ctx, ds, inst.Process, inst.ProcessVersion); err != nil {
			return nil, nil, err
		}
		cache[key] = def
	}
	var input map[string]any
	if err := json.Unmarshal(inst.Input, &input); err != nil {
		return nil, nil, fmt.Errorf("stored input: %w", err)
	}
	return def, input, nil
}

// newBackgroundStarts counts the starts left to finish in the background.
func newBackgroundStarts() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_background_starts_total",
		Help: "Workflow starts that Temporal answered after their request had returned (it waited StartWait), by outcome (started, failed: left for the start sweeper).",
	}, []string{"outcome"})
}
