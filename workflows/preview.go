package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
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

// EvaluateClassifierWorkflow is the registered name of EvaluateClassifier.
const EvaluateClassifierWorkflow = "EvaluateClassifier"

// evaluateOptions are the EvaluateClassifier activity's: a training on
// many examples takes minutes on a busy worker; the attempt heartbeats.
var evaluateOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 10 * time.Minute,
	HeartbeatTimeout:    30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 3,
		NonRetryableErrorTypes: activities.NonRetryable,
	},
}

// EvaluateClassifier evaluates a classifier on its own examples on a
// worker, which has the classifier's code and examples
// (POST /v1/processes/{name}/classify/evaluate); it changes nothing.
func EvaluateClassifier(ctx workflow.Context, in activities.EvaluateInput) (activities.EvaluateResult, error) {
	var res activities.EvaluateResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, evaluateOptions), a.EvaluateClassifier, in).Get(ctx, &res)
	return res, err
}
