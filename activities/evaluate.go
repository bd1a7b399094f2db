package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// EvaluateInput is a classifier to evaluate on its own examples: the
// share of each label's examples held out to test a model trained on the
// rest, or (Folds over 1) the folds of a cross-validation.
type EvaluateInput struct {
	Spec    process.ClassifySpec `json:"spec"`
	Holdout float64              `json:"holdout"`
	Folds   int                  `json:"folds,omitempty"`
	// Model is what is evaluated: "embedded" (or empty), or "llm", the
	// configured LLM, asked about at most Limit held-out texts.
	Model string `json:"model,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// Evaluated models.
const (
	EvaluateEmbedded = "embedded"
	EvaluateLLM      = "llm"
)

// llmEvalWorkers is how many held-out texts an evaluation of the LLM asks
// about at once.
const llmEvalWorkers = 4

// EvaluateResult is how the embedded classifier fares on the held-out
// examples.
type EvaluateResult = classify.Evaluation

// EvaluateMistakes bounds the mistakes an evaluation lists.
const EvaluateMistakes = 20

// EvaluateClassifier trains the embedded classifier on the seed and
// stored examples of the spec's classifier (read afresh: a mistake names
// its stored example's id) less a stratified share of each label's (a
// fixed split: the same examples evaluate the same), and measures it on
// those; or cross-validates it over Folds folds, every example tested
// once. The models that classify are not touched. Too few examples to
// hold any out is refused for good.
func (a *Activities) EvaluateClassifier(ctx context.Context, in EvaluateInput) (EvaluateResult, error) {
	defer heartbeating(ctx)()
	// One at a time on a worker: an evaluation trains a model per fold,
	// and the instances' classifications and steps share the worker's
	// cores. The others wait, heartbeating.
	if err := waitForLock(ctx, &a.evaluating); err != nil {
		return EvaluateResult{}, err
	}
	defer a.evaluating.Unlock()
	var list []store.Example
	var version int64
	if a.Examples != nil {
		var err error
		if version, err = a.Examples.ExamplesVersion(ctx, in.Spec.Name); err != nil {
			return EvaluateResult{}, fmt.Errorf("classify: examples of %s: %w", in.Spec.Name, err)
		}
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
	var rep classify.Report
	var d classify.Diagnosis
	var usage classify.LLMUsage
	var err error
	model, llm := EmbeddedModel, in.Model == EvaluateLLM
	switch {
	case llm && a.LLM == nil:
		return EvaluateResult{}, invalid("classify: no LLM is configured (--llm-base-url, --llm-model) to evaluate", nil)
	case llm && in.Folds > 1:
		return EvaluateResult{}, invalid("classify: an LLM is evaluated on a held-out share, not cross-validated", nil)
	case llm:
		model = "llm:" + a.LLM.Model()
		spec := classify.Spec{Labels: in.Spec.Labels, Extract: extractFields(in.Spec)}
		o := classify.LLMHoldOut{Frac: in.Holdout, Shots: shots, Limit: in.Limit, Workers: llmEvalWorkers, Mistakes: EvaluateMistakes}
		if a.providerShots() {
			// As instances get theirs: by the provider's embeddings.
			o.Pick = func(ctx context.Context, text string, train map[string]bool, n int) ([]classify.Shot, error) {
				return a.nearestShots(ctx, in.Spec, text, train, n)
			}
			// The texts and the seeds embedded at once, a request for
			// each EmbedBatch of them, not one for each text.
			o.Prepare = func(ctx context.Context, texts []string) {
				for _, e := range in.Spec.Examples {
					texts = append(texts, e.Text)
				}
				_, _ = a.embedKept(ctx, texts) // on failure, each Pick asks (and falls back) on its own
			}
		}
		rep, d, usage, err = classify.HoldOutLLM(ctx, a.LLM, spec, examples, o)
	case in.Folds > 1:
		rep, d, err = classify.CrossValidate(ctx, examples, in.Folds, trainOptions(in.Spec), EvaluateMistakes)
	default:
		rep, d, err = classify.HoldOut(ctx, examples, in.Holdout, trainOptions(in.Spec), EvaluateMistakes)
	}
	switch {
	case ctx.Err() != nil:
		return EvaluateResult{}, ctx.Err()
	case errors.Is(err, classify.ErrTooFew):
		return EvaluateResult{}, invalid(fmt.Sprintf("classifier %s: %d examples: %v", in.Spec.Name, len(examples), err), nil)
	case err != nil:
		return EvaluateResult{}, invalid("classify: "+err.Error(), err)
	}
	for i := range d.Mistakes {
		d.Mistakes[i].ID = ids[d.Mistakes[i].Text]
	}
	res := EvaluateResult{
		Classifier: in.Spec.Name, Model: model, Examples: len(examples), Holdout: in.Holdout, Folds: in.Folds, ExamplesVersion: version, Spec: SpecDigest(in.Spec),
		Report: rep, Labels: d.Labels, Mistakes: d.Mistakes,
	}
	kind := EvaluateEmbedded
	if llm {
		res.LLM, kind = &usage, EvaluateLLM
	}
	// Kept as the classifier's last evaluation, for its process's page:
	// also when the request that asked gave up waiting.
	if a.Evaluations != nil {
		if err := a.Evaluations.PutEvaluation(ctx, store.Evaluation{Classifier: in.Spec.Name, Model: kind, Doc: process.JSON(res), At: time.Now().UTC()}); err != nil {
			return EvaluateResult{}, fmt.Errorf("keep the evaluation of %s: %w", in.Spec.Name, err)
		}
	}
	return res, nil
}

// EvaluationKeeper keeps each classifier's last evaluation.
type EvaluationKeeper interface {
	PutEvaluation(ctx context.Context, e store.Evaluation) error
}

// waitForLock locks mu, or gives up with ctx's error when ctx ends first.
func waitForLock(ctx context.Context, mu *sync.Mutex) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !mu.TryLock() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// SpecDigest names a classifier's definition (labels, seed examples,
// fields, threshold) as an evaluation records it.
func SpecDigest(spec process.ClassifySpec) string {
	h := sha256.Sum256(process.JSON(spec))
	return hex.EncodeToString(h[:12])
}
