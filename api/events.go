package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// eventRequest is the body of POST /v1/instances/{id}/events.
type eventRequest struct {
	Name string         `json:"name"`
	ID   string         `json:"id,omitempty"`
	Data map[string]any `json:"data,omitempty"`
}

// sendEvent delivers an event from another system (a payment received,
// goods shipped) to an instance, for the event steps that wait for it: now
// or later in its plan. Events of a name are told apart by their id (two
// partial shipments); one sent again (a retried delivery: the same name
// and id, or the same name with no id) answers the one kept. The answer
// is the kept event.
func (s *server) sendEvent(c *gin.Context) {
	var req eventRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	if !process.ValidName(req.Name) {
		fail(c, badRequest("name", "is required: lower-case letters, digits, '-' or '_' (got %q)", req.Name))
		return
	}
	inst, err := s.allowedInstance(c)
	if err != nil {
		fail(c, err)
		return
	}
	if st, _ := store.StatusOf(inst.State); store.Final(st) {
		fail(c, conflict("instance %s has already ended: %s", inst.ID, st))
		return
	}
	var kept workflows.EventReceived
	err = s.sendUpdate(c.Request.Context(), inst, workflows.UpdateEvent, workflows.Event{Name: req.Name, ID: req.ID, Data: req.Data, By: caller(c).Name}, &kept)
	var ae *temporal.ApplicationError
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &ae) && ae.Type() == workflows.ErrTypeUnknownEvent:
		fail(c, badRequest("name", "%s", ae.Message()))
	case errors.As(err, &ae):
		fail(c, conflict("instance %s: %s", inst.ID, ae.Message()))
	case errors.As(err, &nf):
		fail(c, conflict("instance %s is no longer running", inst.ID))
	case err != nil:
		fail(c, err)
	default:
		data := kept.Data
		if data == nil {
			data = map[string]any{}
		}
		out := gin.H{"instance_id": inst.ID, "name": req.Name, "data": data, "at": kept.At, "by": kept.By}
		if kept.ID != "" {
			out["id"] = kept.ID
		}
		c.JSON(http.StatusOK, out)
	}
}
