package api_test

import (
	"net/http"
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
