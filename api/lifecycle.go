package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// PolicyLifecycle reads versions and changes which of them are live.
type PolicyLifecycle interface {
	SetPolicyMode(ctx context.Context, id string, version int, mode, author, note string) (store.PolicyState, error)
	SetPolicyCanary(ctx context.Context, id string, version, percent int, author, note string) (store.PolicyState, error)
	ChangePolicyMode(ctx context.Context, id string, ch store.PolicyModeChange) (store.PolicyState, error)
	GuardedCanaries(ctx context.Context) ([]string, error)
	PolicyState(ctx context.Context, id string) (store.PolicyState, error)
	PolicyStates(ctx context.Context, process string) ([]store.PolicyState, error)
	PolicyVersions(ctx context.Context, id string) ([]store.PolicyRecord, error)
	PolicyVersion(ctx context.Context, id string, version int) (store.PolicyRecord, error)
	PolicyChanges(ctx context.Context, process string, from, to time.Time) ([]store.PolicyChange, error)
}

// DecisionScanner reads recorded decisions of a process since a time.
type DecisionScanner interface {
	ScanDecisions(ctx context.Context, process string, since time.Time, fn func(record []byte) error) error
}

func (s *server) lifecycleRoutes(r gin.IRoutes, engineer, admin []string) {
	r.GET("/policies/:id", s.allow(engineer), s.allowPolicy, s.getPolicy)
	r.GET("/policies/:id/versions", s.allow(engineer), s.allowPolicy, s.listPolicyVersions)
	r.GET("/policies/:id/versions/:version", s.allow(engineer), s.allowPolicy, s.getPolicyVersion)
	r.GET("/policies/:id/diff", s.allow(engineer), s.allowPolicy, s.diffPolicy)
	r.POST("/policies/:id/activate", s.allow(engineer), s.allowPolicy, s.activatePolicy)
	r.POST("/policies/:id/disable", s.allow(engineer), s.allowPolicy, s.disablePolicy)
	r.POST("/policies/simulate", s.allow(engineer), s.simulate)
	r.GET("/policies/shadow-report", s.allow(engineer), processScoped, s.shadowReport)
	r.GET("/policies/activity", s.allow(engineer), processScoped, s.policyActivity)
	r.GET("/audit/verify", s.allow(admin), s.verifyAudit)
}

// allowPolicy refuses (403) the routes of a policy of another process to a
// key limited to processes; an unknown policy is left to the route (404).
func (s *server) allowPolicy(c *gin.Context) {
	if !limited(c) {
		c.Next()
		return
	}
	st, err := s.Lifecycle.PolicyState(c.Request.Context(), c.Param("id"))
	if err == nil {
		err = allowProcess(c, st.Process)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		fail(c, err)
		return
	}
	c.Next()
}

// allowClassifier refuses (403) a classifier's routes to a key limited to
// processes none of which classifies with it (by their latest definitions).
func (s *server) allowClassifier(c *gin.Context) {
	if !limited(c) {
		c.Next()
		return
	}
	name := c.Param("name")
	k := caller(c)
	// The key's own processes, not every definition: a key is limited to
	// a few.
	for _, p := range k.Processes {
		r, err := s.Definitions.Definition(c.Request.Context(), p, 0)
		if errors.Is(err, store.ErrNotFound) {
			continue // not registered (yet)
		}
		if err != nil {
			fail(c, err)
			return
		}
		var d struct {
			Classify *struct {
				Name string `json:"name"`
			} `json:"classify"`
		}
		if json.Unmarshal(r.Doc, &d) == nil && d.Classify != nil && d.Classify.Name == name {
			c.Next()
			return
		}
	}
	fail(c, &httpError{status: http.StatusForbidden, code: "forbidden", msg: fmt.Sprintf("API key %s may not touch classifier %s: none of its processes (%s) classifies with it", k.ID, name, strings.Join(k.Processes, ", "))})
}

func policyOf(rec store.PolicyRecord) (*process.Policy, error) {
	var p process.Policy
	if err := json.Unmarshal(rec.Doc, &p); err != nil {
		return nil, fmt.Errorf("stored policy %s@%d: %w", rec.ID, rec.Version, err)
	}
	p.Version = rec.Version
	return &p, nil
}

