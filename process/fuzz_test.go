package process_test

import (
	"testing"

	"github.com/adaptflow/adaptflow/process"
)

// FuzzParse feeds arbitrary documents to the definition and policy
// parsers: they return a value or an error, never panic, and what parses
// validates.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"name":"j","version":2,"steps":[{"id":"a","kind":"task","task":"noop"}]}`))
	f.Add([]byte("id: p\nprocess: o\nwhen: 'true'\nactions: [{add: b, after: a}]\ntests: [{name: t, step: a, expect: {matched: true}}]\n"))
	f.Add([]byte("steps: [{id: a, kind: review, review: {queue: q, sla: 1d, on_timeout: reject}}]"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if d, err := process.ParseDefinition(data); err == nil {
			if err := d.Validate(); err != nil {
				t.Fatalf("parsed definition does not validate: %v", err)
			}
		}
		if p, err := process.ParsePolicy(data); err == nil {
			if err := p.Validate(); err != nil {
				t.Fatalf("parsed policy does not validate: %v", err)
			}
			_ = p.YAML()
		}
	})
}
