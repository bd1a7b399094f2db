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
	Name string `json:"name"`
	// ID tells apart events of one name (two partial shipments); one with
	// no id counts once per name.
	ID   string         `json:"id,omitempty"`
	Data map[string]any `json:"data,omitempty"`
	// By is who sent it (the API key's name).
	By string `json:"by"`
}

// EventReceived is an event as the instance keeps it: its data, when it
// came and from whom. An event is received once; sent again (the same
// name and id, or the same name with no id), it is acknowledged and kept
// as it was.
type EventReceived struct {
	ID   string         `json:"id,omitempty"`
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

// onEvent keeps an event for the event steps that wait for it, and
// answers with what is kept. Events of a name are told apart by their
// id: one sent again is acknowledged with the one kept, and one with no
// id counts once per name.
func (r *runner) onEvent(ctx workflow.Context, e Event) (EventReceived, error) {
	_, seen := r.st.Events[e.Name]
	for _, got := range r.st.EventLog[e.Name] {
		if got.ID == e.ID {
			return got, nil
		}
	}
	got := EventReceived{ID: e.ID, Data: e.Data, At: workflow.Now(ctx), By: e.By}
	if r.st.Events == nil {
		r.st.Events = map[string]EventReceived{}
	}
	if !seen {
		r.st.Events[e.Name] = got
	}
	if r.st.EventLog == nil {
		r.st.EventLog = map[string][]EventReceived{}
	}
	r.st.EventLog[e.Name] = append(r.st.EventLog[e.Name], got)
	return got, nil
}

// eventsOf are the distinct events of a name received so far, oldest
// first. (A workflow replayed from a history made before the log was kept
// rebuilds it: its events come again through onEvent.)
func (r *runner) eventsOf(name string) []EventReceived { return r.st.EventLog[name] }

// eventFacts are the events received so far, as the policies see them
// (nil when none came).
func (r *runner) eventFacts() map[string]policies.EventFact {
	if len(r.st.Events) == 0 {
		return nil
	}
	out := make(map[string]policies.EventFact, len(r.st.Events))
	for _, name := range r.def.Events() { // the definition's order, not the map's
		if e, ok := r.st.Events[name]; ok {
			all := r.eventsOf(name)
			f := policies.EventFact{ID: e.ID, Data: e.Data, At: e.At.UTC().Format(time.RFC3339Nano), By: e.By, Count: len(all)}
			for _, x := range all {
				f.All = append(f.All, policies.EventFact{ID: x.ID, Data: x.Data, At: x.At.UTC().Format(time.RFC3339Nano), By: x.By, Count: 1})
			}
			out[name] = f
		}
	}
	return out
}

// awaitEvent waits, at plan step i, for the event spec names, or for
// spec.Count of them (at once when they came earlier), and answers their
// data; when the spec's timeout runs out first, the step fails, or goes on
// without them.
func (r *runner) awaitEvent(ctx workflow.Context, i int, spec process.EventSpec) (map[string]any, error) {
	count := max(spec.Count, 1)
	received := func() bool { return len(r.eventsOf(spec.Name)) >= count }
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
		var deadline time.Time
		if spec.Timeout != "" {
			d, err := process.ParseDuration(spec.Timeout)
			if err != nil {
				return nil, err
			}
			deadline = workflow.Now(ctx).Add(d)
		}
		for !received() {
			// A step waiting for several events wakes at each, to save its
			// progress (1 of 3 shipments) where the API reads it.
			wake := received
			if count > 1 {
				n := len(r.eventsOf(spec.Name))
				wake = func() bool { return len(r.eventsOf(spec.Name)) > n }
			}
			ok := true
			var err error
			if deadline.IsZero() {
				err = workflow.Await(ctx, wake)
			} else {
				ok, err = workflow.AwaitWithTimeout(ctx, deadline.Sub(workflow.Now(ctx)), wake)
			}
			if err != nil {
				return nil, err
			}
			if ok {
				if !received() {
					r.saveBeforeWait(ctx)
				}
				continue
			}
			n := len(r.eventsOf(spec.Name))
			if spec.OnTimeout == process.TimeoutContinue {
				out := map[string]any{"event": spec.Name, "timed_out": true}
				if count > 1 {
					out["count"] = n
				}
				return out, nil
			}
			if count > 1 {
				return nil, fmt.Errorf("%d of the %d %s events came within %s", n, count, spec.Name, spec.Timeout)
			}
			return nil, fmt.Errorf("no %s event came within %s", spec.Name, spec.Timeout)
		}
	}
	all := r.eventsOf(spec.Name)[:count]
	last := all[count-1]
	if count == 1 {
		out := map[string]any{"event": spec.Name, "data": eventData(last), "received_at": last.At.Format(time.RFC3339Nano), "by": last.By}
		if last.ID != "" {
			out["id"] = last.ID
		}
		return out, nil
	}
	events := make([]any, count)
	for k, e := range all {
		events[k] = map[string]any{"id": e.ID, "data": eventData(e), "received_at": e.At.Format(time.RFC3339Nano), "by": e.By}
	}
	return map[string]any{"event": spec.Name, "count": count, "events": events, "received_at": last.At.Format(time.RFC3339Nano), "by": last.By}, nil
}

func eventData(e EventReceived) map[string]any {
	if e.Data == nil {
		return map[string]any{}
	}
	return e.Data
}
