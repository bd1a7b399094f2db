package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// decodeJSON decodes one JSON value strictly: unknown fields and trailing
// data are errors naming where they are.
func decodeJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return badRequest("", "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return badRequest("", "malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return badRequest(te.Field, "must be %s (got %s)", te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(f, "unknown field")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("", "malformed JSON: unexpected end of body")
		}
		return badRequest("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("", "malformed JSON: trailing data after the object")
	}
	return nil
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// putProcess registers a definition version from YAML or JSON.
func (s *server) putProcess(c *gin.Context) {
	body, err := readBody(c)
	if err != nil {
		fail(c, err)
		return
	}
	if limited(c) { // a key limited to processes registers only theirs
		if def, err := process.ParseDefinition(body); err == nil {
			if err := allowProcess(c, def.Name); err != nil {
				fail(c, err)
				return
			}
		}
	}
	def, created, err := RegisterDefinition(c.Request.Context(), s.Definitions, s.Env, body, caller(c).Name)
	if err != nil {
		fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.starts.forget() // its concurrency limit applies at once here
		s.startQueuedNow(def.Name)
		if err := s.keepSchedules(c.Request.Context(), def); err != nil {
			// The version is registered; a pause left of a schedule it
			// dropped only matters should a later one bring it back.
			loggerFrom(c).WarnContext(c.Request.Context(), "the pauses of schedules the new version dropped are kept", "process", def.Name, "err", err)
		}
	}
	c.JSON(status, gin.H{"name": def.Name, "version": def.Version, "created": created, "definition": def})
}

// keepSchedules drops the pauses of the schedules a process's new latest
// version left out (a later version that brings one back starts it
// afresh); a version registered below the latest changes nothing.
func (s *server) keepSchedules(ctx context.Context, def *process.Definition) error {
	latest, err := s.Definitions.Definition(ctx, def.Name, 0)
	if err != nil || latest.Version != def.Version {
		return err
	}
	keep := make([]string, 0, len(def.Schedules))
	for _, sc := range def.Schedules {
		keep = append(keep, sc.ID)
	}
	return s.Schedules.KeepScheduleStates(ctx, def.Name, keep)
}

func (s *server) listProcesses(c *gin.Context) {
	recs, err := s.Definitions.Definitions(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	states, err := s.Schedules.ProcessStates(c.Request.Context(), "")
	if err != nil {
		fail(c, err)
		return
	}
	paused := map[string]bool{}
	for _, st := range states {
		paused[st.Process] = st.Paused
	}
	// The counts of each process's instances, unless the caller only
	// picks a process from the list (counts=false).
	counts := c.Query("counts")
	if counts != "" && counts != "true" && counts != "false" {
		fail(c, badRequest("counts", "must be true or false (got %q)", counts))
		return
	}
	var loads map[string]store.ProcessLoad
	if counts != "false" {
		if loads, err = s.Instances.ProcessLoads(c.Request.Context(), s.Clock().Add(-24*time.Hour)); err != nil {
			fail(c, err)
			return
		}
	}
	// The queues under concurrency limits, read only when a process has a
	// limit.
	var queued map[string]int
	for i := 0; loads != nil && queued == nil && i < len(recs); i++ {
		limit, err := s.starts.limit(c.Request.Context(), recs[i].Name)
		if err == nil && limit > 0 {
			queued, err = s.Instances.QueuedCounts(c.Request.Context())
		}
		if err != nil {
			fail(c, err)
			return
		}
	}
	out := make([]gin.H, 0, len(recs))
	k := caller(c)
	for _, r := range recs {
		if !k.Allows(r.Name) { // a key limited to processes sees only those
			continue
		}
		p := gin.H{"name": r.Name, "version": r.Version, "author": r.Author, "created_at": r.CreatedAt}
		if loads != nil {
			l := loads[r.Name]
			p["in_progress"], p["waiting_review"], p["failed_24h"] = l.InProgress, l.WaitingReview, l.Failed
		}
		if paused[r.Name] {
			p["paused"] = true // its new instances are held
		}
		if n := queued[r.Name]; n > 0 {
			p["queued"] = n // waiting for a slot under its concurrency limit, or retries a pause holds
		}
		out = append(out, p)
	}
	c.JSON(http.StatusOK, gin.H{"processes": out})
}

func (s *server) definition(ctx context.Context, name string, version int) (*process.Definition, store.DefinitionRecord, error) {
	return definition(ctx, s.Definitions, name, version)
}

func definition(ctx context.Context, ds DefinitionStore, name string, version int) (*process.Definition, store.DefinitionRecord, error) {
	rec, err := ds.Definition(ctx, name, version)
	if err != nil {
		return nil, rec, err
	}
	var def process.Definition
	if err := json.Unmarshal(rec.Doc, &def); err != nil {
		return nil, rec, fmt.Errorf("stored definition %s@%d: %w", name, rec.Version, err)
	}
	return &def, rec, nil
}

// routeDefinition is the definition of the route's process, of the
// version the query names (returned as asked: 0 for none, which reads the
// latest), 400 for a bad version and 404 for an unknown process or
// version; on an error it has answered.
func (s *server) routeDefinition(c *gin.Context) (*process.Definition, store.DefinitionRecord, int, bool) {
	version, err := definitionVersion(c)
	if err != nil {
		fail(c, err)
		return nil, store.DefinitionRecord{}, 0, false
	}
	def, rec, err := s.definition(c.Request.Context(), c.Param("name"), version)
	if err != nil {
		fail(c, err)
		return nil, rec, 0, false
	}
	return def, rec, version, true
}

func (s *server) getProcess(c *gin.Context) {
	def, rec, asked, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	out := gin.H{"name": def.Name, "version": def.Version, "author": rec.Author, "created_at": rec.CreatedAt, "definition": def}
	paused, err := s.processState(c.Request.Context(), def.Name)
	if err != nil {
		fail(c, err)
		return
	}
	if paused != nil {
		out["paused"] = paused
	}
	if def.Concurrency > 0 || paused != nil { // how many wait for a slot, or for the resume, now
		queued, err := s.Instances.QueuedCounts(c.Request.Context())
		if err != nil {
			fail(c, err)
			return
		}
		out["queued"] = queued[def.Name]
	}
	// The schedules of the latest version apply: an older one asked for
	// shows none.
	if len(def.Schedules) > 0 && (asked == 0 || s.isLatest(c.Request.Context(), def)) {
		schedules, err := s.scheduleViews(c.Request.Context(), def)
		if err != nil {
			fail(c, err)
			return
		}
		out["schedules"] = schedules
	}
	c.JSON(http.StatusOK, out)
}

// diffProcess shows what changed between two versions of a process's
// definition, as a line diff of their YAML: GET
// /v1/processes/{name}/diff?from=&to= (to: the latest by default; from:
// the version before it).
func (s *server) diffProcess(c *gin.Context) {
	ctx := c.Request.Context()
	name := c.Param("name")
	versions, err := s.Definitions.DefinitionVersions(ctx, name)
	if err != nil {
		fail(c, err)
		return
	}
	if len(versions) == 0 {
		fail(c, fmt.Errorf("process %q: %w", name, store.ErrNotFound))
		return
	}
	to, from := versions[len(versions)-1], 0
	if raw := c.Query("to"); raw != "" {
		if to, err = versionParam(c, "to", raw); err != nil {
			fail(c, err)
			return
		}
	}
	if raw := c.Query("from"); raw != "" {
		if from, err = versionParam(c, "from", raw); err != nil {
			fail(c, err)
			return
		}
	} else {
		for _, v := range versions {
			if v < to {
				from = v
			}
		}
		if from == 0 {
			fail(c, badRequest("from", "%s has no version before %d to compare with", name, to))
			return
		}
	}
	var texts [2]string
	for i, v := range []int{from, to} {
		def, _, err := s.definition(ctx, name, v)
		if err != nil {
			fail(c, err)
			return
		}
		// The version is the diff's subject, not its content.
		lines := strings.Split(def.YAML(), "\n")
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "version: ") })
		texts[i] = strings.Join(lines, "\n")
	}
	c.JSON(http.StatusOK, gin.H{"name": name, "from": from, "to": to, "diff": policies.Diff(texts[0], texts[1])})
}

