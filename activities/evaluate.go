package activities

import (
	"context"
	"fmt"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// EvaluateInput is a classifier to evaluate on its own examples: the
// share of each label's examples held out to test a model trained on the
// rest.
type EvaluateInput struct {
	Spec    process.ClassifySpec `json:"spec"`
	Holdout float64              `json:"holdout"`
}

// EvaluateResult is how the embedded classifier fares on the held-out
// examples.
type EvaluateResult = classify.Evaluation

// EvaluateMistakes bounds the mistakes an evaluation lists.
const EvaluateMistakes = 20

// EvaluateClassifier trains the embedded classifier on the seed and
// stored examples (read afresh: a mistake names its stored example's id) of the spec's classifier less a stratified share of
// each label's (a fixed split: the same examples evaluate the same), and
// measures it on those. The models that classify are not touched. Too few
// examples to hold any out is refused for good.
func (a *Activities) EvaluateClassifier(ctx context.Context, in EvaluateInput) (EvaluateResult, error) {
	defer heartbeating(ctx)()
	var list []store.Example
	if a.Examples != nil {
		var err error
		if list, err = a.Examples.ExamplesOf(ctx, in.Spec.Name); err != nil {
			return EvaluateResult{}, fmt.Errorf("classify: examples of %s: %w", in.Spec.Name, err)
		}
	}
	stored := make([]classify.Example, len(list))
	ids := make(map[string]string, len(list)) // a stored example's id by its text
	for i, e := range list {
		stored[i] = classify.Example{Text: e.Text, Label: e.Label}
		ids[e.Text] = e.ID
	}
	examples := examplesOf(in.Spec, stored)
	train, test := classify.StratifiedSplit(examples, in.Holdout, 1)
	if len(test) == 0 {
		return EvaluateResult{}, invalid(fmt.Sprintf("classifier %s: too few examples to evaluate (%d): a label needs two at least, one to learn from and one to test", in.Spec.Name, len(examples)), nil)
	}
	m, rep, err := classify.EvaluateContext(ctx, train, test, classify.Options{})
	if ctx.Err() != nil {
		return EvaluateResult{}, ctx.Err()
	}
	if err != nil {
		return EvaluateResult{}, invalid("classify: "+err.Error(), err)
	}
	d := classify.Diagnose(m, test, EvaluateMistakes)
	for i := range d.Mistakes {
		d.Mistakes[i].ID = ids[d.Mistakes[i].Text]
	}
	return EvaluateResult{
		Classifier: in.Spec.Name, Model: EmbeddedModel, Examples: len(examples), Holdout: in.Holdout,
		Report: rep, Labels: d.Labels, Mistakes: d.Mistakes,
	}, nil
}
