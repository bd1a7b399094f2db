package workflows_test

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptflow/adaptflow/workflows"
)

// TestReplay replays histories recorded on the embedded server by
// `go test ./internal/app -run TestDevEndToEnd -update-history`. A change to
// the workflow that would break running instances fails here; put it behind
// workflow.GetVersion and keep the old histories.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.Run, workflow.RegisterOptions{Name: workflows.ProcessWorkflow})
			r.RegisterWorkflowWithOptions(workflows.ClassifyPreview, workflow.RegisterOptions{Name: workflows.ClassifyPreviewWorkflow})
			r.RegisterWorkflowWithOptions(workflows.EvaluateClassifier, workflow.RegisterOptions{Name: workflows.EvaluateClassifierWorkflow})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
