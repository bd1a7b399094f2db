package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// Events from other systems: an event step waits for one (a payment
// received, goods shipped), sent through [UpdateEvent]; policies and steps
// see those received so far.

// Event is the argument of [UpdateEvent]: an event another system sends
// the instance (a payment received), for the event steps that wait for it.
type Event struct {
	Name string         `json:"name"`
	Data map[string]any `json:"data,omitempty"`
	// By is who sent it (the API key's name).
	By string `json:"by"`
}

// EventReceived is an event as the instance keeps it: its data, when it
// came and from whom. An event is received once; sent again, it is
// acknowledged and kept as it was.
type EventReceived struct {
	Data map[string]any `json:"data,omitempty"`
	At   time.Time      `json:"at"`
	By   string         `json:"by"`
}

// validateEvent refuses an event no event step of the definition waits
// for, or one sent to an instance that has ended.
func (r *runner) validateEvent(_ workflow.Context, e Event) error {
	events := r.def.Events()
	switch {
	case store.Final(r.st.Status):
		return temporal.NewApplicationError("instance has already ended: "+r.st.Status, ErrTypeFinished)
	case r.canceled != nil:
		return temporal.NewApplicationError("instance is being canceled by "+r.canceled.By, ErrTypeFinished)
	case !slices.Contains(events, e.Name):
		return temporal.NewApplicationError(fmt.Sprintf("no step of %s waits for an event %q (it waits for: %s)", r.def.Ref(), e.Name, strings.Join(events, ", ")), ErrTypeUnknownEvent)
	}
	return nil
}

// onEvent keeps an event for the event steps that wait for it; the first
// of a name counts, and it answers with what is kept.
func (r *runner) onEvent(ctx workflow.Context, e Event) (EventReceived, error) {
	if got, ok := r.st.Events[e.Name]; ok {
		return got, nil
	}
	if r.st.Events == nil {
		r.st.Events = map[string]EventReceived{}
	}
	got := EventReceived{Data: e.Data, At: workflow.Now(ctx), By: e.By}
	r.st.Events[e.Name] = got
	return got, nil
}

// eventFacts are the events received so far, as the policies see them
// (nil when none came).
func (r *runner) eventFacts() map[string]policies.EventFact {
	if len(r.st.Events) == 0 {
		return nil
	}
	out := make(map[string]policies.EventFact, len(r.st.Events))
	for _, name := range r.def.Events() { // the definition's order, not the map's
		if e, ok := r.st.Events[name]; ok {
			out[name] = policies.EventFact{Data: e.Data, At: e.At.UTC().Format(time.RFC3339Nano), By: e.By}
		}
	}
	return out
}

// awaitEvent waits, at plan step i, for the event spec names (at once
// when it came earlier), and answers its data; when the spec's timeout
// runs out first, the step fails, or goes on without it.
func (r *runner) awaitEvent(ctx workflow.Context, i int, spec process.EventSpec) (map[string]any, error) {
	received := func() bool { _, ok := r.st.Events[spec.Name]; return ok }
	if !received() {
		r.st.Plan[i].State = StepWaitingEvent
		r.st.Status = StatusWaitingEvent
		defer func() {
			if r.st.Status == StatusWaitingEvent {
				r.st.Status = StatusRunning
			}
		}()
		r.callbackFor(ctx, process.EventWaitingEvent, ReviewState{}, spec.Name)
		r.saveBeforeWait(ctx)
		if spec.Timeout == "" {
			if err := workflow.Await(ctx, received); err != nil {
				return nil, err
			}
		} else {
			d, err := process.ParseDuration(spec.Timeout)
			if err != nil {
				return nil, err
			}
			ok, err := workflow.AwaitWithTimeout(ctx, d, received)
			if err != nil {
				return nil, err
			}
			if !ok {
				if spec.OnTimeout == process.TimeoutContinue {
					return map[string]any{"event": spec.Name, "timed_out": true}, nil
				}
				return nil, fmt.Errorf("no %s event came within %s", spec.Name, spec.Timeout)
			}
		}
	}
	got := r.st.Events[spec.Name]
	data := got.Data
	if data == nil {
		data = map[string]any{}
	}
	return map[string]any{"event": spec.Name, "data": data, "received_at": got.At.Format(time.RFC3339Nano), "by": got.By}, nil
}
