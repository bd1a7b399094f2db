package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
	ctx := c.Request.Context()
	spec := def.Classify
	if spec == nil {
		fail(c, conflict("process %s (version %d) classifies nothing: its definition has no classify", def.Name, def.Version))
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
	h := sha256.Sum256(append(process.JSON(spec), "\x00"+text...))
	run, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       "classify-preview-" + hex.EncodeToString(h[:12]),
		TaskQueue:                s.TaskQueue,
		WorkflowExecutionTimeout: 2 * time.Minute,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflows.ClassifyPreviewWorkflow, activities.ClassifyInput{Spec: *spec, Text: text})
	if err != nil {
		fail(c, err)
		return
	}
	// It waits for the answer until a moment before the request's time
	// runs out, and then says the preview goes on.
	wait := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, deadline.Add(-min(time.Second, time.Until(deadline)/10)))
		defer cancel()
	}
	var res activities.ClassifyResult
	if err := run.Get(wait, &res); err != nil {
		// The classifier refused (its examples cannot train a model):
		// the definition's to fix, as an instance would fail on it.
		var app *temporal.ApplicationError
		switch {
		case errors.As(err, &app) && app.Type() == activities.ErrTypeInvalid:
			fail(c, &httpError{status: http.StatusUnprocessableEntity, code: "invalid", msg: app.Message()})
		case ctx.Err() == nil && (wait.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, new(*serviceerror.DeadlineExceeded))):
			// The wait ran out (the client's long poll may give up a
			// moment before it does), not the request.
			c.Header("Retry-After", "5")
			fail(c, &httpError{status: http.StatusServiceUnavailable, code: "unavailable",
				msg: "the classification is still running (a slow LLM, or the classifier's first training on many examples) and goes on: ask again with the same text to wait for its answer"})
		default:
			fail(c, err)
		}
		return
	}
	c.JSON(http.StatusOK, gin.H{"process": def.Name, "version": def.Version, "text": text, "classification": res, "review_below": spec.ReviewBelow})
}