func (s *server) getPolicy(c *gin.Context) {
	ctx := c.Request.Context()
	st, err := s.Lifecycle.PolicyState(ctx, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"id": st.ID, "process": st.Process, "mode": st.Mode(), "active_version": st.Active, "shadow_version": st.Shadow,
		"latest_version": st.Latest, "changed_by": st.ChangedBy, "changed_at": st.ChangedAt}
	if st.ShadowPercent > 0 {
		out["shadow_percent"] = st.ShadowPercent
	}
	if st.Guard != nil {
		out["canary_guard"] = st.Guard
		if st.Shadow != 0 && st.ShadowPercent > 0 {
			j, err := judgment(ctx, s.Options, st, time.Now())
			if err != nil {
				fail(c, err)
				return
			}
			out["canary_judgment"] = j
		}
	}
	latest, err := s.Lifecycle.PolicyVersion(ctx, st.ID, st.Latest)
	if err != nil {
		fail(c, err)
		return
	}
	p, err := policyOf(latest)
	if err != nil {
		fail(c, err)
		return
	}
	out["latest"] = gin.H{"version": latest.Version, "digest": latest.Digest, "author": latest.Author, "created_at": latest.CreatedAt, "policy": p}
	c.JSON(http.StatusOK, out)
}

func (s *server) listPolicyVersions(c *gin.Context) {
	ctx := c.Request.Context()
	st, err := s.Lifecycle.PolicyState(ctx, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	vs, err := s.Lifecycle.PolicyVersions(ctx, st.ID)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]gin.H, 0, len(vs))
	for _, v := range vs {
		mode := ""
		switch v.Version {
		case st.Active:
			mode = store.ModeActive
		case st.Shadow:
			mode = store.ModeShadow
		}
		out = append(out, gin.H{"version": v.Version, "author": v.Author, "note": v.Note, "created_at": v.CreatedAt, "digest": v.Digest, "hash": v.Hash, "mode": mode})
	}
	c.JSON(http.StatusOK, gin.H{"id": st.ID, "process": st.Process, "versions": out})
}

func versionParam(c *gin.Context, name, raw string) (int, error) {
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return 0, badRequest(name, "must be a positive integer (got %q)", raw)
	}
	return n, nil
}

func (s *server) getPolicyVersion(c *gin.Context) {
	v, err := versionParam(c, "version", c.Param("version"))
	if err != nil {
		fail(c, err)
		return
	}
	rec, err := s.Lifecycle.PolicyVersion(c.Request.Context(), c.Param("id"), v)
	if err != nil {
		fail(c, err)
		return
	}
	p, err := policyOf(rec)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": rec.ID, "version": rec.Version, "process": rec.Process, "author": rec.Author, "note": rec.Note,
		"created_at": rec.CreatedAt, "hash": rec.Hash, "prev_hash": rec.PrevHash, "policy": p, "yaml": p.YAML()})
}

func (s *server) diffPolicy(c *gin.Context) {
	ctx := c.Request.Context()
	id := c.Param("id")
	from, err := versionParam(c, "from", c.Query("from"))
	if err != nil {
		fail(c, err)
		return
	}
	to, err := versionParam(c, "to", c.Query("to"))
	if err != nil {
		fail(c, err)
		return
	}
	var texts [2]string
	for i, v := range []int{from, to} {
		rec, err := s.Lifecycle.PolicyVersion(ctx, id, v)
		if err != nil {
			fail(c, err)
			return
		}
		p, err := policyOf(rec)
		if err != nil {
			fail(c, err)
			return
		}
		p.Version = 0 // the version is the diff's subject, not its content
		texts[i] = p.YAML()
	}
	c.JSON(http.StatusOK, gin.H{"id": id, "from": from, "to": to, "diff": policies.Diff(texts[0], texts[1])})
}

type activateRequest struct {
	Version int    `json:"version"`
	Mode    string `json:"mode,omitempty"`
	// Percent is the share of instances a canary applies to (1 to 99).
	Percent int    `json:"percent,omitempty"`
	Note    string `json:"note,omitempty"`
	// Guard rolls a canary back, or promotes it, on its own.
	Guard *store.CanaryGuard `json:"guard,omitempty"`
}

