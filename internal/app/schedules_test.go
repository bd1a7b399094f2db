package app_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/internal/app"
)

// TestScheduleStartsInstances: a process whose definition has a schedule
// gets an instance at each due time, with the schedule's input and a
// business key naming the time, and runs it; a new version without the
// schedule stops it.
func TestScheduleStartsInstances(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.ScheduleEvery = 200 * time.Millisecond })
	const head = "name: tick\ninput: {required: [region], properties: {region: {type: string}, due: {type: string}}}\nsteps: [{id: count, kind: task, task: noop}]\n"
	d.expect(call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "version: 1\n"+head+`schedules: [{id: stock, cron: "@every 1s", input: {region: north, due: "${schedule.time}"}}]`+"\n"), http.StatusCreated)
	if p := d.expect(d.call("GET", "/v1/processes/tick", adminKey, ""), http.StatusOK); !strings.Contains(p.raw, `"next_run"`) {
		t.Fatalf("the process's schedules: %s", p.raw)
	}
	list := func() []any {
		r := d.expect(d.call("GET", "/v1/processes/tick/instances?limit=500", adminKey, ""), http.StatusOK)
		return r.body["instances"].([]any)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(list()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d scheduled instances after 30 s, want 3", len(list()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := map[string]bool{}
	for _, it := range list() {
		in := it.(map[string]any)
		key := in["business_key"].(string)
		if !strings.HasPrefix(key, "schedule:stock:") || seen[key] {
			t.Fatalf("business key %q (twice: %v)", key, seen[key])
		}
		seen[key] = true
		if _, err := time.Parse(time.RFC3339, strings.TrimPrefix(key, "schedule:stock:")); err != nil {
			t.Fatalf("business key %q: %v", key, err)
		}
		got := d.waitStatus(in["id"].(string), "completed")
		if input, _ := got["input"].(map[string]any); got["created_by"] != "scheduler" || input["region"] != "north" || "schedule:stock:"+input["due"].(string) != key {
			t.Fatalf("scheduled instance: %v", got)
		}
	}

	if m := regexp.MustCompile(`adaptflow_scheduled_starts_total\{process="tick",schedule="stock"\} (\d+)`).FindStringSubmatch(d.call("GET", "/metrics", "", "").raw); m == nil || m[1] == "0" {
		t.Fatal("adaptflow_scheduled_starts_total counts no start")
	}

	passes := func() int {
		m := regexp.MustCompile(`adaptflow_background_task_runs_total\{outcome="ok",task="scheduler"\} (\d+)`).FindStringSubmatch(d.call("GET", "/metrics", "", "").raw)
		if m == nil {
			t.Fatal("no scheduler passes counted")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// A pass under way may have read what was before a change; the second
	// to end after it began after it.
	twoPasses := func() {
		t.Helper()
		for before, deadline := passes(), time.Now().Add(30*time.Second); passes() < before+2; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the scheduler made no pass in 30 s")
			}
		}
	}

	// Paused, it starts nothing; resumed, it starts again, and makes up
	// for nothing of its pause.
	d.expect(d.call("POST", "/v1/processes/tick/schedules/stock/pause", adminKey, `{"note":"stock count moved"}`), http.StatusOK)
	twoPasses()
	paused := len(list())
	time.Sleep(2 * time.Second) // two due times
	if m := len(list()); m != paused {
		t.Fatalf("%d instances started while paused", m-paused)
	}
	resumed := d.expect(d.call("POST", "/v1/processes/tick/schedules/stock/resume", adminKey, ""), http.StatusOK)
	resumedAt, _ := time.Parse(time.RFC3339Nano, resumed.body["changed_at"].(string))
	for deadline := time.Now().Add(30 * time.Second); len(list()) <= paused; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no instance since the schedule was resumed")
		}
	}
	all := list()
	for _, it := range all[:len(all)-paused] { // newest first
		due, _ := time.Parse(time.RFC3339, strings.TrimPrefix(it.(map[string]any)["business_key"].(string), "schedule:stock:"))
		if due.Before(resumedAt.Truncate(time.Second)) {
			t.Fatalf("an instance due at %s, before the schedule was resumed at %s", due, resumedAt)
		}
	}

	// Version 2 has no schedule: once a pass has read it, none starts.
	d.expect(call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "version: 2\n"+head), http.StatusCreated)
	twoPasses()
	n := len(list())
	time.Sleep(2 * time.Second) // two due times of the old schedule
	if m := len(list()); m != n {
		t.Fatalf("%d instances started after the schedule was taken out", m-n)
	}
}
