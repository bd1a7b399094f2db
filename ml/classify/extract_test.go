package classify_test

import (
	"reflect"
	"testing"

	"github.com/adaptflow/adaptflow/ml/classify"
)

// Patterns extract fields without a model, typed; they fill only what is
// missing and leave the given map alone.
func TestExtractByPatterns(t *testing.T) {
	spec := []classify.Field{
		{Name: "amount", Type: "number", Pattern: `(?i)(?:EUR|€)\s*([0-9][0-9,. ]*[0-9])`},
		{Name: "iban", Type: "string", Pattern: `\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b`},
		{Name: "urgent", Type: "boolean", Pattern: `(?i)\b(urgent|asap)\b`},
		{Name: "name", Type: "string", Pattern: `(?i)name:\s*([^\n]+)`},
		{Name: "account_type", Type: "string"}, // no pattern: left to the LLM
	}
	got := classify.ExtractByPatterns(spec, "Please transfer EUR 1,250.50 to DE89370400440532013000 asap.", nil)
	want := map[string]any{"amount": 1250.5, "iban": "DE89370400440532013000", "urgent": true, "name": nil}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	given := map[string]any{"amount": 99.0, "name": nil, "account_type": "business"}
	got = classify.ExtractByPatterns(spec, "Name: Ann Lee\nno money mentioned", given)
	want = map[string]any{"amount": 99.0, "iban": nil, "urgent": false, "name": "Ann Lee", "account_type": "business"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("filling in: got %v, want %v", got, want)
	}
	if given["name"] != nil || len(given) != 3 {
		t.Fatalf("the given fields were changed: %v", given)
	}
}
