package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

// A schedule's faults are named at registration; a good one shows when it
// next starts an instance.
func TestScheduleRegistration(t *testing.T) {
	srv, keys := newServer(t)
	eng := keys[store.RoleEngineer]
	const head = "name: nightly\nversion: 1\ninput: {required: [n], properties: {n: {type: number}}}\nsteps: [{id: a, kind: task, task: noop}]\n"
	for _, tc := range []struct{ schedules, field string }{
		{`[{id: n, cron: "0 25 * * *", input: {n: 1}}]`, "schedules[0].cron"},
		{`[{id: n, cron: "@sometimes", input: {n: 1}}]`, "schedules[0].cron"},
		{`[{id: n, input: {n: 1}}]`, "schedules[0].cron"},
		{`[{id: n, cron: "@daily", timezone: "Mars/Olympus", input: {n: 1}}]`, "schedules[0].timezone"},
		{`[{id: n, cron: "@daily", input: {n: "one"}}]`, "schedules[0].input.n"},
		{`[{id: n, cron: "@daily"}]`, "schedules[0].input.n"},
		{`[{id: n, cron: "@daily", input: {n: 1}, catch_up: "30d"}]`, "schedules[0].catch_up"},
		{`[{id: n, cron: "@daily", input: {n: 1}}, {id: n, cron: "@hourly", input: {n: 2}}]`, "schedules[1].id"},
	} {
		a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", head+"schedules: "+tc.schedules+"\n")
		if a.status != http.StatusBadRequest || a.err.Field != tc.field {
			t.Errorf("%s: %d %+v, want 400 naming %s", tc.schedules, a.status, a.err, tc.field)
		}
	}
	a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", head+`schedules: [{id: nightly, cron: "0 2 * * *", timezone: Europe/Berlin, input: {n: 1}, catch_up: 24h}]`+"\n")
	if a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	p := do(t, srv, "GET", "/v1/processes/nightly", eng, "", "")
	ss, _ := p.body["schedules"].([]any)
	if len(ss) != 1 {
		t.Fatalf("schedules: %v", p.body)
	}
	s := ss[0].(map[string]any)
	next, err := time.Parse(time.RFC3339, s["next_run"].(string))
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if err != nil || s["id"] != "nightly" || s["timezone"] != "Europe/Berlin" || next.In(berlin).Hour() != 2 || next.Before(time.Now()) || next.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("schedule %v (%v)", s, err)
	}
}

// A schedule is paused and resumed, with who and why; the process shows
// it; an unknown schedule is 404 naming it.
func TestSchedulePause(t *testing.T) {
	srv, keys := newServer(t)
	eng := keys[store.RoleEngineer]
	const d = "name: nightly\nversion: 1\ninput: {properties: {n: {type: number}}}\nsteps: [{id: a, kind: task, task: noop}]\nschedules: [{id: stock, cron: \"@daily\", input: {n: 1}}]\n"
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", d); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	p := do(t, srv, "POST", "/v1/processes/nightly/schedules/stock/pause", eng, "application/json", `{"note":"partner down"}`)
	if p.status != http.StatusOK || p.body["paused"] != true || p.body["note"] != "partner down" || p.body["changed_by"] == nil || p.body["next_run"] != nil {
		t.Fatalf("pause: %d %v %+v", p.status, p.body, p.err)
	}
	got := do(t, srv, "GET", "/v1/processes/nightly", eng, "", "").body["schedules"].([]any)[0].(map[string]any)
	if got["paused"] != true || got["next_run"] != nil || got["note"] != "partner down" {
		t.Fatalf("the process's schedule while paused: %v", got)
	}
	r := do(t, srv, "POST", "/v1/processes/nightly/schedules/stock/resume", eng, "", "")
	if r.status != http.StatusOK || r.body["paused"] != false || r.body["next_run"] == nil {
		t.Fatalf("resume: %d %v %+v", r.status, r.body, r.err)
	}
	if a := do(t, srv, "POST", "/v1/processes/nightly/schedules/weekly/pause", eng, "", ""); a.status != http.StatusNotFound || a.err.Field != "schedule" {
		t.Fatalf("an unknown schedule: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "POST", "/v1/processes/nightly/schedules/stock/pause", keys[store.RoleReviewer], "", ""); a.status != http.StatusForbidden {
		t.Fatalf("a reviewer: %d", a.status)
	}
	audit := do(t, srv, "GET", "/v1/audit?action="+url.QueryEscape("POST /v1/processes/:name/schedules/:schedule/pause"), keys[store.RoleAdmin], "", "")
	if es, _ := audit.body["entries"].([]any); len(es) != 1 || es[0].(map[string]any)["target"] != "name=nightly,schedule=stock" {
		t.Fatalf("audit: %v", audit.body)
	}

	// A pause ends with the schedule: a version without it drops its
	// state, and a later one that brings it back starts it afresh.
	do(t, srv, "POST", "/v1/processes/nightly/schedules/stock/pause", eng, "application/json", `{"note":"partner down"}`)
	without := strings.Replace(strings.Replace(d, "version: 1", "version: 2", 1), "schedules: [{id: stock, cron: \"@daily\", input: {n: 1}}]\n", "", 1)
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", without); a.status != http.StatusCreated {
		t.Fatalf("register v2: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", strings.Replace(d, "version: 1", "version: 3", 1)); a.status != http.StatusCreated {
		t.Fatalf("register v3: %d %+v", a.status, a.err)
	}
	if got := do(t, srv, "GET", "/v1/processes/nightly", eng, "", "").body["schedules"].([]any)[0].(map[string]any); got["paused"] != false || got["next_run"] == nil {
		t.Fatalf("the schedule brought back: %v", got)
	}
}
