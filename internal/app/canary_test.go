package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/internal/app"
)

// TestCanaryGuardRollsBack: a policy's new version, tried on a share of
// the instances with a guard, makes them fail; the server's guard rolls it
// back on its own, and the instances after that run the active version.
func TestCanaryGuardRollsBack(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.CanaryGuardEvery = 100 * time.Millisecond })
	def := `
name: guarded
version: 1
input:
  properties:
    n: {type: number}
steps:
  - {id: work, kind: task, task: noop}
catalog:
  - {id: strict, kind: validate, assertions: ["input.n > 100"]}
`
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	for _, p := range []struct{ mode, when string }{{"active", "false"}, {"shadow", "true"}} {
		pol := "id: strictness\nprocess: guarded\nwhen: '" + p.when + "'\nactions: [{add: strict, before: work}]\n"
		if r := call(t, d.base, "POST", "/v1/policies?mode="+p.mode, adminKey, "application/yaml", pol); r.status != http.StatusCreated {
			t.Fatalf("policy: %d %s", r.status, r.raw)
		}
	}
	d.expect(d.call("POST", "/v1/policies/strictness/activate", adminKey, `{"version":2,"mode":"canary","percent":50,"guard":{"max_error_rate_increase":0.2,"min_instances":3}}`), http.StatusOK)
	var failed int
	for i := 0; failed < 3; i++ {
		if i == 40 {
			t.Fatalf("%d of 40 instances failed in a 50%% canary", failed)
		}
		id := d.start("guarded", fmt.Sprint("g-", i), map[string]any{"n": 1})
		if inst := d.waitStatus(id, "completed", "failed"); inst["status"] == "failed" {
			failed++
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := d.expect(d.call("GET", "/v1/policies/strictness", adminKey, ""), http.StatusOK)
		if p.body["changed_by"] == "canary-guard" {
			if p.body["mode"] != "active" || p.body["active_version"] != 1.0 || p.body["shadow_percent"] != nil {
				t.Fatalf("after the guard: %s", p.raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard did not roll the canary back: %s", p.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := d.expect(d.call("GET", "/metrics", "", ""), http.StatusOK).raw; !strings.Contains(m, `adaptflow_canary_verdicts_total{policy="strictness",process="guarded",verdict="rolled_back"} 1`) {
		t.Fatalf("the guard's verdict on /metrics:\n%s", grepLines(m, "canary"))
	}
	// From now on no instance gets the strict step.
	for i := range 6 {
		if inst := d.waitStatus(d.start("guarded", fmt.Sprint("after-", i), map[string]any{"n": 1}), "completed", "failed"); inst["status"] != "completed" {
			t.Fatalf("an instance after the rollback: %v", inst["status"])
		}
	}
}
