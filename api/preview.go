package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/workflows"
)

// ClassifyRequest is what POST /v1/processes/{name}/classify classifies:
// an instance's input (the text its definition's classify names is taken
// from it) or a text as is. One of the two.
type ClassifyRequest struct {
	Input map[string]any `json:"input,omitempty"`
	Text  *string        `json:"text,omitempty"`
}

// maxPreviewText bounds the text a preview classifies.
const maxPreviewText = 32 << 10

// classifyPreview answers what the classification of an instance of the
// process would be (label, confidence, fields, whether it goes to review,
// which model answered, the embedded classifier's most probable labels),
// without starting one: a worker classifies it exactly as it would an
// instance's (workflows.ClassifyPreview).
func (s *server) classifyPreview(c *gin.Context) {
	def, _, _, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	var req ClassifyRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	spec, ok := classifierOf(c, def)
	if !ok {
		return
	}
	if (req.Input == nil) == (req.Text == nil) {
		fail(c, badRequest("input", "give input (an instance's input) or text, one of the two"))
		return
	}
	// field names where the text came from, for the 400s.
	field, text, empty := "input", spec.Text(req.Input), "has no text to classify in "+strings.Join(spec.TextFields(), " or ")
	if req.Text != nil {
		field, text, empty = "text", *req.Text, "is empty"
	}
	switch {
	case strings.TrimSpace(text) == "":
		fail(c, badRequest(field, "%s", empty))
		return
	case len(text) > maxPreviewText:
		fail(c, badRequest(field, "the text to classify is over %d bytes", maxPreviewText))
		return
	}
	// The same preview asked again while it runs (a client that gave up
	// waiting, two engineers trying the same text) waits for the run under
	// way instead of starting another: its id is the spec's and the text's.
	var res activities.ClassifyResult
	if !s.awaitWorkflow(c, "classify-preview-"+digestOf(process.JSON(spec), []byte(text)), workflows.ClassifyPreviewWorkflow,
		activities.ClassifyInput{Spec: *spec, Text: text}, &res, "the classification is still running (a slow LLM, or the classifier's first training on many examples)") {
		return
	}
	c.JSON(http.StatusOK, gin.H{"process": def.Name, "version": def.Version, "text": text, "classification": res, "review_below": spec.ReviewBelow})
}

// EvaluateRequest is how POST /v1/processes/{name}/classify/evaluate
// evaluates: the share of each label's examples to hold out, or the folds
// of a cross-validation.
type EvaluateRequest struct {
	Holdout *float64 `json:"holdout,omitempty"`
	// Folds cross-validates instead: every example tested once, by a
	// model trained on the other folds (for a classifier with few
	// examples).
	Folds *int `json:"folds,omitempty"`
	// Model is what is evaluated: "embedded" (the default) or "llm" (the
	// configured LLM, on a held-out share, asked about at most Limit
	// texts: 1 to 2,000, default 200).
	Model string `json:"model,omitempty"`
	Limit *int   `json:"limit,omitempty"`
}

// badModel refuses an evaluated model that is neither.
func badModel(model string) error {
	return badRequest("model", `must be "embedded" or "llm" (got %q)`, model)
}

// defaultLLMLimit is how many held-out texts an evaluation of the LLM asks
// about by default.
const defaultLLMLimit = 200

// classifierEvaluation evaluates the process's classifier on its own seed
// and stored examples, before an instance meets it: the embedded
// classifier is trained on all but a share of each label's examples and
// measured on those, or cross-validated over folds (the figures
// `adaptflow ml eval` reports), with each
// label's precision, recall and the labels it is taken for, the weakest
// first, and the most confident mistakes: an example labeled wrong, or
// two labels that read alike. It runs on a worker (workflows.EvaluateClassifier)
// and changes nothing; the same evaluation asked again while it runs
// waits for it.
func (s *server) classifierEvaluation(c *gin.Context) {
	def, _, _, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	var req EvaluateRequest
	if c.Request.ContentLength != 0 {
		if err := bindJSON(c, &req); err != nil {
			fail(c, err)
			return
		}
	}
	in := activities.EvaluateInput{Holdout: 0.2}
	switch {
	case req.Holdout != nil && req.Folds != nil:
		fail(c, badRequest("folds", "give holdout or folds, one of the two"))
		return
	case req.Folds != nil:
		if in.Holdout, in.Folds = 0, *req.Folds; in.Folds < 2 || in.Folds > 10 {
			fail(c, badRequest("folds", "must be between 2 and 10 (got %d)", in.Folds))
			return
		}
	case req.Holdout != nil:
		if in.Holdout = *req.Holdout; in.Holdout < 0.05 || in.Holdout > 0.5 {
			fail(c, badRequest("holdout", "must be between 0.05 and 0.5 (got %g)", in.Holdout))
			return
		}
	}
	switch req.Model {
	case "", activities.EvaluateEmbedded:
		if req.Limit != nil {
			fail(c, badRequest("limit", `applies to model "llm"`))
			return
		}
	case activities.EvaluateLLM:
		if in.Folds > 0 {
			fail(c, badRequest("folds", "an LLM is evaluated on a held-out share, not cross-validated"))
			return
		}
		in.Model, in.Limit = req.Model, defaultLLMLimit
		if req.Limit != nil {
			if in.Limit = *req.Limit; in.Limit < 1 || in.Limit > 2000 {
				fail(c, badRequest("limit", "must be between 1 and 2000 (got %d)", in.Limit))
				return
			}
		}
	default:
		fail(c, badModel(req.Model))
		return
	}
	spec, ok := classifierOf(c, def)
	if !ok {
		return
	}
	version, err := s.Examples.ExamplesVersion(c.Request.Context(), spec.Name)
	if err != nil {
		fail(c, err)
		return
	}
	in.Spec = *spec
	var res activities.EvaluateResult
	if !s.awaitWorkflow(c, "classifier-evaluation-"+digestOf(process.JSON(spec), fmt.Appendf(nil, "%d/%g/%d/%s/%d", version, in.Holdout, in.Folds, in.Model, in.Limit)), workflows.EvaluateClassifierWorkflow,
		in, &res, "the evaluation is still running (a training on many examples)") {
		return
	}
	c.JSON(http.StatusOK, gin.H{"process": def.Name, "version": def.Version, "evaluation": res})
}

