package activities

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

// TestOneEvaluationAtATime: a worker runs one evaluation at a time; the
// next waits for it (and gives up if its attempt ends first).
func TestOneEvaluationAtATime(t *testing.T) {
	a := &Activities{}
	spec := process.ClassifySpec{Name: "desk", Labels: []string{"refund", "question"}, Examples: []process.LabeledText{
		{Text: "refund my order", Label: "refund"}, {Text: "I want my money back", Label: "refund"}, {Text: "please refund the charge", Label: "refund"},
		{Text: "when do you open", Label: "question"}, {Text: "what are your hours", Label: "question"}, {Text: "where is the shop", Label: "question"},
	}}
	in := EvaluateInput{Spec: spec, Folds: 3}
	a.evaluating.Lock() // another evaluation runs
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := a.EvaluateClassifier(ctx, in); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("while another runs: %v, want its wait to run out", err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := a.EvaluateClassifier(t.Context(), in)
		if err == nil && res.Test != 6 {
			err = errors.New("not every example tested")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("it ran while another held the worker's evaluation: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	a.evaluating.Unlock() // the other ends
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
