package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// instanceStatuses are what a listing filters by.
var instanceStatuses = []string{store.InstanceStarting, "running", "waiting_review", "waiting_event", store.InstanceCompleted, store.InstanceRejected, store.InstanceFailed,
	store.InstanceCanceled, store.InstanceInProgress, store.InstanceFinished, store.InstanceQueued}

// listInstances lists a process's instances, newest first, paged by
// cursor: the failed ones to look into, the ones waiting for review, or
// the one a business key names.
func (s *server) listInstances(c *gin.Context) {
	name := c.Param("name")
	f := store.InstanceFilter{Process: name, Status: c.Query("status"), BusinessKey: c.Query("business_key"), After: c.Query("after"), Limit: 50}
	if f.Status != "" && !slices.Contains(instanceStatuses, f.Status) {
		fail(c, badRequest("status", "must be one of %s (got %q)", strings.Join(instanceStatuses, ", "), f.Status))
		return
	}
	var err error
	if f.Limit, err = intParam(c, "limit", 50, 1, store.MaxInstancePage); err != nil {
		fail(c, err)
		return
	}
	if f.Since, err = agoParam(c, "since", time.Now()); err != nil {
		fail(c, err)
		return
	}
	ctx := c.Request.Context()
	def, _, err := s.definition(ctx, name, 0) // 404 for an unknown process
	if err != nil {
		fail(c, err)
		return
	}
	if f.Input, err = inputMatches(c, def, s.olderField(ctx, def)); err != nil {
		fail(c, err)
		return
	}
	slas, err := s.processSLAs(ctx, name)
	if err != nil {
		fail(c, err)
		return
	}
	if f.SLA = c.Query("sla"); f.SLA != "" {
		standings := []string{store.SLAOnTrack, store.SLAOverdue, store.SLAMet, store.SLAMissed}
		if !slices.Contains(standings, f.SLA) {
			fail(c, badRequest("sla", "must be one of %s (got %q)", strings.Join(standings, ", "), f.SLA))
			return
		}
		if len(slas) == 0 {
			fail(c, badRequest("sla", "no version of %s declares an sla", name))
			return
		}
	}
	now := time.Now()
	f.SLAs, f.Now = slas, now
	list, err := s.Instances.Instances(ctx, f)
	if err != nil {
		fail(c, cursorError(err))
		return
	}
	for i, in := range list {
		list[i] = withSLA(in, slas[in.Version], now)
	}
	out := gin.H{"instances": list}
	if len(list) == f.Limit {
		out["next"] = store.InstanceCursor(list[len(list)-1])
	}
	c.JSON(http.StatusOK, out)
}

// findInstances lists the instances of a business key in every process
// the caller may see, newest first: a business system that knows its
// order number, not which process runs it; the instance a process step
// started (its key is sub:PARENT:STEP).
func (s *server) findInstances(c *gin.Context) {
	f := store.InstanceFilter{BusinessKey: c.Query("business_key"), After: c.Query("after"), Processes: caller(c).Processes}
	if err := validBusinessKey("business_key", f.BusinessKey); err != nil {
		fail(c, err)
		return
	}
	var err error
	if f.Limit, err = intParam(c, "limit", 50, 1, store.MaxInstancePage); err != nil {
		fail(c, err)
		return
	}
	ctx := c.Request.Context()
	list, err := s.Instances.Instances(ctx, f)
	if err != nil {
		fail(c, cursorError(err))
		return
	}
	now := time.Now()
	for i, in := range list {
		sla, err := s.versionSLA(ctx, in.Process, in.Version)
		if err != nil {
			fail(c, err)
			return
		}
		list[i] = withSLA(in, sla, now)
	}
	out := gin.H{"instances": list}
	if len(list) == f.Limit {
		out["next"] = store.InstanceCursor(list[len(list)-1])
	}
	c.JSON(http.StatusOK, out)
}

// olderField finds an input field the latest definition no longer has in
// the versions before it, newest first: older instances have it.
func (s *server) olderField(ctx context.Context, latest *process.Definition) func(field string) (process.Property, bool, error) {
	return func(field string) (process.Property, bool, error) {
		versions, err := s.Definitions.DefinitionVersions(ctx, latest.Name)
		if err != nil {
			return process.Property{}, false, err
		}
		for i := len(versions) - 1; i >= 0; i-- {
			if versions[i] == latest.Version {
				continue
			}
			def, _, err := s.definition(ctx, latest.Name, versions[i])
			if err != nil {
				return process.Property{}, false, err
			}
			if p, ok := def.Input.Properties[field]; ok {
				return p, true, nil
			}
		}
		return process.Property{}, false, nil
	}
}

