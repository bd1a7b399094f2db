package policies_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
)

const orderDef = `
name: orders
version: 1
input:
  required: [amount]
  properties:
    amount: {type: number}
steps:
  - {id: reserve, kind: task, task: reserve_stock}
  - {id: pack, kind: task, task: qa_check}
  - {id: charge, kind: task, task: charge, mandatory: true}
catalog:
  - {id: extra_qa, kind: task, task: qa_check}
`

func mustDef(t *testing.T, src string) *process.Definition {
	t.Helper()
	d, err := process.ParseDefinition([]byte(src))
	if err != nil {
		t.Fatalf("parse definition: %v", err)
	}
	return d
}

func mustPolicy(t *testing.T, src string) *process.Policy {
	t.Helper()
	p, err := process.ParsePolicy([]byte(src))
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	return p
}

func newEnv(t *testing.T) *policies.Env {
	t.Helper()
	env, err := policies.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func vars(t *testing.T, f policies.Facts) map[string]any {
	t.Helper()
	return f.Vars()
}

func TestDecideResolvesAndGuards(t *testing.T) {
	env := newEnv(t)
	def := mustDef(t, orderDef)
	ps := []*process.Policy{
		mustPolicy(t, "id: peak-qa\nprocess: orders\npriority: 10\nwhen: calendar.season == \"peak\" || input.amount > 1000.0\nactions:\n  - {add: extra_qa, after: pack}\n"),
		mustPolicy(t, "id: also-qa\nprocess: orders\nwhen: \"true\"\nactions:\n  - {add: extra_qa, before: pack}\n"),
		mustPolicy(t, "id: small-skip\nprocess: orders\nwhen: input.amount < 50\nactions:\n  - {skip: pack}\n"),
		mustPolicy(t, "id: never-charge\nprocess: orders\nwhen: \"true\"\nactions:\n  - {skip: charge}\n"),
	}
	set, err := env.NewSet(def, ps)
	if err != nil {
		t.Fatal(err)
	}
	cal := policies.DefaultCalendar()
	facts := policies.Facts{Input: map[string]any{"amount": 20}, Calendar: cal.Facts(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))}

	t.Run("pack", func(t *testing.T) {
		out := set.Decide(t.Context(), def, vars(t, facts), policies.Point{Step: "pack"})
		var applied []string
		for _, a := range out.Applied {
			applied = append(applied, a.PolicyID+":"+a.Action.String())
		}
		want := []string{"peak-qa:add extra_qa after pack", "small-skip:skip pack"}
		if strings.Join(applied, ",") != strings.Join(want, ",") {
			t.Fatalf("applied = %v, want %v", applied, want)
		}
		if len(out.Rejected) != 1 || out.Rejected[0].PolicyID != "also-qa" || !strings.Contains(out.Rejected[0].Reason, "added at most once") {
			t.Fatalf("rejected = %+v", out.Rejected)
		}
		if len(out.Evaluations) != 3 {
			t.Fatalf("evaluated %d policies at pack, want 3 (never-charge is for charge)", len(out.Evaluations))
		}
		ev := out.Evaluations[0]
		if ev.PolicyID != "peak-qa" || !ev.Matched {
			t.Fatalf("first evaluation = %+v", ev)
		}
		trace := map[string]string{}
		for _, s := range ev.Trace {
			trace[s.Expr] = string(process.JSON(s.Value))
		}
		if trace[`calendar.season == "peak"`] != "true" || trace["calendar.season"] != `"peak"` {
			t.Fatalf("trace = %v", trace)
		}
		// || was decided by its left side: the right side had no say.
		if _, ok := trace["input.amount > 1000.0"]; ok {
			t.Fatalf("short-circuited branch in trace: %v", trace)
		}
	})
	t.Run("mandatory", func(t *testing.T) {
		out := set.Decide(t.Context(), def, vars(t, facts), policies.Point{Step: "charge"})
		if len(out.Applied) != 0 || len(out.Rejected) != 1 || !strings.Contains(out.Rejected[0].Reason, "mandatory") {
			t.Fatalf("outcome = %+v", out)
		}
	})
	t.Run("already added", func(t *testing.T) {
		out := set.Decide(t.Context(), def, vars(t, facts), policies.Point{Step: "pack", Added: []string{"extra_qa"}})
		for _, a := range out.Applied {
			if a.Action.Kind() == process.ActionAdd {
				t.Fatalf("added twice: %+v", out.Applied)
			}
		}
	})
}

