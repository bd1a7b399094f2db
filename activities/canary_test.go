package activities_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// A policy's canary version, set in the store, decides for the instances
// in its share and only those: the decision records which version applied
// and the other as its shadow.
func TestDecideAppliesACanaryToItsShare(t *testing.T) {
	acts, st, def := signalActivities(t, ordersDef)
	put := func(src, mode string) {
		t.Helper()
		p, err := process.ParsePolicy([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(p)
		if _, _, err := st.PutPolicy(t.Context(), store.PolicyRecord{ID: p.ID, Process: p.Process, Doc: doc, Digest: src, Author: "eng", CreatedAt: time.Now()}, mode); err != nil {
			t.Fatal(err)
		}
	}
	put("id: pick-skip\nprocess: orders\nwhen: 'false'\nactions: [{skip: pick}]\n", store.ModeActive)
	put("id: pick-skip\nprocess: orders\nwhen: 'true'\nactions: [{skip: pick}]\n", store.ModeShadow)
	if _, err := st.SetPolicyCanary(t.Context(), "pick-skip", 2, 40, "lead", "try it"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	in := 0
	for i := range 50 {
		id := fmt.Sprintf("orders-%d", i)
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "run-" + id, Seq: 1, Step: "pick", Now: now, Started: now})
		if err != nil {
			t.Fatal(err)
		}
		canary := policies.InCanary(id, "pick-skip", 40)
		if canary {
			in++
		}
		if skipped := len(res.Applied) == 1; skipped != canary {
			t.Fatalf("%s: applied %+v, in the canary %v", id, res.Applied, canary)
		}
		d, err := st.Decision(t.Context(), res.DecisionID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Shadow == nil || len(d.Evaluations) != 2 || d.Evaluations[0].Canary != 40 {
			t.Fatalf("%s: decision record %+v", id, d)
		}
	}
	if in == 0 || in == 50 {
		t.Fatalf("%d of 50 instances in a 40%% canary", in)
	}
}

// A definition's SLA is in the facts: instance.sla in seconds, and
// instance.overdue once the instance has run past it, so that a policy can
// hurry a late instance along.
func TestDecideSeesTheSLA(t *testing.T) {
	acts, st, def := signalActivities(t, "name: rush\nversion: 1\nsla: 2h\nsteps:\n  - {id: qa, kind: task, task: noop}\n")
	p, err := process.ParsePolicy([]byte("id: late-no-qa\nprocess: rush\nwhen: instance.overdue && instance.sla > 0.0 && instance.elapsed > 0.8 * instance.sla\nactions: [{skip: qa}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(p)
	if _, _, err := st.PutPolicy(t.Context(), store.PolicyRecord{ID: p.ID, Process: p.Process, Doc: doc, Digest: "1", Author: "eng", CreatedAt: time.Now()}, store.ModeActive); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i, tc := range []struct {
		elapsed time.Duration
		skipped bool
	}{{time.Hour, false}, {2*time.Hour + time.Second, true}} {
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: fmt.Sprint("rush-", i), RunID: fmt.Sprint("run-", i), Seq: 1, Step: "qa", Now: start.Add(tc.elapsed), Started: start})
		if err != nil {
			t.Fatal(err)
		}
		if skipped := len(res.Applied) == 1; skipped != tc.skipped {
			t.Fatalf("after %s: applied %+v", tc.elapsed, res.Applied)
		}
		d, err := st.Decision(t.Context(), res.DecisionID)
		if err != nil {
			t.Fatal(err)
		}
		var facts struct {
			Instance struct {
				SLA     float64 `json:"sla"`
				Overdue bool    `json:"overdue"`
			} `json:"instance"`
		}
		if err := json.Unmarshal(d.Facts, &facts); err != nil || facts.Instance.SLA != 7200 || facts.Instance.Overdue != tc.skipped {
			t.Fatalf("recorded facts %s: %v", d.Facts, err)
		}
	}
}

// A decision's result carries its stored record into the workflow's
// history, from which a store restored from an older backup takes it back;
// a record too large for the history, or one that would take the history
// past its budget, is left out of it, and the decision applies all the
// same.
func TestDecideResultCarriesItsRecord(t *testing.T) {
	acts, st, def := signalActivities(t, "name: notes\nversion: 1\nsteps:\n  - {id: read, kind: task, task: noop}\n")
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		id      string
		note    string
		history int // bytes of history so far
		carried bool
	}{
		{"short", "a short note", 0, true},
		{"long", strings.Repeat("x", activities.RecordInHistoryMax), 0, false},
		{"late", "a short note", activities.RecordsInHistoryBudget - 100, false}, // the history is near its budget
		{"in-time", "a short note", activities.RecordsInHistoryBudget - 10000, true},
	} {
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: tc.id, RunID: "run-" + tc.id, Seq: 1, Step: "read",
			Input: map[string]any{"note": tc.note}, Now: now, Started: now, HistorySize: tc.history})
		if err != nil {
			t.Fatal(err)
		}
		stored, err := st.Decision(t.Context(), res.DecisionID)
		if err != nil {
			t.Fatal(err)
		}
		if (res.Record != nil) != tc.carried {
			t.Fatalf("%s: record carried %v, want %v", tc.id, res.Record != nil, tc.carried)
		}
		if res.Record == nil {
			continue
		}
		// Through the history's encoding, it is the stored record.
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var back activities.DecideResult
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(stored)
		if got, _ := json.Marshal(back.Record); string(got) != string(want) || back.Record.ComputeHash() != stored.Hash {
			t.Fatalf("the record carried:\n%s\nthe stored one:\n%s", got, want)
		}
	}
}
