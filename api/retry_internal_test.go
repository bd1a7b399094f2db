package api

import (
	"errors"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
)

// events is a history as the client's iterator hands it out.
type events []*historypb.HistoryEvent

func (e *events) HasNext() bool { return len(*e) > 0 }

func (e *events) Next() (*historypb.HistoryEvent, error) {
	ev := (*e)[0]
	*e = (*e)[1:]
	return ev, nil
}

func scheduledEvent(id, byTask int64, activity string) *historypb.HistoryEvent {
	return &historypb.HistoryEvent{EventId: id, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
		Attributes: &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{
			ActivityType: &commonpb.ActivityType{Name: activity}, WorkflowTaskCompletedEventId: byTask}}}
}

func failedEvent(id, scheduled int64) *historypb.HistoryEvent {
	return &historypb.HistoryEvent{EventId: id, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED,
		Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{ScheduledEventId: scheduled}}}
}

func timedOutEvent(id, scheduled int64) *historypb.HistoryEvent {
	return &historypb.HistoryEvent{EventId: id, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
		Attributes: &historypb.HistoryEvent_ActivityTaskTimedOutEventAttributes{ActivityTaskTimedOutEventAttributes: &historypb.ActivityTaskTimedOutEventAttributes{ScheduledEventId: scheduled}}}
}

func completedEvent(id, scheduled int64) *historypb.HistoryEvent {
	return &historypb.HistoryEvent{EventId: id, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
		Attributes: &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{ScheduledEventId: scheduled}}}
}

// childEvents are a process step's child workflow: initiated by a
// workflow task, then ended as end says ("" for still running).
func childEvents(id, byTask, endID int64, end enumspb.EventType) events {
	out := events{{EventId: id, EventType: enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
		Attributes: &historypb.HistoryEvent_StartChildWorkflowExecutionInitiatedEventAttributes{StartChildWorkflowExecutionInitiatedEventAttributes: &historypb.StartChildWorkflowExecutionInitiatedEventAttributes{
			WorkflowType: &commonpb.WorkflowType{Name: "adaptflow.Process"}, WorkflowTaskCompletedEventId: byTask}}}}
	switch end {
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
		out = append(out, &historypb.HistoryEvent{EventId: endID, EventType: end, Attributes: &historypb.HistoryEvent_ChildWorkflowExecutionCompletedEventAttributes{
			ChildWorkflowExecutionCompletedEventAttributes: &historypb.ChildWorkflowExecutionCompletedEventAttributes{InitiatedEventId: id}}})
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
		out = append(out, &historypb.HistoryEvent{EventId: endID, EventType: end, Attributes: &historypb.HistoryEvent_ChildWorkflowExecutionFailedEventAttributes{
			ChildWorkflowExecutionFailedEventAttributes: &historypb.ChildWorkflowExecutionFailedEventAttributes{InitiatedEventId: id}}})
	}
	return out
}

// markerEvent is a local activity's marker, as the SDK records it.
func markerEvent(t *testing.T, id, byTask int64, activity string, failed bool) *historypb.HistoryEvent {
	t.Helper()
	data, err := converter.GetDefaultDataConverter().ToPayloads(struct{ ActivityID, ActivityType string }{"1", activity})
	if err != nil {
		t.Fatal(err)
	}
	m := &historypb.MarkerRecordedEventAttributes{MarkerName: "LocalActivity", WorkflowTaskCompletedEventId: byTask, Details: map[string]*commonpb.Payloads{"data": data}}
	if failed {
		m.Failure = &failurepb.Failure{Message: "failed"}
	}
	return &historypb.HistoryEvent{EventId: id, EventType: enumspb.EVENT_TYPE_MARKER_RECORDED,
		Attributes: &historypb.HistoryEvent_MarkerRecordedEventAttributes{MarkerRecordedEventAttributes: m}}
}

// A retry goes back to the workflow task that scheduled what failed last:
// a step's activity or a local activity (a decision, a built-in step),
// never a callback or a notification, which run on the side. A run stopped
// in Temporal goes back to the task that scheduled what was under way.
func TestRetryPoint(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history func(t *testing.T) events
		stopped bool // terminated or timed out in Temporal
		want    int64
	}{
		{"a failed http step", func(*testing.T) events {
			return events{scheduledEvent(5, 4, "CallHTTP"), failedEvent(9, 5), scheduledEvent(12, 11, "SaveState"), scheduledEvent(13, 11, "Callback"), failedEvent(16, 13)}
		}, false, 4},
		{"a step that timed out", func(*testing.T) events {
			return events{scheduledEvent(7, 6, "CallHTTP"), timedOutEvent(10, 7)}
		}, false, 6},
		{"a failed decision, after a classification that failed and was answered by the embedded classifier", func(t *testing.T) events {
			return events{scheduledEvent(5, 4, "Classify"), failedEvent(7, 5), markerEvent(t, 10, 9, "Decide", false), markerEvent(t, 14, 13, "Decide", true), markerEvent(t, 15, 13, "Notify", true)}
		}, false, 13},
		{"nothing failed but the process", func(t *testing.T) events {
			return events{markerEvent(t, 5, 4, "Decide", false), scheduledEvent(6, 4, "Callback"), failedEvent(8, 6)}
		}, false, 0},
		{"terminated as its http step hung, after a step that had failed and one that ran", func(t *testing.T) events {
			return events{scheduledEvent(5, 4, "CallHTTP"), failedEvent(7, 5), scheduledEvent(10, 9, "CallHTTP"), completedEvent(12, 10),
				markerEvent(t, 15, 14, "Decide", false), scheduledEvent(16, 14, "CallHTTP"), scheduledEvent(17, 14, "Callback")}
		}, true, 14},
		{"a process step whose instance of the other process failed", func(t *testing.T) events {
			h := events{scheduledEvent(5, 4, "StartSubProcess"), completedEvent(7, 5)}
			h = append(h, childEvents(10, 9, 14, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED)...)
			return append(h, scheduledEvent(17, 16, "SaveState"), completedEvent(19, 17))
		}, false, 9},
		{"a process step whose instance completed, then a failed step", func(t *testing.T) events {
			h := append(childEvents(10, 9, 14, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED), scheduledEvent(17, 16, "CallHTTP"), failedEvent(19, 17))
			return h
		}, false, 16},
		{"terminated while its process step waited for the other instance", func(t *testing.T) events {
			h := events{scheduledEvent(5, 4, "CallHTTP"), completedEvent(7, 5)}
			return append(h, childEvents(10, 9, 0, 0)...)
		}, true, 9},
		{"terminated while its process step waited for its instance's turn (held by a pause)", func(t *testing.T) events {
			return events{scheduledEvent(5, 4, "CallHTTP"), completedEvent(7, 5), scheduledEvent(10, 9, "StartSubProcess"), completedEvent(12, 10),
				scheduledEvent(15, 14, "SubProcessHeld"), completedEvent(17, 15)}
		}, true, 9},
		{"terminated while it waited for a review, its notification under way", func(t *testing.T) events {
			return events{scheduledEvent(5, 4, "CallHTTP"), completedEvent(7, 5), scheduledEvent(10, 9, "SaveState"), completedEvent(12, 10), scheduledEvent(13, 9, "Notify")}
		}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.history(t)
			got, err := retryPoint(&h, tc.stopped)
			if tc.want == 0 {
				want := errNothingToRetry
				if tc.stopped {
					want = errNothingUnderWay
				}
				if !errors.Is(err, want) {
					t.Fatalf("got %d, %v; want %v", got, err, want)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
