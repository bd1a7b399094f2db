package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/adaptflow/adaptflow/activities"
)

// ClassifyPreviewWorkflow is the registered name of ClassifyPreview.
const ClassifyPreviewWorkflow = "ClassifyPreview"

// ClassifyPreview classifies a text as an instance's classification does
// (the same activity, on a worker, with the same model, options and
// retries) and does nothing else: no instance, no review, no record. It
// lets process engineers try a classifier
// (POST /v1/processes/{name}/classify).
func ClassifyPreview(ctx workflow.Context, in activities.ClassifyInput) (activities.ClassifyResult, error) {
	in.Preview = true
	var res activities.ClassifyResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, classifyOptions), a.Classify, in).Get(ctx, &res)
	return res, err
}
