package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// EmbeddedModel names the embedded classifier in decision records.
const EmbeddedModel = "embedded:hashed-ngrams-lexicon-softmax-mlp-v4"

// ExampleSource lists a classifier's stored examples (reviewers' verdicts
// among them), and tells their version, which changes with each write.
type ExampleSource interface {
	ExamplesOf(ctx context.Context, classifier string) ([]store.Example, error)
	ExamplesVersion(ctx context.Context, classifier string) (int64, error)
	NearestExamples(ctx context.Context, classifier string, q []float32, k int) ([]store.Neighbor, error)
}

// ClassifyInput is the text of an instance to classify.
type ClassifyInput struct {
	Spec process.ClassifySpec
	Text string
	// Preview is set for a classification tried out of any instance
	// (POST /v1/processes/{name}/classify): it is not counted in
	// adaptflow_classifications_total, whose review share is the
	// instances'.
	Preview bool `json:",omitempty"`
}

// ClassifyResult becomes the `classification` facts.
type ClassifyResult struct {
	Label      string         `json:"label"`
	Confidence float64        `json:"confidence"`
	Fields     map[string]any `json:"fields"`
	Model      string         `json:"model"`
	// Review is set when the confidence is under the spec's review_below,
	// or when the LLM failed and the embedded classifier answered.
	Review bool `json:"review"`
	// Fallback says why the LLM did not answer, when it did not.
	Fallback         string  `json:"fallback,omitempty"`
	PromptVersion    string  `json:"prompt_version,omitempty"`
	LatencyMS        float64 `json:"latency_ms,omitempty"`
	PromptTokens     int     `json:"prompt_tokens,omitempty"`
	CompletionTokens int     `json:"completion_tokens,omitempty"`
	// Alternatives are, for a preview answered by the embedded classifier,
	// the most probable labels (up to 3) with their probabilities, most
	// probable first. Not part of the facts.
	Alternatives []LabelProbability `json:"alternatives,omitempty"`
}

// LabelProbability is a label and the embedded classifier's probability
// of it.
type LabelProbability struct {
	Label       string  `json:"label"`
	Probability float64 `json:"probability"`
}