// isLatest reports whether def is its process's latest version.
func (s *server) isLatest(ctx context.Context, def *process.Definition) bool {
	latest, err := s.Definitions.Definition(ctx, def.Name, 0)
	return err == nil && latest.Version == def.Version
}

// putPolicy registers a policy version; it must compile against the latest
// definition of its process.
func (s *server) putPolicy(c *gin.Context) {
	body, err := readBody(c)
	if err != nil {
		fail(c, err)
		return
	}
	mode := c.DefaultQuery("mode", store.ModeActive)
	if mode != store.ModeActive && mode != store.ModeShadow {
		fail(c, badRequest("mode", "must be active or shadow (got %q)", mode))
		return
	}
	if limited(c) {
		if p, err := process.ParsePolicy(body); err == nil {
			if err := allowProcess(c, p.Process); err != nil {
				fail(c, err)
				return
			}
		}
	}
	p, created, err := RegisterPolicy(c.Request.Context(), s.Definitions, s.Policies, s.Env, body, caller(c).Name, c.GetHeader("X-Change-Note"), mode)
	if err != nil {
		fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, gin.H{"id": p.ID, "version": p.Version, "process": p.Process, "mode": p.Mode, "created": created, "policy": p})
}

func (s *server) listPolicies(c *gin.Context) {
	name := c.Query("process")
	if name == "" {
		fail(c, badRequest("process", "query parameter is required"))
		return
	}
	recs, _, err := s.Policies.ActivePolicies(c.Request.Context(), name)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]gin.H, 0, len(recs))
	for _, r := range recs {
		item := gin.H{"id": r.ID, "version": r.Version, "process": r.Process, "mode": r.Mode, "author": r.Author, "created_at": r.CreatedAt, "policy": r.Doc}
		if r.Percent > 0 {
			item["mode"], item["percent"] = store.ModeCanary, r.Percent
		}
		out = append(out, item)
	}
	c.JSON(http.StatusOK, gin.H{"policies": out})
}

