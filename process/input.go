package process

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// MaxInputItems bounds every list and object in an instance's input, at any
// depth. Policies loop over input collections; beyond a few thousand items
// the run-time cost accounting of such loops grows with the square of the
// length, so one oversized input could stall every decision on it.
const MaxInputItems = 10000

// ValidateInput checks an instance's input against the definition's schema.
// Errors are named `input.<field>`.
func (d *Definition) ValidateInput(input map[string]any) error {
	var es Errors
	if oversized(input) {
		checkSizes(&es, "input", input)
	}
	for _, r := range d.Input.Required {
		if _, ok := input[r]; !ok {
			es.Add("input."+r, "is required")
		}
	}
	names := make([]string, 0, len(d.Input.Properties))
	for name := range d.Input.Properties {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, ok := input[name]
		if !ok || v == nil {
			continue
		}
		p := d.Input.Properties[name]
		path := "input." + name
		if !hasType(v, p.Type) {
			es.Add(path, "must be of type %s (got %s)", p.Type, typeName(v))
			continue
		}
		if n, isNum := number(v); isNum {
			if p.Minimum != nil && n < *p.Minimum {
				es.Add(path, "must be at least %v (got %v)", *p.Minimum, n)
			}
			if p.Maximum != nil && n > *p.Maximum {
				es.Add(path, "must be at most %v (got %v)", *p.Maximum, n)
			}
		}
		if items, isList := v.([]any); isList && p.MaxItems != nil && len(items) > *p.MaxItems {
			es.Add(path, "has %d items; at most %d", len(items), *p.MaxItems)
		}
		if len(p.Enum) > 0 && !inEnum(v, p.Enum) {
			es.Add(path, "must be one of %s", JSON(p.Enum))
		}
	}
	return es.Err()
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func hasType(v any, t string) bool {
	switch t {
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := number(v)
		return ok
	case "integer":
		n, ok := number(v)
		return ok && n == math.Trunc(n)
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	}
	return false
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	if _, ok := number(v); ok {
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func inEnum(v any, enum []any) bool {
	vb := JSON(v)
	for _, e := range enum {
		if string(JSON(e)) == string(vb) {
			return true
		}
	}
	return false
}

// oversized reports whether v holds, at any depth, a list or object of more
// than MaxInputItems items. It allocates nothing: every start request runs
// it, and only an input it refuses pays for checkSizes' error paths.
func oversized(v any) bool {
	switch c := v.(type) {
	case []any:
		if len(c) > MaxInputItems {
			return true
		}
		for _, e := range c {
			if oversized(e) {
				return true
			}
		}
	case map[string]any:
		if len(c) > MaxInputItems {
			return true
		}
		for _, e := range c {
			if oversized(e) {
				return true
			}
		}
	}
	return false
}

// checkSizes reports the lists and objects in v, at any depth, with more
// than MaxInputItems items, in a stable order.
func checkSizes(es *Errors, path string, v any) {
	switch c := v.(type) {
	case []any:
		if len(c) > MaxInputItems {
			es.Add(path, "has %d items; at most %d", len(c), MaxInputItems)
			return
		}
		for i, e := range c {
			checkSizes(es, fmt.Sprintf("%s[%d]", path, i), e)
		}
	case map[string]any:
		if len(c) > MaxInputItems {
			es.Add(path, "has %d fields; at most %d", len(c), MaxInputItems)
			return
		}
		for _, k := range sortedKeys(c) {
			checkSizes(es, path+"."+k, c[k])
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
