package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/store"
)

// A canary's guard rolls it back when its instances fail more often than
// the rest by more than it allows, once enough have finished; and promotes
// one that ran its time without that. What it did is in the policy's
// history, by canary-guard, with the figures.
func TestCanaryGuard(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	for _, id := range []string{"risky", "good"} {
		for _, p := range []struct{ mode, when string }{{"active", "input.n > 5"}, {"shadow", "input.n > 1"}} {
			pol := "id: " + id + "\nprocess: p\nwhen: " + p.when + "\nactions: [{skip: a}]\n"
			if a := do(t, srv, "POST", "/v1/policies?mode="+p.mode, eng, "application/yaml", pol); a.status != http.StatusCreated {
				t.Fatalf("policy: %d %+v", a.status, a.err)
			}
		}
	}
	// Refused guards name their field.
	for _, tc := range []struct{ body, field string }{
		{`{"version":2,"mode":"canary","percent":30,"guard":{}}`, "guard"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"promote_after":"soon"}}`, "guard.promote_after"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"max_error_rate_increase":2}}`, "guard.max_error_rate_increase"},
		{`{"version":2,"mode":"shadow","guard":{"promote_after":"1d"}}`, "guard"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"promote_after":"1d","confidence":0.95}}`, "guard.confidence"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"max_error_rate_increase":0.1,"decide_after":"never"}}`, "guard.decide_after"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"max_error_rate_increase":0.1,"promote_after":"2d","decide_after":"1d"}}`, "guard.decide_after"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"max_cycle_time_increase":-0.1}}`, "guard.max_cycle_time_increase"},
		{`{"version":2,"mode":"canary","percent":30,"guard":{"max_error_rate_increase":0.1,"confidence":0.2}}`, "guard.confidence"},
	} {
		if a := do(t, srv, "POST", "/v1/policies/risky/activate", eng, "application/json", tc.body); a.status != http.StatusBadRequest || a.err.Field != tc.field {
			t.Errorf("%s: %d %+v, want 400 naming %s", tc.body, a.status, a.err, tc.field)
		}
	}
	a := do(t, srv, "POST", "/v1/policies/risky/activate", eng, "application/json", `{"version":2,"mode":"canary","percent":30,"guard":{"max_error_rate_increase":0.1,"min_instances":10}}`)
	if a.status != http.StatusOK || a.body["canary_guard"].(map[string]any)["min_instances"] != 10.0 {
		t.Fatalf("a guarded canary: %d %v %+v", a.status, a.body, a.err)
	}
	if a := do(t, srv, "POST", "/v1/policies/good/activate", eng, "application/json", `{"version":2,"mode":"canary","percent":30,"guard":{"max_error_rate_increase":0.1,"promote_after":"1h"}}`); a.status != http.StatusOK {
		t.Fatalf("a guarded canary: %d %+v", a.status, a.err)
	}
	if p := do(t, srv, "GET", "/v1/policies/good", eng, "", ""); p.body["canary_guard"].(map[string]any)["min_instances"] != 20.0 {
		t.Fatalf("the guard's default least number of instances: %v", p.body)
	}

	// Instances: in risky's canary a third fail, elsewhere none; good's
	// canary fails no more than the rest. Only finished ones are judged.
	opts := api.Options{Lifecycle: st, Instances: st, Definitions: st}
	add := func(from, to int, status func(id string) string) {
		t.Helper()
		for i := from; i < to; i++ {
			id := fmt.Sprintf("i-%03d", i)
			if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{"n":1}`), CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.SaveInstanceState(t.Context(), id, "run", 1, json.RawMessage(`{"status":"`+status(id)+`"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	flaky := func(id string) string {
		if policies.InCanary(id, "risky", 30) && id[len(id)-1]%3 == 0 {
			return "failed"
		}
		return "completed"
	}
	add(0, 20, func(string) string { return "running" })
	if vs, err := api.GuardCanaries(t.Context(), opts, time.Now()); err != nil || len(vs) != 0 {
		t.Fatalf("with nothing finished: %+v %v", vs, err)
	}
	// The policy's page says what the guard waits for, and then what it is
	// about to do.
	if p := do(t, srv, "GET", "/v1/policies/risky", eng, "", ""); p.body["canary_judgment"].(map[string]any)["verdict"] != "watching" ||
		!strings.Contains(p.body["canary_judgment"].(map[string]any)["why"].(string), "0 of its instances have finished; it is judged once 10 have") {
		t.Fatalf("risky's judgment with nothing finished: %v", p.body["canary_judgment"])
	}
	add(20, 120, flaky)
	if p := do(t, srv, "GET", "/v1/policies/risky", eng, "", ""); p.body["canary_judgment"].(map[string]any)["verdict"] != "rolling_back" ||
		!strings.Contains(p.body["canary_judgment"].(map[string]any)["why"].(string), "more than 10 points above") {
		t.Fatalf("risky's judgment: %v", p.body["canary_judgment"])
	}
	if p := do(t, srv, "GET", "/v1/policies/good", eng, "", ""); p.body["canary_judgment"].(map[string]any)["verdict"] != "watching" ||
		!regexp.MustCompile(`^within its bounds, \d+ of its instances finished; promoted in (59m|1h), 1h after it began$`).MatchString(p.body["canary_judgment"].(map[string]any)["why"].(string)) {
		t.Fatalf("good's judgment: %v", p.body["canary_judgment"])
	}
	vs, err := api.GuardCanaries(t.Context(), opts, time.Now())
	if err != nil || len(vs) != 1 || vs[0].PolicyID != "risky" || vs[0].Verdict != api.CanaryRolledBack || !strings.Contains(vs[0].Why, "more than 10 points above") {
		t.Fatalf("verdicts %+v, %v; want risky rolled back", vs, err)
	}
	p := do(t, srv, "GET", "/v1/policies/risky", eng, "", "")
	if p.body["mode"] != "active" || p.body["shadow_version"] != 2.0 || p.body["shadow_percent"] != nil || p.body["canary_guard"] != nil || p.body["changed_by"] != api.CanaryGuardAuthor {
		t.Fatalf("risky after its rollback: %v", p.body)
	}
	k := do(t, srv, "GET", "/v1/processes/p/kpis?since=1h&bucket=1h", eng, "", "")
	var notes []string
	for _, c := range k.body["policy_changes"].([]any) {
		if c := c.(map[string]any); c["author"] == api.CanaryGuardAuthor {
			notes = append(notes, c["note"].(string))
		}
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "canary v2 (30%) rolled back by its guard: error rate") {
		t.Fatalf("the guard's changes: %q", notes)
	}

	// good's canary has had no breach; once its hour is up it is promoted.
	if vs, err := api.GuardCanaries(t.Context(), opts, time.Now()); err != nil || len(vs) != 0 {
		t.Fatalf("before its time: %+v %v", vs, err)
	}
	vs, err = api.GuardCanaries(t.Context(), opts, time.Now().Add(61*time.Minute))
	if err != nil || len(vs) != 1 || vs[0].PolicyID != "good" || vs[0].Verdict != api.CanaryPromoted {
		t.Fatalf("verdicts %+v, %v; want good promoted", vs, err)
	}
	if p := do(t, srv, "GET", "/v1/policies/good", eng, "", ""); p.body["mode"] != "active" || p.body["active_version"] != 2.0 || p.body["shadow_version"] != 0.0 {
		t.Fatalf("good after its promotion: %v", p.body)
	}
	// Nothing is left to guard.
	if vs, err := api.GuardCanaries(t.Context(), opts, time.Now().Add(2*time.Hour)); err != nil || len(vs) != 0 {
		t.Fatalf("after both: %+v %v", vs, err)
	}
}