type startRequest struct {
	BusinessKey string         `json:"business_key"`
	Input       map[string]any `json:"input"`
	Version     int            `json:"version,omitempty"`
}

// InstanceID is the id of the instance of a process with a business key:
// the same key always names the same instance.
func InstanceID(processName, businessKey string) string {
	return process.InstanceID(processName, businessKey)
}

// startInstance starts an instance, idempotently by business key: the store
// row and the Temporal start are both idempotent, so a retry after a crash
// between them finishes the start (as does SweepStarts, without a retry).
func (s *server) startInstance(c *gin.Context) {
	var req startRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	if err := validBusinessKey("business_key", req.BusinessKey); err != nil {
		fail(c, err)
		return
	}
	def, _, err := s.definition(c.Request.Context(), c.Param("name"), req.Version)
	if err != nil {
		fail(c, err)
		return
	}
	st, err := s.createInstance(c, def, req.BusinessKey, req.Input)
	if err == nil {
		err = st.held(s.starts.start(c.Request.Context(), st.def, st.inst, st.input))
	}
	if err != nil {
		fail(c, err)
		return
	}
	s.countStart(st)
	status := http.StatusOK
	if st.created {
		status = http.StatusCreated
		c.Header("Location", "/v1/instances/"+st.inst.ID)
	}
	c.JSON(status, st.response())
}

// validBusinessKey checks a business key, field naming where it is.
func validBusinessKey(field, key string) error {
	if strings.TrimSpace(key) == "" || len(key) > 200 {
		return badRequest(field, "is required (at most 200 characters)")
	}
	return nil
}

// stored is an instance stored and about to start: its definition
// (the version it was stored with) and its input as stored.
type stored struct {
	inst    store.Instance
	def     *process.Definition
	input   map[string]any
	created bool
	// heldBy says why its start is held (its process is paused).
	heldBy string
}

// held takes a start's outcome: a start held by a pause is no failure,
// and the answer says so.
func (st *stored) held(err error) error {
	if isHeld(err) {
		st.heldBy = err.Error()
		return nil
	}
	return err
}

// createInstance checks input against def and stores the instance of the
// business key, or finds the one stored before (which keeps its version
// and input), ready for its workflow start.
func (s *server) createInstance(c *gin.Context, def *process.Definition, key string, input map[string]any) (stored, error) {
	if input == nil {
		input = map[string]any{}
	}
	if err := def.ValidateInput(input); err != nil {
		return stored{}, err
	}
	ctx := c.Request.Context()
	limit, err := s.starts.limit(ctx, def.Name)
	if err != nil {
		return stored{}, err
	}
	inst, created, err := s.Instances.CreateInstance(ctx, store.Instance{
		ID: InstanceID(def.Name, key), Process: def.Name, ProcessVersion: def.Version, BusinessKey: key,
		Input: process.JSON(input), CreatedBy: caller(c).Name, CreatedAt: time.Now().UTC(),
		// Reads find the instance starting until its workflow saves a state.
		State:        process.JSON(workflows.NewState(def, workflows.StatusStarting)),
		PendingStart: true,
		// Under a concurrency limit it takes a slot as it starts, if one
		// is free (see starter.hold).
		Queued: limit > 0,
	})
	if err != nil {
		return stored{}, err
	}
	if !created && inst.ProcessVersion != def.Version {
		if def, _, err = s.definition(ctx, def.Name, inst.ProcessVersion); err != nil {
			return stored{}, err
		}
	}
	var kept map[string]any
	if err := json.Unmarshal(inst.Input, &kept); err != nil {
		return stored{}, err
	}
	return stored{inst: inst, def: def, input: kept, created: created}, nil
}