// topLabels are the n most probable labels of probs, most probable first
// (ties by name).
func topLabels(probs map[string]float64, n int) []LabelProbability {
	out := make([]LabelProbability, 0, len(probs))
	for l, p := range probs {
		out = append(out, LabelProbability{Label: l, Probability: p})
	}
	slices.SortFunc(out, func(a, b LabelProbability) int {
		if c := cmp.Compare(b.Probability, a.Probability); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
	return out[:min(n, len(out))]
}

// Facts renders the result as the classification facts.
func (r ClassifyResult) Facts() map[string]any {
	fields := r.Fields
	if fields == nil {
		fields = map[string]any{}
	}
	out := map[string]any{"label": r.Label, "confidence": r.Confidence, "fields": fields, "model": r.Model, "review": r.Review}
	if r.PromptVersion != "" {
		out["prompt_version"] = r.PromptVersion
		out["latency_ms"] = r.LatencyMS
		out["prompt_tokens"] = float64(r.PromptTokens)
		out["completion_tokens"] = float64(r.CompletionTokens)
	}
	if r.Fallback != "" {
		out["fallback"] = r.Fallback
	}
	return out
}

// ClassifyAttempts is how many times the workflow tries the Classify
// activity; on the last attempt a temporary LLM failure falls back to the
// embedded classifier instead of failing.
const ClassifyAttempts = 5

// shots is how many similar labeled examples the LLM sees.
const shots = 5

// Classify classifies the text: through the LLM when one is configured,
// with the most similar labeled examples as few-shot context, else (and
// when the LLM fails for good) with the embedded classifier. A fallback is
// always reviewed; the result names the model that answered.
func (a *Activities) Classify(ctx context.Context, in ClassifyInput) (ClassifyResult, error) {
	defer heartbeating(ctx)()
	m, c, err := a.embeddedModel(ctx, in.Spec)
	if err != nil {
		return ClassifyResult{}, err
	}
	fallback := ""
	if a.LLM != nil {
		spec := classify.Spec{Labels: in.Spec.Labels, Extract: extractFields(in.Spec)}
		res, err := a.LLM.Classify(ctx, spec, in.Text, a.fewShots(ctx, c, in.Spec, in.Text))
		retry := errors.Is(err, classify.ErrRetryable) && activity.GetInfo(ctx).Attempt < ClassifyAttempts
		a.Metrics.llm(res, err, retry)
		switch {
		case err == nil:
			if !in.Preview {
				a.Metrics.classified("llm", res.Confidence < in.Spec.ReviewBelow)
			}
			return ClassifyResult{
				Label: res.Label, Confidence: res.Confidence, Fields: classify.ExtractByPatterns(spec.Extract, in.Text, res.Fields), Model: "llm:" + res.Model,
				PromptVersion: res.PromptVersion, LatencyMS: res.LatencyMS, PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens,
				Review: res.Confidence < in.Spec.ReviewBelow,
			}, nil
		case retry:
			return ClassifyResult{}, fmt.Errorf("classify: %w", err) // the retry policy tries again
		default:
			fallback = err.Error()
			activity.GetLogger(ctx).Warn("LLM classification failed; the embedded classifier answers and the instance is reviewed", "err", err)
		}
	}
	r := m.Classify(in.Text)
	review := r.Confidence < in.Spec.ReviewBelow || fallback != ""
	res := ClassifyResult{
		Label: r.Label, Confidence: r.Confidence, Fields: classify.ExtractByPatterns(extractFields(in.Spec), in.Text, nil), Model: EmbeddedModel,
		Review: review, Fallback: fallback,
	}
	if in.Preview {
		res.Alternatives = topLabels(r.Probabilities, 3)
	} else {
		a.Metrics.classified("embedded", review)
	}
	return res, nil
}

// extractFields are the fields spec extracts, as package classify takes them.
func extractFields(spec process.ClassifySpec) []classify.Field {
	var out []classify.Field
	for _, f := range spec.Extract {
		out = append(out, classify.Field{Name: f.Name, Type: f.Type, Pattern: f.Pattern, Decimal: f.Decimal})
	}
	return out
}

// examplesOf is what a classifier learns from: the spec's examples, then
// the stored ones (reviewers' verdicts among them) of its labels.
func examplesOf(spec process.ClassifySpec, stored []classify.Example) []classify.Example {
	examples := make([]classify.Example, 0, len(spec.Examples)+len(stored))
	for _, e := range spec.Examples {
		examples = append(examples, classify.Example{Text: e.Text, Label: e.Label})
	}
	for _, e := range stored {
		if slices.Contains(spec.Labels, e.Label) {
			examples = append(examples, e)
		}
	}
	return examples
}

type storedExamples struct {
	version  int64
	examples []classify.Example
}

// storedExamples are a classifier's stored examples and their version,
// read again only when the version changed.
func (a *Activities) storedExamples(ctx context.Context, classifier string) ([]classify.Example, int64, error) {
	if a.Examples == nil {
		return nil, 0, nil
	}
	v, err := a.Examples.ExamplesVersion(ctx, classifier)
	if err != nil {
		return nil, 0, fmt.Errorf("classify: examples of %s: %w", classifier, err)
	}
	a.mu.Lock()
	s, ok := a.stored[classifier]
	a.mu.Unlock()
	if ok && s.version == v {
		return s.examples, v, nil
	}
	list, err := a.Examples.ExamplesOf(ctx, classifier)
	if err != nil {
		return nil, 0, fmt.Errorf("classify: examples of %s: %w", classifier, err)
	}
	examples := make([]classify.Example, len(list))
	for i, e := range list {
		examples[i] = classify.Example{Text: e.Text, Label: e.Label}
	}
	// Read after the version: a write in between is read again next time.
	a.mu.Lock()
	if a.stored == nil {
		a.stored = map[string]storedExamples{}
	}
	a.stored[classifier] = storedExamples{version: v, examples: examples}
	a.mu.Unlock()
	return examples, v, nil
}

// heartbeatEvery is how often a long activity heartbeats.
const heartbeatEvery = 5 * time.Second

// heartbeating heartbeats for the activity of ctx, at once and then every
// heartbeatEvery, until the stop it returns is called: Temporal tells a
// worker that died (heartbeats stop) from one still at work (a first
// training on many examples, a slow LLM), however long that takes.
func heartbeating(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	activity.RecordHeartbeat(ctx)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}
