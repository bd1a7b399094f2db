package api_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/store"
)

// TestProcessKPIs: a process's cycle time, error rate and review load,
// overall, per period of starts and per definition version, from the
// instances' saved states and their reviews.
func TestProcessKPIs(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	for _, d := range []string{def, "name: p\nversion: 2\nsteps: [{id: a, kind: task, task: noop}]\n"} {
		if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", d); a.status != http.StatusCreated {
			t.Fatalf("register: %d %+v", a.status, a.err)
		}
	}
	pol := "id: big-n\nprocess: p\nwhen: input.n > 5\nactions: [{skip: a}]\n"
	if a := do(t, srv, "POST", "/v1/policies", eng, "application/yaml", pol); a.status != http.StatusCreated {
		t.Fatalf("policy: %d %+v", a.status, a.err)
	}
	ctx := t.Context()
	now := time.Now()
	for _, in := range []struct {
		id      string
		version int
		ago     time.Duration
		status  string
	}{
		{"a", 1, 50 * time.Hour, "completed"},
		{"b", 1, 26 * time.Hour, "failed"},
		{"c", 1, 2 * time.Hour, "waiting_review"},
		{"d", 1, time.Hour, "completed"},
		{"e", 2, 3 * time.Hour, "rejected"},
		{"old", 1, 100 * time.Hour, "completed"}, // before the window
	} {
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: in.id, Process: "p", ProcessVersion: in.version, BusinessKey: in.id, Input: []byte(`{"n":1}`), CreatedAt: now.Add(-in.ago)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SaveInstanceState(ctx, in.id, "run", 1, json.RawMessage(`{"status":"`+in.status+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	raised := now.Add(-50 * time.Minute)
	decided := raised.Add(30 * time.Minute)
	for _, r := range []store.Review{{ID: "r1", InstanceID: "c"}, {ID: "r2", InstanceID: "d"}, {ID: "r3", InstanceID: "d"}} {
		r.RunID, r.Process, r.Step, r.Queue, r.CreatedAt = "run", "p", "a", "q", raised
		if _, err := st.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CloseReview(ctx, store.Review{ID: "r2", Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: "ann", DecidedAt: &decided}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CloseReview(ctx, store.Review{ID: "r3", Status: store.ReviewExpired, Reviewer: "sla", DecidedAt: &decided}); err != nil {
		t.Fatal(err)
	}

	type cycle struct{ Count, P50, P90, Max float64 }
	type kpis struct {
		Started, InProgress, WaitingReview, Completed, Rejected, Failed, Reviews, ReviewsDecided, ReviewsExpired int
		ErrorRate, ReviewRate, ReviewsPerInstance, ReviewWaitSeconds                                             float64
		CycleTime                                                                                                *cycle
	}
	read := func(m any) kpis {
		b, _ := json.Marshal(m)
		var raw map[string]any
		_ = json.Unmarshal(b, &raw)
		var k kpis
		n := func(key string) float64 { f, _ := raw[key].(float64); return f }
		k.Started, k.InProgress, k.WaitingReview, k.Completed, k.Rejected, k.Failed = int(n("started")), int(n("in_progress")), int(n("waiting_review")), int(n("completed")), int(n("rejected")), int(n("failed"))
		k.Reviews, k.ReviewsDecided, k.ReviewsExpired = int(n("reviews")), int(n("reviews_decided")), int(n("reviews_expired"))
		k.ErrorRate, k.ReviewRate, k.ReviewsPerInstance, k.ReviewWaitSeconds = n("error_rate"), n("review_rate"), n("reviews_per_instance"), n("review_wait_seconds")
		if c, ok := raw["cycle_time_seconds"].(map[string]any); ok {
			k.CycleTime = &cycle{Count: c["count"].(float64), P50: c["p50"].(float64), P90: c["p90"].(float64), Max: c["max"].(float64)}
		}
		return k
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 120 } // seconds: the test's own run time
	a := do(t, srv, "GET", "/v1/processes/p/kpis?since=3d&bucket=1d", eng, "", "")
	if a.status != http.StatusOK {
		t.Fatalf("kpis: %d %+v", a.status, a.err)
	}
	all := read(a.body["overall"])
	if all.Started != 5 || all.Completed != 2 || all.Failed != 1 || all.Rejected != 1 || all.InProgress != 1 || all.WaitingReview != 1 || all.ErrorRate != 0.25 {
		t.Fatalf("outcomes: %+v", all)
	}
	// Cycle times of a, b, d, e: 50h, 26h, 1h, 3h.
	if c := all.CycleTime; c == nil || c.Count != 4 || !near(c.P50, 3*3600) || !near(c.Max, 50*3600) {
		t.Fatalf("cycle time: %+v", c)
	}
	if all.Reviews != 3 || all.ReviewRate != 0.4 || all.ReviewsPerInstance != 0.6 || all.ReviewsDecided != 1 || all.ReviewsExpired != 1 || all.ReviewWaitSeconds != 1800 {
		t.Fatalf("review load: %+v", all)
	}
	periods := a.body["periods"].([]any)
	if len(periods) != 3 {
		t.Fatalf("%d periods, want 3", len(periods))
	}
	for i, want := range []int{1, 1, 3} { // a; b; c, d, e
		if p := read(periods[i]); p.Started != want {
			t.Fatalf("period %d: %+v, want %d started", i, p, want)
		}
	}
	if p := read(periods[1]); p.ErrorRate != 1 || p.CycleTime == nil || !near(p.CycleTime.P50, 26*3600) {
		t.Fatalf("the period of the failed instance: %+v", p)
	}
	// The policy's activation is marked, to read the periods around it.
	if ch := a.body["policy_changes"].([]any); len(ch) != 1 || ch[0].(map[string]any)["policy_id"] != "big-n" || ch[0].(map[string]any)["mode"] != "active" {
		t.Fatalf("policy changes: %v", ch)
	}
	versions := a.body["versions"].([]any)
	if len(versions) != 2 || read(versions[1]).Rejected != 1 || read(versions[0]).Started != 4 {
		t.Fatalf("versions: %v", versions)
	}
	// One version only; an instance still running has no cycle time.
	a = do(t, srv, "GET", "/v1/processes/p/kpis?since=3h&bucket=3h&version=1", eng, "", "")
	if k := read(a.body["overall"]); a.status != http.StatusOK || k.Started != 2 || k.CycleTime == nil || k.CycleTime.Count != 1 || !near(k.CycleTime.P50, 3600) {
		t.Fatalf("version 1 in the last 3 hours: %d %+v", a.status, k)
	}
	if a = do(t, srv, "GET", "/v1/processes/p/kpis?since=1m", eng, "", ""); a.status != http.StatusOK || read(a.body["overall"]).CycleTime != nil {
		t.Fatalf("no instance in the window: %d %+v", a.status, a.body)
	}

	for _, tc := range []struct {
		path, field string
		status      int
	}{
		{"/v1/processes/nope/kpis", "", http.StatusNotFound},
		{"/v1/processes/p/kpis?version=9", "", http.StatusNotFound},
		{"/v1/processes/p/kpis?since=soon", "since", http.StatusBadRequest},
		{"/v1/processes/p/kpis?version=0", "version", http.StatusBadRequest},
		{"/v1/processes/p/kpis?since=30d&bucket=1h", "bucket", http.StatusBadRequest},
	} {
		if a := do(t, srv, "GET", tc.path, eng, "", ""); a.status != tc.status || a.err.Field != tc.field {
			t.Errorf("%s: %d %+v, want %d naming %q", tc.path, a.status, a.err, tc.status, tc.field)
		}
	}
	k, secret := api.NewKey("other-eng", store.RoleEngineer, now)
	k.Processes = []string{"other"}
	if err := st.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if a := do(t, srv, "GET", "/v1/processes/p/kpis", secret, "", ""); a.status != http.StatusForbidden {
		t.Fatalf("a key limited to another process: %d", a.status)
	}
}

// With a canary live, the KPIs compare the instances it applies to with the
// rest, from when it began.
func TestProcessKPIsByCanary(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	for _, p := range []struct{ mode, when string }{{"active", "input.n > 5"}, {"shadow", "input.n > 1"}} {
		pol := "id: big-n\nprocess: p\nwhen: " + p.when + "\nactions: [{skip: a}]\n"
		if a := do(t, srv, "POST", "/v1/policies?mode="+p.mode, eng, "application/yaml", pol); a.status != http.StatusCreated {
			t.Fatalf("policy: %d %+v", a.status, a.err)
		}
	}
	before := time.Now().Add(-time.Minute) // started before the canary: in neither cohort
	if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: "old", Process: "p", ProcessVersion: 1, BusinessKey: "old", Input: []byte(`{"n":1}`), CreatedAt: before}); err != nil {
		t.Fatal(err)
	}
	if a := do(t, srv, "POST", "/v1/policies/big-n/activate", eng, "application/json", `{"version":2,"mode":"canary","percent":50}`); a.status != http.StatusOK {
		t.Fatalf("canary: %d %+v", a.status, a.err)
	}
	in := 0
	for i := range 40 {
		id := fmt.Sprintf("p-%d", i)
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{"n":1}`), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		status := "failed"
		if policies.InCanary(id, "big-n", 50) {
			status = "completed"
			in++
		}
		if _, err := st.SaveInstanceState(t.Context(), id, "run", 1, json.RawMessage(`{"status":"`+status+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	a := do(t, srv, "GET", "/v1/processes/p/kpis?since=1h&bucket=1h", eng, "", "")
	cs, _ := a.body["canaries"].([]any)
	if a.status != http.StatusOK || len(cs) != 1 {
		t.Fatalf("canaries: %d %v", a.status, a.body["canaries"])
	}
	c := cs[0].(map[string]any)
	canary, rest := c["canary"].(map[string]any), c["rest"].(map[string]any)
	if c["policy_id"] != "big-n" || c["canary_version"] != 2.0 || c["active_version"] != 1.0 || c["percent"] != 50.0 ||
		canary["started"] != float64(in) || canary["error_rate"] != 0.0 || rest["started"] != float64(40-in) || rest["error_rate"] != 1.0 {
		t.Fatalf("canary cohorts (%d of 40 in the canary): %v", in, c)
	}
	if in == 0 || in == 40 {
		t.Fatalf("%d of 40 instances in a 50%% canary", in)
	}
}