// validGuard checks a canary's guard: something to watch or a time to
// promote, a known duration, and the default least number of instances.
func validGuard(g *store.CanaryGuard) error {
	watched := g.MaxErrorRateIncrease != nil || g.MaxReviewRateIncrease != nil || g.MaxCycleTimeIncrease != nil
	if !watched && g.PromoteAfter == "" {
		return badRequest("guard", "names max_error_rate_increase, max_review_rate_increase, max_cycle_time_increase or promote_after: what to watch, or when to promote")
	}
	if g.PromoteAfter != "" {
		if d, err := process.ParseDuration(g.PromoteAfter); err != nil || d < time.Minute {
			return badRequest("guard.promote_after", "must be a duration of at least 1m, such as 24h or 7d (got %q)", g.PromoteAfter)
		}
	}
	if g.DecideAfter != "" {
		d, err := process.ParseDuration(g.DecideAfter)
		if err != nil || d < time.Minute {
			return badRequest("guard.decide_after", "must be a duration of at least 1m, such as 7d (got %q)", g.DecideAfter)
		}
		if p, err := process.ParseDuration(g.PromoteAfter); err == nil && g.PromoteAfter != "" && d < p {
			return badRequest("guard.decide_after", "must not come before promote_after (%s < %s)", g.DecideAfter, g.PromoteAfter)
		}
	}
	if g.Confidence != 0 && !watched {
		return badRequest("guard.confidence", "needs max_error_rate_increase, max_review_rate_increase or max_cycle_time_increase: the figures it judges")
	}
	if g.MinInstances == 0 {
		g.MinInstances = defaultGuardMinInstances
	}
	return nil
}

// activatePolicy makes a stored version live; activating an older version
// is a rollback. A canary applies the version to a share of the instances,
// in place of the active version.
func (s *server) activatePolicy(c *gin.Context) {
	var req activateRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	if req.Version < 1 {
		fail(c, badRequest("version", "is required: the version to make live"))
		return
	}
	if req.Mode == "" {
		req.Mode = store.ModeActive
	}
	if req.Guard != nil && req.Mode == store.ModeCanary {
		if err := validGuard(req.Guard); err != nil {
			fail(c, err)
			return
		}
	}
	var st store.PolicyState
	var err error
	switch {
	case req.Mode == store.ModeCanary && (req.Percent < 1 || req.Percent > 99):
		err = badRequest("percent", "a canary applies to 1 to 99 percent of the instances (got %d)", req.Percent)
	case req.Mode == store.ModeCanary:
		st, err = s.Lifecycle.ChangePolicyMode(c.Request.Context(), c.Param("id"), store.PolicyModeChange{Version: req.Version, Mode: store.ModeCanary,
			Percent: req.Percent, Guard: req.Guard, Author: caller(c).Name, Note: req.Note})
	case req.Percent != 0:
		err = badRequest("percent", "applies only with mode canary")
	case req.Guard != nil:
		err = badRequest("guard", "applies only with mode canary")
	case req.Mode == store.ModeActive || req.Mode == store.ModeShadow:
		st, err = s.Lifecycle.SetPolicyMode(c.Request.Context(), c.Param("id"), req.Version, req.Mode, caller(c).Name, req.Note)
	default:
		err = badRequest("mode", "must be active, shadow or canary (got %q)", req.Mode)
	}
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"id": st.ID, "mode": st.Mode(), "active_version": st.Active, "shadow_version": st.Shadow, "changed_by": st.ChangedBy}
	if st.ShadowPercent > 0 {
		out["shadow_percent"] = st.ShadowPercent
	}
	if st.Guard != nil {
		out["canary_guard"] = st.Guard
	}
	c.JSON(http.StatusOK, out)
}

type noteRequest struct {
	Note string `json:"note,omitempty"`
}

func (s *server) disablePolicy(c *gin.Context) {
	var req noteRequest
	if err := bindOptionalJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	st, err := s.Lifecycle.SetPolicyMode(c.Request.Context(), c.Param("id"), 0, store.ModeDisabled, caller(c).Name, req.Note)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": st.ID, "mode": st.Mode(), "changed_by": st.ChangedBy})
}

func sinceParam(raw string) (time.Time, error) {
	if raw == "" {
		raw = "30d"
	}
	d, err := process.ParseDuration(raw)
	if err != nil || d <= 0 {
		return time.Time{}, badRequest("since", "must be a duration such as 24h or 30d (got %q)", raw)
	}
	return time.Now().Add(-d), nil
}

type simulateRequest struct {
	Process  string   `json:"process"`
	Since    string   `json:"since,omitempty"`
	Policies []string `json:"policies"`
	Examples int      `json:"examples,omitempty"`
}

// simulate replays recorded decisions through the active policies with the
// given ones in place of (or beside) them. It never writes.
func (s *server) simulate(c *gin.Context) {
	var req simulateRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	if req.Process == "" {
		fail(c, badRequest("process", "is required"))
		return
	}
	if err := allowProcess(c, req.Process); err != nil {
		fail(c, err)
		return
	}
	since, err := sinceParam(req.Since)
	if err != nil {
		fail(c, err)
		return
	}
	if req.Examples < 0 || req.Examples > 500 {
		fail(c, badRequest("examples", "must be between 0 and 500"))
		return
	}
	docs := make([][]byte, len(req.Policies))
	for i, p := range req.Policies {
		docs[i] = []byte(p)
	}
	rep, err := SimulateCandidate(c.Request.Context(), s.Definitions, s.Policies, s.Scanner, s.Env, req.Process, since, docs, policies.SimulationOptions{Examples: req.Examples})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rep)
}

