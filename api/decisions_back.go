package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// localActivityMarker is the marker by which Temporal's SDKs keep a local
// activity's result (a Decide) in the workflow's history.
const localActivityMarker = "LocalActivity"

// The activities whose results carry decision records, by the names the
// worker registers them under (activities.Decide runs as a local activity,
// activities.RecordReview as an activity).
const (
	decideActivity       = "Decide"
	recordReviewActivity = "RecordReview"
	// closeReviewActivity's input carries a verdict's lesson
	// (activities.CloseReviewInput.Lesson), taken back with the review's
	// record.
	closeReviewActivity = "CloseReview"
)

// localActivityType is the activity type a local activity marker's data
// names (the SDKs keep it with the result).
func localActivityType(data *commonpb.Payloads) string {
	var d struct{ ActivityType string }
	if len(data.GetPayloads()) != 1 || converter.GetDefaultDataConverter().FromPayload(data.GetPayloads()[0], &d) != nil {
		return ""
	}
	return d.ActivityType
}

// takeBackDecisions writes to the store the decision records of the
// instance id that its workflow's histories hold and the store lacks: a
// store restored from a backup older than Temporal's state lost those
// made since. Each Decide and RecordReview result carries its record
// (activities.DecideResult.Record), the same bytes and hash as the store
// had, so the chain reads whole again. It reads the history of run, and
// of every other run of the instance's workflow Temporal still holds (a
// retry resets the workflow into a new run; the run it reset keeps its
// own records). It says how many it wrote.
//
// A review's record brings back the lesson its verdict taught the
// classifier (the labeled example and the verdict on the model's answer),
// which the review's close kept in the same store.
//
// Records made before releases that kept them in the history, and those
// it could not carry (activities.RecordInHistoryMax and
// RecordsInHistoryBudget), are not there to take back: the instance's
// explanation then misses them, and verifying its chain says where.
func takeBackDecisions(ctx context.Context, o Options, id, run string) (int, error) {
	have, err := o.Decisions.Decisions(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("decisions of %s: %w", id, err)
	}
	known := make(map[string]bool, len(have))
	for _, d := range have {
		known[d.ID] = true
	}
	runs, err := runsOf(ctx, o, id, run)
	if err != nil {
		return 0, err
	}
	written := 0
	for _, r := range runs {
		n, err := takeBackRun(ctx, o, id, r, known)
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// runsOf lists the runs of workflow id that Temporal holds, run first.
func runsOf(ctx context.Context, o Options, id, run string) ([]string, error) {
	runs := []string{run}
	q := fmt.Sprintf("WorkflowId = '%s'", strings.ReplaceAll(id, "'", "\\'"))
	var token []byte
	for {
		page, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: o.Namespace, Query: q, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("runs of %s: %w", id, err)
		}
		for _, w := range page.GetExecutions() {
			if r := w.GetExecution().GetRunId(); r != run {
				runs = append(runs, r)
			}
		}
		if token = page.GetNextPageToken(); len(token) == 0 {
			return runs, nil
		}
	}
}

// takeBackRun is takeBackDecisions over one run's history; known holds the
// records the store has, and gains those written.
func takeBackRun(ctx context.Context, o Options, id, run string, known map[string]bool) (int, error) {
	written := 0
	reviewRecords := map[int64]bool{}          // RecordReview activities scheduled, by event id
	lessons := map[string]*activities.Lesson{} // the lessons the reviews' closes kept, by review
	it := o.Temporal.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return written, fmt.Errorf("history of %s: %w", id, err)
		}
		var result *commonpb.Payloads
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			if m := ev.GetMarkerRecordedEventAttributes(); m.GetMarkerName() == localActivityMarker && localActivityType(m.GetDetails()["data"]) == decideActivity {
				result = m.GetDetails()["result"]
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			switch a := ev.GetActivityTaskScheduledEventAttributes(); a.GetActivityType().GetName() {
			case recordReviewActivity:
				reviewRecords[ev.GetEventId()] = true
			case closeReviewActivity:
				if in := closeInput(a.GetInput()); in.Lesson != nil {
					lessons[in.ReviewID] = in.Lesson
				}
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			// Only RecordReview's (and Decide's above): a step's
			// result is the business system's data, read no further.
			if a := ev.GetActivityTaskCompletedEventAttributes(); reviewRecords[a.GetScheduledEventId()] {
				result = a.GetResult()
			}
		}
		d := recordIn(result)
		if d == nil || d.InstanceID != id || known[d.ID] {
			continue
		}
		if d.Hash != d.ComputeHash() {
			o.Logger.Error("a decision record in the workflow's history does not match its hash; it is not taken back", "instance", id, "decision", d.ID)
			continue
		}
		// The lesson before the record: a failure leaves both for the
		// next pass.
		if d.Review != nil && lessons[d.Review.ReviewID] != nil {
			if err := takeBackLesson(ctx, o, id, *lessons[d.Review.ReviewID]); err != nil {
				return written, err
			}
		}
		if _, err := o.Ended.AppendDecision(ctx, *d); err != nil {
			return written, fmt.Errorf("decision %s of %s: %w", d.ID, id, err)
		}
		known[d.ID] = true
		written++
	}
	return written, nil
}

// takeBackLesson keeps again a lesson of the instance id's reviews; one
// the store refuses for good (an embedding of another dimension, the
// embedding model changed since) is logged and left.
func takeBackLesson(ctx context.Context, o Options, id string, l activities.Lesson) error {
	if o.Examples == nil || o.Verdicts == nil {
		return nil
	}
	err := l.Keep(ctx, lessonBook{o.Examples, o.Verdicts})
	switch {
	case errors.Is(err, store.ErrInvalid):
		o.Logger.Error("a reviewer's lesson in the workflow's history is not taken back", "instance", id, "example", l.Example.ID, "err", err)
	case err != nil:
		return fmt.Errorf("lesson of %s: %w", id, err)
	default:
		o.Logger.Info("took back a reviewer's lesson the store had lost", "instance", id, "classifier", l.Example.Classifier, "example", l.Example.ID)
	}
	return nil
}

// lessonBook is where the API keeps lessons: its examples and verdicts.
type lessonBook struct {
	ExampleStore
	VerdictStore
}

// closeInput is the CloseReview input an activity's scheduling carries
// (its review and lesson; empty when it is not one).
func closeInput(in *commonpb.Payloads) activities.CloseReviewInput {
	var c activities.CloseReviewInput
	if len(in.GetPayloads()) != 1 || converter.GetDefaultDataConverter().FromPayload(in.GetPayloads()[0], &c) != nil {
		return activities.CloseReviewInput{}
	}
	return c
}

// recordIn is the decision record an activity's result carries, if it is
// a DecideResult that carries one.
func recordIn(result *commonpb.Payloads) *process.Decision {
	if len(result.GetPayloads()) != 1 {
		return nil
	}
	var r struct{ Record *process.Decision }
	if converter.GetDefaultDataConverter().FromPayload(result.GetPayloads()[0], &r) != nil || r.Record == nil || r.Record.ID == "" {
		return nil
	}
	return r.Record
}
