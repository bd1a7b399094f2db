package api

import (
	"slices"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

func TestScheduleTimes(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name     string
		sc       process.Schedule
		from, to string
		want     []string
	}{
		{"daily at 02:00 UTC", process.Schedule{Cron: "0 2 * * *"}, "2026-03-28T00:00:00Z", "2026-03-30T03:00:00Z",
			[]string{"2026-03-28T02:00:00Z", "2026-03-29T02:00:00Z", "2026-03-30T02:00:00Z"}},
		// Berlin moves to summer time on 29 March 2026: 02:00 local is 01:00
		// UTC before, 00:00 UTC after; that day has no 02:00, so the start
		// comes as the clocks jump to 03:00 (01:00 UTC), as cron does.
		{"daily at 02:00 in Berlin", process.Schedule{Cron: "0 2 * * *", Timezone: "Europe/Berlin"}, "2026-03-28T00:00:00Z", "2026-03-30T03:00:00Z",
			[]string{"2026-03-28T01:00:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"}},
		{"two skipped times, one start", process.Schedule{Cron: "0 2,3 * * *", Timezone: "Europe/Berlin"}, "2026-03-29T00:30:00Z", "2026-03-29T03:00:00Z",
			[]string{"2026-03-29T01:00:00Z"}},
		// It falls back on 25 October: 02:30 comes twice, and starts once.
		{"a repeated time in Berlin", process.Schedule{Cron: "30 2 * * *", Timezone: "Europe/Berlin"}, "2026-10-24T00:00:00Z", "2026-10-26T03:00:00Z",
			[]string{"2026-10-24T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"}},
		{"a repeated time, looked at from within it", process.Schedule{Cron: "30 2 * * *", Timezone: "Europe/Berlin"}, "2026-10-25T00:40:00Z", "2026-10-25T03:00:00Z",
			[]string{"2026-10-25T01:30:00Z"}},
		{"every 15 minutes across the change", process.Schedule{Cron: "*/15 * * * *", Timezone: "Europe/Berlin"}, "2026-03-29T00:40:00Z", "2026-03-29T01:20:00Z",
			[]string{"2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"}},
		{"daily at 04:00 in Berlin", process.Schedule{Cron: "0 4 * * *", Timezone: "Europe/Berlin"}, "2026-03-28T00:00:00Z", "2026-03-30T03:00:00Z",
			[]string{"2026-03-28T03:00:00Z", "2026-03-29T02:00:00Z", "2026-03-30T02:00:00Z"}},
		{"a zone in the expression", process.Schedule{Cron: "CRON_TZ=Asia/Tokyo 30 9 * * 1"}, "2026-11-20T00:00:00Z", "2026-12-01T00:00:00Z",
			[]string{"2026-11-23T00:30:00Z", "2026-11-30T00:30:00Z"}},
		{"every 6h", process.Schedule{Cron: "@every 6h"}, "2026-01-01T00:00:00Z", "2026-01-01T13:00:00Z",
			[]string{"2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z"}},
		// On a fixed grid, whenever a pass looks back from.
		{"every 6h from any time", process.Schedule{Cron: "@every 6h"}, "2026-01-01T03:17:42Z", "2026-01-01T13:00:00Z",
			[]string{"2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z"}},
		{"every 90s", process.Schedule{Cron: "@every 90s"}, "2026-01-01T00:00:01Z", "2026-01-01T00:04:00Z",
			[]string{"2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"}},
		{"from is left out, to is in", process.Schedule{Cron: "@hourly"}, "2026-01-01T01:00:00Z", "2026-01-01T03:00:00Z",
			[]string{"2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sch, err := parseSchedule(tc.sc)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			due, _ := dueTimes(sch, at(tc.from), at(tc.to), 100)
			for _, d := range due {
				got = append(got, d.UTC().Format(time.RFC3339))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("due %v, want %v", got, tc.want)
			}
		})
	}
	// At most limit, the oldest: a pass that goes on from the last of
	// them gets the rest, and none is passed over.
	sch, _ := parseSchedule(process.Schedule{Cron: "@hourly"})
	from, to := at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z")
	var all []time.Time
	for pass := 1; ; pass++ {
		got, more := dueTimes(sch, from, to, 10)
		all = append(all, got...)
		if !more {
			if pass != 3 || len(got) != 4 {
				t.Fatalf("pass %d made up for %d, want the last 4 in pass 3", pass, len(got))
			}
			break
		}
		if len(got) != 10 {
			t.Fatalf("pass %d made up for %d of more, want 10", pass, len(got))
		}
		from = got[len(got)-1]
	}
	if len(all) != 24 || !all[0].Equal(at("2026-01-01T01:00:00Z")) || !all[23].Equal(to) {
		t.Fatalf("limited passes made up for %d, from %v to %v", len(all), all[0], all[len(all)-1])
	}
	if got := ScheduleKey("nightly", at("2026-03-29T01:00:00+01:00")); got != "schedule:nightly:2026-03-29T00:00:00Z" {
		t.Fatalf("key %q", got)
	}
}

// lookBack: the pass before, else the catch-up, never before the
// definition version was registered.
func TestScheduleLookBack(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name             string
		catchUp          time.Duration
		registered, last time.Time
		want             time.Time
	}{
		{"first pass", 10 * time.Minute, now.Add(-30 * 24 * time.Hour), time.Time{}, now.Add(-10 * time.Minute)},
		{"a long catch-up", 24 * time.Hour, now.Add(-30 * 24 * time.Hour), time.Time{}, now.Add(-24 * time.Hour)},
		{"a new schedule", 24 * time.Hour, now.Add(-time.Hour), time.Time{}, now.Add(-time.Hour)},
		{"the pass before", 24 * time.Hour, now.Add(-30 * 24 * time.Hour), now.Add(-10 * time.Second), now.Add(-10 * time.Second)},
	} {
		if got := lookBack(now, tc.catchUp, tc.registered, tc.last); !got.Equal(tc.want) {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// A schedule's input names the time it was due for.
func TestScheduleInput(t *testing.T) {
	s := process.Schedule{ID: "nightly", Timezone: "Asia/Tokyo", Input: map[string]any{
		"day": "${schedule.date}", "note": "run ${schedule.id} due ${schedule.time}", "n": 3.0,
		"scope": map[string]any{"days": []any{"${schedule.date}", "x"}},
	}}
	got := ScheduleInput(s, time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC))
	want := map[string]any{"day": "2026-11-27", "note": "run nightly due 2026-11-27T02:00:00+09:00", "n": 3.0, "scope": map[string]any{"days": []any{"2026-11-27", "x"}}}
	if string(process.JSON(got)) != string(process.JSON(want)) {
		t.Fatalf("input %s, want %s", process.JSON(got), process.JSON(want))
	}
	if s.Input["day"] != "${schedule.date}" {
		t.Fatal("the schedule's own input was changed")
	}
	if got := ScheduleInput(process.Schedule{ID: "x"}, time.Now()); got == nil || len(got) != 0 {
		t.Fatalf("no input: %v", got)
	}
}
