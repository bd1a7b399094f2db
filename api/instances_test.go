package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/store"
)

func TestListInstances(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	for _, d := range []string{def, strings.Replace(def, "name: p", "name: other", 1)} {
		if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", d); a.status != http.StatusCreated {
			t.Fatalf("register: %d %+v", a.status, a.err)
		}
	}
	ctx := t.Context()
	now := time.Now()
	for i, in := range []struct{ id, process, status string }{
		{"i-done", "p", "completed"},
		{"i-failed", "p", "failed"},
		{"i-waiting", "p", "waiting_review"},
		{"i-new", "p", ""}, // its workflow has saved nothing yet
		{"i-other", "other", "failed"},
	} {
		created := now.Add(time.Duration(i-10) * time.Hour)
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: in.id, Process: in.process, ProcessVersion: 1, BusinessKey: "bk-" + in.id, Input: fmt.Appendf(nil, `{"n":%d}`, i+1), CreatedBy: "erp", CreatedAt: created}); err != nil {
			t.Fatal(err)
		}
		if in.status != "" {
			if _, err := st.SaveInstanceState(ctx, in.id, "run", 1, json.RawMessage(`{"status":"`+in.status+`"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := func(a answer) string {
		t.Helper()
		if a.status != http.StatusOK {
			t.Fatalf("list: %d %+v", a.status, a.err)
		}
		var out []string
		for _, x := range a.body["instances"].([]any) {
			m := x.(map[string]any)
			out = append(out, m["id"].(string)+":"+m["status"].(string))
		}
		return strings.Join(out, " ")
	}
	for query, want := range map[string]string{
		"":                                   "i-new:starting i-waiting:waiting_review i-failed:failed i-done:completed",
		"?status=failed":                     "i-failed:failed",
		"?status=in_progress":                "i-new:starting i-waiting:waiting_review",
		"?status=finished":                   "i-failed:failed i-done:completed",
		"?status=starting":                   "i-new:starting",
		"?business_key=bk-i-done":            "i-done:completed",
		"?since=8h30m":                       "i-new:starting i-waiting:waiting_review",
		"?status=failed&since=30d":           "i-failed:failed",
		"?business_key=nope":                 "",
		"?status=rejected&limit=10":          "",
		"?input.n=2":                         "i-failed:failed",
		"?input.n=3.0&status=waiting_review": "i-waiting:waiting_review",
		"?input.n=3&status=failed":           "",
	} {
		if got := ids(do(t, srv, "GET", "/v1/processes/p/instances"+query, sys, "", "")); got != want {
			t.Errorf("%q: %s, want %s", query, got, want)
		}
	}
	// The list of processes says where each one's instances stand.
	loads := map[string]string{}
	for _, x := range do(t, srv, "GET", "/v1/processes", eng, "", "").body["processes"].([]any) {
		p := x.(map[string]any)
		loads[p["name"].(string)] = fmt.Sprintf("%v in progress, %v waiting for review, %v failed", p["in_progress"], p["waiting_review"], p["failed_24h"])
	}
	if want := map[string]string{"p": "2 in progress, 1 waiting for review, 1 failed", "other": "0 in progress, 0 waiting for review, 1 failed"}; !maps.Equal(loads, want) {
		t.Errorf("the processes' loads: %v, want %v", loads, want)
	}
	// A pick list of the processes counts nothing.
	if list := do(t, srv, "GET", "/v1/processes?counts=false", eng, "", "").body["processes"].([]any); len(list) != 2 || list[0].(map[string]any)["in_progress"] != nil || list[0].(map[string]any)["name"] == nil {
		t.Errorf("the processes without their counts: %v", list)
	}
	if a := do(t, srv, "GET", "/v1/processes?counts=no", eng, "", ""); a.status != http.StatusBadRequest || a.err.Field != "counts" {
		t.Errorf("counts=no: %d %+v", a.status, a.err)
	}
	for query, field := range map[string]string{"?input.x=1": "input.x", "?input.n=two": "input.n", "?input.n=NaN": "input.n"} {
		if a := do(t, srv, "GET", "/v1/processes/p/instances"+query, sys, "", ""); a.status != http.StatusBadRequest || a.err.Field != field {
			t.Errorf("%s: %d %+v, want 400 naming %s", query, a.status, a.err, field)
		}
	}
	// A field a later version dropped still matches the instances that
	// have it, typed by the newest version that declared it.
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", strings.Replace(strings.Replace(def, "version: 1", "version: 2", 1), "input: {required: [n], properties: {n: {type: number}}}", "input: {properties: {m: {type: string}}}", 1)); a.status != http.StatusCreated {
		t.Fatalf("v2 without n: %d %+v", a.status, a.err)
	}
	if got := ids(do(t, srv, "GET", "/v1/processes/p/instances?input.n=2", sys, "", "")); got != "i-failed:failed" {
		t.Errorf("a dropped field: %s", got)
	}
	if a := do(t, srv, "GET", "/v1/processes/p/instances?input.n=two", sys, "", ""); a.status != http.StatusBadRequest || a.err.Field != "input.n" {
		t.Errorf("a dropped field's type: %d %+v", a.status, a.err)
	}
	// A finished instance says when it finished; pages of two follow one
	// another with the cursor.
	first := do(t, srv, "GET", "/v1/processes/p/instances?limit=2", eng, "", "")
	if ids(first) != "i-new:starting i-waiting:waiting_review" || first.body["next"] == nil {
		t.Fatalf("first page: %v", first.body)
	}
	second := do(t, srv, "GET", "/v1/processes/p/instances?limit=2&after="+first.body["next"].(string), eng, "", "")
	if ids(second) != "i-failed:failed i-done:completed" {
		t.Fatalf("second page: %v", second.body)
	}
	done := second.body["instances"].([]any)[1].(map[string]any)
	if done["finished_at"] == nil || done["business_key"] != "bk-i-done" || done["created_by"] != "erp" || done["version"] != 1.0 {
		t.Fatalf("a finished instance: %v", done)
	}

	for query, field := range map[string]string{
		"?status=sleeping": "status", "?limit=0": "limit", "?limit=501": "limit", "?since=soon": "since", "?since=-1h": "since", "?after=garbage": "after",
	} {
		if a := do(t, srv, "GET", "/v1/processes/p/instances"+query, sys, "", ""); a.status != http.StatusBadRequest || a.err.Field != field {
			t.Errorf("%s: %d %+v, want 400 naming %s", query, a.status, a.err, field)
		}
	}
	if a := do(t, srv, "GET", "/v1/processes/nope/instances", sys, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("unknown process: %d %+v", a.status, a.err)
	}
	limited := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"other-erp","role":"system","processes":["other"]}`)
	secret, _ := limited.body["key"].(string)
	if a := do(t, srv, "GET", "/v1/processes/p/instances", secret, "", ""); a.status != http.StatusForbidden {
		t.Fatalf("a key limited to another process: %d %+v", a.status, a.err)
	}
	if got := ids(do(t, srv, "GET", "/v1/processes/other/instances", secret, "", "")); got != "i-other:failed" {
		t.Fatalf("a key limited to its process: %s", got)
	}
	// It does not see the other processes' names either.
	if a := do(t, srv, "GET", "/v1/processes", secret, "", ""); a.status != http.StatusOK || len(a.body["processes"].([]any)) != 1 ||
		a.body["processes"].([]any)[0].(map[string]any)["name"] != "other" {
		t.Fatalf("the processes a limited key lists: %v", a.body)
	}
	if a := do(t, srv, "GET", "/v1/processes/p", secret, "", ""); a.status != http.StatusForbidden {
		t.Fatalf("another process's definition: %d", a.status)
	}
}

// A key limited to processes reads and changes only theirs: their
// definitions, policies, simulations and reports.
func TestProcessLimitedEngineer(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	other := strings.Replace(def, "name: p", "name: other", 1)
	for _, d := range []string{def, other} {
		if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", d); a.status != http.StatusCreated {
			t.Fatalf("register: %d %+v", a.status, a.err)
		}
	}
	pol := func(process, id string) string {
		return "id: " + id + "\nprocess: " + process + "\nwhen: input.n > 5\nactions: [{skip: a}]\n"
	}
	for _, p := range []string{pol("p", "p-skip"), pol("other", "other-skip")} {
		if a := do(t, srv, "POST", "/v1/policies", eng, "application/yaml", p); a.status != http.StatusCreated {
			t.Fatalf("policy: %d %+v", a.status, a.err)
		}
	}
	made := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"other-team","role":"engineer","processes":["other"]}`)
	limited, _ := made.body["key"].(string)
	for _, tc := range []struct {
		method, path, ct, body string
		mine                   bool
	}{
		{"GET", "/v1/processes/p", "", "", false},
		{"GET", "/v1/processes/other", "", "", true},
		{"POST", "/v1/processes", "application/yaml", strings.Replace(def, "version: 1", "version: 2", 1), false},
		{"POST", "/v1/processes", "application/yaml", strings.Replace(other, "version: 1", "version: 2", 1), true},
		{"POST", "/v1/policies", "application/yaml", strings.Replace(pol("p", "p-skip"), "n > 5", "n > 6", 1), false},
		{"POST", "/v1/policies", "application/yaml", strings.Replace(pol("other", "other-skip"), "n > 5", "n > 6", 1), true},
		{"GET", "/v1/policies?process=p", "", "", false},
		{"GET", "/v1/policies?process=other", "", "", true},
		{"GET", "/v1/policies/p-skip", "", "", false},
		{"GET", "/v1/policies/p-skip/versions", "", "", false},
		{"GET", "/v1/policies/p-skip/versions/1", "", "", false},
		{"GET", "/v1/policies/p-skip/diff?from=1&to=2", "", "", false},
		{"POST", "/v1/policies/p-skip/activate", "application/json", `{"version":1}`, false},
		{"POST", "/v1/policies/p-skip/disable", "", "", false},
		{"POST", "/v1/policies/other-skip/activate", "application/json", `{"version":1}`, true},
		{"GET", "/v1/policies/other-skip/versions", "", "", true},
		{"POST", "/v1/policies/simulate", "application/json", `{"process":"p","policies":["` + strings.ReplaceAll(pol("p", "p-skip"), "\n", `\n`) + `"]}`, false},
		{"GET", "/v1/policies/shadow-report?process=p", "", "", false},
		{"GET", "/v1/policies/shadow-report?process=other", "", "", true},
	} {
		a := do(t, srv, tc.method, tc.path, limited, tc.ct, tc.body)
		if refused := a.status == http.StatusForbidden; refused == tc.mine || (tc.mine && a.status >= 300) {
			t.Errorf("%s %s (its own process: %v): %d %+v", tc.method, tc.path, tc.mine, a.status, a.err)
		}
	}
	if st := do(t, srv, "GET", "/v1/policies/p-skip", eng, "", ""); st.body["mode"] != "active" || st.body["latest_version"] != 1.0 {
		t.Fatalf("p's policy changed through a key limited to another process: %v", st.body)
	}
	if a := do(t, srv, "GET", "/v1/policies/nope", limited, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("an unknown policy: %d", a.status)
	}
}

// A key limited to processes reaches the classifiers its processes use,
// and no other.
func TestProcessLimitedKeyAndClassifiers(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	classified := func(process, classifier string) string {
		return "name: " + process + "\nversion: 1\ninput: {properties: {message: {type: string}}}\n" +
			"classify: {name: " + classifier + ", field: message, labels: [refund, question], examples: [{text: refund my card, label: refund}, {text: when do you open, label: question}]}\n" +
			"steps: [{id: a, kind: task, task: noop}]\n"
	}
	for _, d := range []string{classified("returns", "returns-mail"), classified("orders", "orders-mail")} {
		if a := do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", d); a.status != http.StatusCreated {
			t.Fatalf("register: %d %+v", a.status, a.err)
		}
	}
	made := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"returns desk","role":"reviewer","processes":["not-yet-registered","returns"]}`)
	key, _ := made.body["key"].(string)
	example := `{"text":"where is my refund","label":"refund"}`
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/classifiers/returns-mail/examples", example, http.StatusCreated},
		{"GET", "/v1/classifiers/returns-mail/examples", "", http.StatusOK},
		{"GET", "/v1/classifiers/returns-mail/quality", "", http.StatusOK},
		{"POST", "/v1/classifiers/orders-mail/examples", example, http.StatusForbidden},
		{"GET", "/v1/classifiers/orders-mail/examples", "", http.StatusForbidden},
		{"GET", "/v1/classifiers/orders-mail/quality", "", http.StatusForbidden},
		{"GET", "/v1/classifiers/nobodys/examples", "", http.StatusForbidden},
	} {
		ct := ""
		if tc.body != "" {
			ct = "application/json"
		}
		if a := do(t, srv, tc.method, tc.path, key, ct, tc.body); a.status != tc.status {
			t.Errorf("%s %s: %d %+v, want %d", tc.method, tc.path, a.status, a.err, tc.status)
		}
	}
	// An unlimited key reaches them all.
	if a := do(t, srv, "GET", "/v1/classifiers/orders-mail/examples", keys[store.RoleReviewer], "", ""); a.status != http.StatusOK {
		t.Fatalf("an unlimited reviewer: %d", a.status)
	}
}