// countStart counts a start in adaptflow_instance_starts_total.
func (s *server) countStart(st stored) {
	result := "existing"
	if st.created {
		result = "created"
	}
	s.metrics.starts.WithLabelValues(st.inst.Process, result).Inc()
}

// response is the started instance as the start routes answer it.
func (st stored) response() gin.H {
	in := st.inst
	out := gin.H{"id": in.ID, "process": in.Process, "version": in.ProcessVersion, "business_key": in.BusinessKey, "created": st.created, "created_at": in.CreatedAt}
	if st.heldBy != "" {
		out["held"] = st.heldBy
	}
	return out
}

// routeInstance is the route's instance, one the caller may read, and its
// state; on an error it has answered.
func (s *server) routeInstance(c *gin.Context) (store.Instance, workflows.State, bool) {
	inst, err := s.allowedInstance(c)
	if err != nil {
		fail(c, err)
		return inst, workflows.State{}, false
	}
	st, err := s.instanceState(c.Request.Context(), inst)
	if err != nil {
		fail(c, err)
		return inst, st, false
	}
	return inst, st, true
}

func (s *server) getInstance(c *gin.Context) {
	inst, st, ok := s.routeInstance(c)
	if !ok {
		return
	}
	s.answerInstance(c, http.StatusOK, inst, st)
}

// instanceJSON is an instance as the API shows it.
func instanceJSON(inst store.Instance, st workflows.State) gin.H {
	return gin.H{
		"id": inst.ID, "process": inst.Process, "version": inst.ProcessVersion, "business_key": inst.BusinessKey,
		"input": inst.Input, "created_at": inst.CreatedAt, "created_by": inst.CreatedBy,
		"status": st.Status, "error": st.Error, "plan": st.Plan, "results": st.Results, "vars": st.Vars,
		"reviews": st.Reviews, "decisions": st.Decisions, "classification": st.Classification, "events": st.Events, "event_log": st.EventLog,
	}
}

// instanceState is the instance's state: the projection its workflow saves
// in the store (read with the instance), or for instances started before
// projections, the replica's cache of finished ones, else the workflow's
// answer to a Temporal query.
func (s *server) instanceState(ctx context.Context, inst store.Instance) (workflows.State, error) {
	var st workflows.State
	if len(inst.State) > 0 {
		if err := json.Unmarshal(inst.State, &st); err != nil {
			return st, fmt.Errorf("instance %s: stored state: %w", inst.ID, err)
		}
		return st, nil
	}
	if st, ok := s.finished.get(inst.ID); ok {
		return st, nil
	}
	v, err := s.Temporal.QueryWorkflow(ctx, inst.ID, "", workflows.QueryState)
	var nf *serviceerror.NotFound
	var notReady *serviceerror.WorkflowNotReady
	// Not started in Temporal yet, or started and its first workflow task
	// not done yet (it cannot answer a query until then): starting.
	if errors.As(err, &nf) || errors.As(err, &notReady) {
		def, _, derr := s.definition(ctx, inst.Process, inst.ProcessVersion)
		if derr != nil {
			return st, derr
		}
		return workflows.NewState(def, workflows.StatusStarting), nil
	}
	if err != nil {
		return st, err
	}
	if err := v.Get(&st); err != nil {
		return st, err
	}
	s.finished.put(inst.ID, st)
	return st, nil
}

// allowedInstance is the instance the route's id names, refused (403) to a
// key limited to other processes.
func (s *server) allowedInstance(c *gin.Context) (store.Instance, error) {
	inst, err := s.Instances.Instance(c.Request.Context(), c.Param("id"))
	if err == nil {
		err = allowProcess(c, inst.Process)
	}
	return inst, err
}

func (s *server) listDecisions(c *gin.Context) {
	inst, err := s.allowedInstance(c)
	if err != nil {
		fail(c, err)
		return
	}
	ds, err := s.Decisions.Decisions(c.Request.Context(), inst.ID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"decisions": ds})
}

func (s *server) explain(c *gin.Context) {
	d, err := s.Decisions.Decision(c.Request.Context(), c.Param("id"))
	if err == nil {
		err = allowProcess(c, d.Process)
	}
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, policies.Explain(d))
}
