package classify

import (
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// patterns caches compiled extraction patterns.
var patterns sync.Map // string → *regexp.Regexp (nil when it does not compile)

func pattern(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		re = nil
	}
	patterns.Store(p, re)
	return re
}

// ExtractByPatterns fills in fields, from text, each field of spec that has
// a pattern and no value yet (missing or null): the embedded path's
// extraction, and the LLM's where it found nothing. A pattern's first
// capture group (or its whole match) is the value: a string trimmed, a
// number with its thousands separators dropped (null when it does not
// parse); a boolean field is whether the pattern matches. A string or
// number pattern that does not match gives null. The filled copy of
// fields (which may be nil) is returned; fields is left as it is.
func ExtractByPatterns(spec []Field, text string, given map[string]any) map[string]any {
	fields := make(map[string]any, len(spec))
	maps.Copy(fields, given)
	for _, f := range spec {
		if f.Pattern == "" || fields[f.Name] != nil {
			continue
		}
		re := pattern(f.Pattern)
		if re == nil {
			continue
		}
		m := re.FindStringSubmatch(text)
		if f.Type == "boolean" {
			fields[f.Name] = m != nil
			continue
		}
		fields[f.Name] = nil
		if m == nil {
			continue
		}
		v := strings.TrimSpace(m[len(m)-1])
		switch f.Type {
		case "string":
			if v != "" {
				fields[f.Name] = v
			}
		case "number":
			if n, err := strconv.ParseFloat(strings.NewReplacer(",", "", "_", "", " ", "", "\u00a0", "").Replace(v), 64); err == nil {
				fields[f.Name] = n
			}
		}
	}
	return fields
}