// inputMatches reads the query parameters input.FIELD=VALUE of an
// instance listing: FIELD a string, number, integer or boolean field of
// the process's input (its latest definition, or, for a field it dropped,
// the newest version before it that has it), VALUE one of its type.
func inputMatches(c *gin.Context, def *process.Definition, older func(field string) (process.Property, bool, error)) ([]store.InputMatch, error) {
	var out []store.InputMatch
	keys := slices.Sorted(maps.Keys(c.Request.URL.Query()))
	for _, key := range keys {
		field, ok := strings.CutPrefix(key, "input.")
		if !ok {
			continue
		}
		raw := c.Query(key)
		prop, known := def.Input.Properties[field]
		if !known && older != nil {
			var err error
			if prop, known, err = older(field); err != nil {
				return nil, err
			}
		}
		if !known {
			return nil, badRequest(key, "%s has no input field %q in any version", def.Name, field)
		}
		var v any
		var err error
		switch prop.Type {
		case "string":
			v = raw
		case "number", "integer":
			var n float64
			if n, err = strconv.ParseFloat(raw, 64); err == nil && (math.IsInf(n, 0) || math.IsNaN(n)) {
				err = errors.New("not finite")
			}
			v = n
		case "boolean":
			v, err = strconv.ParseBool(raw)
		default:
			return nil, badRequest(key, "only fields of type string, number, integer or boolean can be matched (%s is %s)", field, prop.Type)
		}
		if err != nil {
			return nil, badRequest(key, "must be a %s (got %q)", prop.Type, raw)
		}
		out = append(out, store.InputMatch{Field: field, Value: v})
	}
	return out, nil
}

// sendUpdate sends the instance's workflow an update and reads its
// answer into out (nil: none). An instance whose start has not reached
// Temporal yet (an outage, a crash) is started first, as the start sweep
// would.
func (s *server) sendUpdate(ctx context.Context, inst store.Instance, name string, arg, out any) error {
	send := func() error {
		return s.updateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: inst.ID, UpdateName: name, Args: []any{arg}}, out)
	}
	// Held by a pause: no workflow to update until it is resumed.
	if err := s.starts.hold(ctx, &inst, false); err != nil {
		return err
	}
	err := send()
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) && inst.PendingStart {
		def, input, perr := pendingStart(ctx, s.Definitions, map[string]*process.Definition{}, inst)
		if perr != nil {
			return perr
		}
		if err = s.starts.startWorkflow(ctx, def, inst, input); err == nil {
			err = send()
		}
	}
	return err
}

// instanceWait is how long a cancel or a retry waits for the instance to
// end, or to run again, before it answers 202.
const instanceWait = 10 * time.Second

// reasonRequest is the body of an action on an instance (cancel, retry):
// why, optional.
type reasonRequest struct {
	Reason string `json:"reason"`
}

// actionTarget reads the optional reason of an action on an instance and
// the instance, one the caller may touch; on an error it has answered.
func (s *server) actionTarget(c *gin.Context) (store.Instance, string, bool) {
	var req reasonRequest
	if err := bindOptionalJSON(c, &req); err != nil {
		fail(c, err)
		return store.Instance{}, "", false
	}
	inst, err := s.allowedInstance(c)
	if err != nil {
		fail(c, err)
		return store.Instance{}, "", false
	}
	return inst, strings.TrimSpace(req.Reason), true
}

