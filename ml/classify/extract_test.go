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

// Amounts are read as people write them, with either decimal mark.
func TestParseNumber(t *testing.T) {
	for in, want := range map[string]float64{
		"1250": 1250, "1,250.50": 1250.5, "1.250,50": 1250.5, "1 250,50": 1250.5, "1\u00a0250,5": 1250.5, "1\u202f250.75": 1250.75,
		"1'250.50": 1250.5, "1.250.000": 1250000, "1,250,000": 1250000, "1.250.000,25": 1250000.25, "12,5": 12.5, "12,50": 12.5,
		"1,250": 1250, "1.25": 1.25, "0,99": 0.99, "-3,5": -3.5, "+7": 7, ".5": 0.5, " 42 ": 42, "1_000": 1000, "1,00,000": 100000, "1.": 1,
	} {
		if got, ok := classify.ParseNumber(in); !ok || got != want {
			t.Errorf("ParseNumber(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-", "abc", "12a", ",5,", "1..2", "12.34.56", "1.2345.000", "1,250,00.5", "EUR 5", "1e5"} {
		if got, ok := classify.ParseNumber(in); ok {
			t.Errorf("ParseNumber(%q) = %v; want no number", in, got)
		}
	}
	spec := []classify.Field{{Name: "amount", Type: "number", Pattern: `(?i)(?:EUR|€)\s*([0-9][0-9,. ]*[0-9])`}}
	if got := classify.ExtractByPatterns(spec, "Bitte überweisen Sie EUR 1.000,50 bis Freitag.", nil); got["amount"] != 1000.5 {
		t.Fatalf("a German amount: %v", got)
	}
	// A field whose texts use the decimal comma reads a lone dot as
	// grouping thousands.
	spec[0].Decimal = ","
	if got := classify.ExtractByPatterns(spec, "Rechnungsbetrag EUR 1.250 netto", nil); got["amount"] != 1250.0 {
		t.Fatalf("a German amount with a lone dot: %v", got)
	}
	for in, want := range map[string]float64{"1.250": 1250, "1,5": 1.5, "1.250,75": 1250.75, "250": 250, "1,250": 1.25} {
		if got, ok := classify.ParseNumberWith(in, ','); !ok || got != want {
			t.Errorf("ParseNumberWith(%q, ',') = %v, %v; want %v", in, got, ok, want)
		}
	}
	for in, want := range map[string]float64{"1,250": 1250, "1.5": 1.5, "1,250.75": 1250.75} {
		if got, ok := classify.ParseNumberWith(in, '.'); !ok || got != want {
			t.Errorf("ParseNumberWith(%q, '.') = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"1,2,3", "1.25.0"} {
		if got, ok := classify.ParseNumberWith(in, in[1]); ok {
			t.Errorf("ParseNumberWith(%q) = %v; want no number (the decimal mark twice)", in, got)
		}
	}
}
