package api_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

const shopDef = `
name: shop
version: 1
input:
  properties:
    amount: {type: number}
steps:
  - {id: pack, kind: task, task: qa_check}
  - {id: charge, kind: task, task: charge, mandatory: true}
`

func smallPolicy(limit int, wantAt int) string {
	return fmt.Sprintf(`id: small-skip
process: shop
when: input.amount < %d
actions: [{skip: pack}]
tests:
  - name: small is skipped
    step: pack
    facts: {input: {amount: %d}}
    expect: {actions: [{skip: pack}]}
`, limit, wantAt)
}

// record runs the real Decide activity for one instance at step pack.
func record(t *testing.T, acts *activities.Activities, def *process.Definition, id string, amount float64) {
	t.Helper()
	_, err := acts.Decide(t.Context(), activities.DecideInput{
		Definition: def, InstanceID: id, BusinessKey: id, RunID: "run-" + id, Seq: 1, Step: "pack",
		Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": amount},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPolicyLifecycle(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "api.db")
	srv, keys, st := newServerAt(t, dbPath)
	eng, admin := keys[store.RoleEngineer], keys[store.RoleAdmin]
	yaml := "application/yaml"
	if a := do(t, srv, "POST", "/v1/processes", eng, yaml, shopDef); a.status != http.StatusCreated {
		t.Fatalf("register process: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "POST", "/v1/policies", eng, yaml, smallPolicy(50, 20)); a.status != http.StatusCreated {
		t.Fatalf("register v1: %d %+v", a.status, a.err)
	}
	// A version whose own cases fail is refused, naming the case.
	bad := do(t, srv, "POST", "/v1/policies", eng, yaml, smallPolicy(50, 90))
	if bad.status != http.StatusUnprocessableEntity || bad.err.Code != "tests_failed" || !strings.Contains(bad.err.Message, `case "small is skipped": applied nothing`) {
		t.Fatalf("failing tests: %d %+v", bad.status, bad.err)
	}

	env, _ := policies.NewEnv()
	def, _ := process.ParseDefinition([]byte(shopDef))
	acts := &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Calendar: policies.DefaultCalendar()}
	for i, amt := range []float64{10, 100, 150, 300} {
		record(t, acts, def, fmt.Sprintf("i%d", i), amt)
	}

	sim := do(t, srv, "POST", "/v1/policies/simulate", eng, "application/json",
		string(process.JSON(map[string]any{"process": "shop", "since": "1h", "policies": []string{smallPolicy(200, 20)}})))
	if sim.status != http.StatusOK || sim.body["decisions"].(float64) != 4 || sim.body["changed"].(float64) != 2 {
		t.Fatalf("simulate: %d %v", sim.status, sim.body)
	}
	acts0 := sim.body["actions"].([]any)[0].(map[string]any)
	if acts0["action"] != "skip pack" || acts0["before"].(float64) != 1 || acts0["after"].(float64) != 3 {
		t.Fatalf("simulate actions: %v", sim.body["actions"])
	}
	if bad := do(t, srv, "POST", "/v1/policies/simulate", eng, "application/json", `{"process":"shop","policies":["id: x\nprocess: shop\nwhen: nope\nactions: [{skip: pack}]"]}`); bad.status != 400 || bad.err.Field != "policies[0].when" {
		t.Fatalf("simulate with a broken candidate: %d %+v", bad.status, bad.err)
	}

	// Shadow: v2 is evaluated and recorded beside v1, never applied.
	sh := do(t, srv, "POST", "/v1/policies?mode=shadow", eng, yaml, smallPolicy(200, 20))
	if sh.status != http.StatusCreated || sh.body["version"].(float64) != 2 || sh.body["mode"] != "shadow" {
		t.Fatalf("shadow register: %d %v", sh.status, sh.body)
	}
	state := do(t, srv, "GET", "/v1/policies/small-skip", eng, "", "")
	if state.body["active_version"].(float64) != 1 || state.body["shadow_version"].(float64) != 2 {
		t.Fatalf("state: %v", state.body)
	}
	for i, amt := range []float64{10, 100, 150, 300} {
		record(t, acts, def, fmt.Sprintf("s%d", i), amt)
	}
	ds, err := st.Decisions(t.Context(), "s1")
	if err != nil || len(ds) != 1 || len(ds[0].Applied) != 0 || ds[0].Shadow == nil || len(ds[0].Shadow.Applied) != 1 {
		t.Fatalf("shadow decision: %+v %v", ds, err)
	}
	rep := do(t, srv, "GET", "/v1/policies/shadow-report?process=shop&since=1h", eng, "", "")
	pol := rep.body["policies"].([]any)[0].(map[string]any)
	if rep.body["with_shadow"].(float64) != 4 || pol["disagreed"].(float64) != 2 || pol["evaluated"].(float64) != 4 {
		t.Fatalf("shadow report: %v", rep.body)
	}

	// Promote, then roll back.
	for _, v := range []int{2, 1} {
		a := do(t, srv, "POST", "/v1/policies/small-skip/activate", eng, "application/json", fmt.Sprintf(`{"version":%d,"note":"step %d"}`, v, v))
		if a.status != http.StatusOK || a.body["active_version"].(float64) != float64(v) {
			t.Fatalf("activate %d: %d %v", v, a.status, a.body)
		}
	}
	if a := do(t, srv, "POST", "/v1/policies/small-skip/activate", eng, "application/json", `{"version":9}`); a.status != http.StatusNotFound {
		t.Fatalf("activate a missing version: %d", a.status)
	}

	// A canary: v2 for 30% of the instances, beside v1 for the rest.
	for _, bad := range []struct {
		body, field string
		status      int
	}{
		{`{"version":2,"mode":"canary"}`, "percent", http.StatusBadRequest},
		{`{"version":2,"mode":"canary","percent":100}`, "percent", http.StatusBadRequest},
		{`{"version":2,"percent":20}`, "percent", http.StatusBadRequest},
		{`{"version":1,"mode":"canary","percent":20}`, "", http.StatusConflict}, // v1 is active
	} {
		if a := do(t, srv, "POST", "/v1/policies/small-skip/activate", eng, "application/json", bad.body); a.status != bad.status || a.err.Field != bad.field {
			t.Fatalf("%s: %d %+v, want %d naming %q", bad.body, a.status, a.err, bad.status, bad.field)
		}
	}
	if a := do(t, srv, "POST", "/v1/policies/small-skip/activate", eng, "application/json", `{"version":2,"mode":"canary","percent":30,"note":"a third"}`); a.status != http.StatusOK ||
		a.body["active_version"].(float64) != 1 || a.body["shadow_version"].(float64) != 2 || a.body["shadow_percent"].(float64) != 30 {
		t.Fatalf("canary: %d %v", a.status, a.body)
	}
	if st := do(t, srv, "GET", "/v1/policies/small-skip", eng, "", ""); st.body["shadow_percent"].(float64) != 30 || st.body["mode"] != "active" {
		t.Fatalf("state with a canary: %v", st.body)
	}
	// The shadow report keeps the versions apart: v1 is the shadow of the
	// instances in the canary, v2 (as before) of the rest.
	inCanary := 0
	for i := range 20 {
		id := fmt.Sprintf("c%d", i)
		record(t, acts, def, id, 100)
		if policies.InCanary(id, "small-skip", 30) {
			inCanary++
		}
	}
	rep = do(t, srv, "GET", "/v1/policies/shadow-report?process=shop&since=1h", eng, "", "")
	rows := rep.body["policies"].([]any)
	if len(rows) != 2 || inCanary == 0 || inCanary == 20 {
		t.Fatalf("shadow report with a canary (%d of 20 in it): %v", inCanary, rep.body)
	}
	v1, v2 := rows[0].(map[string]any), rows[1].(map[string]any)
	if fmt.Sprint(v1["versions"], v2["versions"]) != "[1] [2]" || v1["evaluated"].(float64) != float64(inCanary) || v2["evaluated"].(float64) != float64(4+20-inCanary) {
		t.Fatalf("shadow report rows with a canary (%d of 20 in it): %v", inCanary, rows)
	}
	live := do(t, srv, "GET", "/v1/policies?process=shop", eng, "", "").body["policies"].([]any)
	if len(live) != 2 || live[1].(map[string]any)["mode"] != "canary" || live[1].(map[string]any)["percent"].(float64) != 30 {
		t.Fatalf("live versions with a canary: %v", live)
	}
	if a := do(t, srv, "POST", "/v1/policies/small-skip/activate", eng, "application/json", `{"version":2,"mode":"shadow"}`); a.status != http.StatusOK || a.body["shadow_percent"] != nil {
		t.Fatalf("back to a plain shadow: %d %v", a.status, a.body)
	}
	vs := do(t, srv, "GET", "/v1/policies/small-skip/versions", eng, "", "")
	if n := len(vs.body["versions"].([]any)); n != 2 {
		t.Fatalf("%d versions", n)
	}
	diff := do(t, srv, "GET", "/v1/policies/small-skip/diff?from=1&to=2", eng, "", "")
	if d, _ := diff.body["diff"].(string); !strings.Contains(d, "- when: input.amount < 50\n+ when: input.amount < 200") {
		t.Fatalf("diff:\n%s", d)
	}

	// The audit chain holds, until a record is altered behind the store's back.
	if v := do(t, srv, "GET", "/v1/audit/verify", admin, "", ""); v.body["ok"] != true || v.body["decisions"].(float64) != 28 {
		t.Fatalf("verify: %v", v.body)
	}
	if v := do(t, srv, "GET", "/v1/audit/verify", eng, "", ""); v.status != http.StatusForbidden {
		t.Fatalf("verify as engineer: %d", v.status)
	}
	raw, err := sql.Open("sqlite", "file:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE decisions SET record = replace(record, '"amount":150', '"amount":15') WHERE instance_id = 's2'`); err != nil {
		t.Fatal(err)
	}
	v := do(t, srv, "GET", "/v1/audit/verify", admin, "", "")
	problems, _ := v.body["problems"].([]any)
	if v.body["ok"] != false || len(problems) != 1 || !strings.Contains(fmt.Sprint(problems[0]), "s2") {
		t.Fatalf("tampered verify: %v", v.body)
	}
	if _, err := raw.Exec(`UPDATE policy_versions SET doc = replace(doc, ' 50', ' 5000') WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	v = do(t, srv, "GET", "/v1/audit/verify", admin, "", "")
	if !strings.Contains(fmt.Sprint(v.body["problems"]), "small-skip@1") {
		t.Fatalf("tampered policy version not reported: %v", v.body)
	}
}