// cancelInstance stops an instance: the step under way and those after it
// do not run, its open reviews leave the inbox, and it ends as canceled,
// with who canceled it and why as its error. The answer is the instance
// once it has ended (200), or as it is when it takes longer (202).
func (s *server) cancelInstance(c *gin.Context) {
	inst, reason, ok := s.actionTarget(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if inst.RetryQueued != "" {
		// A failed instance whose retry waits in the queue: the cancel
		// withdraws the retry, and it stays failed.
		dropped, err := s.Retries.DropQueuedRetry(ctx, inst.ID)
		if err != nil {
			fail(c, err)
			return
		}
		if !dropped {
			fail(c, conflict("instance %s: its queued retry has taken a slot and is running; cancel it once it runs", inst.ID))
			return
		}
		loggerFrom(c).InfoContext(ctx, "queued retry withdrawn", "instance", inst.ID, "by", caller(c).Name, "reason", reason)
		s.answerWhen(c, inst.ID, func(string) bool { return true })
		return
	}
	if st, _ := store.StatusOf(inst.State); store.Final(st) {
		fail(c, conflict("instance %s has already ended: %s", inst.ID, st))
		return
	}
	// An instance held by a pause has no workflow: it ends here, canceled
	// before it started.
	switch err := s.starts.hold(ctx, &inst, false); {
	case isHeld(err):
		if err := s.cancelHeld(ctx, inst, caller(c).Name, reason); err != nil {
			fail(c, err)
			return
		}
		s.answerWhen(c, inst.ID, store.Final)
		return
	case err != nil:
		fail(c, err)
		return
	}
	// An instance whose start has not reached Temporal yet is started,
	// and canceled before it goes far.
	err := s.sendUpdate(ctx, inst, workflows.UpdateCancel, workflows.CancelRequest{By: caller(c).Name, Reason: reason}, nil)
	var nf *serviceerror.NotFound
	var ae *temporal.ApplicationError
	switch {
	case errors.As(err, &ae):
		fail(c, conflict("instance %s: %s", inst.ID, ae.Message()))
		return
	case errors.As(err, &nf):
		_, derr := s.Temporal.DescribeWorkflowExecution(ctx, inst.ID, "")
		if inst.PendingStart || inst.StateSeq == 0 || inst.StateRun == "" || !errors.As(derr, &nf) {
			fail(c, conflict("instance %s is no longer running", inst.ID))
			return
		}
		// It ran, and Temporal no longer has its workflow (its history
		// was lost): nothing else would ever end it.
		if err := s.cancelLost(ctx, inst, caller(c).Name, reason); err != nil {
			fail(c, err)
			return
		}
		s.answerWhen(c, inst.ID, store.Final)
		return
	case err != nil:
		fail(c, err)
		return
	}
	// The workflow ends in moments (it closes reviews and saves its
	// state); answer with its end.
	s.answerWhen(c, inst.ID, store.Final)
}

// cancelLost ends an instance whose workflow Temporal no longer has, as
// canceled by by: its state is saved as its workflow would have, its open
// reviews close.
func (s *server) cancelLost(ctx context.Context, inst store.Instance, by, reason string) error {
	var st workflows.State
	if err := json.Unmarshal(inst.State, &st); err != nil {
		return fmt.Errorf("instance %s: stored state: %w", inst.ID, err)
	}
	why := canceledBy(by, reason) + " (its workflow was no longer in Temporal)"
	return endOutside(ctx, s.Options, inst, st, inst.StateRun, workflows.StatusCanceled, why, by)
}

// canceledBy is the error of an instance canceled by by, for reason, as
// its workflow words it.
func canceledBy(by, reason string) string {
	if reason == "" {
		return "canceled by " + by
	}
	return "canceled by " + by + ": " + reason
}

// cancelHeld ends an instance held by a pause, which has no workflow yet:
// its state is saved canceled (every step not run), as its workflow would
// have, which also takes it out of the pending starts.
func (s *server) cancelHeld(ctx context.Context, inst store.Instance, by, reason string) error {
	def, _, err := s.definition(ctx, inst.Process, inst.ProcessVersion)
	if err != nil {
		return err
	}
	why := canceledBy(by, reason)
	if inst.Queued {
		why += " (queued under the concurrency limit of " + inst.Process + "; it never started)"
	} else {
		why += " (held while " + inst.Process + " was paused; it never started)"
	}
	st := workflows.UnstartedState(def, why)
	fin, err := s.Ended.SaveInstanceState(ctx, inst.ID, store.HeldRun, 1, process.JSON(st))
	if err == nil && s.Finished != nil {
		s.Finished(fin)
	}
	if parent, ok := process.SubProcessParent(inst.CreatedBy); ok && err == nil {
		s.starts.wakeParent(ctx, parent) // its process step fails now, not at its next look
	}
	return err
}

// answerWhen answers with the instance once its stored status passes done
// (200), or as it is after instanceWait (202); with done nil, as it is now
// (202: it waits, held says why).
func (s *server) answerWhen(c *gin.Context, id string, done func(status string) bool) {
	ctx := c.Request.Context()
	deadline := time.Now().Add(instanceWait)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		cur, err := s.Instances.Instance(ctx, id)
		if err != nil {
			fail(c, err)
			return
		}
		st, err := s.instanceState(ctx, cur)
		if err != nil {
			fail(c, err)
			return
		}
		if finished := done != nil && done(st.Status); finished || done == nil || time.Now().After(deadline) {
			code := http.StatusOK
			if !finished {
				code = http.StatusAccepted
			}
			s.answerInstance(c, code, cur, st)
			return
		}
		select {
		case <-ctx.Done():
			fail(c, ctx.Err())
			return
		case <-time.After(wait):
		}
	}
}

// answerInstance answers with the instance as the API shows it: its SLA,
// and why it waits when a pause or the concurrency limit holds it.
func (s *server) answerInstance(c *gin.Context, code int, inst store.Instance, st workflows.State) {
	ctx := c.Request.Context()
	out := instanceJSON(inst, st)
	if err := s.slaFields(ctx, out, inst, st); err != nil {
		fail(c, err)
		return
	}
	if inst.PendingStart {
		if err := s.starts.hold(ctx, &inst, false); isHeld(err) {
			out["held"] = err.Error()
		}
	}
	c.JSON(code, out)
}

// updateWorkflow sends a Temporal Update and waits for its result in out.
// The server answers WorkflowNotReady when the workflow task carrying the
// update failed (a task the worker must retry, say, as it raced a new
// event); the update is sent again, under the same update id so that the
// workflow takes it once, until ctx ends.
func (s *server) updateWorkflow(ctx context.Context, opts client.UpdateWorkflowOptions, out any) error {
	if opts.UpdateID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		opts.UpdateID = "upd_" + hex.EncodeToString(b[:])
	}
	opts.WaitForStage = client.WorkflowUpdateStageCompleted
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		h, err := s.Temporal.UpdateWorkflow(ctx, opts)
		if err == nil {
			err = h.Get(ctx, out)
		}
		var notReady *serviceerror.WorkflowNotReady
		if !errors.As(err, &notReady) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