// A definition's SLA: each instance says when it is due and where it
// stands against its version's SLA; the listing filters by that, and the
// KPIs count how many met it.
func TestInstancesAgainstTheirSLA(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	v1 := "name: rush\nversion: 1\nsla: 1h\nsteps: [{id: a, kind: task, task: noop}]\n"
	v2 := "name: rush\nversion: 2\nsteps: [{id: a, kind: task, task: noop}]\n" // no SLA
	for _, d := range []string{v1, v2} {
		if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", d); a.status != http.StatusCreated {
			t.Fatalf("register: %d %+v", a.status, a.err)
		}
	}
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", strings.Replace(v1, "version: 1\nsla: 1h", "version: 3\nsla: 50s", 1)); a.status != http.StatusBadRequest || a.err.Field != "sla" {
		t.Fatalf("an SLA under a minute: %d %+v", a.status, a.err)
	}
	now := time.Now()
	for _, in := range []struct {
		id      string
		version int
		age     time.Duration
		status  string
	}{
		{"on-track", 1, 10 * time.Minute, "running"},
		{"overdue", 1, 2 * time.Hour, "waiting_review"},
		{"met", 1, 20 * time.Minute, "completed"},
		{"missed", 1, 3 * time.Hour, "rejected"},
		{"canceled", 1, 3 * time.Hour, "canceled"},
		{"no-sla", 2, 3 * time.Hour, "running"},
	} {
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: in.id, Process: "rush", ProcessVersion: in.version, BusinessKey: in.id, Input: []byte(`{}`), CreatedAt: now.Add(-in.age)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SaveInstanceState(t.Context(), in.id, "r", 1, json.RawMessage(`{"status":"`+in.status+`","plan":[]}`)); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]string{"on-track": "on_track", "overdue": "overdue", "met": "met", "missed": "missed", "canceled": "", "no-sla": ""} {
		a := do(t, srv, "GET", "/v1/instances/"+id, sys, "", "")
		if a.status != http.StatusOK || fmt.Sprint(a.body["sla_status"]) != map[bool]string{true: "<nil>", false: want}[want == ""] {
			t.Fatalf("%s: %d sla_status %v, want %q", id, a.status, a.body["sla_status"], want)
		}
		if _, due := a.body["due_at"]; due != (id != "no-sla") {
			t.Fatalf("%s: due_at %v", id, a.body["due_at"])
		}
	}
	if a, want := do(t, srv, "GET", "/v1/instances/overdue", sys, "", ""), now.Add(-time.Hour).UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano); a.body["due_at"] != want {
		t.Fatalf("due at %v, want an hour after its start, %s", a.body["due_at"], want)
	}
	for standing, want := range map[string]string{"on_track": "on-track", "overdue": "overdue", "met": "met", "missed": "missed"} {
		a := do(t, srv, "GET", "/v1/processes/rush/instances?sla="+standing, sys, "", "")
		list, _ := a.body["instances"].([]any)
		if a.status != http.StatusOK || len(list) != 1 || list[0].(map[string]any)["id"] != want || list[0].(map[string]any)["sla_status"] != standing {
			t.Fatalf("sla=%s: %d %v", standing, a.status, a.body)
		}
	}
	if a := do(t, srv, "GET", "/v1/processes/rush/instances?sla=late", sys, "", ""); a.status != http.StatusBadRequest || a.err.Field != "sla" {
		t.Fatalf("sla=late: %d %+v", a.status, a.err)
	}
	do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def)
	if a := do(t, srv, "GET", "/v1/processes/p/instances?sla=overdue", sys, "", ""); a.status != http.StatusBadRequest || a.err.Field != "sla" || !strings.Contains(a.err.Message, "no version of p declares an sla") {
		t.Fatalf("a process without an SLA: %d %+v", a.status, a.err)
	}
	// /metrics counts those running late now, per process with an SLA.
	res, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `adaptflow_instances_overdue{process="rush"} 1`) || strings.Contains(string(body), `adaptflow_instances_overdue{process="p"}`) {
		t.Fatalf("metrics:\n%s", body)
	}
	k := do(t, srv, "GET", "/v1/processes/rush/kpis?since=1d", eng, "", "")
	sla, _ := k.body["overall"].(map[string]any)["sla"].(map[string]any)
	if k.status != http.StatusOK || fmt.Sprint(sla) != "map[met:1 met_rate:0.5 missed:1 on_track:1 overdue:1]" {
		t.Fatalf("kpis: %d %v", k.status, k.body["overall"])
	}
	for _, v := range k.body["versions"].([]any) {
		v := v.(map[string]any)
		if _, has := v["sla"]; has != (v["version"] == 1.0) {
			t.Fatalf("version %v: sla %v", v["version"], v["sla"])
		}
	}
}

