package api

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/activities"
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
	run, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       "classify-preview-" + rand.Text(),
		TaskQueue:                s.TaskQueue,
		WorkflowExecutionTimeout: 2 * time.Minute,
	}, workflows.ClassifyPreviewWorkflow, activities.ClassifyInput{Spec: *spec, Text: text})
	if err != nil {
		fail(c, err)
		return
	}
	var res activities.ClassifyResult
	if err := run.Get(ctx, &res); err != nil {
		// The classifier refused (its examples cannot train a model):
		// the definition's to fix, as an instance would fail on it.
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == activities.ErrTypeInvalid {
			fail(c, &httpError{status: http.StatusUnprocessableEntity, code: "invalid", msg: app.Message()})
			return
		}
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"process": def.Name, "version": def.Version, "text": text, "classification": res, "review_below": spec.ReviewBelow})
}
