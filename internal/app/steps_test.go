package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/internal/cli"
)

// TestStepFigures: the steps report says, per step, how often the
// policies added or skipped it, how it ended and how long it took.
func TestStepFigures(t *testing.T) {
	d := startDev(t, t.TempDir(), "")
	def := `
name: fulfil
version: 1
input:
  properties:
    amount: {type: number}
steps:
  - {id: pick, kind: task, task: noop}
  - {id: pack, kind: task, task: noop}
  - {id: cool, kind: wait, duration: 1s}
  - {id: ship, kind: task, task: noop}
catalog:
  - {id: extra_qa, kind: task, task: noop}
`
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	for _, pol := range []string{
		"id: qa-big\nprocess: fulfil\nwhen: input.amount > 100\nactions: [{add: extra_qa, before: ship}]\n",
		"id: skip-pack-small\nprocess: fulfil\nwhen: input.amount < 10\nactions: [{skip: pack}]\n",
	} {
		if r := call(t, d.base, "POST", "/v1/policies", adminKey, "application/yaml", pol); r.status != http.StatusCreated {
			t.Fatalf("policy: %d %s", r.status, r.raw)
		}
	}
	for i, amount := range []int{5, 50, 500, 700} {
		d.waitStatus(d.start("fulfil", fmt.Sprint("f-", i), map[string]any{"amount": amount}), "completed")
	}
	r := d.expect(d.call("GET", "/v1/processes/fulfil/steps?since=1h", adminKey, ""), http.StatusOK)
	var rep struct {
		Instances int
		Adapted   struct{ Added, Skipped int }
		Steps     []struct {
			ID                   string
			InPlan               int `json:"in_plan"`
			Done, Skipped, Added int
			AddedBy              map[string]int `json:"added_by"`
			SkippedBy            map[string]int `json:"skipped_by"`
			Duration             *struct {
				Count    int
				P50, Max float64
			} `json:"duration_seconds"`
		}
	}
	if err := json.Unmarshal([]byte(r.raw), &rep); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range rep.Steps {
		got = append(got, fmt.Sprintf("%s:%d/%d/%d/%d", s.ID, s.InPlan, s.Done, s.Skipped, s.Added))
	}
	if rep.Instances != 4 || rep.Adapted.Added != 2 || rep.Adapted.Skipped != 1 || strings.Join(got, " ") != "pick:4/4/0/0 pack:4/3/1/0 cool:4/4/0/0 extra_qa:2/2/0/2 ship:4/4/0/0" {
		t.Fatalf("steps report: %d instances, adapted %+v, steps %q", rep.Instances, rep.Adapted, strings.Join(got, " "))
	}
	for _, s := range rep.Steps {
		switch s.ID {
		case "extra_qa":
			if s.AddedBy["qa-big"] != 2 {
				t.Fatalf("extra_qa added by %v", s.AddedBy)
			}
		case "pack":
			if s.SkippedBy["skip-pack-small"] != 1 {
				t.Fatalf("pack skipped by %v", s.SkippedBy)
			}
		case "cool":
			if s.Duration == nil || s.Duration.Count != 4 || s.Duration.P50 < 1 || s.Duration.Max > 30 {
				t.Fatalf("the 1s wait's durations: %+v", s.Duration)
			}
		}
	}
	var out, errOut bytes.Buffer
	if code := cli.Process(t.Context(), []string{"steps", "fulfil", "--since", "1h", "--server", d.base, "--api-key", adminKey}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "4 instances started in the last 1h; a policy added steps to 2 and skipped steps of 1") || !regexp.MustCompile(`(?m)^\s*extra_qa\s+task\s+2\s+2\s+0\s+2\s+0\s+0\s+0\s`).MatchString(out.String()) {
		t.Fatalf("adaptflow process steps: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	d.expect(d.call("GET", "/v1/processes/fulfil/steps?since=soon", adminKey, ""), http.StatusBadRequest)
	d.expect(d.call("GET", "/v1/processes/nope/steps", adminKey, ""), http.StatusNotFound)
	d.expect(d.call("GET", "/v1/processes/fulfil/steps", d.newKey("system"), ""), http.StatusForbidden)
}
