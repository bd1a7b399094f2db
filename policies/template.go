package policies

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/adaptflow/adaptflow/process"
)

type template struct {
	field string
	expr  string
}

// templatesIn lists the ${expr} templates of an http call, with the field
// each is in.
func templatesIn(h *process.HTTPCall) []template {
	var out []template
	add := func(field, s string) {
		for _, e := range splitTemplates(s) {
			if e.expr {
				out = append(out, template{field: field, expr: e.text})
			}
		}
	}
	add("url", h.URL)
	keys := make([]string, 0, len(h.Headers))
	for k := range h.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add("headers."+k, h.Headers[k])
	}
	return append(out, valueTemplates("body", h.Body)...)
}

// valueTemplates lists the ${expr} templates in the strings of v (a
// string, or JSON-like maps and lists of them), with the path of each
// under field.
func valueTemplates(field string, v any) []template {
	var out []template
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case string:
			for _, e := range splitTemplates(x) {
				if e.expr {
					out = append(out, template{field: path, expr: e.text})
				}
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(path+"."+k, x[k])
			}
		case []any:
			for i, vv := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), vv)
			}
		}
	}
	walk(field, v)
	return out
}

type part struct {
	text string
	expr bool
}

// splitTemplates splits s into literal text and ${...} expressions. Braces
// inside an expression nest, so map literals work.
func splitTemplates(s string) []part {
	var parts []part
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			if s != "" {
				parts = append(parts, part{text: s})
			}
			return parts
		}
		depth, j := 1, i+2
		for ; j < len(s) && depth > 0; j++ {
			switch s[j] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		if depth != 0 { // unterminated: literal text
			parts = append(parts, part{text: s})
			return parts
		}
		if i > 0 {
			parts = append(parts, part{text: s[:i]})
		}
		parts = append(parts, part{text: s[i+2 : j-1], expr: true})
		s = s[j:]
	}
}

// Render expands the ${expr} templates in v (a string, or JSON-like maps and
// lists of them) against vars. A string that is exactly one template takes
// the value's own type; otherwise values are formatted into the string.
func (e *Env) Render(ctx context.Context, v any, vars map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		parts := splitTemplates(x)
		if len(parts) == 1 && parts[0].expr {
			return e.evalTemplate(ctx, parts[0].text, vars)
		}
		var b strings.Builder
		for _, p := range parts {
			if !p.expr {
				b.WriteString(p.text)
				continue
			}
			val, err := e.evalTemplate(ctx, p.text, vars)
			if err != nil {
				return nil, err
			}
			if s, ok := val.(string); ok {
				b.WriteString(s)
			} else {
				b.Write(process.JSON(val))
			}
		}
		return b.String(), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, vv := range x {
			r, err := e.Render(ctx, vv, vars)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, vv := range x {
			r, err := e.Render(ctx, vv, vars)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

func (e *Env) evalTemplate(ctx context.Context, expr string, vars map[string]any) (any, error) {
	p, err := e.Compile(expr, false)
	if err != nil {
		return nil, fmt.Errorf("template ${%s}: %w", expr, err)
	}
	r := p.Eval(ctx, vars)
	if r.Err != nil {
		return nil, fmt.Errorf("template ${%s}: %w", expr, r.Err)
	}
	return r.Value, nil
}
