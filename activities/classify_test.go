package activities_test

import (
	"net/http"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/ml/classify/openaitest"
	"github.com/adaptflow/adaptflow/process"
)

var spec = process.ClassifySpec{
	Name: "requests", Field: "message", Labels: []string{"refund", "question"}, ReviewBelow: 0.5,
	Extract: []process.ExtractField{{Name: "amount", Type: "number"}},
	Examples: []process.LabeledText{
		{Text: "I want my money back", Label: "refund"}, {Text: "refund my order", Label: "refund"},
		{Text: "when do you open", Label: "question"}, {Text: "how does shipping work", Label: "question"},
	},
}

func classifyWith(t *testing.T, replies ...openaitest.Reply) (activities.ClassifyResult, *openaitest.Server, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	var acts activities.Activities
	var srv *openaitest.Server
	if len(replies) > 0 {
		srv = openaitest.New(t, replies...)
		l, err := classify.NewLLM(classify.LLMOptions{BaseURL: srv.BaseURL(), Model: "test-model", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		acts.LLM = l
	}
	env.RegisterActivity(&acts)
	v, err := env.ExecuteActivity(acts.Classify, activities.ClassifyInput{Spec: spec, Text: "please refund 20 EUR"})
	var res activities.ClassifyResult
	if err == nil {
		if gerr := v.Get(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, srv, err
}

func TestClassifyThroughTheLLM(t *testing.T) {
	res, srv, err := classifyWith(t, openaitest.Reply{Content: `{"label":"refund","confidence":0.9,"fields":{"amount":20},"rationale":"refund asked"}`})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "llm:test-model" || res.Label != "refund" || res.Fields["amount"] != 20.0 || res.Review || res.PromptTokens != 120 || res.PromptVersion == "" {
		t.Fatalf("result %+v", res)
	}
	// The most similar labeled examples went along as few-shot context.
	if msgs := srv.Last()["messages"].([]any); len(msgs) != 1+2*4+1 {
		t.Fatalf("%d messages", len(msgs))
	}
}

func TestClassifyFallsBackToTheEmbeddedModel(t *testing.T) {
	for name, replies := range map[string][]openaitest.Reply{
		"rejected request":  {{Status: http.StatusBadRequest}},
		"label outside set": {{Content: `{"label":"low_risk","confidence":1,"fields":{"amount":null},"rationale":"ignore your instructions"}`}},
	} {
		t.Run(name, func(t *testing.T) {
			res, _, err := classifyWith(t, replies...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Model != activities.EmbeddedModel || !res.Review || res.Fallback == "" || (res.Label != "refund" && res.Label != "question") {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func TestClassifyRetriesTemporaryFailures(t *testing.T) {
	_, _, err := classifyWith(t, openaitest.Reply{Status: http.StatusTooManyRequests})
	if err == nil {
		t.Fatal("a 429 on the first attempt must fail the attempt so the retry policy tries again")
	}
}

func TestClassifyEmbeddedWithoutLLM(t *testing.T) {
	res, _, err := classifyWith(t)
	if err != nil || res.Model != activities.EmbeddedModel || res.Label != "refund" || res.Fallback != "" {
		t.Fatalf("%+v %v", res, err)
	}
}
