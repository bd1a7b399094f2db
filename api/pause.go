package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// A paused process holds its new instances: they are stored, and answered
// as any start is, but their workflows start only once it is resumed (the
// start sweep takes them then). For an incident at a partner every
// instance would call, say: nothing is lost, nothing fails.

// holdTTL is how long a replica trusts the paused states it read: a pause
// applies in every replica within it.
const holdTTL = 2 * time.Second

// holds caches the processes' paused states and concurrency limits.
type holds struct {
	mu       sync.Mutex
	at       time.Time
	paused   map[string]store.ProcessState
	limitsAt time.Time
	limits   map[string]int
}

// heldError is a start held because its process is paused, or queued
// under its concurrency limit: why.
type heldError struct{ why string }

func (e *heldError) Error() string { return e.why }

// pausedError is the heldError of a start its process's pause holds.
func pausedError(st store.ProcessState) *heldError {
	return &heldError{why: store.PausedWhy(st)}
}

// queuedError is the heldError of a start queued under its process's
// concurrency limit.
func queuedError(process string, limit int) *heldError {
	return &heldError{why: store.QueuedWhy(process, limit)}
}

// isHeld reports whether err is a start held by a pause.
func isHeld(err error) bool {
	var he *heldError
	return errors.As(err, &he)
}

// held is the pause that holds a start of process, if any.
func (st *starter) held(ctx context.Context, process string) (*heldError, error) {
	if st.opts.Schedules == nil {
		return nil, nil
	}
	h := &st.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.paused == nil || time.Since(h.at) > holdTTL {
		states, err := st.opts.Schedules.ProcessStates(ctx, "")
		if err != nil {
			return nil, err
		}
		h.paused, h.at = map[string]store.ProcessState{}, time.Now()
		for _, s := range states {
			if s.Paused {
				h.paused[s.Process] = s
			}
		}
	}
	if s, ok := h.paused[process]; ok {
		return pausedError(s), nil
	}
	return nil, nil
}

// hold is why a stored instance's start waits (a *heldError: its process
// is paused, or it is queued under its process's concurrency limit), or
// the store's error; nil when it may start (its workflow exists already,
// or its process runs). With admit, a queued instance takes a free slot
// (and inst says so) rather than wait. The instance a process step stored
// is started by that step only: 409 while it has not started.
func (st *starter) hold(ctx context.Context, inst *store.Instance, admit bool) error {
	if !inst.PendingStart {
		return nil
	}
	held, err := st.held(ctx, inst.Process)
	if err != nil {
		return err
	}
	if held != nil {
		if inst.RetryQueued != "" {
			return &heldError{why: held.why + "; its retry (" + inst.RetryQueued + ") waits too, and runs then"}
		}
		return held
	}
	if inst.RetryQueued != "" {
		// A retry waiting its turn: with admit it takes a free slot, as a
		// queued start does, for the queue to run it (retryQueued); it is
		// never started as a start.
		limit, err := st.limit(ctx, inst.Process)
		if err != nil {
			return err
		}
		queued := &heldError{why: store.RunsAtOnce(inst.Process, limit) + ": its retry (" + inst.RetryQueued + ") is queued, and runs as others end, oldest first"}
		if !admit {
			return queued
		}
		ok, err := st.opts.Instances.Admit(ctx, inst.ID, limit)
		if err != nil {
			return err
		}
		if !ok {
			return queued
		}
		inst.Queued = false
		return nil
	}
	parent, child := process.SubProcessParent(inst.CreatedBy)
	if inst.Queued {
		limit, err := st.limit(ctx, inst.Process)
		if err != nil {
			return err
		}
		if !admit || child { // a process step's instance takes its slot through its step
			return queuedError(inst.Process, limit)
		}
		ok, err := st.opts.Instances.Admit(ctx, inst.ID, limit)
		if err != nil {
			return err
		}
		if !ok {
			return queuedError(inst.Process, limit)
		}
		inst.Queued = false
	}
	if child {
		return conflict("instance %s is being started by the process step of %s that stored it; try again in a moment", inst.ID, parent)
	}
	return nil
}

// limit is a process's concurrency limit, its latest definition's (0:
// none), as read within holdTTL.
func (st *starter) limit(ctx context.Context, name string) (int, error) {
	h := &st.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.limits == nil || time.Since(h.limitsAt) > holdTTL {
		recs, err := st.opts.Definitions.Definitions(ctx)
		if err != nil {
			return 0, err
		}
		h.limits, h.limitsAt = map[string]int{}, time.Now()
		for _, rec := range recs {
			if n, err := process.ConcurrencyOf(rec.Doc); err == nil && n > 0 {
				h.limits[rec.Name] = n
			}
		}
	}
	return h.limits[name], nil
}