// SimulateCandidate builds the candidate set — the process's active
// policies, with docs replacing those of the same id and adding new ones —
// and replays the process's decisions since the given time through it.
func SimulateCandidate(ctx context.Context, defs DefinitionStore, pols PolicyStore, scanner DecisionScanner, env *policies.Env,
	processName string, since time.Time, docs [][]byte, opts policies.SimulationOptions) (policies.SimulationReport, error) {
	latest, err := loadDefinition(ctx, defs, processName, 0)
	if err != nil {
		return policies.SimulationReport{}, err
	}
	recs, _, err := pols.ActivePolicies(ctx, processName)
	if err != nil {
		return policies.SimulationReport{}, err
	}
	byID := map[string]*process.Policy{}
	var order []string
	for _, r := range recs {
		if r.Mode != store.ModeActive {
			continue
		}
		p, err := policyOf(r)
		if err != nil {
			return policies.SimulationReport{}, err
		}
		byID[p.ID] = p
		order = append(order, p.ID)
	}
	for i, doc := range docs {
		p, err := process.ParsePolicy(doc)
		if err != nil {
			return policies.SimulationReport{}, prefixErr(fmt.Sprintf("policies[%d]", i), err)
		}
		if _, err := env.CompilePolicy(p, latest); err != nil {
			return policies.SimulationReport{}, prefixErr(fmt.Sprintf("policies[%d]", i), err)
		}
		if _, ok := byID[p.ID]; !ok {
			order = append(order, p.ID)
		}
		byID[p.ID] = p
	}
	ps := make([]*process.Policy, 0, len(order))
	for _, id := range order {
		ps = append(ps, byID[id])
	}
	set, err := env.NewSet(latest, ps)
	if err != nil {
		return policies.SimulationReport{}, err
	}
	scan := func(ctx context.Context, fn func([]byte) error) error {
		return scanner.ScanDecisions(ctx, processName, since, fn)
	}
	lookup := func(ctx context.Context, v int) (*process.Definition, error) {
		return loadDefinition(ctx, defs, processName, v)
	}
	return policies.Simulate(ctx, processName, set, lookup, scan, opts)
}

// prefixErr puts a document's position in front of its field paths.
func prefixErr(prefix string, err error) error {
	var es process.Errors
	if asErrors(err, &es) {
		out := make(process.Errors, len(es))
		for i, e := range es {
			path := prefix
			if e.Path != "" {
				path += "." + e.Path
			}
			out[i] = &process.FieldError{Path: path, Message: e.Message}
		}
		return out
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// decisionWindow reads the process and the window of a report over
// recorded decisions (?process=&since=30d) and scans them; on an error it
// has answered.
func (s *server) decisionWindow(c *gin.Context) (string, time.Time, policies.Scanner, bool) {
	name := c.Query("process")
	if name == "" {
		fail(c, badRequest("process", "query parameter is required"))
		return "", time.Time{}, nil, false
	}
	since, err := sinceParam(c.Query("since"))
	if err != nil {
		fail(c, err)
		return "", time.Time{}, nil, false
	}
	scan := func(ctx context.Context, fn func([]byte) error) error {
		return s.Scanner.ScanDecisions(ctx, name, since, fn)
	}
	return name, since, scan, true
}

func (s *server) shadowReport(c *gin.Context) {
	name, _, scan, ok := s.decisionWindow(c)
	if !ok {
		return
	}
	rep, err := policies.BuildShadowReport(c.Request.Context(), name, scan, 5)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rep)
}

// policyActivity says how each policy of a process fared at the decision
// points of a window: GET /v1/policies/activity?process=&since=30d.
func (s *server) policyActivity(c *gin.Context) {
	name, since, scan, ok := s.decisionWindow(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if _, _, err := s.definition(ctx, name, 0); err != nil { // 404 for an unknown process
		fail(c, err)
		return
	}
	rep, err := policies.BuildActivityReport(ctx, name, scan)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"process": rep.Process, "since": since.UTC(), "decisions": rep.Decisions, "policies": rep.Policies})
}

func (s *server) verifyAudit(c *gin.Context) {
	rep, err := store.Verify(c.Request.Context(), s.Chains)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rep)
}