// GET /v1/instances?business_key= finds a key's instances in every process
// the caller may see.
func TestFindInstancesByBusinessKey(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	now := time.Now()
	for i, in := range []struct{ id, process string }{{"a-1", "orders"}, {"b-1", "returns"}, {"c-1", "orders"}} {
		key := "ORD-7"
		if in.id == "c-1" {
			key = "ORD-8"
		}
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: in.id, Process: in.process, ProcessVersion: 1, BusinessKey: key, Input: []byte(`{}`), CreatedAt: now.Add(time.Duration(i) * time.Minute),
			State: json.RawMessage(`{"status":"running"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(a answer) string {
		var out []string
		for _, x := range a.body["instances"].([]any) {
			out = append(out, x.(map[string]any)["process"].(string)+"/"+x.(map[string]any)["id"].(string))
		}
		return strings.Join(out, " ")
	}
	if a := do(t, srv, "GET", "/v1/instances?business_key=ORD-7", keys[store.RoleSystem], "", ""); a.status != http.StatusOK || ids(a) != "returns/b-1 orders/a-1" {
		t.Fatalf("by key: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "GET", "/v1/instances?business_key=ORD-7&limit=1", keys[store.RoleSystem], "", ""); a.status != http.StatusOK || ids(a) != "returns/b-1" || a.body["next"] == nil {
		t.Fatalf("a page of one: %d %v", a.status, a.body)
	} else if b := do(t, srv, "GET", "/v1/instances?business_key=ORD-7&limit=1&after="+a.body["next"].(string), keys[store.RoleSystem], "", ""); ids(b) != "orders/a-1" {
		t.Fatalf("the next page: %d %v", b.status, b.body)
	}
	// A key limited to a process sees only its instances.
	created := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"orders desk","role":"system","processes":["orders"]}`)
	if a := do(t, srv, "GET", "/v1/instances?business_key=ORD-7", created.body["key"].(string), "", ""); a.status != http.StatusOK || ids(a) != "orders/a-1" {
		t.Fatalf("a limited key: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "GET", "/v1/instances", keys[store.RoleSystem], "", ""); a.status != http.StatusBadRequest || a.err.Field != "business_key" {
		t.Fatalf("no key: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "GET", "/v1/instances?business_key=ORD-7", keys[store.RoleReviewer], "", ""); a.status != http.StatusForbidden {
		t.Fatalf("a reviewer: %d", a.status)
	}
}

// While a process is paused its new instances are stored and held: the
// starts answer as usual with held set, nothing reaches Temporal (down
// here, so a start that tried would fail), the sweep leaves them, and one
// canceled ends without ever starting.
func TestPauseHoldsNewInstances(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def)
	if a := do(t, srv, "POST", "/v1/processes/nope/pause", eng, "application/json", `{}`); a.status != http.StatusNotFound {
		t.Fatalf("pause of an unknown process: %d", a.status)
	}
	a := do(t, srv, "POST", "/v1/processes/p/pause", eng, "application/json", `{"note":"the warehouse API is down"}`)
	if a.status != http.StatusOK || a.body["paused"] != true || a.body["note"] != "the warehouse API is down" || a.body["changed_by"] != "engineer-key" {
		t.Fatalf("pause: %d %v", a.status, a.body)
	}
	if got := do(t, srv, "GET", "/v1/processes/p", eng, "", ""); got.body["paused"].(map[string]any)["note"] != "the warehouse API is down" {
		t.Fatalf("the process: %v", got.body["paused"])
	}
	one := do(t, srv, "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":"k1","input":{"n":1}}`)
	if one.status != http.StatusCreated || !strings.Contains(fmt.Sprint(one.body["held"]), "process p is paused (by engineer-key") || !strings.Contains(fmt.Sprint(one.body["held"]), "the warehouse API is down") {
		t.Fatalf("a start while paused: %d %v", one.status, one.body)
	}
	batch := do(t, srv, "POST", "/v1/processes/p/instances/batch", sys, "application/json", `{"instances":[{"business_key":"k2","input":{"n":2}},{"business_key":"k1","input":{"n":1}}]}`)
	if batch.status != http.StatusOK || batch.body["created"] != 1.0 || batch.body["existing"] != 1.0 || batch.body["failed"] != 0.0 {
		t.Fatalf("a batch while paused: %d %v", batch.status, batch.body)
	}
	id := one.body["id"].(string)
	if got := do(t, srv, "GET", "/v1/instances/"+id, sys, "", ""); got.body["status"] != "starting" || !strings.Contains(fmt.Sprint(got.body["held"]), "the warehouse API is down; its new instances are held") {
		t.Fatalf("a held instance: %v (held %v)", got.body["status"], got.body["held"])
	}
	// A held instance is canceled without ever starting.
	if got := do(t, srv, "POST", "/v1/instances/"+id+"/cancel", sys, "application/json", `{"reason":"duplicate order"}`); got.status != http.StatusOK || got.body["status"] != "canceled" ||
		got.body["error"] != "canceled by system-key: duplicate order (held while p was paused; it never started)" {
		t.Fatalf("a cancel of a held instance: %d %v", got.status, got.body)
	}
	opts := api.SweepOptions{MinAge: time.Nanosecond}
	opts.Instances, opts.Definitions, opts.Schedules = st, st, st
	if n, err := api.SweepStarts(t.Context(), opts); n != 0 || err != nil {
		t.Fatalf("the sweep took %d held starts (%v)", n, err)
	}
	if a := do(t, srv, "POST", "/v1/processes/p/resume", eng, "", ""); a.status != http.StatusOK || a.body["paused"] != false {
		t.Fatalf("resume: %d %v", a.status, a.body)
	}
	if got := do(t, srv, "GET", "/v1/processes/p", eng, "", ""); got.body["paused"] != nil {
		t.Fatalf("resumed: %v", got.body["paused"])
	}
	pending, err := st.PendingStarts(t.Context(), time.Now(), 10)
	if err != nil || len(pending) != 1 || pending[0].BusinessKey != "k2" {
		t.Fatalf("after the resume, the held instance not canceled is a pending start: %+v %v", pending, err)
	}
	// The instance a process step stored is its step's to start: the API
	// never starts it, nor ends it behind the step's back.
	if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: "p-child", Process: "p", ProcessVersion: 1, BusinessKey: "sub:x:s", Input: []byte(`{"n":3}`),
		CreatedBy: "parent:x/s", CreatedAt: time.Now(), PendingStart: true}); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string]string{"/v1/instances/p-child/cancel": `{}`, "/v1/instances/p-child/events": `{"name":"paid"}`} {
		if got := do(t, srv, "POST", path, sys, "application/json", body); got.status != http.StatusConflict ||
			!strings.Contains(fmt.Sprint(got.body["error"]), "being started by the process step of x") {
			t.Fatalf("%s of a process step's instance not started yet: %d %v", path, got.status, got.body)
		}
	}
}

// A concurrency limit applies from the definition's registration on, in
// the replica that registered it: the start after the one that took the
// only slot is queued, even when the replica had read the limits just
// before.
func TestConcurrencyLimitAppliesAtOnce(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def)
	do(t, srv, "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":"warm","input":{"n":1}}`) // the limits are read
	do(t, srv, "POST", "/v1/processes", eng, "application/yaml", "name: desk\nversion: 1\nconcurrency: 1\nsteps: [{id: a, kind: task, task: noop}]\n")
	do(t, srv, "POST", "/v1/processes/desk/instances", sys, "application/json", `{"business_key":"d1","input":{}}`)
	second := do(t, srv, "POST", "/v1/processes/desk/instances", sys, "application/json", `{"business_key":"d2","input":{}}`)
	if second.status != http.StatusCreated || !strings.Contains(fmt.Sprint(second.body["held"]), "process desk runs 1 instance at once, its concurrency limit: this one is queued") {
		t.Fatalf("the second start: %d %v", second.status, second.body)
	}
	if q, err := st.QueuedCounts(t.Context()); err != nil || q["desk"] != 1 {
		t.Fatalf("queued %v %v", q, err)
	}
	// A process step's instance takes its slot through its step only: a
	// start of its business key finds it, still queued, though a slot is
	// free (d1 ended, d2 was canceled).
	for id, status := range map[string]string{api.InstanceID("desk", "d1"): "completed", api.InstanceID("desk", "d2"): "canceled"} {
		if _, err := st.SaveInstanceState(t.Context(), id, "r", 1, json.RawMessage(`{"status":"`+status+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: "desk-child", Process: "desk", ProcessVersion: 1, BusinessKey: "sub:x:s", Input: []byte(`{}`),
		CreatedBy: "parent:x/s", CreatedAt: time.Now(), PendingStart: true, Queued: true}); err != nil {
		t.Fatal(err)
	}
	do(t, srv, "POST", "/v1/processes/desk/instances", sys, "application/json", `{"business_key":"sub:x:s","input":{}}`)
	if in, err := st.Instance(t.Context(), "desk-child"); err != nil || !in.Queued {
		t.Fatalf("a process step's instance after a start of its key: %+v %v", in, err)
	}
}