// lastEvaluation answers the last evaluation of the process's classifier
// (by any process that shares it), when it was made, and whether its
// stored examples, or the definition of the classifier this version of
// the process has, changed since: the process's page shows it until the
// next one. 404 when it has none.
func (s *server) lastEvaluation(c *gin.Context) {
	def, _, _, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	spec, ok := classifierOf(c, def)
	if !ok {
		return
	}
	model := c.DefaultQuery("model", activities.EvaluateEmbedded)
	if model != activities.EvaluateEmbedded && model != activities.EvaluateLLM {
		fail(c, badModel(model))
		return
	}
	ctx := c.Request.Context()
	e, err := s.Examples.LastEvaluation(ctx, spec.Name, model)
	if err != nil {
		fail(c, err)
		return
	}
	version, err := s.Examples.ExamplesVersion(ctx, spec.Name)
	if err != nil {
		fail(c, err)
		return
	}
	var doc struct {
		ExamplesVersion int64  `json:"examples_version"`
		Spec            string `json:"spec"`
	}
	_ = json.Unmarshal(e.Doc, &doc)
	c.JSON(http.StatusOK, gin.H{"process": def.Name, "version": def.Version, "evaluation": e.Doc, "evaluated_at": e.At,
		"examples_changed": doc.ExamplesVersion != version, "definition_changed": doc.Spec != activities.SpecDigest(*spec)})
}

// classifierOf is the classifier def declares; 409 when it declares none.
func classifierOf(c *gin.Context, def *process.Definition) (*process.ClassifySpec, bool) {
	if def.Classify == nil {
		fail(c, conflict("process %s (version %d) classifies nothing: its definition has no classify", def.Name, def.Version))
		return nil, false
	}
	return def.Classify, true
}

// digestOf names what a workflow computes from its parts.
func digestOf(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// awaitWorkflow runs a workflow that computes an answer for the request
// (a preview, an evaluation) and waits for its result, into out, until a
// moment before the request's time runs out. Its id names what it
// computes: the same asked again while it runs (a client that gave up
// waiting) waits for that run instead of starting another. When it cannot
// give the result it answers the request itself, and reports false: 422
// for what the workflow refused for good (a classifier its examples cannot
// train), 503 saying it goes on when it is still running (still says
// what).
func (s *server) awaitWorkflow(c *gin.Context, id, workflow string, in, out any, still string) bool {
	ctx := c.Request.Context()
	run, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                s.TaskQueue,
		WorkflowExecutionTimeout: 15 * time.Minute,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflow, in)
	if err != nil {
		fail(c, err)
		return false
	}
	wait := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, deadline.Add(-min(time.Second, time.Until(deadline)/10)))
		defer cancel()
	}
	err = run.Get(wait, out)
	var app *temporal.ApplicationError
	switch {
	case err == nil:
		return true
	case errors.As(err, &app) && app.Type() == activities.ErrTypeInvalid:
		fail(c, &httpError{status: http.StatusUnprocessableEntity, code: "invalid", msg: app.Message()})
	case ctx.Err() == nil && (wait.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, new(*serviceerror.DeadlineExceeded))):
		// The wait ran out (the client's long poll may give up a moment
		// before it does), not the request.
		c.Header("Retry-After", "5")
		fail(c, &httpError{status: http.StatusServiceUnavailable, code: "unavailable", msg: still + " and goes on: ask the same again to wait for its answer"})
	default:
		fail(c, err)
	}
	return false
}
