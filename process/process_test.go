package process_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

const good = `
name: orders
version: 1
input:
  required: [amount]
  properties:
    amount: {type: number, minimum: 0}
    tier: {type: string, enum: [gold, silver]}
    count: {type: integer}
    lines: {type: array, maxItems: 3}
signals:
  - {name: pause_time, kind: duration, step: pause}
steps:
  - {id: reserve, kind: task, task: reserve_stock}
  - {id: pause, kind: wait, duration: 1d}
  - {id: gate, kind: review, review: {queue: ops, sla: 4h, on_timeout: approve}}
catalog:
  - {id: extra, kind: validate, assertions: ["true"]}
`

func TestParseDefinitionErrorsNamePaths(t *testing.T) {
	if _, err := process.ParseDefinition([]byte(good)); err != nil {
		t.Fatalf("good definition: %v", err)
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"unknown kind":       {"kind: wait", "kind: sleep", `steps[1].kind: unknown step kind "sleep"`},
		"bad duration":       {"duration: 1d", "duration: soon", `steps[1].duration: a wait step needs a positive duration`},
		"duplicate id":       {"id: pause", "id: reserve", `steps[1].id: duplicate step id "reserve" (also at steps[0])`},
		"unknown field":      {"task: reserve_stock", "task: reserve_stock, retrys: 3", `steps[0].retrys: unknown field (line 14; did you mean "retries"?)`},
		"misspelt field":     {"sla: 4h", "slaa: 4h", `steps[2].review.slaa: unknown field (line 16; did you mean "sla"?)`},
		"far-off field":      {"task: reserve_stock", "task: reserve_stock, colour: red", "steps[0].colour: unknown field (line 14)"},
		"compensate unknown": {"task: reserve_stock}", "task: reserve_stock, compensate: release}", `steps[0].compensate: names the catalog step that undoes reserve (got "release", not in catalog)`},
		"compensate kind":    {"task: reserve_stock}", "task: reserve_stock, compensate: gate}\n  - {id: later, kind: task, task: noop}", `steps[0].compensate: names the catalog step`},
		"compensate review":  {"catalog:\n  - {id: extra, kind: validate", "catalog:\n  - {id: x2, kind: task, task: noop, compensate: ask}\n  - {id: ask, kind: review, review: {queue: ops}}\n  - {id: extra, kind: validate", "catalog[0].compensate: a compensation is a task, http or validate step (ask is review)"},
		"compensate chain":   {"catalog:\n  - {id: extra, kind: validate", "catalog:\n  - {id: x3, kind: task, task: noop, compensate: undo}\n  - {id: undo, kind: task, task: noop, compensate: extra}\n  - {id: extra, kind: validate", "catalog[0].compensate: undo compensates x3 and has a compensation of its own"},
		"process step":       {"kind: wait, duration: 1d", "kind: process", "steps[1].process: a process step names the process it runs"},
		"process step name":  {"kind: wait, duration: 1d", "kind: process, process: {name: KYC}", `steps[1].process.name: is required: lower-case letters, digits, '-' or '_' (got "KYC")`},
		"sla":                {"name: orders", "name: orders\nsla: soon", `sla: must be a duration of at least 1m, such as 48h or 5d (got "soon")`},
		"retention":          {"name: orders", "name: orders\nretention: 12h", `retention: must be a duration of at least 1d, such as 90d (got "12h")`},
		"concurrency":        {"name: orders", "name: orders\nconcurrency: -2", `concurrency: must be from 1 to 100000 instances running at once (got -2)`},
		"sla too short":      {"name: orders", "name: orders\nsla: 30s", `sla: must be a duration of at least 1m`},
		"wrong kind":         {"version: 1", "version: first", `version: must be an integer (got "first", line 3)`},
		"object for a list":  {"required: [amount]", "required: {amount: true}", "input.required: must be a list (got an object, line 5)"},
		"number for a bool":  {"task: reserve_stock", "task: reserve_stock, mandatory: 3", `steps[0].mandatory: must be true or false (got "3", line 14)`},
		"on_timeout":         {"on_timeout: approve", "on_timeout: shrug", "steps[2].review.on_timeout: must be approve, reject, fail or escalate"},
		"required missing":   {"required: [amount]", "required: [amount, qty]", `input.required: field "qty" has no entry`},
		"bad type":           {"type: integer", "type: int", `input.properties.count.type: must be one of`},
		"maxItems type":      {"type: integer}", "type: integer, maxItems: 2}", "input.properties.count.maxItems: applies to arrays, from 0 to 10000"},
		"maxItems bound":     {"maxItems: 3", "maxItems: 10001", "input.properties.lines.maxItems: applies to arrays"},
		"mandatory extra":    {`assertions: ["true"]`, `assertions: ["true"], mandatory: true`, "catalog[0].mandatory: catalog steps are optional"},
		"bad name":           {"name: orders", "name: Orders!", "name: must be lower-case"},
		"no steps":           {"steps:\n", "steps: []\nx_steps:\n", `x_steps: unknown field (line 14; did you mean "steps"?)`},
		"no escalation":      {"on_timeout: approve", "on_timeout: escalate", "steps[2].review.escalate: is required with on_timeout: escalate"},
		"escalation queue":   {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: Senior!, sla: 8h, on_timeout: reject}", "steps[2].review.escalate.queue: is required"},
		"escalation end":     {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: senior, sla: 8h, on_timeout: shrug}", "steps[2].review.escalate.on_timeout: must be approve, reject, fail or escalate"},
		"escalation url":     {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: senior, sla: 8h, on_timeout: reject, notify: 'ftp://x'}", "steps[2].review.escalate.notify: must be an http(s) URL"},
		"duration step":      {"step: pause}", "step: nap}", `signals[0].step: a duration signal names a step of steps or catalog (got "nap")`},
		"duplicate signal":   {"step: pause}", "step: pause}\n  - {name: pause_time, kind: arrival_rate}", `signals[1].name: duplicate signal name "pause_time" (also at signals[0])`},
		"signal kind":        {"kind: duration", "kind: latency", `signals[0].kind: unknown signal kind "latency" (known: arrival_rate, value, duration)`},
		"stray escalation":   {"on_timeout: approve", "on_timeout: approve, escalate: {queue: senior, sla: 8h, on_timeout: reject}", "steps[2].review.escalate: applies only with on_timeout: escalate"},
		"next level missing": {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: senior, sla: 8h, on_timeout: escalate}", "steps[2].review.escalate.escalate: is required with on_timeout: escalate"},
		"next level stray":   {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: senior, sla: 8h, on_timeout: fail, escalate: {queue: cfo, sla: 1h, on_timeout: reject}}", "steps[2].review.escalate.escalate: applies only with on_timeout: escalate"},
		"next level invalid": {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: senior, sla: 8h, on_timeout: escalate, escalate: {queue: cfo, sla: soon, on_timeout: reject}}", "steps[2].review.escalate.escalate.sla: is required"},
		"event name":         {"kind: wait, duration: 1d", "kind: event, event: {name: Paid!}", `steps[1].event.name: is required`},
		"event missing":      {"kind: wait, duration: 1d", "kind: event", `steps[1].event: an event step names the event it waits for`},
		"event timeout":      {"kind: wait, duration: 1d", "kind: event, event: {name: paid, timeout: soon}", `steps[1].event.timeout: invalid duration "soon"`},
		"event on_timeout":   {"kind: wait, duration: 1d", "kind: event, event: {name: paid, timeout: 1d, on_timeout: approve}", `steps[1].event.on_timeout: must be fail or continue`},
		"event no timeout":   {"kind: wait, duration: 1d", "kind: event, event: {name: paid, on_timeout: continue}", `steps[1].event.on_timeout: needs a timeout`},
		"event count":        {"kind: wait, duration: 1d", "kind: event, event: {name: shipped, count: 1001}", `steps[1].event.count: must be 1 to 1000 (got 1001)`},
		"too many levels":    {"on_timeout: approve", "on_timeout: escalate, escalate: {queue: l1, sla: 1h, on_timeout: escalate, escalate: {queue: l2, sla: 1h, on_timeout: escalate, escalate: {queue: l3, sla: 1h, on_timeout: escalate, escalate: {queue: l4, sla: 1h, on_timeout: escalate, escalate: {queue: l5, sla: 1h, on_timeout: escalate, escalate: {queue: l6, sla: 1h, on_timeout: reject}}}}}}", "steps[2].review.escalate.escalate.escalate.escalate.escalate.escalate: a review escalates at most 5 times"},
	} {
		t.Run(name, func(t *testing.T) {
			src := strings.Replace(good, tc.from, tc.to, 1)
			_, err := process.ParseDefinition([]byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	for _, src := range []string{"", "   ", "[1,2]", "name: a\n---\nname: b\n"} {
		if _, err := process.ParseDefinition([]byte(src)); err == nil {
			t.Errorf("%q parsed", src)
		}
	}
}

func TestJSONFormParses(t *testing.T) {
	d, err := process.ParseDefinition([]byte(`{"name":"j","version":2,"steps":[{"id":"a","kind":"task","task":"noop"}]}`))
	if err != nil || d.Name != "j" || d.Version != 2 {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestValidateInput(t *testing.T) {
	d, err := process.ParseDefinition([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"amount": 3.0}, ""},
		{map[string]any{}, "input.amount: is required"},
		{map[string]any{"amount": -1.0}, "input.amount: must be at least 0"},
		{map[string]any{"amount": "1"}, "input.amount: must be of type number (got string)"},
		{map[string]any{"amount": 1.0, "count": 1.5}, "input.count: must be of type integer"},
		{map[string]any{"amount": 1.0, "tier": "bronze"}, `input.tier: must be one of ["gold","silver"]`},
		{map[string]any{"amount": 1.0, "lines": []any{1.0, 2.0, 3.0}}, ""},
		{map[string]any{"amount": 1.0, "lines": []any{1.0, 2.0, 3.0, 4.0}}, "input.lines: has 4 items; at most 3"},
		// Every list and object, declared or not and at any depth, is
		// bounded: policies loop over them.
		{map[string]any{"amount": 1.0, "order": map[string]any{"items": make([]any, process.MaxInputItems)}}, ""},
		{map[string]any{"amount": 1.0, "order": map[string]any{"items": make([]any, process.MaxInputItems+1)}}, "input.order.items: has 10001 items; at most 10000"},
		{map[string]any{"amount": 1.0, "batches": []any{[]any{}, make([]any, process.MaxInputItems+1)}}, "input.batches[1]: has 10001 items"},
	} {
		err := d.ValidateInput(tc.in)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: err %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"two kinds":     {"id: p\nprocess: o\nwhen: 'true'\nactions: [{skip: a, add: b, after: a}]", "actions[0]: exactly one of skip, add, review, set"},
		"add no anchor": {"id: p\nprocess: o\nwhen: 'true'\nactions: [{add: b}]", "actions[0]: add needs exactly one of before or after"},
		"no when":       {"id: p\nprocess: o\nactions: [{skip: a}]", "when: is required"},
		"review after":  {"id: p\nprocess: o\nwhen: 'true'\nactions: [{review: {queue: q}, after: a}]", "actions[0].after: a review is a gate before a step"},
		"on_error":      {"id: p\nprocess: o\nwhen: 'true'\non_error: ignore\nactions: [{skip: a}]", "on_error: must be skip or match"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := process.ParsePolicy([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{"90s": 90 * time.Second, "2h": 2 * time.Hour, "3d": 72 * time.Hour} {
		if got, err := process.ParseDuration(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "d", "1.5d", "x3d", "soon"} {
		if _, err := process.ParseDuration(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestDecisionHashCoversContent(t *testing.T) {
	d := process.Decision{ID: "d", RunID: "r", Seq: 1, Step: "a", Facts: []byte(`{"x":1}`), PrevHash: "p"}
	h := d.ComputeHash()
	d2 := d
	d2.Facts = []byte(`{"x":2}`)
	d3 := d
	d3.PrevHash = "q"
	if h == d2.ComputeHash() || h == d3.ComputeHash() || h != d.ComputeHash() {
		t.Fatal("hash must change with facts and previous hash, and only then")
	}
}

const classifyDef = `
name: onboarding
version: 1
input:
  properties:
    message: {type: string}
    form_text: {type: string}
    amount: {type: number}
classify:
  name: requests
  fields: [message, form_text]
  labels: [personal, business]
  extract: [{name: amount, type: number, pattern: 'EUR ([0-9]+)'}]
  examples: [{text: a current account for me, label: personal}, {text: an account for our company, label: business}]
steps:
  - {id: open, kind: task, task: noop}
`

// A classifier may read several input fields: each non-empty one is
// classified under its name; a wrong field list is refused with its path.
func TestClassifyFields(t *testing.T) {
	d, err := process.ParseDefinition([]byte(classifyDef))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Classify.Text(map[string]any{"message": "hi", "form_text": "Company: ACME"}); got != "message:\nhi\n\nform_text:\nCompany: ACME" {
		t.Fatalf("text %q", got)
	}
	if got := d.Classify.Text(map[string]any{"message": "hi", "form_text": "  "}); got != "hi" {
		t.Fatalf("text with an empty form %q", got)
	}
	if !d.Classify.English() {
		t.Fatal("no language: not English")
	}
	for lang, english := range map[string]bool{"en": true, "EN-gb": true, "de": false, "de-CH": false, "eng": true} {
		d, err := process.ParseDefinition([]byte(strings.Replace(classifyDef, "labels: [", "language: "+lang+"\n  labels: [", 1)))
		if err != nil || d.Classify.English() != english {
			t.Fatalf("language %s: English %v, want %v (%v)", lang, d != nil && d.Classify.English(), english, err)
		}
	}
	single := process.ClassifySpec{Field: "message"}
	if got := single.Text(map[string]any{"message": "hi", "form_text": "x"}); got != "hi" || !slices.Equal(single.TextFields(), []string{"message"}) {
		t.Fatalf("one field: %q %v", got, single.TextFields())
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"both":          {"fields: [message, form_text]", "field: message\n  fields: [form_text]", "classify.fields: give field or fields, not both"},
		"not a string":  {"fields: [message, form_text]", "fields: [message, amount]", "classify.fields[1]: must name a string field"},
		"unknown":       {"fields: [message, form_text]", "fields: [message, note]", `classify.fields[1]: must name a string field of input.properties, once (got "note")`},
		"twice":         {"fields: [message, form_text]", "fields: [message, message]", "classify.fields[1]: must name a string field"},
		"neither field": {"fields: [message, form_text]", "", "classify.field: must name a string field"},
		"bad pattern":   {"'EUR ([0-9]+)'", "'EUR ([0-9]+'", "classify.extract[0].pattern: is not a regular expression"},
		"two groups":    {"'EUR ([0-9]+)'", "'(EUR) ([0-9]+)'", "classify.extract[0].pattern: may have at most one capture group, the value (got 2)"},
		"language":      {"labels: [", "language: english\n  labels: [", `classify.language: is not a language tag such as "en" or "de-CH" (got "english")`},
		"language form": {"labels: [", "language: de_CH\n  labels: [", `classify.language: is not a language tag`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := process.ParseDefinition([]byte(strings.Replace(classifyDef, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// An extracted number's decimal mark is "." or ",", and only a number has
// one.
func TestExtractDecimalMark(t *testing.T) {
	def := func(extract string) string {
		return "name: notes\nversion: 1\ninput: {properties: {note: {type: string}}}\nsteps: [{id: a, kind: task, task: noop}]\n" +
			"classify: {name: c, field: note, labels: [x, y], examples: [{text: hi, label: x}, {text: yo, label: y}], extract: [" + extract + "]}\n"
	}
	if _, err := process.ParseDefinition([]byte(def("{name: amount, type: number, decimal: ','}"))); err != nil {
		t.Fatal(err)
	}
	for extract, want := range map[string]string{
		"{name: amount, type: number, decimal: ';'}": `classify.extract[0].decimal: must be "." or ","`,
		"{name: iban, type: string, decimal: ','}":   "classify.extract[0].decimal: applies to number fields",
	} {
		if _, err := process.ParseDefinition([]byte(def(extract))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", extract, err, want)
		}
	}
}
