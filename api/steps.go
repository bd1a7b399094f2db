package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// stepReport is how a process's steps fared over a window: how often each
// was in the plan, how policies adapted it (added, skipped, reviewed
// before it), how it ended, and how long it took.
type stepReport struct {
	Process string    `json:"process"`
	Version int       `json:"version,omitempty"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	// Instances are those started in the window whose workflow has saved
	// its state; Adapted counts those with at least one step added, or
	// skipped.
	Instances int `json:"instances"`
	Adapted   struct {
		Added   int `json:"added"`
		Skipped int `json:"skipped"`
	} `json:"adapted"`
	// Steps are in the order they first appear in the plans: the main path,
	// with the steps policies added where they were added.
	Steps []*stepFigures `json:"steps"`
}

// stepFigures are one step's figures over the instances whose plan held it.
type stepFigures struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	InPlan  int    `json:"in_plan"`
	Done    int    `json:"done"`
	Skipped int    `json:"skipped"`
	Failed  int    `json:"failed"`
	NotRun  int    `json:"not_run"`
	// Canceled were under way or ahead when their instance was canceled;
	// InProgress are running or waiting (for a review, an event) now, or
	// still to come.
	Canceled   int `json:"canceled"`
	InProgress int `json:"in_progress"`
	// Added counts the plans a policy added it to, by policy in AddedBy;
	// SkippedBy counts the skips by policy; Reviews the reviews raised
	// before it.
	Added     int            `json:"added"`
	AddedBy   map[string]int `json:"added_by"`
	SkippedBy map[string]int `json:"skipped_by"`
	Reviews   int            `json:"reviews"`
	// Duration is from its start to its end, over the runs that ended
	// done with both known (a review's or an event's wait is in it; a
	// built-in task's is about 0).
	Duration *durationStats `json:"duration_seconds"`
	cycles   []float64
}

// processSteps reports how each step of a process fared over a window:
// where the time goes, what fails, and how the policies adapt the plan.
func (s *server) processSteps(c *gin.Context) {
	since, err := sinceParam(c.Query("since"))
	if err != nil {
		fail(c, err)
		return
	}
	def, _, version, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	name := def.Name
	ctx := c.Request.Context()
	until := time.Now().UTC()
	rep := stepReport{Process: name, Version: version, Since: since.UTC(), Until: until, Steps: []*stepFigures{}}
	byID := map[string]*stepFigures{}
	var states stateScanner
	err = s.Instances.InstanceStates(ctx, name, version, rep.Since, until, func(row store.StateRow) error {
		if len(row.State) == 0 {
			return nil
		}
		st, err := states.scanStepState(row.State)
		if err != nil {
			return fmt.Errorf("instance %s: stored state: %w", row.ID, err)
		}
		rep.Instances++
		added, skipped := false, false
		for i, p := range st.Plan {
			f := byID[p.ID]
			if f == nil {
				f = &stepFigures{ID: p.ID, Kind: string(p.Kind), AddedBy: map[string]int{}, SkippedBy: map[string]int{}}
				byID[p.ID] = f
				// After the step before it in this plan, so that the order
				// does not depend on which plan is read first.
				at := 0
				if i > 0 {
					at = slices.Index(rep.Steps, byID[st.Plan[i-1].ID]) + 1
				}
				rep.Steps = slices.Insert(rep.Steps, at, f)
			}
			f.add(p)
			added = added || p.Origin == "added"
			skipped = skipped || p.State == workflows.StepSkipped
		}
		for _, step := range st.Reviews {
			if f := byID[step]; f != nil {
				f.Reviews++
			}
		}
		if added {
			rep.Adapted.Added++
		}
		if skipped {
			rep.Adapted.Skipped++
		}
		return nil
	})
	if err != nil {
		fail(c, err)
		return
	}
	for _, f := range rep.Steps {
		f.Duration = summarize(f.cycles)
	}
	c.JSON(http.StatusOK, rep)
}

// reportStep is what the report reads of a plan's step (a
// workflows.PlanStep).
type reportStep struct {
	ID         string           `json:"id"`
	Kind       process.StepKind `json:"kind"`
	Origin     string           `json:"origin"`
	AddedBy    string           `json:"added_by"`
	State      string           `json:"state"`
	SkippedBy  string           `json:"skipped_by"`
	StartedAt  *time.Time       `json:"started_at"`
	FinishedAt *time.Time       `json:"finished_at"`
}

// add counts one plan's step.
func (f *stepFigures) add(p reportStep) {
	f.InPlan++
	if p.Origin == "added" {
		f.Added++
		if p.AddedBy != "" {
			f.AddedBy[p.AddedBy]++
		}
	}
	switch p.State {
	case workflows.StepDone:
		f.Done++
		if p.StartedAt != nil && p.FinishedAt != nil {
			f.cycles = append(f.cycles, max(0, p.FinishedAt.Sub(*p.StartedAt).Seconds()))
		}
	case workflows.StepSkipped:
		f.Skipped++
		if p.SkippedBy != "" {
			f.SkippedBy[p.SkippedBy]++
		}
	case workflows.StepFailed:
		f.Failed++
	case workflows.StepNotRun:
		f.NotRun++
	case workflows.StepCanceled:
		f.Canceled++
	default: // pending, running, waiting for a review or an event
		f.InProgress++
	}
}
