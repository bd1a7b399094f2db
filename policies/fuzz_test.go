package policies_test

import (
	"encoding/json"
	"testing"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
)

// FuzzCompileAndEvaluate feeds arbitrary conditions and facts to the
// engine: compiling never panics; whatever compiles evaluates within its
// cost limit and yields a bool or a recorded error, never a panic.
func FuzzCompileAndEvaluate(f *testing.F) {
	for _, seed := range []struct{ expr, facts string }{
		{`input.amount > 100`, `{"input":{"amount":150}}`},
		{`calendar.season == "peak" || ("v" in signals && signals.v.anomalous)`, `{"calendar":{"season":"off"},"signals":{"v":{"anomalous":true}}}`},
		{`input.items.exists(i, i.qty > 5)`, `{"input":{"items":[{"qty":7}]}}`},
		{`size(input.name) > 3 && input.name.startsWith("A")`, `{"input":{"name":"Alice"}}`},
		{`input.missing == 1`, `{}`},
		{`1 / input.zero > 0`, `{"input":{"zero":0}}`},
		{`input.a.b.c`, `{"input":{"a":[]}}`},
		{`[1,2,3].map(x, x * input.k).all(y, y < 10)`, `{"input":{"k":2}}`},
	} {
		f.Add(seed.expr, seed.facts)
	}
	env, err := policies.NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	def, err := process.ParseDefinition([]byte(orderDef))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr, facts string) {
		p := &process.Policy{ID: "fuzz", Process: "orders", When: expr, Actions: []process.Action{{Skip: "pack"}}}
		if _, err := env.CompilePolicy(p, def); err != nil {
			return
		}
		if !json.Valid([]byte(facts)) {
			return
		}
		vars, err := policies.VarsFromJSON([]byte(facts))
		if err != nil {
			return
		}
		set, err := env.NewSet(def, []*process.Policy{p})
		if err != nil {
			t.Fatalf("compiled policy does not make a set: %v", err)
		}
		out := set.Decide(t.Context(), def, vars, policies.Point{Step: "pack"})
		if len(out.Evaluations) != 1 {
			t.Fatalf("%d evaluations", len(out.Evaluations))
		}
		ev := out.Evaluations[0]
		if ev.Matched != (len(out.Applied) == 1) {
			t.Fatalf("matched %v but applied %v", ev.Matched, out.Applied)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("evaluation does not encode: %v", err)
		}
	})
}
