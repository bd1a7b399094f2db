package api_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

const benchDef = `
name: orders
version: 1
steps:
  - {id: reserve, kind: task, task: reserve_stock}
  - {id: pack, kind: task, task: qa_check}
  - {id: charge, kind: task, task: charge, mandatory: true}
  - {id: notify, kind: task, task: notify}
catalog:
  - {id: extra_qa, kind: task, task: qa_check}
`

// BenchmarkSimulate100k replays 100,000 recorded decisions (records made by
// the real Decide activity, ten policies, facts of an order) from SQLite
// through a candidate set: the whole path of `adaptflow policy simulate`.
func BenchmarkSimulate100k(b *testing.B) {
	const n = 100_000
	ctx := b.Context()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	env, _ := policies.NewEnv()
	if _, _, err := api.RegisterDefinition(ctx, st, env, []byte(benchDef), "bench"); err != nil {
		b.Fatal(err)
	}
	steps := []string{"reserve", "pack", "charge", "notify"}
	for i := range 10 {
		src := fmt.Sprintf("id: p%d\nprocess: orders\npriority: %d\nwhen: input.amount < %d && input.customer.tier != 'vip'\nactions: [{skip: %s}]\n", i, i, 20+i*10, steps[i%4])
		if i%3 == 0 {
			src = fmt.Sprintf("id: p%d\nprocess: orders\nwhen: calendar.season == 'peak' || input.amount > %d\nactions: [{add: extra_qa, after: %s}]\n", i, 900+i, steps[i%4])
		}
		if _, _, err := api.RegisterPolicy(ctx, st, st, env, []byte(src), "bench", "", store.ModeActive); err != nil {
			b.Fatal(err)
		}
	}
	def, _ := process.ParseDefinition([]byte(benchDef))
	acts := &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Calendar: policies.DefaultCalendar()}
	start := time.Now()
	for i := range n {
		input := map[string]any{
			"order_id": fmt.Sprintf("A-%d", i), "amount": float64(i % 1000), "currency": "EUR",
			"customer": map[string]any{"id": fmt.Sprintf("c-%d", i%5000), "tier": []string{"std", "gold", "vip"}[i%3]},
			"items":    []any{map[string]any{"sku": "X-1", "qty": 2.0}, map[string]any{"sku": "Y-2", "qty": 1.0}},
		}
		id := fmt.Sprintf("i%d", i/4)
		if _, err := acts.Decide(ctx, activities.DecideInput{Definition: def, InstanceID: id, RunID: "r" + id, Seq: i%4 + 1, Step: steps[i%4],
			Now: time.Now(), Started: time.Now(), Input: input}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("recorded %d decisions in %s", n, time.Since(start).Round(time.Millisecond))
	candidate := [][]byte{[]byte("id: p1\nprocess: orders\npriority: 1\nwhen: input.amount < 200 && input.customer.tier != 'vip'\nactions: [{skip: pack}]\n")}
	b.ResetTimer()
	for range b.N {
		rep, err := api.SimulateCandidate(ctx, st, st, st, env, "orders", time.Now().Add(-time.Hour), candidate, policies.SimulationOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Decisions != n || rep.Changed == 0 {
			b.Fatalf("simulated %d decisions, %d changed", rep.Decisions, rep.Changed)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/1000, "s/100k-decisions")
}

// BenchmarkProcessSteps100k reads the steps report of 100,000 instances
// (plans of five steps, one added by a policy in a third of them, one
// skipped in a fifth) through the API from SQLite.
func BenchmarkProcessSteps100k(b *testing.B) {
	const n = 100_000
	srv, keys, st := newServerAt(b, filepath.Join(b.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	ctx := b.Context()
	env, _ := policies.NewEnv()
	if _, _, err := api.RegisterDefinition(ctx, st, env, []byte(benchDef), "bench"); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	for i := range n {
		id := fmt.Sprintf("i%06d", i)
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: "orders", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{"amount":12}`), CreatedAt: t0}); err != nil {
			b.Fatal(err)
		}
		at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano) }
		step := func(id, origin, state string, s int) string {
			return fmt.Sprintf(`{"id":%q,"kind":"task","origin":%q,"state":%q,"started_at":%q,"finished_at":%q,"decided":true}`, id, origin, state, at(s), at(s+1))
		}
		plan := []string{step("reserve", "main", "done", 0), step("pack", "main", map[bool]string{true: "skipped", false: "done"}[i%5 == 0], 1)}
		if i%3 == 0 {
			plan = append(plan, step("extra_qa", "added", "done", 2))
		}
		plan = append(plan, step("charge", "main", "done", 3), step("notify", "main", "done", 4))
		state := `{"status":"completed","process":"orders","version":1,"plan":[` + strings.Join(plan, ",") + `],"results":{"reserve":{"ok":true},"charge":{"charged":12}},"reviews":[]}`
		if _, err := st.SaveInstanceState(ctx, id, "r", 1, json.RawMessage(state)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		a := do(b, srv, "GET", "/v1/processes/orders/steps?since=1d", eng, "", "")
		if a.status != 200 || a.body["instances"] != float64(n) {
			b.Fatalf("steps report: %d %v", a.status, a.body)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "instances/s")
}

// BenchmarkOverdueCount100k counts the instances running past their SLA
// among 100,000 of one process (1,000 of them still running, about half
// of those overdue), as /metrics does at most every 30 s per replica, on
// SQLite.
func BenchmarkOverdueCount100k(b *testing.B) {
	const n = 100_000
	_, _, st := newServerAt(b, filepath.Join(b.TempDir(), "api.db"))
	ctx := b.Context()
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("i%06d", i)
		created := now.Add(-time.Duration(n-i) * time.Second) // the newest a second ago, the oldest 28 hours ago
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: "orders", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: created}); err != nil {
			b.Fatal(err)
		}
		status := "completed"
		if i%100 == 0 {
			status = "running"
		}
		if _, err := st.SaveInstanceState(ctx, id, "r", 1, json.RawMessage(`{"status":"`+status+`"}`)); err != nil {
			b.Fatal(err)
		}
	}
	f := store.InstanceFilter{Process: "orders", SLA: store.SLAOverdue, SLAs: map[int]time.Duration{1: 14 * time.Hour}, Now: now}
	b.ResetTimer()
	for range b.N {
		got, err := st.CountInstances(ctx, f)
		if err != nil || got != 496 { // started more than 14 h (50,400 s) ago: i < 49,600
			b.Fatalf("%d overdue (%v), want 496", got, err)
		}
	}
}
