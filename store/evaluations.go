package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Evaluation is a classifier's last evaluation of a model on its own
// examples (the JSON the API answers with) and when it was made.
type Evaluation struct {
	Classifier string
	// Model is what was evaluated: "embedded" or "llm"; each has its own
	// last evaluation.
	Model string
	Doc   json.RawMessage
	At    time.Time
}

// putEvaluationQuery keeps a classifier's evaluation of a model unless a
// later one is kept already (two workers finishing out of order).
const putEvaluationQuery = `INSERT INTO classifier_evaluations (classifier, model, doc, evaluated_at) VALUES ({1}, {2}, {3}, {4})
	ON CONFLICT (classifier, model) DO UPDATE SET doc = excluded.doc, evaluated_at = excluded.evaluated_at
	WHERE excluded.evaluated_at >= classifier_evaluations.evaluated_at`

// PutEvaluation keeps a classifier's evaluation of a model, in place of an
// earlier one of that model.
func (c Changes) PutEvaluation(ctx context.Context, e Evaluation) error {
	_, err := c.exec(ctx, "put evaluation", c.putEvaluation, e.Classifier, e.Model, string(e.Doc), e.At.UnixMicro())
	return err
}

// LastEvaluation is a classifier's last evaluation of model; ErrNotFound
// when it has none.
func (r Reads) LastEvaluation(ctx context.Context, classifier, model string) (Evaluation, error) {
	e := Evaluation{Classifier: classifier, Model: model}
	found := false
	err := r.rows(ctx, "last evaluation", `SELECT doc, evaluated_at FROM classifier_evaluations WHERE classifier = `+r.ph(1)+` AND model = `+r.ph(2), []any{classifier, model}, func(scan func(dest ...any) error) error {
		var doc string
		var at int64
		if err := scan(&doc, &at); err != nil {
			return err
		}
		e.Doc, e.At, found = json.RawMessage(doc), time.UnixMicro(at).UTC(), true
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("evaluation of classifier %s (%s): %w", classifier, model, ErrNotFound)
	}
	return e, err
}
