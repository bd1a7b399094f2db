package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// EmbeddedModel names the embedded classifier in decision records.
const EmbeddedModel = "embedded:hashed-ngrams-softmax-v1"

// ExampleSource lists a classifier's stored examples (reviewers' verdicts
// among them).
type ExampleSource interface {
	ExamplesOf(ctx context.Context, classifier string) ([]store.Example, error)
}

// ClassifyInput is the text of an instance to classify.
type ClassifyInput struct {
	Spec process.ClassifySpec
	Text string
}

// ClassifyResult becomes the `classification` facts.
type ClassifyResult struct {
	Label      string         `json:"label"`
	Confidence float64        `json:"confidence"`
	Fields     map[string]any `json:"fields"`
	Model      string         `json:"model"`
	// Review is set when the confidence is under the spec's review_below.
	Review bool `json:"review"`
}

// Facts renders the result as the classification facts.
func (r ClassifyResult) Facts() map[string]any {
	fields := r.Fields
	if fields == nil {
		fields = map[string]any{}
	}
	return map[string]any{"label": r.Label, "confidence": r.Confidence, "fields": fields, "model": r.Model, "review": r.Review}
}

type cachedModel struct {
	key   string
	model *classify.Model
}

// Classify classifies the text with the embedded classifier, trained on
// the spec's seed examples and the classifier's stored examples, retrained
// when they change.
func (a *Activities) Classify(ctx context.Context, in ClassifyInput) (ClassifyResult, error) {
	m, err := a.embeddedModel(ctx, in.Spec)
	if err != nil {
		return ClassifyResult{}, err
	}
	r := m.Classify(in.Text)
	return ClassifyResult{
		Label: r.Label, Confidence: r.Confidence, Fields: map[string]any{}, Model: EmbeddedModel,
		Review: r.Confidence < in.Spec.ReviewBelow,
	}, nil
}

func (a *Activities) embeddedModel(ctx context.Context, spec process.ClassifySpec) (*classify.Model, error) {
	var stored []store.Example
	if a.Examples != nil {
		var err error
		if stored, err = a.Examples.ExamplesOf(ctx, spec.Name); err != nil {
			return nil, fmt.Errorf("classify: examples of %s: %w", spec.Name, err)
		}
	}
	var examples []classify.Example
	for _, e := range spec.Examples {
		examples = append(examples, classify.Example{Text: e.Text, Label: e.Label})
	}
	for _, e := range stored {
		if slices.Contains(spec.Labels, e.Label) {
			examples = append(examples, classify.Example{Text: e.Text, Label: e.Label})
		}
	}
	h := sha256.New()
	h.Write(process.JSON(spec))
	for _, e := range examples {
		fmt.Fprintf(h, "%s\x00%s\x00", e.Label, e.Text)
	}
	key := hex.EncodeToString(h.Sum(nil))
	a.mu.Lock()
	c, ok := a.models[spec.Name]
	a.mu.Unlock()
	if ok && c.key == key {
		return c.model, nil
	}
	m, err := classify.Train(examples, classify.Options{})
	if err != nil {
		return nil, invalid("classify: "+err.Error(), err)
	}
	a.mu.Lock()
	if a.models == nil {
		a.models = map[string]cachedModel{}
	}
	a.models[spec.Name] = cachedModel{key: key, model: m}
	a.mu.Unlock()
	return m, nil
}