func TestMissingFactIsRecordedError(t *testing.T) {
	env := newEnv(t)
	def := mustDef(t, orderDef)
	for _, tc := range []struct {
		onError string
		matched bool
	}{{"", false}, {"match", true}} {
		p := mustPolicy(t, "id: p\nprocess: orders\nwhen: input.customer_tier == \"gold\"\non_error: "+tc.onError+"\nactions:\n  - {skip: pack}\n")
		if tc.onError == "" {
			p.OnError = ""
		}
		set, err := env.NewSet(def, []*process.Policy{p})
		if err != nil {
			t.Fatal(err)
		}
		out := set.Decide(t.Context(), def, vars(t, policies.Facts{Input: map[string]any{"amount": 1}}), policies.Point{Step: "pack"})
		ev := out.Evaluations[0]
		if ev.Matched != tc.matched || !strings.Contains(ev.Error, "customer_tier") {
			t.Fatalf("on_error %q: evaluation = %+v", tc.onError, ev)
		}
	}
}

func TestCompileErrorsNameFieldAndPosition(t *testing.T) {
	env := newEnv(t)
	def := mustDef(t, orderDef)
	for name, tc := range map[string]struct{ src, want string }{
		"undeclared":   {"id: p\nprocess: orders\nwhen: singals.x > 1\nactions: [{skip: pack}]\n", "when: 1:1: undeclared reference to 'singals'"},
		"syntax":       {"id: p\nprocess: orders\nwhen: input.amount >\nactions: [{skip: pack}]\n", "when: 1:"},
		"not bool":     {"id: p\nprocess: orders\nwhen: input.amount + 1\nactions: [{skip: pack}]\n", "when: expression yields"},
		"unknown step": {"id: p\nprocess: orders\nwhen: \"true\"\nactions: [{skip: pakc}]\n", `actions[0].skip: unknown step "pakc"`},
		"not catalog":  {"id: p\nprocess: orders\nwhen: \"true\"\nactions: [{add: pack, after: reserve}]\n", `actions[0].add: step "pack" is not in the catalog`},
	} {
		t.Run(name, func(t *testing.T) {
			p := mustPolicy(t, tc.src)
			_, err := env.CompilePolicy(p, def)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRenderTemplates(t *testing.T) {
	env := newEnv(t)
	v := vars(t, policies.Facts{Input: map[string]any{"order_id": "A-1", "amount": 12.5}})
	got, err := env.Render(t.Context(), map[string]any{
		"id":     "${input.order_id}",
		"amount": "${input.amount}",
		"note":   "order ${input.order_id} for ${input.amount}",
		"nested": []any{"${{'k': input.order_id}}"},
	}, v)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"amount":12.5,"id":"A-1","nested":[{"k":"A-1"}],"note":"order A-1 for 12.5"}`
	if string(b) != want {
		t.Fatalf("rendered %s, want %s", b, want)
	}
}

func TestCalendarSeasons(t *testing.T) {
	cal := policies.Calendar{Seasons: []policies.Season{{Name: "winter", From: "12-01", To: "02-28"}, {Name: "peak", From: "11-15", To: "12-31"}}, Default: "off"}
	for date, want := range map[string]string{"2026-01-10": "winter", "2026-12-24": "winter", "2026-11-20": "peak", "2026-07-01": "off"} {
		tm, _ := time.Parse("2006-01-02", date)
		if got := cal.Facts(tm).Season; got != want {
			t.Errorf("%s: season %q, want %q", date, got, want)
		}
	}
}

func TestLimitsRefusedAtCompile(t *testing.T) {
	env := newEnv(t)
	for name, tc := range map[string]struct {
		src  string
		want string
	}{
		"nested loops": {"input.items.exists(a, input.items.exists(b, input.items.exists(c, a == b && b == c)))", "over the limit"},
		"too long":     {"input.amount > 1.0" + strings.Repeat(" || input.amount > 1.0", 300), "size"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := env.Compile(tc.src, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := env.Compile("input.items.exists(i, i.qty > 5)", true); err != nil {
		t.Fatalf("a single loop over the facts must compile: %v", err)
	}
}

// TestVarsMatchRecordedFacts pins the promise simulation rests on: the
// variables of a live decision equal those decoded from its recorded facts.
func TestVarsMatchRecordedFacts(t *testing.T) {
	f := policies.Facts{
		Input:          map[string]any{"amount": 12, "items": []any{map[string]any{"qty": int64(2)}}, "tier": "gold"},
		Process:        policies.ProcessFacts{Name: "orders", Version: 3},
		Instance:       policies.InstanceFacts{ID: "i", BusinessKey: "b", Step: "pack", StepsDone: []string{"reserve"}, Elapsed: 1.5, Vars: map[string]any{"route": "x"}},
		Steps:          map[string]any{"reserve": map[string]any{"units": 3.0}},
		Signals:        map[string]policies.Signal{"v": {Value: 4, Score: 0.5, Anomalous: true, Recurring: true, Baseline: policies.Baseline{Expected: 2, High: 3}, Reason: "r"}},
		Classification: map[string]any{"label": "refund", "confidence": 0.9},
		Calendar:       policies.DefaultCalendar().Facts(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)),
		Reviews:        []policies.ReviewFact{{ID: "rv", Queue: "q", Step: "pack", Verdict: "approve"}},
	}
	live := f.Vars()
	raw, err := f.JSON()
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := policies.VarsFromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(live, replayed) {
		t.Fatalf("live vars differ from recorded ones:\nlive     %#v\nreplayed %#v", live, replayed)
	}
	var empty policies.Facts
	live = empty.Vars()
	raw, _ = empty.JSON()
	replayed, _ = policies.VarsFromJSON(raw)
	if !reflect.DeepEqual(live, replayed) {
		t.Fatalf("empty facts:\nlive     %#v\nreplayed %#v", live, replayed)
	}
}

func TestShadowIsRecordedNeverApplied(t *testing.T) {
	env := newEnv(t)
	def := mustDef(t, orderDef)
	active := mustPolicy(t, "id: small\nprocess: orders\nwhen: input.amount < 50\nactions: [{skip: pack}]\n")
	active.Version = 1
	shadow := mustPolicy(t, "id: small\nprocess: orders\nwhen: input.amount < 200\nactions: [{skip: pack}]\n")
	shadow.Version, shadow.Mode = 2, process.ModeShadow
	other := mustPolicy(t, "id: qa\nprocess: orders\nwhen: input.amount > 100\nactions: [{add: extra_qa, after: pack}]\n")
	set, err := env.NewSet(def, []*process.Policy{active, shadow, other})
	if err != nil {
		t.Fatal(err)
	}
	out := set.Decide(t.Context(), def, vars(t, policies.Facts{Input: map[string]any{"amount": 120.0}}), policies.Point{Step: "pack"})
	if len(out.Applied) != 1 || out.Applied[0].Action.Add != "extra_qa" {
		t.Fatalf("applied %+v: the shadow version must not apply", out.Applied)
	}
	if out.Shadow == nil || len(out.Shadow.Applied) != 2 {
		t.Fatalf("shadow outcome %+v: it must keep the other policy's action and add its own", out.Shadow)
	}
	modes := map[string]bool{}
	for _, ev := range out.Evaluations {
		modes[ev.PolicyID+"/"+ev.Mode] = ev.Matched
	}
	if modes["small/active"] || !modes["small/shadow"] || !modes["qa/active"] {
		t.Fatalf("evaluations %v", modes)
	}
	ex := policies.Explain(process.Decision{Step: "pack", Evaluations: out.Evaluations, Applied: out.Applied, Rejected: out.Rejected, Shadow: out.Shadow})
	if ex.Shadow == nil || !ex.Shadow.Differs || !strings.Contains(ex.Text, "policy small (v2, shadow) matched") ||
		!strings.Contains(ex.Text, "would have applied add extra_qa after pack, skip pack instead") {
		t.Fatalf("explanation:\n%s", ex.Text)
	}
}

// A canary version applies to its share of the instances, in place of the
// active version, which is then their shadow; every other instance keeps
// the active version with the canary as its shadow. An instance gets the
// same version at every decision.
func TestCanaryAppliesToItsShareOfInstances(t *testing.T) {
	env := newEnv(t)
	def := mustDef(t, orderDef)
	active := mustPolicy(t, "id: small\nprocess: orders\nwhen: input.amount < 50\nactions: [{skip: pack}]\n")
	active.Version = 1
	canary := mustPolicy(t, "id: small\nprocess: orders\nwhen: input.amount < 200\nactions: [{skip: pack}]\n")
	canary.Version, canary.Mode, canary.Percent = 2, process.ModeShadow, 30
	set, err := env.NewSet(def, []*process.Policy{active, canary})
	if err != nil {
		t.Fatal(err)
	}
	facts := vars(t, policies.Facts{Input: map[string]any{"amount": 120.0}}) // only v2 matches
	const n = 2000
	in := 0
	for i := range n {
		id := "orders-" + strings.Repeat("x", i%7) + time.Duration(i).String()
		out := set.Decide(t.Context(), def, facts, policies.Point{Step: "pack", Instance: id})
		again := set.Decide(t.Context(), def, facts, policies.Point{Step: "pack", Instance: id})
		if len(out.Applied) != len(again.Applied) {
			t.Fatalf("instance %s got another version at its next decision", id)
		}
		modes := map[int]string{}
		for _, ev := range out.Evaluations {
			if ev.Canary != 30 {
				t.Fatalf("evaluation %+v does not carry the canary split", ev)
			}
			modes[ev.PolicyVersion] = ev.Mode
		}
		switch policies.InCanary(id, "small", 30) {
		case true:
			in++
			if len(out.Applied) != 1 || out.Applied[0].Action.Skip != "pack" || out.Shadow == nil || len(out.Shadow.Applied) != 0 ||
				modes[2] != process.ModeActive || modes[1] != process.ModeShadow {
				t.Fatalf("in the canary: applied %+v, shadow %+v, modes %v", out.Applied, out.Shadow, modes)
			}
		default:
			if len(out.Applied) != 0 || out.Shadow == nil || len(out.Shadow.Applied) != 1 || modes[1] != process.ModeActive || modes[2] != process.ModeShadow {
				t.Fatalf("outside the canary: applied %+v, shadow %+v, modes %v", out.Applied, out.Shadow, modes)
			}
		}
	}
	if share := float64(in) / n; share < 0.26 || share > 0.34 {
		t.Fatalf("%.3f of the instances got the canary, want about 0.30", share)
	}
	if policies.InCanary("any", "small", 0) || !policies.InCanary("any", "small", 100) {
		t.Fatal("0% and 100% canaries")
	}
	for i := range n {
		id := time.Duration(i).String()
		out := set.Decide(t.Context(), def, facts, policies.Point{Step: "pack", Instance: id})
		if policies.InCanary(id, "small", 30) {
			ex := policies.Explain(process.Decision{Step: "pack", Evaluations: out.Evaluations, Applied: out.Applied, Rejected: out.Rejected, Shadow: out.Shadow})
			if !strings.Contains(ex.Text, "policy small (v2, canary split 30%) matched") || !strings.Contains(ex.Text, "policy small (v1, shadow, canary split 30%) did not match") {
				t.Fatalf("explanation:\n%s", ex.Text)
			}
			break
		}
	}
}
