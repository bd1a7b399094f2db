package policies_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
)

// BenchmarkDecide measures one decision point (facts to actions, no store
// write) with 50 policies for the process, 10 of them relevant to the step,
// and reports the 99th percentile.
func BenchmarkDecide(b *testing.B) {
	env, err := policies.NewEnv()
	if err != nil {
		b.Fatal(err)
	}
	def, err := process.ParseDefinition([]byte(orderDef))
	if err != nil {
		b.Fatal(err)
	}
	var ps []*process.Policy
	steps := []string{"reserve", "pack", "charge", "pack", "reserve"}
	for i := range 50 {
		src := fmt.Sprintf("id: p%02d\nprocess: orders\npriority: %d\nwhen: input.amount > %d.0 && (calendar.season == 'peak' || signals.volume.score > 0.9)\nactions: [{skip: %s}]\n", i, i%7, i*10, steps[i%5])
		p, err := process.ParsePolicy([]byte(src))
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	set, err := env.NewSet(def, ps)
	if err != nil {
		b.Fatal(err)
	}
	facts := policies.Facts{
		Input:    map[string]any{"amount": 250.0, "items": []any{map[string]any{"sku": "X", "qty": 2.0}}},
		Signals:  map[string]policies.Signal{"volume": {Value: 12, Score: 0.2}},
		Calendar: policies.DefaultCalendar().Facts(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)),
	}
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		vars := facts.Vars()
		out := set.Decide(b.Context(), def, vars, policies.Point{Step: "pack"})
		if len(out.Evaluations) != 20 {
			b.Fatalf("%d evaluations", len(out.Evaluations))
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durations[len(durations)*99/100].Microseconds()), "p99-µs")
}
