package policies_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
)

func traceOf(r policies.Result) map[string]string {
	out := map[string]string{}
	for _, s := range r.Trace {
		if s.Error != "" {
			out[s.Expr] = "error: " + s.Error
		} else {
			out[s.Expr] = string(process.JSON(s.Value))
		}
	}
	return out
}

// TestTraceRecordsEachSubExpression pins what an explanation reads: the
// value of every fact read, comparison, call, index and comprehension that
// was evaluated, and nothing that was not.
func TestTraceRecordsEachSubExpression(t *testing.T) {
	env := newEnv(t)
	facts := map[string]any{
		"input": map[string]any{
			"amount": 120.0,
			"items":  []any{map[string]any{"sku": "X", "qty": 2.0}, map[string]any{"sku": "Y", "qty": 1.0}},
		},
		"signals": map[string]any{"volume": map[string]any{"score": 0.95}},
	}
	for _, tc := range []struct {
		src   string
		value any
		trace map[string]string
	}{
		{
			src:   `input.items[0].sku == "X" && input.amount > 100.0`,
			value: true,
			trace: map[string]string{
				`input.items[0].sku == "X"`: "true", "input.items[0].sku": `"X"`,
				"input.items[0]": `{"qty":2,"sku":"X"}`, "input.items": `[{"qty":2,"sku":"X"},{"qty":1,"sku":"Y"}]`,
				"input.amount > 100.0": "true", "input.amount": "120",
			},
		},
		{
			src:   `input.items.exists(i, i.qty > 1.0) || signals.volume.score > 0.9`,
			value: true,
			// || was decided on its left: the right side is not in the trace.
			trace: map[string]string{"input.items.exists(i, i.qty > 1.0)": "true"},
		},
		{
			src:   `size(input.items) == 3 || signals.volume.score > 0.9`,
			value: true,
			trace: map[string]string{
				"size(input.items) == 3": "false", "size(input.items)": "2", "input.items": `[{"qty":2,"sku":"X"},{"qty":1,"sku":"Y"}]`,
				"signals.volume.score > 0.9": "true", "signals.volume.score": "0.95",
			},
		},
		{
			src:   `input.missing > 1.0`,
			trace: map[string]string{"input.missing": "error: no such key: missing", "input.missing > 1.0": "error: no such key: missing"},
		},
	} {
		t.Run(tc.src, func(t *testing.T) {
			prg, err := env.Compile(tc.src, true)
			if err != nil {
				t.Fatal(err)
			}
			for name, vars := range map[string]any{"map": facts, "activation": policies.NewActivation(facts)} {
				r := prg.Eval(t.Context(), vars)
				if tc.value != nil && (r.Err != nil || r.Value != tc.value) {
					t.Fatalf("%s: value %v, err %v; want %v", name, r.Value, r.Err, tc.value)
				}
				if got := traceOf(r); fmt.Sprint(got) != fmt.Sprint(tc.trace) {
					t.Fatalf("%s: trace\n got %v\nwant %v", name, got, tc.trace)
				}
			}
		})
	}
}

// TestTracesOfConcurrentEvaluationsStayApart evaluates one compiled
// program from many goroutines at once, each with its own facts: every
// trace must carry its own evaluation's values.
func TestTracesOfConcurrentEvaluationsStayApart(t *testing.T) {
	env := newEnv(t)
	prg, err := env.Compile(`input.amount > 50.0 && input.items.exists(i, i.qty > 1.0)`, true)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for k := range 500 {
				amount := float64(100 + g*1000 + k)
				vars := map[string]any{"input": map[string]any{"amount": amount, "items": []any{map[string]any{"qty": amount}}}}
				r := prg.Eval(t.Context(), vars)
				want := fmt.Sprint(amount)
				if tr := traceOf(r); r.Value != true || tr["input.amount"] != want {
					errs <- fmt.Errorf("goroutine %d, evaluation %d: value %v, trace %v; want input.amount = %s", g, k, r.Value, tr, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCostLimitHoldsOnLargeFacts: the compile-time estimate assumes
// collections of up to MaxCollectionSize items. Facts with larger ones are
// evaluated under the run-time cost limit, which stops an expression that
// would otherwise loop over all of them.
func TestCostLimitHoldsOnLargeFacts(t *testing.T) {
	env := newEnv(t)
	prg, err := env.Compile(`input.items.exists(x, x < 0.0 || x > 1e9 || x == 0.5 || x == 1.5 || x == 2.5 || x == 3.5)`, true)
	if err != nil {
		t.Fatal(err)
	}
	list := func(n int) map[string]any {
		items := make([]any, n)
		for i := range items {
			items[i] = float64(i)
		}
		return map[string]any{"input": map[string]any{"items": items}}
	}
	if r := prg.Eval(t.Context(), list(policies.MaxCollectionSize)); r.Err != nil || r.Value != false {
		t.Fatalf("within the size bounds: value %v, err %v", r.Value, r.Err)
	}
	r := prg.Eval(t.Context(), policies.NewActivation(list(12_000)))
	if r.Err == nil || !strings.Contains(r.Err.Error(), "cost limit") {
		t.Fatalf("12,000 items: value %v, err %v; want the cost limit to stop it", r.Value, r.Err)
	}
	// A long string in the facts also leaves the estimate's bounds.
	long := map[string]any{"input": map[string]any{"note": strings.Repeat("a", 50_000), "items": []any{1.0}}}
	prg, err = env.Compile(`input.note.contains("b") || input.items.exists(x, x < 0.0)`, true)
	if err != nil {
		t.Fatal(err)
	}
	if r := prg.Eval(t.Context(), long); r.Err != nil || r.Value != false {
		t.Fatalf("long string: value %v, err %v", r.Value, r.Err)
	}
}

// An explanation says in words where each signal the policies read stood:
// its detector's reason, once per signal; a signal the decision lacked is
// said to be unavailable.
func TestExplanationGivesSignalReasons(t *testing.T) {
	d := process.Decision{Step: "packing_check", Process: "orders", ProcessVersion: 1,
		Facts: []byte(`{"signals":{"order_volume":{"value":80,"anomalous":true,"reason":"80 starts in the last hour is unusual: expected about 30 for the time (normal 12.0 to 48.0)"}}}`),
		Evaluations: []process.Evaluation{
			{PolicyID: "peak-qa", PolicyVersion: 1, Mode: "active", When: `signals.order_volume.anomalous || calendar.season == "peak"`, Matched: true},
			{PolicyID: "big-orders", PolicyVersion: 2, Mode: "active", When: `signals["amount"].score > 0.9 && signals.order_volume.value > 10`},
			{PolicyID: "small", PolicyVersion: 1, Mode: "active", When: `input.amount < 50`},
		}}
	text := policies.Explain(d).Text
	want := "- signal order_volume: 80 starts in the last hour is unusual: expected about 30 for the time (normal 12.0 to 48.0)\n" +
		"- signal amount: not available at this decision\n"
	if !strings.Contains(text, want) || strings.Count(text, "signal order_volume") != 1 {
		t.Fatalf("explanation:\n%s\nwant it to hold:\n%s", text, want)
	}
}
