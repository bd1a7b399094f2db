package activities_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

const amountsDef = `
name: payouts
version: 1
input:
  properties:
    amount: {type: number}
signals:
  - {name: amount, kind: value, field: amount}
steps:
  - {id: pay, kind: task, task: noop}
  - {id: notify, kind: task, task: noop}
`

func TestValueSignal(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	def, err := process.ParseDefinition([]byte(amountsDef))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := policies.NewEnv()
	acts := &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Detectors: st, Calendar: policies.DefaultCalendar()}
	decide := func(id string, seq int, amount float64) activities.DecideResult {
		t.Helper()
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "run-" + id, Seq: seq, Step: "pay",
			Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": amount}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := decide("i0", 1, 100)
	if s := first.Signals["amount"]; !s.WarmingUp || s.Value != 100 {
		t.Fatalf("first observation %+v", s)
	}
	// Twenty workers decide for twenty instances at once: the shared
	// detector sees every one of them.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			decide(fmt.Sprintf("c%d", i), 1, 100+float64(i%5))
		}()
	}
	wg.Wait()
	for i := range 300 {
		decide(fmt.Sprintf("w%d", i), 1, 100+float64(i%7))
	}
	obs, err := st.Observations(t.Context(), "payouts", "amount", time.Time{})
	if err != nil || len(obs) != 321 {
		t.Fatalf("%d observations, want 321 (none lost): %v", len(obs), err)
	}
	spike := decide("big", 1, 5000)
	if s := spike.Signals["amount"]; !s.Anomalous || s.WarmingUp || s.Score < 0.9 {
		t.Fatalf("outlier %+v", s)
	}
	// A retried decision of the same instance gets the same verdict and is
	// not observed twice.
	again, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: "big", RunID: "run-big", Seq: 2, Step: "notify",
		Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": 5000.0}})
	if err != nil || !again.Signals["amount"].Anomalous {
		t.Fatalf("again %+v %v", again.Signals, err)
	}
	if obs, _ := st.Observations(t.Context(), "payouts", "amount", time.Time{}); len(obs) != 322 {
		t.Fatalf("%d observations after a retry, want 322", len(obs))
	}
}