// forget drops the cached states and limits: this replica just changed
// one (a pause, a resume, a definition).
func (st *starter) forget() {
	st.holds.mu.Lock()
	st.holds.paused, st.holds.limits = nil, nil
	st.holds.mu.Unlock()
}

// switchProcess pauses (or resumes) a process: POST
// /v1/processes/{name}/pause and /resume, {"note"} optional.
func (s *server) switchProcess(pause bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req struct {
			Note string `json:"note,omitempty"`
		}
		if err := bindOptionalJSON(c, &req); err != nil {
			fail(c, err)
			return
		}
		ctx := c.Request.Context()
		def, _, err := s.definition(ctx, c.Param("name"), 0) // 404 for an unknown process
		if err != nil {
			fail(c, err)
			return
		}
		st := store.ProcessState{Process: def.Name, Paused: pause, ChangedBy: caller(c).Name, ChangedAt: time.Now().UTC(), Note: req.Note}
		if err := s.Schedules.SetProcessState(ctx, st); err != nil {
			fail(c, err)
			return
		}
		s.starts.forget()
		if !pause {
			// The held instances start now, not at the sweep's next pass
			// (which leaves alone starts younger than a minute). A start
			// is idempotent, so one a request is still finishing is no
			// harm.
			s.starts.inflight.Add(1)
			go func() {
				defer s.starts.inflight.Add(-1)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				s.releaseChildren(ctx, def.Name)
				n, err := SweepStarts(ctx, SweepOptions{Options: s.Options, MinAge: time.Nanosecond})
				if err != nil {
					s.Logger.Warn("starting the instances held while a process was paused; the start sweep goes on", "process", def.Name, "started", n, "err", err)
					return
				}
				s.Logger.Info("started the instances held while a process was paused", "process", def.Name, "started", n)
			}()
		}
		c.JSON(http.StatusOK, st)
	}
}

// startQueuedNow starts, in the background, the instances of a process
// queued under its concurrency limit as slots are free: its new version
// may have raised the limit, or dropped it; a retry just queued may find
// a slot freed since its claim. The start sweep's next pass would, later.
func (s *server) startQueuedNow(name string) {
	s.starts.inflight.Add(1)
	go func() {
		defer s.starts.inflight.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if n, err := StartQueued(ctx, SweepOptions{Options: s.Options}, name); err != nil {
			s.Logger.Warn("starting the instances queued under a process's concurrency limit; the start sweep goes on", "process", name, "started", n, "err", err)
		}
	}()
}

// releaseChildren wakes the instances whose process steps wait for a
// process just resumed: the parents of its instances still starting (a
// signal; each then asks the store and starts its child). One missed
// looks again within workflows' hold poll by itself.
func (s *server) releaseChildren(ctx context.Context, name string) {
	woken := map[string]bool{}
	f := store.InstanceFilter{Process: name, Status: store.InstanceStarting, Limit: store.MaxInstancePage}
	for {
		page, err := s.Instances.Instances(ctx, f)
		if err != nil {
			s.Logger.Warn("waking the process steps that waited for a resumed process; they look again by themselves", "process", name, "err", err)
			return
		}
		for _, in := range page {
			parent, ok := process.SubProcessParent(in.CreatedBy)
			if !ok || woken[parent] {
				continue
			}
			woken[parent] = true
			s.starts.wakeParent(ctx, parent)
		}
		if len(page) < f.Limit {
			return
		}
		f.After = store.InstanceCursor(page[len(page)-1])
	}
}

// wakeParent tells an instance whose process step waits for a held
// instance to look at it again (the step otherwise looks every ten
// minutes by itself). It reports false when the instance's workflow has
// ended (terminated in Temporal, say): nothing waits any more.
func (st *starter) wakeParent(ctx context.Context, parent string) bool {
	err := st.opts.Temporal.SignalWorkflow(ctx, parent, "", workflows.SignalSubProcessReleased, nil)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false
	}
	if err != nil {
		st.opts.Logger.Warn("waking a process step that waits for a held instance; it looks again by itself", "instance", parent, "err", err)
	}
	return true
}

// processState is a process's paused state, nil when it runs.
func (s *server) processState(ctx context.Context, name string) (*store.ProcessState, error) {
	states, err := s.Schedules.ProcessStates(ctx, name)
	if err != nil || len(states) == 0 || !states[0].Paused {
		return nil, err
	}
	return &states[0], nil
}
